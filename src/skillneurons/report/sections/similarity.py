"""The task-similarity section (``similarity``): Spearman correlation of neuron predictivity and
Jaccard overlap of the skill-neuron sets, task by task."""

from __future__ import annotations

from collections.abc import Sequence

from skillneurons.report import plots
from skillneurons.report.discovery import ResultFile
from skillneurons.report.html import Cell, Raw, Section, figure, fpct, para, table
from skillneurons.report.sections.common import source
from skillneurons.report.views import SimilarityView

__all__ = ["render_similarity"]


def render_similarity(files: Sequence[ResultFile]) -> Section:
    body = [
        para(
            "Similar tasks have similar skill neurons: Spearman correlation of the tasks' neuron "
            "predictivity, and overlap (Jaccard) of their skill-neuron sets."
        )
    ]
    for r in files:
        d = SimilarityView.read(r.data)
        spearman = plots.matrix(
            d.spearman,
            d.tasks,
            d.tasks,
            cmap="RdBu_r",
            center=0.0,
            title="Spearman correlation of neuron predictivity",
        )
        figs = [figure(spearman, "Spearman similarity")]
        if d.jaccard is not None:
            chance = d.chance_mean()
            note = f" (chance ≈ {chance:.3f})" if chance is not None else ""
            jaccard = plots.matrix(
                d.jaccard,
                d.tasks,
                d.tasks,
                cmap="Blues",
                fmt="{:.3f}",
                title=f"Jaccard overlap of the top {fpct(d.rho, 0)} skill neurons{note}",
            )
            figs.append(figure(jaccard, "Jaccard overlap"))
        body += [Raw('<div class="grid2">'), *figs, Raw("</div>")]
        if d.spearman_ci is not None:
            body.append(_pairs_table(d))
        body.append(source(r))
    return Section("similarity", "Task similarity", "".join(body), "Similarity")


def _pairs_table(d: SimilarityView) -> Raw:
    """Each pair's Spearman with its bootstrap 95% interval over the neurons and its permutation p."""
    assert d.spearman_ci is not None
    rows = []
    for i, a in enumerate(d.tasks):
        for j in range(i + 1, len(d.tasks)):
            e = d.spearman_ci[i][j]
            if e is None:
                continue
            pv = f"{e.p:.2g}" if e.p is not None else "–"
            rows.append([a, d.tasks[j], Cell(e.format(3), e.value, "num"), Cell(pv, e.p, "num"), e.n])
    headers: list[str | tuple[str, str]] = [
        "task",
        "task",
        ("Spearman [95% CI]", "num"),
        ("permutation p", "num"),
        ("neurons", "num"),
    ]
    return table(headers, rows)
