"""One self-contained HTML file from a run folder: :func:`write_report`.

The page needs no network: figures are inline PNG (``data:`` URIs), the CSS and the small script
that sorts tables are inline, and a Content-Security-Policy allows nothing else (no fetches, and no
script but the page's own, by hash). Every text that comes from data (example texts, task, label and
file names) is HTML-escaped.

Sections appear only when their data exists; each is built by one function of ``ReportData``. The
sections of other experiments (perturbation, similarity, pruning, transfer) are looked up in
:data:`RENDERERS` by the result kind that :mod:`skillneurons.report.sections` recognised.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skillneurons.artifacts import atomic_write_bytes
from skillneurons.errors import ConfigError, SkillNeuronsError
from skillneurons.report import plots
from skillneurons.report.sections import ReportData, ResultFile, discover, resolve_recorded

log = logging.getLogger(__name__)

__all__ = ["RENDERERS", "Section", "render_html", "write_report"]


# ----------------------------------------------------------------------------------------------------
# HTML helpers: everything from data goes through esc(); Raw marks HTML built here


class Raw(str):
    """Trusted HTML built by this module (never data)."""


def esc(x: Any) -> str:
    return x if isinstance(x, Raw) else html.escape(str(x), quote=True)


def fnum(x: Any, digits: int = 4) -> str:
    if (
        isinstance(x, bool)
        or not isinstance(x, (int, float))
        or (isinstance(x, float) and not math.isfinite(x))
    ):
        return "–"
    return f"{x:,}" if isinstance(x, int) else f"{x:.{digits}f}"


def fpct(x: Any, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%" if isinstance(x, (int, float)) and not isinstance(x, bool) else "–"


def _rel(path: Path | str) -> str:
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


@dataclass
class Cell:
    """A table cell: ``text`` (escaped unless :class:`Raw`), an optional sort key, and a class."""

    text: Any
    sort: Any = None
    cls: str = ""


def num(x: Any, digits: int = 4) -> Cell:
    return Cell(fnum(x, digits), x if isinstance(x, (int, float)) else "", "num")


def table(
    headers: Sequence[str | tuple[str, str]],
    rows: Sequence[Sequence[Any]],
    *,
    sortable: bool = False,
    tid: str | None = None,
    cls: str = "",
) -> Raw:
    """``headers``: titles, or (title, "num") for right-aligned columns."""
    classes = " ".join(c for c in ("sortable" if sortable else "", cls) if c)
    out = [
        f'<div class="tw"><table{f" id={esc(tid)!r}" if tid else ""}{f" class={classes!r}" if classes else ""}>'
    ]
    out.append("<thead><tr>")
    for h in headers:
        title, hc = (h, "") if isinstance(h, str) else h
        out.append(f'<th{f" class={hc!r}" if hc else ""} scope="col">{esc(title)}</th>')
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for c in row:
            cell = c if isinstance(c, Cell) else Cell(c)
            attrs = f' class="{cell.cls}"' if cell.cls else ""
            if cell.sort is not None:
                attrs += f' data-sort="{esc(cell.sort)}"'
            out.append(f"<td{attrs}>{esc(cell.text)}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return Raw("".join(out))


def figure(uri: str, alt: str, caption: str = "") -> Raw:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return Raw(f'<figure><img class="fig" src="{esc(uri)}" alt="{esc(alt)}">{cap}</figure>')


def para(text: Any, cls: str = "lead") -> Raw:
    return Raw(f'<p class="{cls}">{esc(text)}</p>')


def cards(items: Sequence[tuple[str, str, str]]) -> Raw:
    """Key figures: (label, value, detail)."""
    out = ['<div class="cards">']
    for k, v, d in items:
        out.append(
            f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div>'
            f'<div class="d">{esc(d)}</div></div>'
        )
    out.append("</div>")
    return Raw("".join(out))


@dataclass
class Section:
    """One section of the page: ``body`` is trusted HTML made with the helpers above."""

    id: str
    title: str
    body: str
    nav: str = ""


@dataclass
class Context:
    """Options and optional objects (a loaded backbone / task avoid loading them again)."""

    backbone: Any = None
    task: Any = None
    model: str | None = None
    top: int = 15
    examples: int = 3
    sample: int | None = 400
    batch_size: int = 32
    progress: bool = False
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------
# core sections


def _label_names(data: ReportData) -> list[str]:
    for t in data.tunes:
        names = (t.prompt or {}).get("task", {}).get("label_names")
        if isinstance(names, list) and names:
            return [str(n) for n in names]
    return []


def section_overview(data: ReportData, ctx: Context) -> Section:
    bb = data.backbone
    d_ff = bb.get("d_ff")
    geometry = (
        f"{bb.get('num_layers', '?')} layers × {d_ff[0] if isinstance(d_ff, list) and d_ff else '?'} neurons"
    )
    task = data.task_name or "?"
    labels = _label_names(data)
    tests = [t.get("test_accuracy") for t in data.tunes if isinstance(t.get("test_accuracy"), (int, float))]
    items = [
        (
            "model",
            str(bb.get("name", "?")),
            f"{bb.get('model_type', '')} {bb.get('kind', '')}, {geometry}, hidden {bb.get('hidden_size', '?')}",
        ),
        ("task", task, f"{len(labels)} classes: {', '.join(labels)}" if labels else ""),
        (
            "prompts (seeds)",
            str(len(data.tunes) or len((data.neurons.meta if data.neurons else {}).get("prompts", []))),
            "seeds " + ", ".join(str(t.seed) for t in data.tunes if t.seed is not None),
        ),
    ]
    if tests:
        spread = (
            f"{min(tests):.3f} – {max(tests):.3f} over {len(tests)} prompt(s)"
            if len(tests) > 1
            else "one prompt"
        )
        items.append(("test accuracy", f"{sum(tests) / len(tests):.3f}", f"mean; {spread}"))
    if data.neurons is not None and data.neurons.summary:
        s = data.neurons.summary
        items.append(
            (
                "top-1 predictivity",
                fnum(s.get("top1_predictivity"), 3),
                f"mean of the top 1%: {fnum(s.get('top1pct_mean_predictivity'), 3)}",
            )
        )
    body = [cards(items)]
    if data.tunes:
        rows = []
        for t in data.tunes:
            sz = t.sizes or {}
            secs = t.get("train_seconds")
            dev_acc = t.get("best_dev_accuracy") if t.results else (t.prompt or {}).get("dev_accuracy")
            rows.append(
                [
                    t.name,
                    fnum(t.seed) if t.seed is not None else "–",
                    fnum(t.get("split_seed")),
                    num(sz.get("train"), 0),
                    num(sz.get("dev"), 0),
                    num(sz.get("test"), 0),
                    num(t.get("steps"), 0),
                    num(t.get("best_step"), 0),
                    num(dev_acc),
                    num(t.get("test_accuracy")),
                    Cell(f"{secs:.0f} s" if isinstance(secs, (int, float)) else "–", secs, "num"),
                ]
            )
        body.append(Raw("<h3>Prompt-tuning runs</h3>"))
        body.append(
            table(
                [
                    "run",
                    "seed",
                    "split seed",
                    ("train", "num"),
                    ("dev", "num"),
                    ("test", "num"),
                    ("steps", "num"),
                    ("best step", "num"),
                    ("best dev acc.", "num"),
                    ("test acc.", "num"),
                    ("train time", "num"),
                ],
                rows,
                sortable=True,
                tid="runs",
            )
        )
        body.append(para(_settings(data), "small"))
    body.append(Raw("<details><summary>Provenance and versions</summary>"))
    body.append(table(["", "value"], _provenance(data), cls="kv"))
    body.append(Raw("</details>"))
    return Section("overview", "Run", "".join(body), "Run")


def _settings(data: ReportData) -> str:
    """The prompt and training settings (from the first run; differing values are listed)."""
    parts = []
    for key, lab in (("prompt_length", "prompt length"), ("head", "head"), ("layout", "layout")):
        vals = sorted(
            {str(v) for v in (t.get(key) for t in data.tunes) if v is not None and not isinstance(v, dict)}
        )
        if not vals and key == "head":
            vals = sorted({str((t.prompt or {}).get("head", {}).get("type")) for t in data.tunes if t.prompt})
        if vals:
            parts.append(f"{lab} {' / '.join(vals)}")
    cfg = next((t.get("train_config") for t in data.tunes if isinstance(t.get("train_config"), dict)), None)
    if cfg:
        keys = (
            "epochs",
            "max_steps",
            "batch_size",
            "lr",
            "optimizer",
            "warmup_ratio",
            "grad_clip",
            "precision",
        )
        parts += [f"{k} {cfg[k]}" for k in keys if cfg.get(k) is not None]
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
    from skillneurons import __version__

    rows: list[list[Any]] = [["run folder", _rel(data.root)]]
    task_info: dict[str, Any] = next(
        (t.prompt["task"] for t in data.tunes if t.prompt and isinstance(t.prompt.get("task"), dict)), {}
    )
    if task_info.get("source"):
        rows.append(
            ["task data", f"{task_info['source']} (fingerprint {str(task_info.get('fingerprint', ''))[:12]})"]
        )
    splits = {(t.get("split_seed"), tuple((t.sizes or {}).values())) for t in data.tunes}
    if splits:
        rows.append(
            [
                "splits",
                "; ".join(
                    f"seed {s}: train/dev/test {'/'.join(map(str, sz))}" for s, sz in sorted(splits, key=str)
                ),
            ]
        )
    if data.neurons is not None:
        m = data.neurons.meta
        rows.append(
            [
                "skill neurons",
                f"{_rel(data.neurons.path)} (scheme {m.get('scheme')}, {m.get('aggregation')} over "
                f"{len(m.get('prompts', []))} prompt(s), {len(data.neurons.score_files)} per-prompt score file(s))",
            ]
        )
    made = sorted(
        {
            str(x.get("skillneurons_version"))
            for x in [*(t.prompt for t in data.tunes), data.neurons.manifest if data.neurons else None]
            if isinstance(x, dict) and x.get("skillneurons_version")
        }
    )
    dates = sorted(
        str(x.get("created"))
        for x in [*(t.prompt for t in data.tunes), data.neurons.manifest if data.neurons else None]
        if isinstance(x, dict) and x.get("created")
    )
    if made:
        rows.append(
            [
                "written by",
                "skillneurons " + ", ".join(made) + (f" ({dates[0]} – {dates[-1]})" if dates else ""),
            ]
        )
    if data.demo_summary:
        rows.append(["demo wall time", f"{fnum(data.demo_summary.get('minutes'), 1)} min"])
    rows.append(["report", f"skillneurons {__version__}; {_versions()}; {time.strftime('%Y-%m-%d %H:%M')}"])
    return rows


def section_training(data: ReportData, ctx: Context) -> Section | None:
    runs = []
    for t in data.tunes:
        if t.history:
            label = f"seed {t.seed}" if t.seed is not None else t.name
            runs.append(
                {
                    "label": label + (" (in progress)" if t.history_from_checkpoint else ""),
                    "history": t.history,
                    "best_step": t.get("best_step"),
                }
            )
    if not runs:
        return None
    body = [
        para(
            "Dev accuracy and training loss at every evaluation of each prompt-tuning run (one colour per seed); "
            "the star marks the checkpoint kept as the prompt."
        ),
        figure(plots.training_curves(runs), "training curves: dev accuracy and loss vs step"),
    ]
    return Section("training", "Prompt tuning", "".join(body), "Training")


def section_summary(data: ReportData, ctx: Context) -> Section | None:
    if data.neurons is None:
        return None
    n = data.neurons
    s = n.summary or {}
    m = n.meta
    subs = ", ".join(_subtask_names(data).values())
    body = [
        para(
            f"Predictivity of a neuron: how well its activation at a prompt position, thresholded at its mean over "
            f"the training split, predicts the label on the dev split (max(acc, 1 - acc), 0.5 = chance), "
            f"maximised over the {len(n.position_names)} prompt positions and averaged ({m.get('aggregation', 'mean')}) "
            f"over {len(m.get('prompts', []))} prompt(s). Binary subtask(s): {subs}."
        )
    ]
    rows: list[list[Any]] = []
    if "top1_predictivity" in s:
        rows.append(
            [
                "trained prompts (aggregated)",
                num(s.get("top1_predictivity")),
                num(s.get("top1pct_mean_predictivity")),
            ]
        )
    if isinstance(s.get("first_prompt"), dict):
        rows.append(
            [
                "first trained prompt alone",
                num(s["first_prompt"].get("top1")),
                num(s["first_prompt"].get("top1pct_mean")),
            ]
        )
    for name, c in (s.get("controls") or {}).items():
        if isinstance(c, dict):
            rows.append(
                [f"control: {name.replace('_', ' ')}", num(c.get("top1")), num(c.get("top1pct_mean"))]
            )
    if rows:
        body.append(Raw("<h3>Trained prompts vs the paper's controls</h3>"))
        body.append(
            table(
                ["scored on", ("top-1 predictivity", "num"), ("mean of the top 1%", "num")],
                rows,
                cls="compact",
            )
        )
    extra = []
    if "auroc_top1" in s:
        extra.append(
            f"threshold-free AUROC predictivity: top-1 {fnum(s['auroc_top1'])}, top 1% {fnum(s.get('auroc_top1pct_mean'))}"
        )
    st = s.get("seed_stability")
    if isinstance(st, dict):
        extra.append(
            f"seed stability of the top {fpct(st.get('rho'), 0)}: mean pairwise Jaccard {fnum(st.get('jaccard_mean'), 3)}, "
            f"overlap {fnum(st.get('overlap_mean'), 3)}"
        )
    accs = [
        p.get("dev_accuracy")
        for p in m.get("prompts", [])
        if isinstance(p, dict) and isinstance(p.get("dev_accuracy"), (int, float))
    ]
    if accs:
        extra.append(
            "the prompts' own dev accuracy: "
            + ", ".join(f"{a:.4f}" for a in accs)
            + " (top-neuron predictivity is expected to approach it)"
        )
    body += [para(x, "small") for x in extra]
    return Section("skill-neurons", "Skill neurons", "".join(body), "Skill neurons")


def _subtask_names(data: ReportData) -> dict[str, str]:
    """``{subtask name: readable name}``, e.g. ``1_vs_0`` -> ``positive vs negative``."""
    assert data.neurons is not None
    labels = _label_names(data)
    C = len(labels)
    out = {}
    for st in data.neurons.neurons.subtasks:
        if not labels or any(not 0 <= c < C for c in (*st.positive, *st.negative)):
            out[st.name] = st.name
            continue
        pos = " + ".join(labels[c] for c in st.positive)
        rest = set(range(C)) - set(st.positive)
        neg = (
            "rest"
            if set(st.negative) == rest and len(rest) > 1
            else " + ".join(labels[c] for c in st.negative)
        )
        out[st.name] = f"{pos} vs {neg}"
    return out


def _scores(data: ReportData) -> np.ndarray:
    assert data.neurons is not None
    return data.neurons.neurons.scores().double().numpy()


def section_layers(data: ReportData, ctx: Context) -> Section | None:
    if data.neurons is None:
        return None
    sn = data.neurons.neurons
    counts = {rho: [int(c) for c in sn.mask(rho, per_layer=False).sum(1)] for rho in (0.01, 0.02, 0.05)}
    scores = _scores(data)
    rows = [
        [
            f"layer {layer}",
            *[num(counts[r][layer], 0) for r in counts],
            num(float(scores[layer].max())),
            num(float(np.percentile(scores[layer], 99))),
            num(float(np.median(scores[layer]))),
        ]
        for layer in range(sn.n_layers)
    ]
    body = [
        para(
            "How the most predictive neurons spread over the layers, when the top fraction is taken over all "
            f"{sn.n_layers} × {sn.d_ff} neurons at once (the per-layer quota of the paper gives every layer the same count)."
        ),
        figure(plots.layer_distribution(counts, scores), "skill neurons per layer"),
        table(
            [
                "layer",
                *[(f"top {r:.0%}", "num") for r in counts],
                ("max", "num"),
                ("99th pct.", "num"),
                ("median", "num"),
            ],
            rows,
            sortable=True,
            tid="layers",
        ),
    ]
    return Section("layers", "Skill neurons per layer", "".join(body), "Per layer")


def _top_neurons(data: ReportData, k: int) -> list[dict[str, Any]]:
    assert data.neurons is not None
    sn = data.neurons.neurons
    cands = sorted(sn.top(k), key=lambda t: -t[3])
    out, seen = [], set()
    for sub, layer, idx, score, pos in cands:
        if (layer, idx) in seen:
            continue
        seen.add((layer, idx))
        out.append({"subtask": sub, "layer": layer, "index": idx, "score": score, "position": pos})
        if len(out) == k:
            break
    return out


def section_map(data: ReportData, ctx: Context) -> Section | None:
    if data.neurons is None:
        return None
    scores = _scores(data)
    marks = [(t["layer"], t["index"]) for t in _top_neurons(data, ctx.top)]
    body = [
        para(
            "Every neuron's predictivity, layer by layer: in neuron order (circles: the top neurons listed below), "
            "and with each layer's neurons sorted, which shows how many neurons of each layer are predictive."
        ),
        figure(plots.predictivity_map(scores, marks), "layer by neuron predictivity map"),
    ]
    return Section("map", "Layer × neuron predictivity", "".join(body), "Map")


def section_positions(data: ReportData, ctx: Context) -> Section | None:
    if data.neurons is None:
        return None
    n = data.neurons
    sn = n.neurons
    names = n.position_names
    T = len(names)
    rho = 0.01
    mask = sn.mask(rho, per_layer=False)
    stacked = torch.stack([r.scores for r in sn.rankings.values()])  # [S, L, N]
    which = stacked.argmax(0, keepdim=True)
    best = torch.stack([sn.best_position[s.name] for s in sn.subtasks]).gather(0, which)[0]  # [L, N]
    counts = np.zeros((sn.n_layers, max(T, int(best.max()) + 1)), dtype=float)
    for layer, i in mask.nonzero().tolist():
        counts[layer, int(best[layer, i])] += 1
    counts = counts[:, :T] if T else counts
    if not T:
        names = [str(t) for t in range(counts.shape[1])]
    top_mean = None
    k = max(1, round(0.01 * sn.d_ff))
    if n.per_position is not None and n.per_position.shape[2] == len(names):
        mean = n.per_position.mean(0)  # [L, T, N]
        top_mean = mean.topk(k, dim=-1).values.mean(-1).numpy()
    body = [
        para(
            "Which prompt positions carry the skill: per layer and prompt position, the mean predictivity of the "
            f"{k} most predictive neurons there (averaged over prompts), and where each of the global top {rho:.0%} "
            "skill neurons is most predictive."
        ),
        figure(plots.position_layer(top_mean, counts, names, str(k)), "position by layer view"),
    ]
    if top_mean is None:
        body.append(
            para(
                "The per-prompt score files (scores_<i>) were not found: only the best positions are shown.",
                "small",
            )
        )
    return Section("positions", "Prompt position × layer", "".join(body), "Positions")


def _example_data(
    data: ReportData, ctx: Context, picks: list[dict[str, Any]]
) -> tuple[list[Any] | None, Any, str]:
    """``(NeuronExamples per pick, scanned task, description)``, or ``(None, None, why not)``."""
    from skillneurons.artifacts import load_manifest
    from skillneurons.neurons.find import prompt_splits
    from skillneurons.prompts import load_prompt
    from skillneurons.report.examples import sample_indices, top_activating

    assert data.neurons is not None
    prompt: Path | None = None
    for info in data.neurons.meta.get("prompts", []):
        if isinstance(info, dict) and info.get("prompt"):
            prompt = resolve_recorded(str(info["prompt"]), data.neurons.path)
            if prompt is not None:
                break
    if prompt is None:
        prompt = next((t.prompt_path for t in data.tunes if t.prompt_path is not None), None)
    if prompt is None:
        return None, None, "no trained prompt was found next to the skill neurons"
    try:
        man = load_manifest(prompt, "prompt")
        bb = ctx.backbone
        if bb is None:
            from skillneurons.backbones import load_backbone

            bb = load_backbone(ctx.model or str(man.get("backbone", {}).get("name")))
        task = ctx.task
        if task is None:
            from skillneurons.data import load_task

            task = load_task(str(man.get("task", {}).get("name")))
        model, man = load_prompt(prompt, bb)
        dev = prompt_splits(prompt, man, task).part("dev")
        idx = sample_indices(len(dev), ctx.sample, seed=0)
        part = dev.subset(idx)
        if ctx.progress:
            print(f"report: reading {len(picks)} neurons on {len(part)} dev examples with {_rel(prompt)}")
        found = top_activating(
            model,
            part,
            [(p["layer"], p["index"], p["position"]) for p in picks],
            k=ctx.examples,
            batch_size=ctx.batch_size,
        )
    except SkillNeuronsError as e:
        return None, None, f"example texts left out: {e}"
    seed = man.get("seed")
    desc = (
        f"Example texts: the {ctx.examples} dev examples with the highest activation of each neuron at its best "
        f"position, with the prompt of seed {seed} ({_rel(prompt)}), over {len(part)} of the {len(dev)} dev examples "
        "(a seeded sample when fewer), read in one streaming pass."
    )
    return found, part, desc


def section_top(data: ReportData, ctx: Context) -> Section | None:
    if data.neurons is None or ctx.top <= 0:
        return None
    n = data.neurons
    picks = _top_neurons(data, ctx.top)
    names = n.position_names
    multi = len(n.neurons.subtasks) > 1
    sub_names = _subtask_names(data)
    per_seed = n.per_prompt_scores()
    labels = _label_names(data)
    examples, part, desc = (None, None, "Example texts left out (--examples 0).")
    if ctx.examples > 0 and picks:
        examples, part, desc = _example_data(data, ctx, picks)
        if examples is None:
            ctx.notes.append(desc)
    if part is not None:
        labels = list(part.label_names)
    headers: list[str | tuple[str, str]] = [("#", "num"), ("layer", "num"), ("neuron", "num")]
    if multi:
        headers.append("subtask")
    headers += [("predictivity", "num")]
    if per_seed is not None and per_seed.shape[0] > 1:
        headers.append(("range over prompts", "num"))
    if n.auroc is not None:
        headers.append(("AUROC", "num"))
    headers += ["best position"]
    if examples is not None:
        headers += ["dev mean by class", "dev examples that activate it most"]
    rows = []
    for r, p in enumerate(picks, 1):
        layer, idx = p["layer"], p["index"]
        row: list[Any] = [num(r, 0), num(layer, 0), Cell(str(idx), idx, "num")]
        if multi:
            row.append(sub_names.get(p["subtask"], p["subtask"]))
        row.append(num(p["score"]))
        if per_seed is not None and per_seed.shape[0] > 1:
            vals = per_seed[:, layer, idx]
            row.append(Cell(f"{float(vals.min()):.3f} – {float(vals.max()):.3f}", float(vals.min()), "num"))
        if n.auroc is not None:
            row.append(num(float(n.auroc[layer, idx])))
        pos = p["position"]
        row.append(Cell(names[pos] if 0 <= pos < len(names) else str(pos), pos))
        if examples is not None and part is not None:
            ne = examples[r - 1]
            row.append(Cell(Raw(_class_means(ne.class_mean, labels)), _spread(ne.class_mean)))
            row.append(Cell(Raw(_example_list(ne.top, part, labels)), cls="exs"))
        rows.append(row)
    body = [
        para(
            f"The {len(picks)} most predictive neurons (click a column title to sort). Best position: the prompt "
            "position where the neuron predicts best (slot = the read/mask slot, pN = soft token N)."
        ),
        table(headers, rows, sortable=True, tid="top-neurons", cls="top"),
        para(desc, "small"),
    ]
    return Section("top-neurons", "Top neurons", "".join(body), "Top neurons")


def _spread(means: Sequence[float]) -> float:
    """Sort key of the class means: how far apart they are."""
    finite = [m for m in means if math.isfinite(m)]
    return max(finite) - min(finite) if finite else 0.0


def _label(c: int, labels: Sequence[str]) -> str:
    name = labels[c] if 0 <= c < len(labels) else str(c)
    return f'<span class="lab lab{c % 8}">{esc(name)}</span>'


def _class_means(means: Sequence[float], labels: Sequence[str]) -> str:
    parts = []
    finite = [m for m in means if math.isfinite(m)]
    hi = max(finite) if finite else None
    for c, m in enumerate(means):
        val = f"{m:.3f}" if math.isfinite(m) else "–"
        strong = " hi" if hi is not None and m == hi and len(finite) > 1 else ""
        parts.append(f'<span class="cm{strong}">{_label(c, labels)} {esc(val)}</span>')
    return "<br>".join(parts)


def _example_list(
    top: Sequence[tuple[int, float]], part: Any, labels: Sequence[str], limit: int = 240
) -> str:
    items = []
    for i, act in top:
        text, text_b, y = part.example(i)
        full = text if text_b is None else f"{text} ‖ {text_b}"
        short = full if len(full) <= limit else full[: limit - 1].rstrip() + "…"
        items.append(
            f'<li>{_label(y, labels)} <span class="act">{act:.3f}</span> '
            f'<span class="tx" title="{esc(full)}">{esc(short)}</span></li>'
        )
    return '<ol class="ex">' + "".join(items) + "</ol>"


# ----------------------------------------------------------------------------------------------------
# other experiments: kind -> renderer(list of ResultFile) -> Section; kept small and tolerant


def _src(r: ResultFile) -> Raw:
    return para(f"from {_rel(r.path)}", "src")


def render_perturb_sweep(files: Sequence[ResultFile]) -> Section:
    body = [
        para(
            "Accuracy while the top fraction of skill neurons is perturbed, against the same number of random "
            "neurons per layer (band: 95% interval of the random draws). Skill neurons matter if the solid "
            "line falls below the band."
        )
    ]
    for r in files:
        d = r.data
        what = [f"{d.get('mode', '?')} perturbation"]
        if d.get("sigma") is not None:
            what.append(f"σ = {d['sigma']}")
        what += [
            f"positions: {d.get('positions', 'all')}",
            f"task {d.get('task', '?')}",
            f"n = {d.get('n_eval', '?')}",
            f"unperturbed {fnum(d.get('unperturbed'))}",
        ]
        rows = []
        for p in sorted(d["points"], key=lambda p: plots._num(p.get("rho"))):
            rnd: dict[str, Any] = p["random"] if isinstance(p.get("random"), dict) else {}
            ci: list[Any] = (
                rnd["ci95"] if isinstance(rnd.get("ci95"), list) and len(rnd["ci95"]) == 2 else [None, None]
            )
            gap = (
                rnd.get("mean") - p["skill"]
                if isinstance(rnd.get("mean"), (int, float)) and isinstance(p.get("skill"), (int, float))
                else None
            )
            rows.append(
                [
                    Cell(fpct(p.get("rho")), p.get("rho"), "num"),
                    num(p.get("neurons"), 0),
                    num(p.get("skill")),
                    num(rnd.get("mean")),
                    Cell(f"[{fnum(ci[0])}, {fnum(ci[1])}]" if ci[0] is not None else "–", cls="num"),
                    num(gap),
                ]
            )
        body += [
            Raw("<h3>" + esc(", ".join(what)) + "</h3>"),
            Raw('<div class="grid2">'),
            figure(plots.perturb_sweep(d), "accuracy vs perturbed fraction"),
            table(
                [
                    ("rho", "num"),
                    ("neurons", "num"),
                    ("skill", "num"),
                    ("random mean", "num"),
                    ("random 95% CI", "num"),
                    ("gap", "num"),
                ],
                rows,
            ),
            Raw("</div>"),
            _src(r),
        ]
    return Section("perturbation", "Perturbation", "".join(body), "Perturbation")


def render_perturb_cross(files: Sequence[ResultFile]) -> Section:
    body = [
        para(
            "Rows: whose skill neurons are perturbed; columns: which task's prompt is evaluated on its test data. "
            "Cells: accuracy drop. Skill neurons are task-specific if the diagonal and similar tasks drop most; "
            "the last row perturbs the same number of random neurons."
        )
    ]
    for r in files:
        d = r.data
        tasks = [str(t) for t in d["tasks"]]
        m = [list(row) for row in d["drop"]]
        rows = list(tasks)
        ctrl = d.get("random_control")
        if isinstance(ctrl, dict) and isinstance(ctrl.get("drop"), list) and len(ctrl["drop"]) == len(tasks):
            m.append(list(ctrl["drop"]))
            rows.append(f"random (k={ctrl.get('draws', '?')})")
        title = f"accuracy drop: {d.get('mode', '?')} on the top {fpct(d.get('rho'), 0)} skill neurons"
        body += [
            Raw(f"<h3>{esc(title)}</h3>"),
            figure(
                plots.matrix(
                    m,
                    rows,
                    tasks,
                    cmap="RdBu_r",
                    center=0.0,
                    fmt="{:+.3f}",
                    xlabel="evaluated task (prompt + test data)",
                    ylabel="perturbed neurons of",
                ),
                title,
            ),
        ]
        if isinstance(d.get("unperturbed"), list):
            body.append(
                para(
                    "Unperturbed accuracy: "
                    + ", ".join(f"{t} {fnum(a)}" for t, a in zip(tasks, d["unperturbed"])),
                    "small",
                )
            )
        body.append(_src(r))
    return Section("cross-task", "Cross-task perturbation", "".join(body), "Cross-task")


def render_similarity(files: Sequence[ResultFile]) -> Section:
    body = [
        para(
            "Similar tasks have similar skill neurons: Spearman correlation of the tasks' neuron predictivity, "
            "and overlap (Jaccard) of their skill-neuron sets."
        )
    ]
    for r in files:
        d = r.data
        tasks = [str(t) for t in d["tasks"]]
        figs = [
            figure(
                plots.matrix(
                    d["spearman"],
                    tasks,
                    tasks,
                    cmap="RdBu_r",
                    center=0.0,
                    title="Spearman correlation of neuron predictivity",
                ),
                "Spearman similarity",
            )
        ]
        if isinstance(d.get("jaccard"), list):
            chance = [
                v
                for i, row in enumerate(d.get("chance_jaccard") or [])
                for j, v in enumerate(row)
                if i != j and isinstance(v, (int, float))
            ]
            note = f" (chance ≈ {sum(chance) / len(chance):.3f})" if chance else ""
            figs.append(
                figure(
                    plots.matrix(
                        d["jaccard"],
                        tasks,
                        tasks,
                        cmap="Blues",
                        fmt="{:.3f}",
                        title=f"Jaccard overlap of the top {fpct(d.get('rho'), 0)} skill neurons{note}",
                    ),
                    "Jaccard overlap",
                )
            )
        body += [Raw('<div class="grid2">'), *figs, Raw("</div>"), _src(r)]
    return Section("similarity", "Task similarity", "".join(body), "Similarity")


def render_prune(files: Sequence[ResultFile]) -> Section:
    body = [
        para(
            "Pruning to the skill neurons: every other FFN neuron of the pruned layers is replaced by its mean "
            "activation folded into the bias; the smaller model is timed against the unpruned one."
        )
    ]
    for r in files:
        d = r.data
        if r.kind == "prune_run":
            p = d.get("parameters", {})
            rows: list[list[Any]] = [
                ["pruned layers", str(d.get("pruned_layers"))],
                ["kept fraction (rho)", fnum(d.get("rho"), 3)],
                [
                    "parameters left",
                    f"{fpct(p.get('fraction'))} ({fnum(p.get('pruned'), 0)} of {fnum(p.get('source'), 0)})",
                ],
            ]
            for key, lab in (
                ("accuracy_unpruned", "accuracy, unpruned"),
                ("accuracy_pruned", "accuracy, pruned"),
                ("accuracy_retuned", "accuracy, prompt re-tuned"),
            ):
                if key in d:
                    rows.append([lab, fnum(d[key])])
            body += [
                Raw(f"<h3>{esc(d.get('source_model', 'model'))} pruned</h3>"),
                table(["", "value"], rows, cls="kv"),
                _src(r),
            ]
            continue
        for e in d.get("entries", []):
            if not isinstance(e, dict) or not isinstance(e.get("rows"), list):
                continue
            head = f"{e.get('model', '?')} ({e.get('geometry', '?')}), {e.get('task', '?')} {e.get('split', '')}, {e.get('examples', '?')} examples"
            rows = [
                [
                    str(x.get("variant", "")),
                    num(x.get("kept_per_pruned_layer"), 0),
                    Cell(fpct(x.get("parameters_fraction")), x.get("parameters_fraction"), "num"),
                    num(x.get("examples_per_s"), 1),
                    Cell(f"{fnum(x.get('speedup_median'), 2)}×", x.get("speedup_median"), "num"),
                    num(x.get("accuracy")),
                    num(x.get("accuracy_random_neurons")),
                    num(x.get("accuracy_retuned")),
                ]
                for x in e["rows"]
                if isinstance(x, dict)
            ]
            body += [
                Raw(f"<h3>{esc(head)}</h3>"),
                figure(plots.prune_bench(e), "pruning speedup and accuracy"),
                table(
                    [
                        "model",
                        ("kept / pruned layer", "num"),
                        ("params left", "num"),
                        ("examples/s", "num"),
                        ("speedup", "num"),
                        ("accuracy", "num"),
                        ("random neurons", "num"),
                        ("re-tuned", "num"),
                    ],
                    rows,
                ),
            ]
        body.append(_src(r))
    return Section("pruning", "Pruning", "".join(body), "Pruning")


def render_transfer(files: Sequence[ResultFile]) -> Section:
    from skillneurons.report.sections import TRANSFER_MATRIX_KEYS

    body = [para("Prompt transferability: a source prompt (rows) used on a target task (columns).")]
    for r in files:
        d = r.data
        key = next(k for k in TRANSFER_MATRIX_KEYS if isinstance(d.get(k), list))
        m = d[key]
        rows = [str(x) for x in (d.get("sources") or d.get("tasks") or range(len(m)))]
        cols = [str(x) for x in (d.get("targets") or d.get("tasks") or range(len(m[0])))]
        title = d.get("title") or key.replace("_", " ")
        body += [
            figure(
                plots.matrix(
                    m, rows, cols, cmap="viridis", title=str(title), xlabel="target", ylabel="source"
                ),
                "transfer matrix",
            ),
            _src(r),
        ]
    return Section("transfer", "Transfer", "".join(body), "Transfer")


#: section id -> (result kinds, renderer), in page order
RENDERERS: dict[str, tuple[tuple[str, ...], Callable[[Sequence[ResultFile]], Section]]] = {
    "perturbation": (("perturb_sweep",), render_perturb_sweep),
    "cross-task": (("perturb_cross",), render_perturb_cross),
    "similarity": (("similarity",), render_similarity),
    "pruning": (("prune_bench", "prune_run"), render_prune),
    "transfer": (("transfer",), render_transfer),
}

CORE: list[Callable[[ReportData, Context], Section | None]] = [
    section_overview,
    section_summary,
    section_training,
    section_layers,
    section_map,
    section_positions,
    section_top,
]


def build_sections(data: ReportData, ctx: Context) -> list[Section]:
    out = [s for s in (f(data, ctx) for f in CORE) if s is not None]
    for kinds, render in RENDERERS.values():
        files = [r for r in data.results if r.kind in kinds]
        if not files:
            continue
        try:
            out.append(render(files))
        except (KeyError, TypeError, ValueError, IndexError, StopIteration) as e:
            ctx.notes.append(
                f"could not show {', '.join(_rel(f.path) for f in files)}: {type(e).__name__} {e}"
            )
    notes = [*data.notes, *ctx.notes]
    if notes:
        out.append(
            Section(
                "notes",
                "Notes",
                '<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>",
                "Notes",
            )
        )
    return out


# ----------------------------------------------------------------------------------------------------
# the page

_CSS = """
:root{--fg:#0f172a;--muted:#64748b;--line:#e2e8f0;--bg:#f1f5f9;--card:#fff;--accent:#2563eb}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",Arial,sans-serif;color:var(--fg);background:var(--bg)}
.wrap{max-width:1240px;margin:0 auto;padding:0 24px}
header{background:#0f172a;color:#f8fafc;padding:26px 0 20px}
header h1{margin:0 0 4px;font-size:26px;font-weight:650;letter-spacing:-.01em}
header .sub{color:#cbd5e1;font-size:13px}
nav{position:sticky;top:0;z-index:5;background:rgba(255,255,255,.96);border-bottom:1px solid var(--line)}
nav a{display:inline-block;padding:9px 10px;color:#334155;text-decoration:none;font-size:13px;font-weight:500}
nav a:hover{color:var(--accent)}
section{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:18px 22px 14px;margin:18px 0;scroll-margin-top:48px}
h2{margin:0 0 6px;font-size:20px;font-weight:650}
h3{margin:18px 0 6px;font-size:15px;font-weight:600}
p{margin:4px 0 10px}
p.lead{color:#334155;max-width:980px}
p.small{color:var(--muted);font-size:13px}
p.src{color:var(--muted);font-size:12px;font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(190px,1fr));gap:10px;margin:6px 0 4px}
.card{border:1px solid var(--line);border-radius:10px;padding:10px 14px;background:#f8fafc}
.card .k{font-size:11px;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
.card .v{font-size:21px;font-weight:650;overflow-wrap:anywhere}
.card .d{font-size:12px;color:var(--muted)}
.tw{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px;margin:4px 0 8px}
th,td{padding:5px 9px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#f8fafc;font-weight:600;color:#334155;white-space:nowrap}
tbody tr:hover{background:#f8fafc}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.kv thead{display:none}
table.compact{width:auto;min-width:560px}
details{margin:12px 0 4px}
summary{cursor:pointer;font-weight:600;font-size:14px;color:#334155}
table.kv td:first-child{color:var(--muted);width:190px;white-space:nowrap}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th::after{content:" \\2195";color:#cbd5e1;font-size:11px}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2";color:var(--accent)}
table.sortable th[aria-sort=descending]::after{content:" \\25BC";color:var(--accent)}
table.top th{white-space:normal;vertical-align:bottom}
table.top td.exs{min-width:360px;width:50%}
figure{margin:8px 0}
img.fig{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{color:var(--muted);font-size:12px;text-align:center}
.grid2{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px;align-items:start}
@media (max-width:980px){.grid2{grid-template-columns:1fr}}
ol.ex{margin:0;padding-left:18px}
ol.ex li{margin:0 0 3px;line-height:1.35}
.act{font-variant-numeric:tabular-nums;color:var(--muted);font-size:12px}
.tx{overflow-wrap:anywhere}
.cm{white-space:nowrap;font-variant-numeric:tabular-nums}
.cm.hi{font-weight:650}
.lab{display:inline-block;font-size:11px;line-height:16px;padding:0 7px;border-radius:8px;font-weight:600}
.lab0{background:#fee2e2;color:#991b1b}.lab1{background:#dcfce7;color:#166534}.lab2{background:#dbeafe;color:#1e40af}
.lab3{background:#fef3c7;color:#92400e}.lab4{background:#ede9fe;color:#5b21b6}.lab5{background:#cffafe;color:#155e75}
.lab6{background:#fce7f3;color:#9d174d}.lab7{background:#e5e7eb;color:#374151}
ul.notes{margin:0;padding-left:20px;color:#334155}
footer{color:var(--muted);font-size:12px;padding:6px 0 30px}
"""

_JS = """
(function () {
  function key(cell) {
    var v = cell.getAttribute("data-sort");
    if (v === null) { v = cell.textContent.trim(); }
    var n = parseFloat(v);
    return (v !== "" && isFinite(v)) ? n : v.toLowerCase();
  }
  function sortBy(table, col, th) {
    var heads = table.tHead.rows[0].cells;
    var dir = th.getAttribute("aria-sort") === "descending" ? 1 : -1;
    if (!th.hasAttribute("aria-sort") && !th.classList.contains("num")) { dir = 1; }
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      if (typeof x === "number" && typeof y === "number") { return dir * (x - y); }
      return dir * String(x).localeCompare(String(y));
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.title = "sort by this column";
      th.addEventListener("click", function () { sortBy(table, col, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, col, th); }
      });
    });
  });
})();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def render_html(data: ReportData, ctx: Context | None = None) -> str:
    """The whole page as one string."""
    ctx = ctx or Context()
    sections = build_sections(data, ctx)
    bb = data.backbone
    title = f"Skill neurons of {bb.get('name', 'a model')} on {data.task_name or 'a task'}"
    csp = (
        f"default-src 'none'; img-src data:; style-src {_csp_hash(_CSS)}; script-src {_csp_hash(_JS)}; "
        "base-uri 'none'; form-action 'none'"
    )
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.nav or s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    from skillneurons import __version__

    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">'
        f'<meta name="generator" content="skillneurons {esc(__version__)}">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body>"
        f'<header><div class="wrap"><h1>{esc(title)}</h1><div class="sub">{esc(_rel(data.root))} · '
        f"report generated {esc(time.strftime('%Y-%m-%d %H:%M'))}</div></div></header>"
        f'<nav><div class="wrap">{nav}</div></nav>'
        f'<main class="wrap">{body}</main>'
        f'<footer class="wrap">skillneurons {esc(__version__)} · one self-contained file: no network needed</footer>'
        f"<script>{_JS}</script></body></html>\n"
    )


def write_report(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    include: Sequence[str | os.PathLike[str]] = (),
    backbone: Any = None,
    task: Any = None,
    model: str | None = None,
    top: int = 15,
    examples: int = 3,
    sample: int | None = 400,
    batch_size: int = 32,
    progress: bool = False,
) -> Path:
    """Write the HTML report of ``run_dir`` (see :mod:`skillneurons.report.sections` for what a run
    folder is) to ``out`` (default ``run_dir/report.html``); returns its path.

    Args:
        include: more result JSON files or folders (see :func:`~skillneurons.report.sections.discover`).
        backbone, task: the loaded backbone and task (else loaded from the names in the prompt's
            manifest; needed only for the example texts). ``model`` overrides the backbone's name.
        top: rows of the top-neuron table.
        examples: example texts per top neuron (0: none, and no model is loaded).
        sample: dev examples scanned for them (a seeded sample; None: all).
    """
    if top < 0 or examples < 0 or batch_size < 1 or (sample is not None and sample < 1):
        raise ConfigError("--top and --examples must be >= 0, --sample and --batch-size >= 1")
    data = discover(run_dir, include)
    ctx = Context(
        backbone=backbone,
        task=task,
        model=model,
        top=top,
        examples=examples,
        sample=sample,
        batch_size=batch_size,
        progress=progress,
    )
    page = render_html(data, ctx)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder: give the path of the HTML file to write")
    atomic_write_bytes(path, page.encode("utf-8"))
    return path
