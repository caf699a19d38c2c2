"""The run section: key figures, the prompt-tuning runs, their settings, provenance and versions."""

from __future__ import annotations

import platform
import time
from importlib import metadata
from typing import Any

from skillneurons import __version__
from skillneurons.evidence import accuracy_estimate, mean_over_seeds
from skillneurons.report.discovery import ReportData, TuneRun
from skillneurons.report.html import Cell, Raw, Section, cards, fnum, num, para, rel, table
from skillneurons.report.sections.common import Context, label_names
from skillneurons.report.views import PerturbSweepView, as_number

__all__ = ["section_overview"]

_RUN_HEADERS: list[str | tuple[str, str]] = [
    "run",
    "seed",
    "split seed",
    ("train", "num"),
    ("dev", "num"),
    ("test", "num"),
    ("steps", "num"),
    ("best step", "num"),
    ("best dev acc. [95% CI]", "num"),
    ("test acc. [95% CI]", "num"),
    ("train time", "num"),
]
_TRAIN_KEYS = (
    "epochs",
    "max_steps",
    "batch_size",
    "lr",
    "optimizer",
    "warmup_ratio",
    "grad_clip",
    "precision",
)


def section_overview(data: ReportData, ctx: Context) -> Section | None:
    if data.reading_only:  # no model or prompt to describe: the reading sections say it all
        return None
    body = [cards(_key_figures(data))]
    if data.tunes:
        body.append(Raw("<h3>Prompt-tuning runs</h3>"))
        body.append(table(_RUN_HEADERS, [_run_row(t) for t in data.tunes], sortable=True, tid="runs"))
        body.append(para(_settings(data), "small"))
    body.append(Raw("<details><summary>Provenance and versions</summary>"))
    body.append(table(["", "value"], _provenance(data), cls="kv"))
    body.append(Raw("</details>"))
    return Section("overview", "Run", "".join(body), "Run")


def _or(x: Any, default: str) -> Any:
    return default if x is None else x


def _key_figures(data: ReportData) -> list[tuple[str, str, str]]:
    bb = data.backbone
    d_ff = bb.d_ff
    layers = f"{_or(bb.num_layers, '?')} layers"
    geometry = f"{layers} × {d_ff[0] if isinstance(d_ff, list) and d_ff else '?'} neurons"
    labels = label_names(data)
    tests = [t.test_accuracy for t in data.tunes if t.test_accuracy is not None]
    n_prompts = len(data.tunes) or len(data.neurons.prompts if data.neurons else [])
    items = [
        (
            "model",
            str(_or(bb.name, "?")),
            f"{_or(bb.model_type, '')} {_or(bb.kind, '')}, {geometry}, hidden {_or(bb.hidden_size, '?')}",
        ),
        ("task", data.task_name or "?", f"{len(labels)} classes: {', '.join(labels)}" if labels else ""),
        (
            "prompts (seeds)",
            str(n_prompts),
            "seeds " + ", ".join(str(t.seed) for t in data.tunes if t.seed is not None),
        ),
    ]
    if tests:
        spread = (
            f"{min(tests):.3f} – {max(tests):.3f} over {len(tests)} prompt(s)"
            if len(tests) > 1
            else "one prompt"
        )
        seeds = mean_over_seeds(tests)
        band = f" [{seeds.lo:.3f}, {seeds.hi:.3f}] (t, over seeds)" if seeds.lo is not None else ""
        items.append(("test accuracy", f"{seeds.value:.3f}", f"mean{band}; {spread}"))
    items += _evidence_figures(data)
    if data.neurons is not None and data.neurons.summary:
        s = data.neurons.summary
        items.append(
            (
                "top-1 predictivity",
                fnum(s.top1_predictivity, 3),
                f"mean of the top 1%: {fnum(s.top1pct_mean_predictivity, 3)}",
            )
        )
    return items


