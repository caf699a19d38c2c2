"""The options of the report (``skillneurons report``): :class:`ReportConfig`. No torch here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillneurons.options import option, require

__all__ = ["ReportConfig", "default_out"]


@dataclass
class ReportConfig:
    """What to report and how much of it (the loaded backbone and task are passed separately)."""

    run_dir: str = option(
        help="a folder written by `demo` (e.g. runs/demo), `find`, `tune` or `read train`, or one holding "
        "such folders, or one result JSON (e.g. bench/results/dynsan_cost.json)",
        positional=True,
        metavar="RUN_DIR",
    )
    out: str | None = option(
        None, "HTML file to write (default: RUN_DIR/report.html; beside a result file: FILE.html)"
    )
    include: tuple[str, ...] = option(
        (),
        "more result JSON (perturbation, similarity, pruning, transfer): a file is always shown; "
        "from a folder (e.g. bench/results) only files that refer to this run; repeatable",
        metavar="PATH",
    )
    top: int = option(15, "rows of the top-neuron table")
    examples: int = option(3, "dev examples shown per top neuron (0: none; then no model is loaded)")
    sample: int | None = option(400, "dev examples scanned for them (seeded sample)")
    batch_size: int = option(32, "batch size of the pass that reads the example texts' activations")
    model: str | None = option(
        None, "backbone for the example texts (default: the one recorded in the prompt)"
    )

    def __post_init__(self) -> None:
        self.run_dir = _path(self.run_dir)
        self.out = None if self.out is None else _path(self.out)
        self.include = tuple(_path(p) for p in self.include)
        require(
            self.top >= 0
            and self.examples >= 0
            and self.batch_size >= 1
            and (self.sample is None or self.sample >= 1),
            "--top and --examples must be >= 0, --sample and --batch-size >= 1",
        )


def default_out(run_dir: str | os.PathLike[str]) -> Path:
    """The report's file without ``--out``: ``RUN_DIR/report.html``, or ``FILE.html`` beside a result
    file given instead of a folder."""
    p = Path(run_dir)
    return p.with_suffix(".html") if p.is_file() else p / "report.html"


def _path(p: Any) -> str:
    """A path given as ``pathlib.Path`` (the API) kept as a string (the CLI's type)."""
    return str(p)
