"""One self-contained HTML file from a run folder: :func:`write_report`.

The page needs no network: figures are inline PNG (``data:`` URIs), the CSS and the small script
that sorts tables are inline (package data, :mod:`skillneurons.report.html`), and a
Content-Security-Policy allows nothing else (no fetches, and no script but the page's own, by hash).
Every text that comes from data (example texts, task, label and file names) is HTML-escaped.

Sections appear only when their data exists. The core sections (:data:`CORE`) are built from the run
folder's own artifacts; the sections of other experiments (perturbation, similarity, pruning,
transfer, reading) are looked up in :data:`RENDERERS` by the result kind that
:mod:`skillneurons.report.discovery` recognised, and read their files through
:mod:`skillneurons.report.views`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from skillneurons import __version__
from skillneurons.backbones.config import BackboneOptions
from skillneurons.errors import ConfigError
from skillneurons.files import atomic_write_bytes
from skillneurons.report.config import ReportConfig, default_out
from skillneurons.report.discovery import ReportData, ResultFile, discover
from skillneurons.report.html import Section, esc, page, rel
from skillneurons.report.sections.common import Context
from skillneurons.report.sections.neurons import (
    section_layers,
    section_map,
    section_positions,
    section_summary,
)
from skillneurons.report.sections.overview import section_overview
from skillneurons.report.sections.perturbation import render_perturb_cross, render_perturb_sweep
from skillneurons.report.sections.pruning import render_prune
from skillneurons.report.sections.reading import render_dynsan_ablation, render_dynsan_cost, render_reading
from skillneurons.report.sections.similarity import render_similarity
from skillneurons.report.sections.top import section_top
from skillneurons.report.sections.training import section_training
from skillneurons.report.sections.transfer import render_transfer

__all__ = ["CORE", "RENDERERS", "Context", "Section", "build_sections", "render_html", "write_report"]

#: the sections of the run folder's own artifacts, in page order (None: nothing to show)
CORE: list[Callable[[ReportData, Context], Section | None]] = [
    section_overview,
    section_summary,
    section_training,
    section_layers,
    section_map,
    section_positions,
    section_top,
]

#: section id -> (result kinds, renderer), in page order
RENDERERS: dict[str, tuple[tuple[str, ...], Callable[[Sequence[ResultFile]], Section]]] = {
    "perturbation": (("perturb_sweep",), render_perturb_sweep),
    "cross-task": (("perturb_cross",), render_perturb_cross),
    "similarity": (("similarity",), render_similarity),
    "pruning": (("prune_bench", "prune_run"), render_prune),
    "transfer": (("transfer",), render_transfer),
    "reading": (("read_train", "read_eval"), render_reading),
    "dynsan-cost": (("dynsan_cost",), render_dynsan_cost),
    "dynsan-ablation": (("dynsan_ablation",), render_dynsan_ablation),
}

#: what a renderer may raise on a result file it cannot read: the file becomes a note
_UNREADABLE = (KeyError, TypeError, ValueError, IndexError, StopIteration)


def build_sections(data: ReportData, ctx: Context) -> list[Section]:
    """The core sections, the other experiments' sections, and the notes (when there are any)."""
    out = [s for s in (f(data, ctx) for f in CORE) if s is not None]
    for kinds, render in RENDERERS.values():
        files = [r for r in data.results if r.kind in kinds]
        if files:
            section = _render(render, files, ctx)
            if section is not None:
                out.append(section)
    notes = [*data.notes, *ctx.notes]
    if notes:
        items = "".join(f"<li>{esc(n)}</li>" for n in notes)
        out.append(Section("notes", "Notes", f'<ul class="notes">{items}</ul>', "Notes"))
    return out


def _render(
    render: Callable[[Sequence[ResultFile]], Section], files: Sequence[ResultFile], ctx: Context
) -> Section | None:
    """The section of ``files``; when it cannot be drawn, the files it cannot read become notes and the
    section is drawn from the others (None when none is readable)."""

    def note(fs: Sequence[ResultFile], e: Exception) -> None:
        ctx.notes.append(f"could not show {', '.join(rel(f.path) for f in fs)}: {type(e).__name__} {e}")

    try:
        return render(files)
    except _UNREADABLE as e:
        if len(files) == 1:
            note(files, e)
            return None
    readable = []
    for f in files:
        try:
            render([f])
            readable.append(f)
        except _UNREADABLE as e:
            note([f], e)
    try:
        return render(readable) if readable else None
    except _UNREADABLE as e:  # readable alone, not together
        note(readable, e)
        return None


def render_html(data: ReportData, ctx: Context) -> str:
    """The whole page as one string."""
    sections = build_sections(data, ctx)
    title = (
        "DynSAN reading results"
        if data.reading_only
        else f"Skill neurons of {data.backbone.name or 'a model'} on {data.task_name or 'a task'}"
    )
    return page(title, rel(data.root), sections, __version__)


def write_report(
    config: ReportConfig | str | os.PathLike[str],
    *,
    backbone: Any = None,
    task: Any = None,
    backbone_options: BackboneOptions | None = None,
    progress: bool = False,
) -> Path:
    """Write the HTML report of ``config.run_dir`` (see :mod:`skillneurons.report.discovery` for what a
    run folder is) to ``config.out`` (default ``run_dir/report.html``); returns its path. A path
    instead of a config reports that folder with the default options.

    ``backbone``, ``task``: the loaded backbone and task (else loaded from the names in the prompt's
    manifest; needed only for the example texts); ``backbone_options``: how that recorded backbone is
    loaded (:class:`~skillneurons.backbones.config.BackboneOptions`); ``progress``: print what is read.
    """
    cfg = config if isinstance(config, ReportConfig) else ReportConfig(run_dir=os.fspath(config))
    data = discover(cfg.run_dir, cfg.include)
    page_text = render_html(
        data, Context(cfg, backbone=backbone, task=task, progress=progress, backbone_options=backbone_options)
    )
    path = Path(cfg.out) if cfg.out is not None else default_out(cfg.run_dir)
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder: give the path of the HTML file to write")
    atomic_write_bytes(path, page_text.encode("utf-8"))
    return path
