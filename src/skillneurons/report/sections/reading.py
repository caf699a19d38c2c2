"""The reading (DynSAN) sections: a ``read train`` run with its evaluations (dev EM / F1 curve, the
evaluations with their 95% intervals, the gate AUROC), the cost of DynSA vs full attention as the length
grows (``bench/dynsan_cost.py``), and the ablation table (``bench/dynsan_ablation.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skillneurons.report import plots
from skillneurons.report.discovery import ResultFile, read_json_quietly
from skillneurons.report.html import Cell, Raw, Section, cards, esc, figure, fnum, num, para, rel, table
from skillneurons.report.sections.common import est_cell, source
from skillneurons.report.views import (
    DynsanAblationView,
    DynsanCostView,
    GateRow,
    ReadEvalView,
    ReadTrainView,
    as_number,
)

__all__ = ["render_dynsan_ablation", "render_dynsan_cost", "render_reading"]


def _mean(xs: Sequence[float]) -> float | None:
    ok = [x for x in xs if x == x]
    return sum(ok) / len(ok) if ok else None


# ----------------------------------------------------------------------------------------------------
# `read train` runs and `read evaluate` results

_EVAL_HEADERS: list[str | tuple[str, str]] = [
    "split",
    ("questions", "num"),
    ("EM [95% CI]", "num"),
    ("F1 [95% CI]", "num"),
    ("loss", "num"),
    ("unanswerable", "num"),
    ("truncated", "num"),
    ("skipped", "num"),
    "file",
]
_GATE_HEADERS: list[str | tuple[str, str]] = [
    "block",
    ("tokens", "num"),
    ("answer share", "num"),
    ("AUROC per head", "num"),
    ("mean AUROC", "num"),
    ("answer share of selected", "num"),
]


def _gate_rows(gates: Sequence[GateRow], lead: Sequence[Any] = ()) -> list[list[Any]]:
    return [
        [
            *lead,
            g.block,
            num(g.tokens, 0),
            num(g.answer_share, 3),
            Cell(", ".join(fnum(a, 3) for a in g.auroc), _mean(g.auroc), "num"),
            num(_mean(g.auroc), 3),
            num(_mean(g.selected_answer_share), 3),
        ]
        for g in gates
    ]


def _eval_row(r: ResultFile, v: ReadEvalView) -> list[Any]:
    res = v.result
    skipped = (
        sum(x for x in res.skipped.values() if isinstance(x, int)) if isinstance(res.skipped, dict) else None
    )
    return [
        str(res.split),
        num(res.n, 0),
        est_cell(v.em),
        est_cell(v.f1),
        num(res.loss, 3),
        num(res.unanswerable, 0),
        num(res.truncated, 0),
        num(skipped, 0),
        r.path.name,
    ]


def _settings(folder: Path) -> str:
    """The task and reader settings the run's saved reader records (its manifest)."""
    man = read_json_quietly(folder / "reader.json")
    if not isinstance(man, dict):
        return ""
    got = man.get("reader")
    reader: dict[str, Any] = got if isinstance(got, dict) else {}
    keys = ("selection", "dim", "heads", "top_k", "blocks", "passages", "max_passage_tokens", "conv", "cross")
    parts = [f"task {man['task']}"] if man.get("task") else []
    parts += [f"embeddings {man['embeddings']}"] if man.get("embeddings") else []
    parts += [f"{k} {reader[k]}" for k in keys if k in reader]
    return ("Reader: " + "; ".join(parts) + ".") if parts else ""


def _run_cards(train: ReadTrainView | None, evals: list[tuple[ResultFile, ReadEvalView]]) -> list[Any]:
    items = []
    if train is not None:
        t = train.result
        items.append(
            (
                "best dev EM",
                fnum(t.best_dev_em, 3),
                f"F1 {fnum(t.best_dev_f1, 3)}; step {t.best_step} of {t.steps}",
            )
        )
    for _, v in evals:
        if v.result.split == "test" and v.em is not None:
            items.append(("test EM", f"{v.em.value:.3f}", f"{est_cell(v.em).text} on {v.result.n} questions"))
            if v.f1 is not None:
                items.append(("test F1", f"{v.f1.value:.3f}", f"{est_cell(v.f1).text}"))
            break
    if train is not None:
        t = train.result
        secs = as_number(t.seconds)
        items.append(("training", f"{secs / 60:.1f} min", f"{t.n_train} train / {t.n_dev} dev questions"))
    return items


