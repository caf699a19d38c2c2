"""``study``: a whole study from a TOML spec (tasks x seeds through tune, find, perturb, similarity,
cross-task perturbation, transfer), resumable, into one ``study.json`` and the report."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from skillneurons.cli.common import Command, progress
from skillneurons.cli.options import add_config, build_config
from skillneurons.options import option

__all__ = ["COMMANDS", "StudyOptions"]


@dataclass
class StudyOptions:
    """The command line of ``study`` (the study itself is the spec file)."""

    spec: str = option(help="the study spec (a .toml file, e.g. bench/studies/minilm.toml)", positional=True)
    out: str | None = option(None, "the study's folder (default: the spec's out)")
    dry_run: bool = option(False, "print the plan (steps, what is done) and its estimated time; run nothing")
    report: bool = option(True, "write the HTML report at the end", flag="--no-report")
    partial: bool = option(
        False,
        "write study.partial.json from the steps finished so far (also while it runs); compute nothing",
    )


def _spec_out(args: argparse.Namespace) -> tuple[str | None, bool]:
    """The study's folder, checked before any work (none for a dry run, which writes nothing)."""
    o: StudyOptions = build_config(args, StudyOptions)
    if o.dry_run:
        return None, True
    from skillneurons.study.config import load_spec  # torch-free

    return (o.out or load_spec(o.spec).out), True


def _run_study(args: argparse.Namespace) -> int:
    o: StudyOptions = build_config(args, StudyOptions)
    from skillneurons.study.config import load_spec

    spec = load_spec(o.spec)  # every table checked before the data or the model loads
    from skillneurons.study.run import run_study  # lazy: --help stays fast

    res = run_study(
        spec, out=o.out, dry_run=o.dry_run, report=o.report, progress=progress(args), partial=o.partial
    )
    if isinstance(res, str):
        print(res)
        return 0
    name = "study.partial.json" if o.partial else "study.json"
    print(f"study: {res.name} written to {o.out or spec.out}/{name} ({res.seconds / 60:.1f} min)")
    for path in res.reports:
        print(f"study: report written to {path}")
    return 0


COMMANDS = (
    Command(
        "study",
        "run (or resume) a study from a TOML spec: tasks x seeds, find, perturb, similarity, transfer",
        lambda p: add_config(p, StudyOptions),
        _run_study,
        _spec_out,
    ),
)
