"""The skill-neuron sections: the summary against the controls, the spread over layers, the layer x
neuron map, and the prompt position x layer view."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from skillneurons.report import plots
from skillneurons.report.discovery import ReportData
from skillneurons.report.html import Cell, Raw, Section, figure, fnum, fpct, num, para, table
from skillneurons.report.sections.common import Context, est_cell, scores, subtask_names, top_neurons
from skillneurons.report.views import FindSummaryView

__all__ = ["section_layers", "section_map", "section_positions", "section_summary"]


def section_summary(data: ReportData, ctx: Context) -> Section | None:
    if data.neurons is None:
        return None
    n = data.neurons
    s = n.summary
    subs = ", ".join(subtask_names(data).values())
    score = (
        "max(bal, 1 - bal) of the balanced accuracy, the mean of the two classes' rates, 0.5 = chance"
        if s is not None and s.score == "balanced"
        else "max(acc, 1 - acc), 0.5 = chance on balanced labels"
    )
    body = [
        para(
            "Predictivity of a neuron: how well its activation at a prompt position, thresholded at its mean "
            f"over the training split, predicts the label on the dev split ({score}), "
            f"maximised over the {len(n.position_names)} prompt positions and averaged "
            f"({n.aggregation or 'mean'}) over {len(n.prompts)} prompt(s). Binary subtask(s): {subs}."
        )
    ]
    rows: list[list[Any]] = []
    if s is not None and s.top1_predictivity is not None:
        rows.append(
            ["trained prompts (aggregated)", num(s.top1_predictivity), num(s.top1pct_mean_predictivity)]
        )
    if s is not None and s.first_prompt is not None:
        rows.append(
            ["first trained prompt alone", num(s.first_prompt.top1), num(s.first_prompt.top1pct_mean)]
        )
    controls = s.controls if s is not None else {}
    paired = any(c.versus_top1 is not None for c in controls.values())
    for row in rows:
        row += ["", ""] if paired else []
    for name, c in controls.items():
        row = [f"control: {name.replace('_', ' ')}", num(c.top1), num(c.top1pct_mean)]
        if paired:
            row += [_versus(c.versus_top1), _versus(c.versus_top1pct)]
        rows.append(row)
    if rows:
        body.append(Raw("<h3>Trained prompts vs the paper's controls</h3>"))
        head: list[Any] = ["scored on", ("top-1 predictivity", "num"), ("mean of the top 1%", "num")]
        if paired:
            head += [
                ("first prompt − control, top-1 [paired 95%], p", "num"),
                ("… top 1% [paired 95%], p", "num"),
            ]
        body.append(table(head, rows, cls="compact"))
        if paired:
            body.append(
                para(
                    "The paired columns compare the first trained prompt with each control on the same "
                    "ranking examples and folds, example by example (a paired bootstrap over the examples): "
                    "an interval above 0 means the prompt's held-out neurons beat the control's.",
                    "small",
                )
            )
    body += _subtask_table(s)
    body += [para(x, "small") for x in _summary_notes(data)]
    if s is not None:
        body += [para(f"Warning: {f}", "flag") for f in s.flags]
    return Section("skill-neurons", "Skill neurons", "".join(body), "Skill neurons")


def _versus(e: Any) -> Cell:
    """A signed paired difference with its interval (:func:`est_cell`) and its p."""
    cell = est_cell(e, signed=True)
    return Cell(f"{cell.text}, p={e.p:.2g}", e.value, "num") if e is not None and e.p is not None else cell


def _subtask_table(s: FindSummaryView | None) -> list[Raw]:
    """Per binary subtask: the best neurons' predictivity beside the comparable number, the trained
    prompts' own accuracy on the same subtask and dev examples."""
    if s is None or not s.subtasks:
        return []
    rows = [
        [
            f.name,
            "balanced" if f.balanced else "plain",
            num(f.top1),
            num(f.top1pct_mean),
            num(f.prompt_accuracy) if f.prompt_accuracy is not None else "n/a",
        ]
        for f in s.subtasks
    ]
    return [
        Raw("<h3>Neurons vs the prompts' own accuracy, per binary subtask</h3>"),
        para(
            "A neuron's predictivity is a binary accuracy on one subtask; the comparable number is the "
            "trained prompts' own accuracy on the same subtask and dev examples (weighted the same way), "
            "not their accuracy over all classes.",
            "small",
        ),
        table(
            [
                "subtask",
                "weighting",
                ("top-1 neuron", "num"),
                ("mean of the top 1%", "num"),
                ("prompts' own accuracy", "num"),
            ],
            rows,
            cls="compact",
        ),
    ]


