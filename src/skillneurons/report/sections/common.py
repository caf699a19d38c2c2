"""What the section builders share: the :class:`Context` of one report, and the readings of the core
results that several sections show (label names, readable subtask names, the top neurons)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skillneurons.evidence import Estimate
from skillneurons.report.config import ReportConfig
from skillneurons.report.discovery import ReportData, ResultFile
from skillneurons.report.html import Cell, Raw, num, para, rel

__all__ = [
    "Context",
    "TopNeuron",
    "est_cell",
    "label_names",
    "scores",
    "source",
    "subtask_names",
    "top_neurons",
]


@dataclass
class Context:
    """The report's options and optional objects (a loaded backbone / task avoid loading them again;
    ``backbone_options`` load the recorded one otherwise); ``notes`` collects what the sections could
    not show."""

    config: ReportConfig
    backbone: Any = None
    task: Any = None
    progress: bool = False
    notes: list[str] = field(default_factory=list)
    backbone_options: Any = None  # BackboneOptions of the backbone loaded for the example texts


def label_names(data: ReportData) -> list[str]:
    """The task's class names, as the first tuning run that records them has them."""
    for t in data.tunes:
        if t.task_info is not None and t.task_info.label_names:
            return list(t.task_info.label_names)
    return []


def subtask_names(data: ReportData) -> dict[str, str]:
    """``{subtask name: readable name}``, e.g. ``1_vs_0`` -> ``positive vs negative``."""
    assert data.neurons is not None
    labels = label_names(data)
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


def scores(data: ReportData) -> np.ndarray:
    """[L, N] predictivity of every neuron (the skill neurons' aggregated scores)."""
    assert data.neurons is not None
    return data.neurons.neurons.scores().double().numpy()


@dataclass
class TopNeuron:
    """One of the most predictive neurons: its subtask, place, score and best prompt position."""

    subtask: str
    layer: int
    index: int
    score: float
    position: int


def top_neurons(data: ReportData, k: int) -> list[TopNeuron]:
    """The ``k`` most predictive distinct neurons (over all subtasks), best first."""
    assert data.neurons is not None
    sn = data.neurons.neurons
    cands = sorted(sn.top(k), key=lambda t: -t[3])
    out: list[TopNeuron] = []
    seen = set()
    for sub, layer, idx, score, pos in cands:
        if (layer, idx) in seen:
            continue
        seen.add((layer, idx))
        out.append(TopNeuron(sub, layer, idx, score, pos))
        if len(out) == k:
            break
    return out


def source(r: ResultFile) -> Raw:
    """The line that names a result's file."""
    return para(f"from {rel(r.path)}", "src")


def est_cell(e: Estimate | None, fallback: object = None, digits: int = 3, signed: bool = False) -> Cell:
    """An estimate as ``0.680 [0.655, 0.704]`` (sorting by its value; ``signed``: ``+`` before a
    difference >= 0); without one, the bare ``fallback`` figure of an older file, or –."""
    if e is None:
        return num(fallback)
    text = e.format(digits)
    if signed and e.value >= 0:
        text = "+" + text
    return Cell(text, e.value, "num")
