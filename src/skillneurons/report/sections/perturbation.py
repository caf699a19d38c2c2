"""The perturbation sections: accuracy vs perturbed fraction (``perturb``), and the cross-task matrix
of accuracy drops (``cross-perturb``)."""

from __future__ import annotations

from collections.abc import Sequence

from skillneurons.report import plots
from skillneurons.report.discovery import ResultFile
from skillneurons.report.html import Cell, Raw, Section, esc, figure, fnum, fpct, num, para, table
from skillneurons.report.sections.common import est_cell, source
from skillneurons.report.views import PerturbCrossView, PerturbSweepView, SweepPoint

__all__ = ["render_perturb_cross", "render_perturb_sweep"]

_SWEEP_HEADERS: list[str | tuple[str, str]] = [
    ("rho", "num"),
    ("neurons", "num"),
    ("skill [95% CI]", "num"),
    ("random mean [95% CI]", "num"),
    ("skill − random, paired [95% CI]", "num"),
    ("p", "num"),
]


def _random_cell(p: SweepPoint) -> Cell:
    if p.random_ci is not None:
        return est_cell(p.random_ci)
    lo, hi = p.random.ci95
    band = f" [{fnum(lo)}, {fnum(hi)}]" if lo is not None else ""
    return Cell(f"{fnum(p.random.mean)}{band}", p.random.mean, "num")


def _paired_cells(p: SweepPoint) -> list[Cell]:
    if p.paired is None:  # an older file: the unpaired gap only
        return [num(None if p.gap is None else -p.gap), Cell("–", cls="num")]
    pv = p.paired.p
    return [est_cell(p.paired), Cell(f"{pv:.2g}" if pv is not None else "–", pv, "num")]


def _sweep_title(d: PerturbSweepView) -> str:
    what = [f"{d.mode} perturbation"]
    if d.sigma is not None:
        what.append(f"σ = {d.sigma}" + (" × neuron std" if d.sigma_scale == "neuron_std" else ""))
    clean = d.unperturbed_ci.format(3) if d.unperturbed_ci is not None else fnum(d.unperturbed)
    what += [
        f"positions: {d.positions}",
        f"task {d.task}",
        f"n = {d.n_eval}",
        f"unperturbed {clean}",
    ]
    return ", ".join(what)


def render_perturb_sweep(files: Sequence[ResultFile]) -> Section:
    body = [
        para(
            "Accuracy while the top fraction of skill neurons is perturbed, against the same number of "
            "random neurons per layer, on the same test examples (bars: Wilson 95% interval of the skill "
            "condition; band: 95% interval of the random mean over examples and draws). The paired "
            "difference skill − random is bootstrapped over the examples and the random draws; skill neurons "
            "matter where its interval lies below 0 (small p)."
        )
    ]
    for r in files:
        d = PerturbSweepView.read(r.data)
        rows = []
        for p in d.sorted_points():
            rows.append(
                [
                    Cell(fpct(p.rho), p.rho, "num"),
                    num(p.neurons, 0),
                    est_cell(p.skill_ci, p.skill),
                    _random_cell(p),
                    *_paired_cells(p),
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
        if d.drop_ci is not None:
            body.append(_cross_table(d))
        body.append(source(r))
    return Section("cross-task", "Cross-task perturbation", "".join(body), "Cross-task")


def _cross_table(d: PerturbCrossView) -> Raw:
    """Every cell's drop with its paired 95% interval, and the cell against the column's random control
    (paired over the examples and the draws, p)."""
    assert d.drop_ci is not None
    rows = []
    for a, src in enumerate(d.tasks):
        for b, dst in enumerate(d.tasks):
            vr = d.versus_random[a][b] if d.versus_random is not None else None
            pv = vr.p if vr is not None else None
            rows.append(
                [
                    src,
                    dst,
                    est_cell(d.drop_ci[a][b], d.drop[a][b]),
                    est_cell(vr),
                    Cell(f"{pv:.2g}" if pv is not None else "–", pv, "num"),
                ]
            )
    headers: list[str | tuple[str, str]] = [
        "perturbed neurons of",
        "evaluated task",
        ("drop [95% CI]", "num"),
        ("cell − random, paired [95% CI]", "num"),
        ("p", "num"),
    ]
    return table(headers, rows)
