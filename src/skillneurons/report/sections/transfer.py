"""The transfer section: prompt transferability matrices (a source prompt used on a target task)."""

from __future__ import annotations

from collections.abc import Sequence

from skillneurons.report import plots
from skillneurons.report.discovery import ResultFile
from skillneurons.report.html import Section, figure, para
from skillneurons.report.sections.common import source
from skillneurons.report.views import TransferView

__all__ = ["render_transfer"]


def render_transfer(files: Sequence[ResultFile]) -> Section:
    body = [para("Prompt transferability: a source prompt (rows) used on a target task (columns).")]
    for r in files:
        d = TransferView.read(r.data)
        heatmap = plots.matrix(
            d.matrix, d.sources, d.targets, cmap="viridis", title=d.title, xlabel="target", ylabel="source"
        )
        body += [figure(heatmap, "transfer matrix"), source(r)]
    return Section("transfer", "Transfer", "".join(body), "Transfer")
