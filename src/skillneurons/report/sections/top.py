"""The top-neuron table: the most predictive neurons, their spread over prompts, AUROC, best position,
and (when a model is at hand) the dev examples that activate each most, with its mean per class."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skillneurons.data import Task
from skillneurons.errors import SkillNeuronsError
from skillneurons.prompts import load_prompt
from skillneurons.report.discovery import ReportData, resolve_recorded
from skillneurons.report.examples import NeuronExamples, sample_indices, top_activating
from skillneurons.report.html import Cell, Raw, Section, esc, num, para, rel, table
from skillneurons.report.sections.common import Context, TopNeuron, label_names, subtask_names, top_neurons
from skillneurons.rundir import RunDir

__all__ = ["section_top"]


def _prompt_of(data: ReportData) -> Path | None:
    """The first trained prompt of the skill neurons that is found (else of a tuning run)."""
    assert data.neurons is not None
    for info in data.neurons.prompts:
        if info.prompt:
            prompt = resolve_recorded(info.prompt, data.neurons.path)
            if prompt is not None:
                return prompt
    return next((t.prompt_path for t in data.tunes if t.prompt_path is not None), None)


def _example_data(
    data: ReportData, ctx: Context, picks: list[TopNeuron]
) -> tuple[list[NeuronExamples] | None, Task | None, str]:
    """``(NeuronExamples per pick, scanned task, description)``, or ``(None, None, why not)``."""
    cfg = ctx.config
    prompt = _prompt_of(data)
    if prompt is None:
        return None, None, "no trained prompt was found next to the skill neurons"
    try:
        run = RunDir.of(prompt).require_kind("prompt", "delta")
        bb = ctx.backbone if ctx.backbone is not None else run.backbone(cfg.model, ctx.backbone_options)
        task = run.task(ctx.task)
        model, man = load_prompt(prompt, bb)
        dev = run.part("dev", task)
        part = dev.subset(sample_indices(len(dev), cfg.sample, seed=0))
        if ctx.progress:
            print(f"report: reading {len(picks)} neurons on {len(part)} dev examples with {rel(prompt)}")
        found = top_activating(
            model,
            part,
            [(p.layer, p.index, p.position) for p in picks],
            k=cfg.examples,
            batch_size=cfg.batch_size,
        )
    except SkillNeuronsError as e:
        return None, None, f"example texts left out: {e}"
    desc = (
        f"Example texts: the {cfg.examples} dev examples with the highest activation of each neuron at its "
        f"best position, with the prompt of seed {man.get('seed')} ({rel(prompt)}), over {len(part)} of the "
        f"{len(dev)} dev examples (a seeded sample when fewer), read in one streaming pass."
    )
    return found, part, desc


def section_top(data: ReportData, ctx: Context) -> Section | None:
    if data.neurons is None or ctx.config.top <= 0:
        return None
    n = data.neurons
    picks = top_neurons(data, ctx.config.top)
    labels = label_names(data)
    examples, part, desc = (None, None, "Example texts left out (--examples 0).")
    if ctx.config.examples > 0 and picks:
        examples, part, desc = _example_data(data, ctx, picks)
        if examples is None:
            ctx.notes.append(desc)
    if part is not None:
        labels = list(part.label_names)
    multi = len(n.neurons.subtasks) > 1
    per_seed = n.per_prompt_scores()
    spread = per_seed is not None and per_seed.shape[0] > 1
    headers: list[str | tuple[str, str]] = [("#", "num"), ("layer", "num"), ("neuron", "num")]
    headers += ["subtask"] if multi else []
    headers += [("predictivity", "num")]
    headers += [("range over prompts", "num")] if spread else []
    headers += [("AUROC", "num")] if n.auroc is not None else []
    headers += ["best position"]
    if examples is not None:
        headers += ["dev mean by class", "dev examples that activate it most"]
    sub_names = subtask_names(data)
    names = n.position_names
    rows = []
    for r, p in enumerate(picks, 1):
        row: list[Any] = [num(r, 0), num(p.layer, 0), Cell(str(p.index), p.index, "num")]
        if multi:
            row.append(sub_names.get(p.subtask, p.subtask))
        row.append(num(p.score))
        if spread:
            assert per_seed is not None
            vals = per_seed[:, p.layer, p.index]
            row.append(Cell(f"{float(vals.min()):.3f} – {float(vals.max()):.3f}", float(vals.min()), "num"))
        if n.auroc is not None:
            row.append(num(float(n.auroc[p.layer, p.index])))
        pos = p.position
        row.append(Cell(names[pos] if 0 <= pos < len(names) else str(pos), pos))
        if examples is not None and part is not None:
            ne = examples[r - 1]
            row.append(Cell(Raw(_class_means(ne.class_mean, labels)), _spread(ne.class_mean)))
            row.append(Cell(Raw(_example_list(ne.top, part, labels)), cls="exs"))
        rows.append(row)
    body = [
        para(
            f"The {len(picks)} most predictive neurons (click a column title to sort). Best position: the "
            "prompt position where the neuron predicts best (slot = the read/mask slot, pN = soft token N)."
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
    top: Sequence[tuple[int, float]], part: Task, labels: Sequence[str], limit: int = 240
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