def _reading_run(folder: Path, files: list[ResultFile]) -> list[Raw]:
    trains = [(r, ReadTrainView.read(r.data)) for r in files if r.kind == "read_train"]
    evals = [(r, ReadEvalView.read(r.data)) for r in files if r.kind == "read_eval"]
    order = {"train": 0, "dev": 1, "test": 2}
    evals.sort(key=lambda x: (order.get(str(x[1].result.split), 3), x[0].path.name))
    train = trains[0][1] if trains else None
    out = [Raw(f"<h3>{esc(rel(folder))}</h3>"), cards(_run_cards(train, evals))]
    settings = _settings(folder)
    if settings:
        out.append(para(settings, "small"))
    if train is not None and train.history:
        out.append(
            figure(
                plots.reading_curves(train.history, train.result.best_step), "reader training: dev EM and F1"
            )
        )
        if train.result.stopped_by_time:
            out.append(para(f"Stopped by its time budget after {train.result.steps} steps.", "small"))
    if evals:
        out.append(table(_EVAL_HEADERS, [_eval_row(r, v) for r, v in evals], sortable=True))
    for r, v in evals:
        if v.gates:
            out.append(
                Raw(f"<h4>Gate AUROC for answer tokens ({esc(v.result.split)}, {esc(r.path.name)})</h4>")
            )
            out.append(table(_GATE_HEADERS, _gate_rows(v.gates)))
            if v.result.gate_statistic:
                out.append(para(v.result.gate_statistic, "small"))
    return out


def render_reading(files: Sequence[ResultFile]) -> Section:
    """``read train`` folders (their ``train_result.json`` and evaluations) and other evaluations."""
    body = [
        para(
            "DynSAN readers: the dev EM and F1 of the EMA weights at every evaluation (the reader kept is "
            "the best by dev EM), and each evaluation's EM and F1 as the mean over questions with a 95% "
            "bootstrap interval (questions whose answer is not in the passages read count as 0)."
        )
    ]
    folders: dict[Path, list[ResultFile]] = {}
    for r in files:
        folders.setdefault(r.path.parent, []).append(r)
    for folder, group in folders.items():
        body += _reading_run(folder, group)
        body += [source(r) for r in group]
    return Section("reading", "Reading (DynSAN)", "".join(body), "Reading")


# ----------------------------------------------------------------------------------------------------
# bench/dynsan_cost.py

_COST_HEADERS: list[str | tuple[str, str]] = [
    ("L", "num"),
    "variant",
    ("s / step", "num"),
    ("speed-up", "num"),
    ("GFLOP / step", "num"),
    ("FLOP ratio", "num"),
    ("saved MiB", "num"),
    ("attention MiB", "num"),
    ("peak MiB", "num"),
]


def _mib(x: Any) -> Cell:
    v = as_number(x)
    return num(v / 2**20 if v == v else None, 1)


def _cost_table(view: DynsanCostView, level: str) -> Raw:
    rows = []
    measured = [r for rs in view.series(level).values() for r in rs]
    for r in sorted(measured, key=lambda r: (r.L, r.K is not None, r.K or 0)):
        q = view.ratio(r)
        flops = as_number(r.counted_flops_step)
        rows.append(
            [
                num(r.L, 0),
                r.variant,
                num(r.seconds_step, 4),
                Cell(f"{fnum(q.speedup, 2)}×" if q else "–", q.speedup if q else "", "num"),
                num(flops / 1e9 if flops == flops else None, 3),
                Cell(
                    f"{fnum(q.counted_flops_ratio, 2)}×" if q else "–",
                    q.counted_flops_ratio if q else "",
                    "num",
                ),
                _mib(r.saved_bytes),
                _mib(r.attention_saved_bytes),
                _mib(r.peak_bytes),
            ]
        )
    return table(_COST_HEADERS, rows, sortable=True)


def _break_even_text(view: DynsanCostView, level: str) -> str:
    parts = []
    for (lv, k), even in sorted(view.break_even.items(), key=lambda x: (str(x[0][0]), as_number(x[0][1]))):
        if lv != level:
            continue
        first = min((r.L for r in view.rows if r.level == level), default=None)
        if even is None:
            parts.append(f"DynSA K={k}: never faster on the grid")
        elif first is not None and even <= first:
            parts.append(f"DynSA K={k}: already faster at the shortest L measured ({first:g})")
        else:
            parts.append(f"DynSA K={k}: L ≈ {even:.0f}")
    return (
        ("Break-even length (measured step time, interpolated): " + "; ".join(parts) + ".") if parts else ""
    )


