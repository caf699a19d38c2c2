"""The pruning section: a pruned model's record (``prune``) and pruning benchmarks (speedup and
accuracy vs kept fraction)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from skillneurons.report import plots
from skillneurons.report.discovery import ResultFile
from skillneurons.report.html import Cell, Raw, Section, esc, figure, fnum, fpct, num, para, table
from skillneurons.report.sections.common import source
from skillneurons.report.views import PruneBenchView, PruneEntry, PruneRunView

__all__ = ["render_prune"]

_BENCH_HEADERS: list[str | tuple[str, str]] = [
    "model",
    ("kept / pruned layer", "num"),
    ("params left", "num"),
    ("examples/s", "num"),
    ("speedup", "num"),
    ("accuracy", "num"),
    ("random neurons", "num"),
    ("re-tuned", "num"),
]


def _run(r: ResultFile) -> list[Raw]:
    d = PruneRunView.read(r.data)
    p = d.parameters
    rows: list[list[Any]] = [
        ["pruned layers", str(d.pruned_layers)],
        ["kept fraction (rho)", fnum(d.rho, 3)],
        ["parameters left", f"{fpct(p.fraction)} ({fnum(p.pruned, 0)} of {fnum(p.source, 0)})"],
    ]
    rows += [[lab, fnum(v)] for lab, v in d.accuracies()]
    return [Raw(f"<h3>{esc(d.source_model)} pruned</h3>"), table(["", "value"], rows, cls="kv"), source(r)]


def _entry(e: PruneEntry) -> list[Raw]:
    head = f"{e.model} ({e.geometry}), {e.task} {e.split}, {e.examples} examples"
    rows = [
        [
            str(x.variant),
            num(x.kept_per_pruned_layer, 0),
            Cell(fpct(x.parameters_fraction), x.parameters_fraction, "num"),
            num(x.examples_per_s, 1),
            Cell(f"{fnum(x.speedup_median, 2)}×", x.speedup_median, "num"),
            num(x.accuracy),
            num(x.accuracy_random_neurons),
            num(x.accuracy_retuned),
        ]
        for x in e.rows
    ]
    return [
        Raw(f"<h3>{esc(head)}</h3>"),
        figure(plots.prune_bench(e), "pruning speedup and accuracy"),
        table(_BENCH_HEADERS, rows),
    ]


def render_prune(files: Sequence[ResultFile]) -> Section:
    body = [
        para(
            "Pruning to the skill neurons: every other FFN neuron of the pruned layers is replaced by its "
            "mean activation folded into the bias; the smaller model is timed against the unpruned one."
        )
    ]
    for r in files:
        if r.kind == "prune_run":
            body += _run(r)
            continue
        for e in PruneBenchView.read(r.data).entries:
            body += _entry(e)
        body.append(source(r))
    return Section("pruning", "Pruning", "".join(body), "Pruning")
