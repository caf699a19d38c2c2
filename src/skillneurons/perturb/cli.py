"""Command-line layer of the perturbation and similarity experiments: ``perturb``, ``cross-perturb``
and ``similarity``. :func:`register` adds them to the ``skillneurons`` sub-command parser."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from skillneurons.errors import ConfigError

_DEFAULT_RHOS = "0,0.01,0.02,0.05,0.1,0.15,0.2"


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"{what} {text!r} is not a comma-separated list of numbers: write e.g. 0,0.01,0.05"
        ) from None


def _ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"{what} {text!r} is not a comma-separated list of integers: write e.g. 0,1,2"
        ) from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mode",
        default="gaussian",
        choices=["gaussian", "zero", "mean"],
        help="gaussian: a + eps, eps ~ N(0, sigma^2); zero: 0; mean: the neuron's mean activation",
    )
    p.add_argument("--sigma", type=float, default=0.1, help="standard deviation of the gaussian noise")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise and of the random control")
    p.add_argument(
        "--positions",
        default="all",
        choices=["all", "prompt"],
        help="perturb at every position, or only at the prompt positions (read slot + soft tokens)",
    )
    p.add_argument("--layers", help="comma-separated layers to perturb (default: all)")
    p.add_argument(
        "--global",
        dest="per_layer",
        action="store_false",
        help="select the top fraction over all neurons instead of the same quota in every layer",
    )
    p.add_argument(
        "--split",
        default="test",
        choices=["train", "dev", "test"],
        help="part of each prompt's run split to evaluate on",
    )
    p.add_argument("--model", help="backbone (default: the one recorded in the prompt)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        mode=args.mode,
        sigma=args.sigma,
        seed=args.seed,
        positions=args.positions,
        layers=_ints(args.layers, "--layers"),
        per_layer=args.per_layer,
        batch_size=args.batch_size,
        precision=args.precision,
        progress=not args.quiet,
    )


def cmd_perturb(args: argparse.Namespace) -> int:
    from skillneurons.cli import _load_task_from
    from skillneurons.perturb.experiments import run_sweep

    task = _load_task_from(args) if args.task else None
    res = run_sweep(
        args.prompt,
        args.neurons,
        args.out,
        model=args.model,
        task=task,
        split=args.split,
        rhos=_floats(args.rho, "--rho"),
        draws=args.draws,
        **_options(args),
    )
    print(
        f"{res['task']} ({res['split']}, n={res['n_eval']}), {res['mode']} perturbation, "
        f"unperturbed accuracy {res['unperturbed']:.4f}"
    )
    print("   rho  neurons  skill    random (mean, 95% CI)")
    for p in res["points"]:
        r = p["random"]
        ci = r["ci95"]
        band = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci[0] is not None else ""
        mean = f"{r['mean']:.4f}" if r["mean"] is not None else "-"
        print(f"  {p['rho']:.3f} {p['neurons']:8d}  {p['skill']:.4f}   {mean} {band}")
    print(f"results written to {Path(args.out) / 'perturb_sweep.json'} and perturb_sweep.png")
    return 0


def cmd_cross_perturb(args: argparse.Namespace) -> int:
    from skillneurons.perturb.experiments import run_cross

    res = run_cross(
        args.prompts,
        args.neurons,
        args.out,
        model=args.model,
        split=args.split,
        rho=args.rho,
        control_draws=args.draws,
        **_options(args),
    )
    names = res["tasks"]
    width = max(len(n) for n in names) + 2
    print(
        f"accuracy drop ({res['mode']}, top {res['rho']:.1%} skill neurons); rows: perturbed neurons of, "
        "columns: evaluated task"
    )
    print(" " * width + "".join(f"{n:>{width}s}" for n in names))
    for n, row in zip(names, res["drop"]):
        print(f"{n:{width}s}" + "".join(f"{v:>{width}.4f}" for v in row))
    ctrl = res["random_control"]["drop"]
    print(
        f"{'random':{width}s}" + "".join(f"{v:>{width}.4f}" if v is not None else " " * width for v in ctrl)
    )
    print(f"results written to {Path(args.out) / 'perturb_cross.json'} and perturb_cross.png")
    return 0


def cmd_similarity(args: argparse.Namespace) -> int:
    from skillneurons.perturb.similarity import run_similarity

    names = args.names.split(",") if args.names else None
    res = run_similarity(args.neurons, args.out, names=names, rho=args.rho, per_layer=args.per_layer)
    print(json.dumps({k: res[k] for k in ("tasks", "spearman", "jaccard")}, indent=1))
    print(f"results written to {Path(args.out) / 'similarity.json'} and similarity_*.png")
    return 0


def register(sub: Any) -> None:
    """Add the ``perturb``, ``cross-perturb`` and ``similarity`` commands to ``sub`` (the object
    returned by ``parser.add_subparsers``)."""
    from skillneurons.cli import _task_args

    p = sub.add_parser("perturb", help="accuracy while perturbing skill neurons vs random neurons, over rho")
    p.add_argument(
        "--prompt", required=True, help="prompt artifact (RUN/prompt.safetensors), with its split.json"
    )
    p.add_argument(
        "--neurons", required=True, help="skill-neuron artifact (NEURONS/skill_neurons.safetensors)"
    )
    p.add_argument("--out", required=True, help="folder for perturb_sweep.json and perturb_sweep.png")
    p.add_argument(
        "--rho", default=_DEFAULT_RHOS, help=f"comma-separated fractions (default {_DEFAULT_RHOS})"
    )
    p.add_argument("--draws", type=int, default=5, help="random-control draws per fraction (k)")
    _common(p)
    _task_args(p, required=False)
    p.set_defaults(fn=cmd_perturb)

    p = sub.add_parser(
        "cross-perturb", help="perturb task A's skill neurons while evaluating task B's prompt, for all pairs"
    )
    p.add_argument(
        "--prompts", nargs="+", required=True, help="one prompt artifact per task (built-in tasks)"
    )
    p.add_argument(
        "--neurons", nargs="+", required=True, help="the tasks' skill-neuron artifacts, same order"
    )
    p.add_argument("--out", required=True, help="folder for perturb_cross.json and perturb_cross.png")
    p.add_argument("--rho", type=float, default=0.05, help="fraction of skill neurons perturbed")
    p.add_argument("--draws", type=int, default=3, help="random-control draws per evaluated task")
    _common(p)
    p.set_defaults(fn=cmd_cross_perturb)

    p = sub.add_parser(
        "similarity", help="task similarity: Spearman of neuron predictivity, skill-set overlap"
    )
    p.add_argument("neurons", nargs="+", help="skill-neuron artifacts, one per task (same model)")
    p.add_argument("--out", required=True, help="folder for similarity.json and the heatmaps")
    p.add_argument("--names", help="comma-separated task names (default: recorded in the artifacts)")
    p.add_argument("--rho", type=float, default=0.02, help="fraction defining the skill sets for the overlap")
    p.add_argument(
        "--global",
        dest="per_layer",
        action="store_false",
        help="skill sets as the top fraction over all neurons, not per layer",
    )
    p.set_defaults(fn=cmd_similarity)
