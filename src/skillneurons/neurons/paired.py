"""Paired held-out comparisons: each ranking example's part in a held-out figure (REFERENCE.md section 10).

The held-out figures of :mod:`~skillneurons.neurons.crossfit` are fold-weighted means of fold
accuracies, computed from counts. Two scorers (the trained prompt and a control: the pooled text
tokens, a random prompt, a hand-written prompt) are measured on the SAME ranking examples and folds,
so their comparison should be paired. This module recomputes, for the neurons that cross-fitting
selected for fold f (on the other folds), each of fold f's examples' contribution ``e_x`` to the
held-out figure, such that ``mean(e)`` over the ranking split IS the figure (checked to 1e-9 against
the counts: :func:`check_examples`); :func:`~skillneurons.evidence.paired_difference` then compares two
scorers' ``e`` example by example.

For a selected neuron (subtask ``s``, layer, position, neuron, direction) and an example ``x`` of fold
``f`` with label ``y``: ``correct_x`` = 1 when the neuron's side (above its baseline, or not, in the
selected direction) is the side of ``s`` that ``y`` belongs to, 0 otherwise (and for a class on
neither side of ``s``); ``e_x = correct_x * w[f, s, y]`` with ``n_f`` fold f's examples and

- plain accuracy: ``w = n_f / (n_pos,f + n_neg,f)`` for a class on either side (so the fold's mean of
  ``e`` is ``(TP + TN) / (n_pos + n_neg)``);
- balanced: ``w = n_f / (2 n_pos,f)`` on the positive side, ``n_f / (2 n_neg,f)`` on the negative
  (the fold's mean is ``(TP / n_pos + TN / n_neg) / 2``).

The fold-weighted mean of the folds' accuracies (weights ``n_f``) is then the mean of ``e`` over the
split. The top-``rho`` figure's ``e_x`` is the mean of ``e_x`` over the ``k`` selected neurons.

Cost: one more forward pass over the ranking split per prompt (a prompt's pooled text-token controls
share its pass), reading ``F x (1 + k)`` activations an example; memory ``[n]`` float64 per figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from skillneurons.data import Task
from skillneurons.distributed import all_reduce_sum, world_size
from skillneurons.errors import ConfigError
from skillneurons.neurons.collect import Positions, activation_batches
from skillneurons.neurons.crossfit import FoldSelection, PromptFolds
from skillneurons.neurons.ranking import Subtask
from skillneurons.neurons.stats import FoldPlan
from skillneurons.prompts.model import PromptModel

__all__ = ["Scorer", "check_examples", "example_weights", "heldout_examples"]


@dataclass
class Scorer:
    """One set of selected neurons to measure example by example.

    Attributes:
        kind: ``prompt`` (the prompt positions) or ``pooled`` (the text tokens, mean- and max-pooled).
        offset: added to the selection's positions (a pooled control's slice: 0 mean, 1 max).
        selection: :func:`~skillneurons.neurons.crossfit.heldout_selection` of the scorer's folds.
        baseline: [L, T, N] float64, the baselines of ``kind`` (pass 1's means).
    """

    kind: Positions
    offset: int
    selection: FoldSelection
    baseline: Tensor


def _sides(subtasks: Sequence[Subtask], num_classes: int) -> Tensor:
    """[S, C] int8: 1 for a class on the positive side, 0 negative, -1 neither."""
    side = torch.full((len(subtasks), num_classes), -1, dtype=torch.int8)
    for i, s in enumerate(subtasks):
        side[i, list(s.positive)] = 1
        side[i, list(s.negative)] = 0
    return side


def example_weights(plan: FoldPlan, labels: Tensor, subtasks: Sequence[Subtask], num_classes: int) -> Tensor:
    """[F, S, C] float64 ``w[f, s, y]`` of the module's formula (0 for a class on neither side)."""
    F = plan.folds
    n = torch.zeros(F, num_classes, dtype=torch.float64)
    n.index_put_(
        (plan.fold, labels.to(torch.int64)), torch.ones(len(labels), dtype=torch.float64), accumulate=True
    )
    n_f = n.sum(1)
    w = torch.zeros(F, len(subtasks), num_classes, dtype=torch.float64)
    for i, s in enumerate(subtasks):
        pos, neg = list(s.positive), list(s.negative)
        n_pos, n_neg = n[:, pos].sum(1), n[:, neg].sum(1)
        if s.balanced:
            w[:, i, pos] = (n_f / (2 * n_pos).clamp(min=1)).unsqueeze(1)
            w[:, i, neg] = (n_f / (2 * n_neg).clamp(min=1)).unsqueeze(1)
        else:
            both = (n_f / (n_pos + n_neg).clamp(min=1)).unsqueeze(1)
            w[:, i, pos] = both
            w[:, i, neg] = both
    return w


@torch.inference_mode()
def heldout_examples(
    model: PromptModel,
    dev: Task,
    plan: FoldPlan,
    scorers: Sequence[Scorer],
    subtasks: Sequence[Subtask],
    *,
    batch_size: int = 64,
    precision: str = "auto",
    progress: bool = False,
    desc: str = "pass 3 (dev, paired)",
    out_device: torch.device | None = None,
) -> list[tuple[Tensor, Tensor]]:
    """One pass over ``dev``: per scorer, ``(e_top1 [n], e_topk [n])`` float64 (the module's ``e_x``;
    their means are the scorer's held-out top-1 and top-``rho`` figures). ``out_device``: where the
    activations are gathered (find's statistics device). Data parallel: each rank fills its examples
    and the arrays are summed on the model's device (NCCL reduces no CPU tensors)."""
    if plan.size != len(dev):
        raise ConfigError(
            f"the fold plan covers {plan.size} examples, the dev split has {len(dev)}: make it from dev"
        )
    labels = plan.labels.to(torch.int64)
    w = example_weights(plan, labels, subtasks, dev.num_classes)
    side = _sides(subtasks, dev.num_classes)
    kinds = tuple(dict.fromkeys(sc.kind for sc in scorers))
    out = [
        (torch.zeros(len(dev), dtype=torch.float64), torch.zeros(len(dev), dtype=torch.float64))
        for _ in scorers
    ]
    for acts, _, _, index in activation_batches(
        model,
        dev,
        positions=kinds,
        batch_size=batch_size,
        precision=precision,
        progress=progress,
        desc=desc,
        out_device=out_device,
    ):
        f = plan.fold[index]  # [B]
        y = labels[index].unsqueeze(1)  # [B, 1]
        for sc, (e1, ek) in zip(scorers, out, strict=True):
            a = acts[sc.kind]  # [B, L, T, N]
            sel = sc.selection
            lay, pos, neu = sel.layer[f], sel.position[f] + sc.offset, sel.neuron[f]  # [B, 1 + k]
            b = torch.arange(len(index)).unsqueeze(1).expand_as(lay)
            dev_ = a.device
            v = a[b.to(dev_), lay.to(dev_), pos.to(dev_), neu.to(dev_)].to("cpu", torch.float64)
            above = v > sc.baseline[lay, pos, neu]  # the float64 comparison pass 2 makes exactly
            says_positive = above == sel.positive[f]
            sub = sel.subtask[f]
            sd = side[sub, y]
            correct = ((sd == 1) & says_positive) | ((sd == 0) & ~says_positive)
            e = correct.to(torch.float64) * w[f.unsqueeze(1), sub, y]
            e1[index] = e[:, 0]
            ek[index] = e[:, 1:].mean(1)
    if world_size() > 1:
        both = torch.stack([torch.stack(pair) for pair in out]).to(model.backbone.device)  # [P, 2, n]
        all_reduce_sum(both)  # disjoint shards: an exact sum
        out = [(row[0].cpu(), row[1].cpu()) for row in both]
    return out


def check_examples(folds: PromptFolds, selection: FoldSelection, e1: Tensor, ek: Tensor, what: str) -> None:
    """RuntimeError unless ``mean(e1)`` and ``mean(ek)`` equal the held-out figures computed from the
    counts (``folds.test`` at the selected neurons, fold-weighted) to 1e-9: the per-example pass and
    the streaming counts must agree before a paired comparison is made of them."""
    F = int(folds.test.shape[0])
    fi = torch.arange(F).unsqueeze(1).expand_as(selection.subtask)
    te = folds.test[fi, selection.subtask, selection.layer, selection.neuron].to(torch.float64)  # [F, 1+k]
    wt = folds.weight.to(torch.float64)
    want1 = float((te[:, 0] * wt).sum() / wt.sum())
    wantk = float((te[:, 1:].mean(1) * wt).sum() / wt.sum())
    got1, gotk = float(e1.mean()), float(ek.mean())
    if abs(got1 - want1) > 1e-9 or abs(gotk - wantk) > 1e-9:
        raise RuntimeError(
            f"{what}: the per-example pass gives held-out {got1:.12f} / {gotk:.12f}, the counts "
            f"{want1:.12f} / {wantk:.12f}; the paired comparison is withheld (please report this)"
        )
