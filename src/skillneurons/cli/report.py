"""``report``: one self-contained HTML file of a run folder (plots, top neurons, example texts)."""

from __future__ import annotations

import argparse

from skillneurons.cli.common import (
    Command,
    add_backbone_options,
    backbone_options,
    progress,
)
from skillneurons.cli.options import add_config, build_config
from skillneurons.data.config import TaskOptions
from skillneurons.options import option_fields
from skillneurons.report.config import ReportConfig, default_out

__all__ = ["COMMANDS"]

_INCLUDE = "report__include"


def _add_include(p: argparse.ArgumentParser) -> None:
    """``--include PATH [PATH ...]``, repeatable (``--include A --include B`` = ``--include A B``): the
    generated flag of ``ReportConfig.include`` with ``extend`` instead of the last one winning."""
    [field] = [f for f in option_fields(ReportConfig) if f.name == "include"]
    p.add_argument(
        "--include",
        dest=_INCLUDE,
        action="extend",
        nargs="+",
        default=[],
        metavar=field.metadata["metavar"],
        help=f"{field.metadata['help']} (default: none)",
    )


def _add_report(p: argparse.ArgumentParser) -> None:
    add_config(p, ReportConfig, exclude=("include",))
    _add_include(p)
    add_config(p.add_argument_group("task (data; default: the one recorded in the prompt)"), TaskOptions)
    add_backbone_options(p)


def _run_report(args: argparse.Namespace) -> int:
    # paths are kept as given (no comma splitting), as the repeatable flag always took them
    config: ReportConfig = build_config(args, ReportConfig, include=tuple(getattr(args, _INCLUDE)))
    task_options: TaskOptions = build_config(args, TaskOptions)
    options = backbone_options(args)
    task = task_options.load() if task_options.task else None
    from skillneurons.report.render import write_report  # lazy: --help stays fast

    path = write_report(config, task=task, backbone_options=options, progress=progress(args))
    print(f"report written to {path}")
    return 0


def _report_out(args: argparse.Namespace) -> tuple[str | None, bool]:
    """The HTML file: ``--out``, else ``RUN_DIR/report.html`` (``FILE.html`` beside a result file)."""
    out = getattr(args, "ReportConfig__out", None)
    return (out or str(default_out(args.ReportConfig__run_dir))), False


COMMANDS = (
    Command(
        "report",
        "write a self-contained HTML report of a run folder (plots, top neurons, examples)",
        _add_report,
        _run_report,
        _report_out,
    ),
)
