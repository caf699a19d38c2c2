"""Command-line layer of delta tuning: the ``tune --method`` options and the ``delta-perturb``
command. :func:`register` adds ``delta-perturb`` to the ``skillneurons`` sub-command parser."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from skillneurons.delta.config import METHOD_NAMES as METHODS


def add_method_args(p: argparse.ArgumentParser) -> None:
    """``--method`` and the methods' options (for ``skillneurons tune``)."""
    p.add_argument(
        "--method",
        default="prompt",
        choices=list(METHODS),
        help="what is tuned: a soft prompt (default), biases (bitfit), bottleneck adapters, or LoRA; "
        "non-prompt methods use no soft prompt and want a smaller --lr (e.g. 1e-3 to 5e-3)",
    )
    p.add_argument(
        "--adapter-placement",
        default="pfeiffer",
        choices=["pfeiffer", "houlsby"],
        help="adapter: after the FFN (pfeiffer) or after attention and FFN (houlsby)",
    )
    p.add_argument(
        "--adapter-reduction", type=float, default=16.0, help="adapter: hidden size / bottleneck width"
    )
    p.add_argument(
        "--adapter-activation",
        default="relu",
        choices=["relu", "gelu", "silu", "tanh"],
        help="adapter: bottleneck non-linearity",
    )
    p.add_argument("--lora-r", type=int, default=8, help="lora: rank")
    p.add_argument(
        "--lora-alpha", type=float, default=16.0, help="lora: scale numerator (update = alpha/r * BA)"
    )
    p.add_argument(
        "--lora-dropout",
        type=float,
        default=0.0,
        help="lora: dropout on the LoRA branch (only 0: training steps are deterministic)",
    )
    p.add_argument(
        "--lora-targets",
        help="lora: comma-separated module paths inside a block (default: attention query and value)",
    )


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``args.method`` from the parsed ``tune`` arguments."""
    if args.method == "adapter":
        return {
            "placement": args.adapter_placement,
            "reduction": args.adapter_reduction,
            "activation": args.adapter_activation,
        }
    if args.method == "lora":
        targets = (
            [t.strip() for t in args.lora_targets.split(",") if t.strip()] if args.lora_targets else None
        )
        return {"r": args.lora_r, "alpha": args.lora_alpha, "dropout": args.lora_dropout, "targets": targets}
    return {}


def cmd_delta_perturb(args: argparse.Namespace) -> int:
    from skillneurons.cli import _backbone, _load_task_from
    from skillneurons.delta.config import DeltaPerturbConfig
    from skillneurons.delta.experiment import run_delta_perturbation
    from skillneurons.perturb.cli import _floats, _options
    from skillneurons.rundir import RunDir

    opts = _options(args)
    progress = opts.pop("progress")
    config = DeltaPerturbConfig(
        rhos=tuple(_floats(args.rho, "--rho")), draws=args.draws, split=args.split, **opts
    )
    task = _load_task_from(args) if args.task else None
    # the backbone named by --model, else the one the first tuned model names; --dtype etc. apply to both
    bb = _backbone(args, args.model or RunDir.of(args.models[0]).backbone_name)
    res = run_delta_perturbation(
        args.neurons, args.models, args.out, config, model=bb, task=task, progress=progress
    )
    print(
        f"skill neurons of {res.task} ({config.mode}); drop from unperturbed test accuracy, "
        "random: mean [95% CI]"
    )
    for m in res.models:
        print(f"{m.label}: unperturbed {m.sweep['unperturbed']:.4f} (n={m.sweep['n_eval']})")
        for r in m.summary:
            ci = r.random_drop_ci95
            band = f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci[0] is not None else ""
            rnd = f"{r.random_drop:+.4f}" if r.random_drop is not None else "-"
            print(
                f"  rho {r.rho:.3f} ({r.neurons:5d} neurons): skill {r.skill_drop:+.4f}, random {rnd}{band}"
            )
    print(f"results written to {Path(args.out) / 'delta_perturb.json'} and delta_perturb.png")
    return 0


def register(sub: Any) -> None:
    """Add the ``delta-perturb`` command to ``sub`` (the object returned by ``parser.add_subparsers``)."""
    from skillneurons.cli import _backbone_args, _task_args
    from skillneurons.perturb.cli import _common

    p = sub.add_parser(
        "delta-perturb",
        help="perturb prompt-found skill neurons in models tuned with BitFit / adapters / LoRA",
    )
    p.add_argument(
        "--neurons",
        required=True,
        help="skill-neuron artifact found with prompt tuning (NEURONS/skill_neurons.safetensors)",
    )
    p.add_argument(
        "--models",
        nargs="+",
        required=True,
        help="artifacts of models tuned on the same task (RUN/prompt.safetensors, any --method)",
    )
    p.add_argument(
        "--out", required=True, help="folder for delta_perturb.json, delta_perturb.png and per-model sweeps"
    )
    p.add_argument(
        "--rho", default="0,0.01,0.02,0.05", help="comma-separated fractions (default 0,0.01,0.02,0.05)"
    )
    p.add_argument("--draws", type=int, default=5, help="random-control draws per fraction (k)")
    _common(p)
    p.set_defaults(mode="zero")  # the and the paper's setting for this experiment
    _backbone_args(p)
    _task_args(p, required=False)
    p.set_defaults(fn=cmd_delta_perturb)
