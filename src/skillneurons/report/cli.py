"""The ``skillneurons report`` command. Wire it into the main parser with ``register(sub)``."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the ``report`` command to ``sub`` (the object returned by ``parser.add_subparsers``)."""
    from skillneurons.cli import _task_args

    p = sub.add_parser(
        "report", help="write a self-contained HTML report of a run folder (plots, top neurons, examples)"
    )
    p.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="a folder written by `demo` (e.g. runs/demo), `find` or `tune`, or one holding such folders",
    )
    p.add_argument("--out", help="HTML file to write (default: RUN_DIR/report.html)")
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATH",
        help="more result JSON (perturbation, similarity, pruning, transfer): a file is always shown; "
        "from a folder (e.g. bench/results) only files that refer to this run; repeatable",
    )
    p.add_argument("--top", type=int, default=15, help="rows of the top-neuron table")
    p.add_argument(
        "--examples",
        type=int,
        default=3,
        help="dev examples shown per top neuron (0: none; then no model is loaded)",
    )
    p.add_argument("--sample", type=int, default=400, help="dev examples scanned for them (seeded sample)")
    p.add_argument("--model", help="backbone for the example texts (default: the one recorded in the prompt)")
    p.add_argument("--batch-size", type=int, default=32)
    _task_args(p, required=False)
    p.set_defaults(fn=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from skillneurons.report.config import ReportConfig
    from skillneurons.report.render import write_report

    task = None
    if args.task:
        from skillneurons.cli import _load_task_from

        task = _load_task_from(args)
    config = ReportConfig(
        run_dir=args.run_dir,
        out=args.out,
        include=args.include,
        model=args.model,
        top=args.top,
        examples=args.examples,
        sample=args.sample,
        batch_size=args.batch_size,
    )
    path = write_report(config, task=task, progress=not getattr(args, "quiet", False))
    print(f"report written to {path}")
    return 0