def _evidence_figures(data: ReportData) -> list[tuple[str, str, str]]:
    """The paired skill-vs-random perturbation of each sweep (the demo's evidence): at its first
    non-zero fraction, the difference with its 95% interval and p (files with paired estimates)."""
    items = []
    for r in data.of_kind("perturb_sweep"):
        d = PerturbSweepView.read(r.data)
        pt = next((p for p in d.sorted_points() if p.paired is not None and as_number(p.rho) > 0), None)
        if pt is None or pt.paired is None:
            continue
        e = pt.paired
        pv = f", p = {e.p:.2g}" if e.p is not None else ""
        band = f"[{e.lo:.3f}, {e.hi:.3f}]" if e.lo is not None and e.hi is not None else "[n/a]"
        items.append(
            (
                f"skill − random ({d.mode}, top {as_number(pt.rho):.0%})",
                f"{e.value:+.3f}",
                f"paired over {e.n} test examples and {d.draws} random draws: {band}{pv}",
            )
        )
    return items


def _acc(acc: Any, n: Any) -> Cell:
    """An accuracy with its Wilson 95% interval on the split's size (the bare figure without one)."""
    e = accuracy_estimate(acc, n) if isinstance(acc, (int, float)) and isinstance(n, int) else None
    return Cell(e.format(3), e.value, "num") if e is not None else num(acc)


def _run_row(t: TuneRun) -> list[Any]:
    sz = t.sizes or {}
    secs = t.train_seconds
    return [
        t.name,
        fnum(t.seed) if t.seed is not None else "–",
        fnum(t.split_seed),
        num(sz.get("train"), 0),
        num(sz.get("dev"), 0),
        num(sz.get("test"), 0),
        num(t.steps, 0),
        num(t.best_step, 0),
        _acc(t.dev_accuracy, sz.get("dev")),
        _acc(t.test_accuracy, sz.get("test")),
        Cell(f"{secs:.0f} s" if isinstance(secs, (int, float)) else "–", secs, "num"),
    ]


def _settings(data: ReportData) -> str:
    """The prompt and training settings (from the first run; differing values are listed)."""
    parts = []
    for key, lab in (("prompt_length", "prompt length"), ("head", "head"), ("layout", "layout")):
        vals = sorted({v for v in (t.setting(key) for t in data.tunes) if v is not None})
        if not vals and key == "head":
            vals = sorted({h for h in (t.head_type for t in data.tunes) if h is not None})
        if vals:
            parts.append(f"{lab} {' / '.join(vals)}")
    cfg = next((t.train_config for t in data.tunes if t.train_config is not None), None)
    if cfg:
        parts += [f"{k} {cfg[k]}" for k in _TRAIN_KEYS if cfg.get(k) is not None]
    return ("Settings: " + "; ".join(parts) + ".") if parts else ""


def _versions() -> str:
    out = [f"python {platform.python_version()}"]
    for pkg in ("torch", "transformers", "matplotlib"):
        try:
            out.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(out)


def _provenance(data: ReportData) -> list[list[Any]]:
    rows: list[list[Any]] = [["run folder", rel(data.root)]]
    task = next((t.task_info for t in data.tunes if t.task_info is not None), None)
    if task is not None and task.source:
        fingerprint = str(_or(task.fingerprint, ""))[:12]
        rows.append(["task data", f"{task.source} (fingerprint {fingerprint})"])
    splits = {(t.split_seed, tuple((t.sizes or {}).values())) for t in data.tunes}
    if splits:
        text = "; ".join(
            f"seed {s}: train/dev/test {'/'.join(map(str, sz))}" for s, sz in sorted(splits, key=str)
        )
        rows.append(["splits", text])
    if data.neurons is not None:
        n = data.neurons
        rows.append(
            [
                "skill neurons",
                f"{rel(n.path)} (scheme {n.scheme}, {n.aggregation} over "
                f"{len(n.prompts)} prompt(s), {len(n.score_files)} per-prompt score file(s))",
            ]
        )
    rows += _written_by(data)
    if data.demo_summary:
        rows.append(["demo wall time", f"{fnum(data.demo_summary.minutes, 1)} min"])
    rows.append(["report", f"skillneurons {__version__}; {_versions()}; {time.strftime('%Y-%m-%d %H:%M')}"])
    return rows


def _written_by(data: ReportData) -> list[list[Any]]:
    infos = [t.artifact for t in data.tunes] + [data.neurons.artifact if data.neurons else None]
    made = sorted({str(a.skillneurons_version) for a in infos if a is not None and a.skillneurons_version})
    dates = sorted(str(a.created) for a in infos if a is not None and a.created)
    if not made:
        return []
    span = f" ({dates[0]} – {dates[-1]})" if dates else ""
    return [["written by", "skillneurons " + ", ".join(made) + span]]
