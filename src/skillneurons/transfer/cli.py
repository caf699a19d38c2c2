"""Command-line layer of prompt transferability: ``transfer-matrix``, ``transferability``,
``project train|apply`` and ``tpt-compare``. :func:`register` adds them to the ``skillneurons``
sub-command parser."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from skillneurons.errors import ConfigError
from skillneurons.transfer.config import parse_layers

#: ``3:6`` (a window, end exclusive), ``0,2,5`` or None (all layers); see :func:`parse_layers`
_layers = parse_layers


def _table(rows: list[str], cols: list[str], m: list[list[Any]], fmt: str = "{:.3f}") -> str:
    width = max(8, *(len(c) + 1 for c in cols))
    first = max(len(r) for r in rows) + 2
    lines = [" " * first + "".join(f"{c:>{width}s}" for c in cols)]
    for r, row in zip(rows, m):
        lines.append(
            f"{r:{first}s}"
            + "".join(f"{fmt.format(v):>{width}s}" if v is not None else f"{'-':>{width}s}" for v in row)
        )
    return "\n".join(lines)


def cmd_transfer_matrix(args: argparse.Namespace) -> int:
    from skillneurons.cli import _backbone
    from skillneurons.rundir import RunDir
    from skillneurons.transfer.matrix import run_transfer_matrix

    # through the CLI's loader (--dtype, --device-map, --ffn, --trust-remote-code), also for the default
    model = _backbone(args, args.model or RunDir.of(args.prompts[0]).backbone_name)
    names = args.names.split(",") if args.names else None
    res = run_transfer_matrix(
        args.prompts,
        args.out,
        model=model,
        targets=args.targets,
        names=names,
        split=args.split,
        batch_size=args.batch_size,
        precision=args.precision,
        progress=not args.quiet,
    )
    print(
        f"accuracy on the target's {res['settings']['split']} split "
        "(rows: source prompt, columns: target task)"
    )
    print(_table(res["sources"], res["targets"], res["accuracy"]))
    print("\nrelative to the target's own prompt")
    print(_table(res["sources"], res["targets"], res["relative"]))
    print(f"\nresults written to {Path(args.out) / 'transfer_matrix.json'}")
    return 0


def cmd_transferability(args: argparse.Namespace) -> int:
    from skillneurons.cli import _backbone
    from skillneurons.rundir import RunDir
    from skillneurons.transfer.indicators import INDICATORS, OnOptions, transferability
    from skillneurons.transfer.matrix import TransferMatrix

    matrix = TransferMatrix.load(args.matrix) if args.matrix else None
    if args.neurons and len(args.neurons) != len(args.prompts):
        raise ConfigError(
            f"--neurons gives {len(args.neurons)} artifacts for {len(args.prompts)} prompts: "
            "give one per prompt ('-' for none)"
        )
    neurons = {p: (None if n == "-" else n) for p, n in zip(args.prompts, args.neurons or [])}
    bb = _backbone(args, args.model or RunDir.of(args.prompts[0]).backbone_name)
    on = OnOptions(
        position=args.on_position,
        texts=args.on_input or [""],
        layers=_layers(args.layers),
        threshold=args.threshold,
    )
    res = transferability(
        args.prompts,
        bb,
        matrix=matrix,
        names=args.names.split(",") if args.names else None,
        neurons=neurons,
        on=on,
        rho=args.rho,
        per_layer=args.per_layer,
        include_same_task=args.include_same_task,
        min_margin=args.min_margin,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res.save(out / "transferability.json")
    for k in INDICATORS:
        print(f"{k}")
        print(_table(res["names"], res["names"], res["indicators"][k]))
    if matrix is not None:
        print(
            f"\ncorrelation with the relative transfer over {res['n_pairs']} pairs "
            f"({'including' if args.include_same_task else 'excluding'} same-task pairs"
            f"{'' if args.min_margin is None else f', prompts within {args.min_margin} of chance left out'})"
        )
        print(f"{'indicator':16s} {'spearman':>9s} {'p':>7s} {'pearson':>9s} {'p':>7s} {'n':>4s}")
        for k, c in res["correlation"].items():
            f = lambda v: f"{v:9.3f}" if v is not None else f"{'-':>9s}"  # noqa: E731
            g = lambda v: f"{v:7.3f}" if v is not None else f"{'-':>7s}"  # noqa: E731
            print(
                f"{k:16s} {f(c['spearman'])} {g(c['spearman_p'])} {f(c['pearson'])} "
                f"{g(c['pearson_p'])} {c['n']:4d}"
            )
    print(f"results written to {out / 'transferability.json'}")
    return 0


def cmd_project(args: argparse.Namespace) -> int:
    from skillneurons.cli import _backbone

    if args.action == "train":
        from skillneurons.cli import _load_task_from, _train_config
        from skillneurons.transfer.projector import train_projector

        if not args.prompt or not args.model:
            raise ConfigError(
                "project train needs --prompt (the source prompt) and --model (the target model)"
            )
        task = _load_task_from(args) if args.task else None
        res = train_projector(
            args.prompt,
            _backbone(args, args.model),
            args.out,
            task=task,
            inner=args.inner,
            head=args.head or "auto",
            layout=args.layout,
            template=args.template,
            max_length=args.max_length,
            max_examples=args.max_examples,
            split_seed=args.split_seed,
            config=_train_config(args),
            progress=not args.quiet,
        )
        print(
            f"projected {res['task']} prompt: test accuracy {res['test_accuracy']:.4f} "
            f"(best dev {res['best_dev_accuracy']:.4f} at step {res['best_step']}); "
            f"projector saved to {res['projector_path']}"
        )
        return 0
    from skillneurons.transfer.projector import apply_projector, projector_manifest

    if not args.projector or not args.prompt:
        raise ConfigError(
            "project apply needs --projector and --prompt (a prompt of the projector's source model)"
        )
    task = None
    if args.task:
        from skillneurons.cli import _load_task_from

        task = _load_task_from(args)
    target = args.model or projector_manifest(args.projector)["target_backbone"]["name"]
    applied = apply_projector(
        args.projector,
        args.prompt,
        _backbone(args, target),
        args.out,
        task=task,
        head=args.head,
        split=None if args.split == "none" else args.split,
        batch_size=args.batch_size,
        precision=args.precision,
        progress=not args.quiet,
    )
    body = applied.to_json() if hasattr(applied, "to_json") else dict(applied)
    body.pop("model", None)
    print(json.dumps(body, indent=2))
    return 0


def cmd_tpt_compare(args: argparse.Namespace) -> int:
    from skillneurons.transfer.tpt import compare_runs

    others = {}
    for spec in args.runs:
        name, sep, path = spec.partition("=")
        others[name if sep else Path(spec).name] = path if sep else spec
    res = compare_runs(args.baseline, others, threshold=args.threshold, fraction=args.fraction)
    print(f"target dev accuracy {res['threshold']:.4f}")
    print(f"{'run':16s} {'steps':>6s} {'seconds':>8s} {'speed-up':>8s} {'best dev':>8s} {'test':>7s}")
    for n, r in res["runs"].items():
        st = r["steps_to_threshold"]
        sec = r["seconds_to_threshold"]
        sp = r["speedup"]
        print(
            f"{n:16s} {st if st is not None else '-':>6} {f'{sec:.0f}' if sec is not None else '-':>8s} "
            f"{f'{sp:.2f}x' if sp is not None else '-':>8s} {r['best_dev_accuracy']:8.4f} "
            f"{r['test_accuracy']:7.4f}"
        )
    if args.out:
        res.save(Path(args.out))
        print(f"results written to {args.out}")
    return 0


def register(sub: Any) -> None:
    """Add the ``transfer-matrix``, ``transferability``, ``project`` and ``tpt-compare`` commands to
    ``sub`` (the object returned by ``parser.add_subparsers``)."""
    for add in (
        _register_transfer_matrix,
        _register_transferability,
        _register_project,
        _register_tpt_compare,
    ):
        add(sub)


def _register_transfer_matrix(sub: Any) -> None:
    from skillneurons.cli import _backbone_args

    p = sub.add_parser("transfer-matrix", help="cross-task zero-shot transfer: every prompt on every task")
    _backbone_args(p)
    p.add_argument(
        "prompts", nargs="+", help="source prompt artifacts (RUN/prompt.safetensors with split.json)"
    )
    p.add_argument(
        "--targets",
        nargs="+",
        help="target prompt artifacts: their task, head and split (default: the sources)",
    )
    p.add_argument("--out", required=True, help="folder for transfer_matrix.json (resumes from it)")
    p.add_argument("--names", help="comma-separated names of the sources (default: their tasks)")
    p.add_argument("--model", help="backbone (default: the one recorded in the first prompt)")
    p.add_argument(
        "--split", default="test", choices=["train", "dev", "test"], help="part of each target's split"
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.set_defaults(fn=cmd_transfer_matrix)


def _register_transferability(sub: Any) -> None:
    from skillneurons.cli import _backbone_args

    p = sub.add_parser(
        "transferability",
        help="indicators (E_avg, E_tok, ON, skill-neuron overlap) for every pair, and their correlation "
        "with transfer",
    )
    _backbone_args(p)
    p.add_argument("prompts", nargs="+", help="prompt artifacts of one model")
    p.add_argument("--matrix", help="transfer_matrix.json to correlate the indicators with")
    p.add_argument("--out", required=True, help="folder for transferability.json")
    p.add_argument("--names", help="comma-separated names (default: the prompts' tasks)")
    p.add_argument("--model", help="backbone (default: the one recorded in the first prompt)")
    p.add_argument(
        "--neurons",
        nargs="+",
        help="skill-neuron artifacts, one per prompt ('-' for none; default: looked up in RUN/neurons "
        "or RUN/../neurons)",
    )
    p.add_argument("--rho", type=float, default=0.02, help="fraction defining the skill-neuron sets")
    p.add_argument(
        "--global",
        dest="per_layer",
        action="store_false",
        help="skill sets as the top fraction over all neurons, not per layer",
    )
    p.add_argument(
        "--on-position",
        default="read",
        choices=["read", "prompt", "prompt_mean"],
        help="ON: the read (mask) slot, every soft token (aligned), or their mean",
    )
    p.add_argument(
        "--on-input",
        action="append",
        help="ON: input text fed with the prompt (repeatable; activations averaged; default: empty)",
    )
    p.add_argument("--layers", help="ON layer window 'A:B' (end exclusive) or list '0,1,2' (default: all)")
    p.add_argument("--threshold", type=float, default=0.0, help="ON: activated = activation > threshold")
    p.add_argument(
        "--include-same-task",
        action="store_true",
        help="also correlate over pairs of one task (e.g. prompts of two seeds)",
    )
    p.add_argument(
        "--min-margin",
        type=float,
        help="leave out pairs with a prompt whose own accuracy beats its majority class by less (e.g. 0.05)",
    )
    p.set_defaults(fn=cmd_transferability)


def _register_project(sub: Any) -> None:
    from skillneurons.cli import _backbone_args, _task_args

    p = sub.add_parser("project", help="cross-model prompt projector: train it, or apply it to a prompt")
    p.add_argument("action", choices=["train", "apply"])
    p.add_argument(
        "--prompt",
        help="train: the source prompt of the projector-training task; apply: the prompt to project",
    )
    p.add_argument("--projector", help="apply: the projector artifact (OUT/projector.safetensors)")
    p.add_argument("--out", help="train: output folder; apply: where to save the projected prompt (optional)")
    p.add_argument(
        "--model", help="train: the target model (required); apply: default the projector's target"
    )
    p.add_argument(
        "--head",
        choices=["auto", "label_words", "linear", "similarity"],
        help="how the target model reads labels (train: default auto; apply: default the head the "
        "projector was trained through)",
    )
    p.add_argument(
        "--split",
        default="test",
        choices=["train", "dev", "test", "none"],
        help="apply: evaluate on this part of the source run's split (none: skip)",
    )
    p.add_argument(
        "--batch-size", type=int, default=32, help="train: batch size; apply: evaluation batch size"
    )
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    g = p.add_argument_group("project train")
    g.add_argument("--inner", type=int, default=768, help="the projector's hidden width")
    g.add_argument(
        "--layout",
        default="auto",
        choices=["auto", "slot_first", "prompt_first", "paper", "peft"],
        help="input layout of the projected prompts on the target model",
    )
    g.add_argument("--template", help="text template with {text} on the target model")
    g.add_argument("--max-length", type=int, default=128, help="max sequence length incl. prompt")
    g.add_argument("--max-examples", type=int, help="stratified subsample of the task before splitting")
    g.add_argument("--seed", type=int, default=0, help="training seed (projector init, data order)")
    g.add_argument("--split-seed", type=int, help="seed of the split (default: the source prompt's)")
    g.add_argument("--epochs", type=float, default=3.0)
    g.add_argument("--max-steps", type=int)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--eval-every", type=int, help="steps between dev evaluations (default: twice per epoch)")
    g.add_argument("--patience", type=int, help="early stopping: evaluations without improvement")
    _backbone_args(p)
    _task_args(p, required=False)
    p.set_defaults(fn=cmd_project)


def _register_tpt_compare(sub: Any) -> None:

    p = sub.add_parser("tpt-compare", help="speed-up of transfer-initialised tuning runs over a baseline run")
    p.add_argument("--baseline", required=True, help="run folder of the randomly initialised run")
    p.add_argument("runs", nargs="+", help="run folders (NAME=FOLDER) started from transferred prompts")
    p.add_argument(
        "--threshold", type=float, help="dev accuracy to reach (default: --fraction of the baseline's best)"
    )
    p.add_argument("--fraction", type=float, default=0.9)
    p.add_argument("--out", help="JSON file to write the comparison to")
    p.set_defaults(fn=cmd_tpt_compare)