def _summary_notes(data: ReportData) -> list[str]:
    assert data.neurons is not None
    s = data.neurons.summary
    extra = []
    if s is not None and s.auroc_top1 is not None:
        extra.append(
            f"threshold-free AUROC predictivity: top-1 {fnum(s.auroc_top1)}, "
            f"top 1% {fnum(s.auroc_top1pct_mean)}"
        )
    st = s.seed_stability if s is not None else None
    if st is not None:
        extra.append(
            f"seed stability of the top {fpct(st.rho, 0)}: mean pairwise Jaccard "
            f"{fnum(st.jaccard_mean, 3)}, overlap {fnum(st.overlap_mean, 3)}"
        )
    accs = [p.dev_accuracy for p in data.neurons.prompts if isinstance(p.dev_accuracy, (int, float))]
    if accs:
        extra.append(
            "the prompts' own dev accuracy over all classes: "
            + ", ".join(f"{a:.4f}" for a in accs)
            + " (not comparable with a neuron's binary predictivity when there are more than 2 classes: "
            "see the per-subtask table)"
        )
    return extra


def section_layers(data: ReportData, ctx: Context) -> Section | None:
    if data.neurons is None:
        return None
    sn = data.neurons.neurons
    counts = {rho: [int(c) for c in sn.mask(rho, per_layer=False).sum(1)] for rho in (0.01, 0.02, 0.05)}
    sc = scores(data)
    rows = [
        [
            f"layer {layer}",
            *[num(counts[r][layer], 0) for r in counts],
            num(float(sc[layer].max())),
            num(float(np.percentile(sc[layer], 99))),
            num(float(np.median(sc[layer]))),
        ]
        for layer in range(sn.n_layers)
    ]
    headers: list[str | tuple[str, str]] = [
        "layer",
        *[(f"top {r:.0%}", "num") for r in counts],
        ("max", "num"),
        ("99th pct.", "num"),
        ("median", "num"),
    ]
    body = [
        para(
            "How the most predictive neurons spread over the layers, when the top fraction is taken over all "
            f"{sn.n_layers} × {sn.d_ff} neurons at once (the per-layer quota of the paper gives every layer "
            "the same count)."
        ),
        figure(plots.layer_distribution(counts, sc), "skill neurons per layer"),
        table(headers, rows, sortable=True, tid="layers"),
    ]
    return Section("layers", "Skill neurons per layer", "".join(body), "Per layer")


def section_map(data: ReportData, ctx: Context) -> Section | None:
    if data.neurons is None:
        return None
    marks = [(t.layer, t.index) for t in top_neurons(data, ctx.config.top)]
    body = [
        para(
            "Every neuron's predictivity, layer by layer: in neuron order (circles: the top neurons listed "
            "below), and with each layer's neurons sorted, which shows how many neurons of each layer are "
            "predictive."
        ),
        figure(plots.predictivity_map(scores(data), marks), "layer by neuron predictivity map"),
    ]
    return Section("map", "Layer × neuron predictivity", "".join(body), "Map")


def _best_position_counts(data: ReportData, rho: float, T: int) -> np.ndarray:
    """[L, T]: how many of the global top ``rho`` skill neurons are most predictive at each position."""
    assert data.neurons is not None
    sn = data.neurons.neurons
    mask = sn.mask(rho, per_layer=False)
    stacked = torch.stack([r.scores for r in sn.rankings.values()])  # [S, L, N]
    which = stacked.argmax(0, keepdim=True)
    best = torch.stack([sn.best_position[s.name] for s in sn.subtasks]).gather(0, which)[0]  # [L, N]
    counts = np.zeros((sn.n_layers, max(T, int(best.max()) + 1)), dtype=float)
    for layer, i in mask.nonzero().tolist():
        counts[layer, int(best[layer, i])] += 1
    return counts[:, :T] if T else counts


def section_positions(data: ReportData, ctx: Context) -> Section | None:
    if data.neurons is None:
        return None
    n = data.neurons
    names = n.position_names
    rho = 0.01
    counts = _best_position_counts(data, rho, len(names))
    if not names:
        names = [str(t) for t in range(counts.shape[1])]
    top_mean = None
    k = max(1, round(0.01 * n.neurons.d_ff))
    if n.per_position is not None and n.per_position.shape[2] == len(names):
        mean = n.per_position.mean(0)  # [L, T, N]
        top_mean = mean.topk(k, dim=-1).values.mean(-1).numpy()
    body = [
        para(
            "Which prompt positions carry the skill: per layer and prompt position, the mean predictivity of "
            f"the {k} most predictive neurons there (averaged over prompts), and where each of the global "
            f"top {rho:.0%} skill neurons is most predictive."
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