def render_dynsan_cost(files: Sequence[ResultFile]) -> Section:
    body = [
        para(
            "The cost of DynSA against full self-attention as the total length L grows: seconds per "
            "training step (median of the repeats), FLOPs of one training step counted by torch, and the "
            "bytes autograd saves for the backward pass (the attention weights among them). Speed-up and "
            "FLOP ratio: full attention over DynSA at the same L."
        )
    ]
    for r in files:
        v = DynsanCostView.read(r.data)
        s, m = v.setting, v.machine
        keys = ("dim", "heads", "blocks", "batch", "passage_len", "repeats", "device")
        setting = ", ".join(f"{k} {s[k]}" for k in keys if k in s)
        machine = ", ".join(f"{k} {m[k]}" for k in ("cpu", "threads", "torch") if k in m)
        body.append(para(f"Setting: {setting}. Machine: {machine}.", "small"))
        for level in v.levels():
            body.append(Raw(f"<h3>{esc(level)} level</h3>"))
            body.append(figure(plots.dynsan_cost(v, level), f"DynSA cost vs length ({level})"))
            even = _break_even_text(v, level)
            if even:
                body.append(para(even, "small"))
            body.append(_cost_table(v, level))
        body.append(source(r))
    return Section("dynsan-cost", "DynSA cost vs length", "".join(body), "DynSA cost")


# ----------------------------------------------------------------------------------------------------
# bench/dynsan_ablation.py

_ABLATION_HEADERS: list[str | tuple[str, str]] = [
    "variant",
    ("seeds", "num"),
    ("test EM [95% CI]", "num"),
    ("test F1 [95% CI]", "num"),
    ("EM − gate [95% CI]", "num"),
    "steps",
]


def _baseline_name(name: str) -> str:
    what = name.removeprefix("test_").replace("_", " ")
    return f"most-frequent entity ({what})"


def _ablation_table(v: DynsanAblationView) -> Raw:
    rows: list[list[Any]] = [
        [
            r.variant,
            num(r.em.n if r.em is not None else None, 0),
            est_cell(r.em),
            est_cell(r.f1),
            est_cell(r.paired, signed=True),
            ", ".join(str(s) for s in r.steps) or "–",
        ]
        for r in v.rows
    ]
    rows += [[_baseline_name(b.name), "–", est_cell(b.em), est_cell(b.f1), "", "–"] for b in v.baselines]
    return table(_ABLATION_HEADERS, rows, sortable=True)


def render_dynsan_ablation(files: Sequence[ResultFile]) -> Section:
    body = [
        para(
            "DynSAN ablations: every variant trained with the same budget, the best reader by dev EM scored "
            "on test. EM and F1: the mean over seeds with a 95% t interval ([n/a] with one seed). EM − gate: "
            "the per-question EM difference from the gate reader on the same questions and seeds, with a "
            "paired bootstrap 95% interval over questions. The most-frequent-entity baseline: 95% bootstrap "
            "intervals over questions."
        )
    ]
    for r in files:
        v = DynsanAblationView.read(r.data)
        s = v.setting
        keys = (
            "minutes",
            "steps",
            "batch",
            "dim",
            "heads",
            "top_k",
            "blocks",
            "passages",
            "max_passage_tokens",
        )
        setting = ", ".join(f"{k} {s[k]}" for k in keys if k in s)
        if s.get("candidates") == "entities":
            setting += "; multiple choice over the passages' entities (EM = accuracy)"
        n = f", {v.n_test} test questions" if v.n_test is not None else ""
        body.append(para(f"Task {v.task}{n}; {v.runs} run(s). Setting: {setting}.", "small"))
        body.append(_ablation_table(v))
        if v.gates:
            body.append(Raw("<h3>Gate AUROC for answer tokens (dev)</h3>"))
            rows = [
                row
                for g in v.gates
                for row in _gate_rows([g], lead=(g.variant, "–" if g.seed is None else g.seed))
            ]
            body.append(table(["variant", "seed", *_GATE_HEADERS], rows, sortable=True))
            if v.gate_statistic:
                body.append(para(v.gate_statistic, "small"))
        body.append(source(r))
    return Section("dynsan-ablation", "DynSAN ablations", "".join(body), "Ablations")
