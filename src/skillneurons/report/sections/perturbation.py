"""The perturbation sections: accuracy vs perturbed fraction (``perturb``), and the cross-task matrix
of accuracy drops (``cross-perturb``)."""

from __future__ import annotations

from collections.abc import Sequence

from skillneurons.report import plots
from skillneurons.report.discover import ResultFile
from skillneurons.report.html import Cell, Raw, Section, esc, figure, fnum, fpct, num, para, table
from skillneurons.report.sections.common import source
from skillneurons.report.views import PerturbCrossView, PerturbSweepView

__all__ = ["render_perturb_cross", "render_perturb_sweep"]

_SWEEP_HEADERS: list[str | tuple[str, str]] = [
    ("rho", "num"),
    ("neurons", "num"),
    ("skill", "num"),
    ("random mean", "num"),
    ("random 95% CI", "num"),
    ("gap", "num"),
]


def _sweep_title(d: PerturbSweepView) -> str:
    what = [f"{d.mode} perturbation"]
    if d.sigma is not None:
        what.append(f"σ = {d.sigma}")
    what += [
        f"positions: {d.positions}",
        f"task {d.task}",
        f"n = {d.n_eval}",
        f"unperturbed {fnum(d.unperturbed)}",
    ]
    return ", ".join(what)


def render_perturb_sweep(files: Sequence[ResultFile]) -> Section:
    body = [
        para(
            "Accuracy while the top fraction of skill neurons is perturbed, against the same number of "
            "random neurons per layer (band: 95% interval of the random draws). Skill neurons matter if the "
            "solid line falls below the band."
        )
    ]
    for r in files:
        d = PerturbSweepView.read(r.data)
        rows = []
        for p in d.sorted_points():
            lo, hi = p.random.ci95
            rows.append(
                [
                    Cell(fpct(p.rho), p.rho, "num"),
                    num(p.neurons, 0),
                    num(p.skill),
                    num(p.random.mean),
                    Cell(f"[{fnum(lo)}, {fnum(hi)}]" if lo is not None else "–", cls="num"),
                    num(p.gap),
                ]
            )
        body += [
            Raw("<h3>" + esc(_sweep_title(d)) + "</h3>"),
            Raw('<div class="grid2">'),
            figure(plots.perturb_sweep(d), "accuracy vs perturbed fraction"),
            table(_SWEEP_HEADERS, rows),
            Raw("</div>"),
            source(r),
        ]
    return Section("perturbation", "Perturbation", "".join(body), "Perturbation")


def render_perturb_cross(files: Sequence[ResultFile]) -> Section:
    body = [
        para(
            "Rows: whose skill neurons are perturbed; columns: which task's prompt is evaluated on its test "
            "data. Cells: accuracy drop. Skill neurons are task-specific if the diagonal and similar tasks "
            "drop most; the last row perturbs the same number of random neurons."
        )
    ]
    for r in files:
        d = PerturbCrossView.read(r.data)
        m = [list(row) for row in d.drop]
        rows = list(d.tasks)
        if d.random_control is not None:
            m.append(list(d.random_control.drop))
            rows.append(f"random (k={d.random_control.draws})")
        title = f"accuracy drop: {d.mode} on the top {fpct(d.rho, 0)} skill neurons"
        heatmap = plots.matrix(
            m,
            rows,
            d.tasks,
            cmap="RdBu_r",
            center=0.0,
            fmt="{:+.3f}",
            xlabel="evaluated task (prompt + test data)",
            ylabel="perturbed neurons of",
        )
        body += [Raw(f"<h3>{esc(title)}</h3>"), figure(heatmap, title)]
        if d.unperturbed is not None:
            accs = ", ".join(f"{t} {fnum(a)}" for t, a in zip(d.tasks, d.unperturbed))
            body.append(para("Unperturbed accuracy: " + accs, "small"))
        body.append(source(r))
    return Section("cross-task", "Cross-task perturbation", "".join(body), "Cross-task")
