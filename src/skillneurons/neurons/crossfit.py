"""Held-out predictivity by cross-fitting and its permutation null, from pass-2 fold counts.

REFERENCE.md section 10. The ranking (dev) examples are dealt into F folds
(:class:`~skillneurons.neurons.stats.FoldPlan`); :class:`~skillneurons.neurons.stats.CrossFitCounts`
holds, per fold and class, how many examples lie above each neuron's baseline. For every fold f:

1. **select** on the other folds (their counts summed): every (layer, neuron) gets its best
   (subtask, position) and the DIRECTION there (above the baseline means the positive side when the
   training-fold accuracy ``Acc >= 1 - Acc``, else the negative side); the top-1 neuron and the top
   ``rho`` fraction are chosen by that training-fold predictivity;
2. **measure** them on fold f in the direction selected (``Acc`` or ``1 - Acc`` on fold f, never
   ``max(Acc, 1 - Acc)`` again, which would re-introduce the selection bias).

The folds are combined by their number of examples (an example-weighted mean); several prompts
(seeds): the neurons are selected by the aggregated (mean or min over prompts) training-fold scores,
each prompt is measured on its own held-out fold, and the held-out figure is the mean over prompts.
The in-sample figures (selected and measured on the same examples) are the ones of
:func:`~skillneurons.neurons.ranking.per_prompt` / :func:`~skillneurons.neurons.ranking.aggregate`.

Under permutation r of the labels (within folds) the same figures give the null distribution; class
0's counts are the label-free totals minus the other classes' (stored: classes 1..C-1).

Ties, everywhere: the first position, the first subtask, then the lower flat address
``layer * N + index`` (a stable sort), as :class:`~skillneurons.neurons.ranking.SkillRanking`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from skillneurons.errors import ConfigError
from skillneurons.neurons.ranking import Subtask
from skillneurons.neurons.stats import CrossFitCounts, threshold_accuracy

__all__ = [
    "FoldSelection",
    "PromptFolds",
    "SetFigures",
    "fold_reduce",
    "heldout_figures",
    "heldout_selection",
    "in_sample_figures",
    "prompt_folds",
    "set_figures",
    "subtask_accuracy",
    "top_count",
]


def top_count(n: int, rho: float) -> int:
    """How many neurons "the top ``rho``" of ``n`` is: ``max(1, round(rho * n))``."""
    return max(1, round(rho * n))


def _side_sum(x: Tensor, side: Sequence[int]) -> Tensor:
    """``x[..., side, :]`` summed over the side's classes (a view for one class)."""
    if len(side) == 1:
        return x[..., side[0], :]
    return x[..., list(side), :].sum(-2)


def subtask_accuracy(counts: Tensor, n: Tensor, s: Subtask) -> Tensor:
    """Threshold accuracy of subtask ``s`` from ``counts`` [..., C, X] (examples above the baseline
    per class; int32 or int64) and ``n`` [..., C] (examples per class): float64 [..., X], plain or
    balanced, the same arithmetic as :meth:`~skillneurons.neurons.stats.PredictivityStats.accuracy`."""
    pos, neg = list(s.positive), list(s.negative)
    nn = n.to(torch.int64).unsqueeze(-1)
    n_pos, n_neg = _side_sum(nn, pos), _side_sum(nn, neg)
    tp = _side_sum(counts, pos)
    tn = n_neg.to(counts.dtype) - _side_sum(counts, neg)
    return threshold_accuracy(tp, tn, n_pos, n_neg, s.balanced)


def _first_best(score: Tensor, values: Tensor) -> Tensor:
    """[F, L, 1, N] int64: the first position t with ``values[:, :, t] == score`` (``values`` [F, L,
    T, N], ``score`` its max over T): a loop over T on [F, L, N] slices is faster than an argmax over
    a middle dimension."""
    T = values.shape[2]
    best = torch.full(score.shape, T - 1, dtype=torch.int64)
    for t in range(T - 2, -1, -1):
        best.masked_fill_(values[:, :, t] == score, t)
    return best.unsqueeze(2)


def _select(c: Tensor, n: Tensor, s: Subtask, shape: tuple[int, int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """Per fold f, on the other folds: ``(score [F, L, N] float64, best position [F, L, 1, N],
    positive direction [F, L, N] bool)`` from the per-fold counts ``c`` [F, C, X] and ``n`` [F, C].
    The predictivity is ``max(m, D - m) / D``, integers compared exactly: plain ``m = TP + TN``,
    ``D = n_pos + n_neg``; balanced ``m = TP * n_neg + TN * n_pos``, ``D = 2 * n_pos * n_neg``
    (:func:`~skillneurons.neurons.stats.threshold_accuracy`'s numerator; int32 while ``D`` fits, and
    ``0 <= m <= D``, so no intermediate overflows: ``TP * n_neg <= n_pos * n_neg``)."""
    L, T, N = shape
    F = c.shape[0]
    pos, neg = list(s.positive), list(s.negative)
    nt = n.sum(0, keepdim=True) - n  # examples per class on the other folds
    n_pos, n_neg = nt[:, pos].sum(1).view(F, 1), nt[:, neg].sum(1).view(F, 1)
    if not s.balanced:
        d = _side_sum(c, pos) - _side_sum(c, neg)  # [F, X]: TP - (n_neg - TN) per fold
        d = d.sum(0, dtype=d.dtype).unsqueeze(0) - d  # on the other folds
        m = d + n_neg.to(d.dtype)
        tot = n_pos + n_neg
    else:  # int32 while every 2 * n_pos * n_neg fits (e.g. up to 65,000 examples, even ones)
        tot = 2 * n_pos * n_neg
        dt = torch.int32 if int(tot.max()) <= 2**31 - 1 else torch.int64
        tp, up = (_side_sum(c, side).to(dt) for side in (pos, neg))  # up: n_neg - TN
        tp, up = tp.sum(0, keepdim=True) - tp, up.sum(0, keepdim=True) - up
        m = tp * n_neg.to(dt) - up * n_pos.to(dt) + (n_neg * n_pos).to(dt)
    m = m.view(F, L, T, N)
    tot = tot.to(m.dtype).view(F, 1, 1, 1)
    pm = torch.maximum(m, tot - m)
    top = pm.amax(2)
    best = _first_best(top, pm)
    positive = 2 * m.gather(2, best).squeeze(2).to(torch.int64) >= tot.view(F, 1, 1)
    return top.to(torch.float64) / tot.view(F, 1, 1), best, positive


def fold_reduce(
    counts: Tensor,
    n: Tensor,
    subtasks: Sequence[Subtask],
    shape: tuple[int, int, int],
    selection: list[tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One prompt's per-fold selection scores and held-out accuracies.

    Args:
        counts: [F, C, L*T*N] (any integer dtype), examples above the baseline per fold and class.
        n: [F, C], examples per fold and class.
        shape: ``(L, T, N)``.

    Returns:
        ``(train, test, in_sample)``: ``train`` [F, S, L, N] float64, the predictivity on all folds
        but f, at the neuron's best position (:func:`_select`); ``test`` [F, S, L, N] float64, the
        accuracy on fold f at that position in the direction chosen on the other folds;
        ``in_sample`` [S, L, N] float64, the predictivity on all folds (max over positions:
        ``per_prompt`` of the usual scores, the same arithmetic).

    ``selection``, when given (a list), receives per subtask ``(position [F, L, N] int64, positive
    [F, L, N] bool)``: where and in which direction each neuron was selected on the other folds.
    """
    L, T, N = shape
    F, C = counts.shape[:2]
    # int16 while the split has at most 32,767 examples (every count, m and n - m fit): half the traffic
    c = counts.to(torch.int16 if int(n.sum()) <= 2**15 - 1 else torch.int32)
    total, ntot = c.sum(0, dtype=c.dtype), n.sum(0)
    c5 = c.view(F, C, L, T, N)
    trains, tests, ins = [], [], []
    for s in subtasks:
        score, best, positive = _select(c, n, s, shape)
        trains.append(score)
        if selection is not None:
            selection.append((best.squeeze(2), positive))
        at = c5.gather(3, best.unsqueeze(1).expand(F, C, L, 1, N)).reshape(F, C, L * N)
        a_te = subtask_accuracy(at, n, s).view(F, L, N)
        tests.append(torch.where(positive, a_te, 1.0 - a_te))
        acc = subtask_accuracy(total, ntot, s).view(L, T, N)
        ins.append(torch.maximum(acc, 1.0 - acc).amax(-2))
    return torch.stack(trains, 1), torch.stack(tests, 1), torch.stack(ins)


def _in_sample_only(counts: Tensor, n: Tensor, subtasks: Sequence[Subtask], shape: tuple[int, ...]) -> Tensor:
    """[S, L, N] predictivity (max over positions) from all-fold ``counts`` [C, LTN] and ``n`` [C]."""
    L, T, N = shape
    out = []
    for s in subtasks:
        acc = subtask_accuracy(counts, n, s).view(L, T, N)
        out.append(torch.maximum(acc, 1.0 - acc).amax(-2))
    return torch.stack(out)


@dataclass
class PromptFolds:
    """What one prompt contributes to the held-out figures and the null (reduced after its passes).

    Attributes:
        train, test: [F, S, L, N] float64 (see :func:`fold_reduce`).
        weight: [F] float64, examples per fold.
        in_sample: [S, L, N] float64.
        null_in_sample: [R, S, L, N] float64 or None.
        null_train, null_test: [R, F, S, L, N] float32 or None (the held-out null).
        position, positive: [F, S, L, N] int64 / bool or None: where (prompt position) and in which
            direction each neuron was selected on the other folds (:func:`fold_reduce`), for the
            per-example pass of :mod:`~skillneurons.neurons.paired`.
        examples_top1, examples_topk: [n] float64 or None: each ranking example's contribution to
            the held-out top-1 and top-``rho`` figures (their means are those figures:
            :func:`~skillneurons.neurons.paired.heldout_examples`), for paired comparisons.
    """

    train: Tensor
    test: Tensor
    weight: Tensor
    in_sample: Tensor
    null_in_sample: Tensor | None = None
    null_train: Tensor | None = None
    null_test: Tensor | None = None
    position: Tensor | None = None
    positive: Tensor | None = None
    examples_top1: Tensor | None = None
    examples_topk: Tensor | None = None

    def tensors(self, prefix: str) -> dict[str, Tensor]:
        out = {f"{prefix}{k}": v for k, v in vars(self).items() if v is not None}
        return out

    @classmethod
    def from_tensors(cls, scores: Mapping[str, Tensor], prefix: str) -> PromptFolds:
        keys = (
            "train",
            "test",
            "weight",
            "in_sample",
            "null_in_sample",
            "null_train",
            "null_test",
            "position",
            "positive",
            "examples_top1",
            "examples_topk",
        )
        return cls(**{k: scores.get(f"{prefix}{k}") for k in keys})  # type: ignore[arg-type]


def prompt_folds(
    cf: CrossFitCounts, subtasks: Sequence[Subtask], positions: slice | None = None
) -> PromptFolds:
    """Reduce one prompt's :class:`CrossFitCounts` (optionally a slice of its positions: a pooled
    control's mean or max) to a :class:`PromptFolds`."""
    counts = cf.counts.cpu()
    null = cf.null.cpu() if cf.null is not None else None
    if positions is not None:
        counts = counts[:, :, :, positions]
        null = null[..., positions, :] if null is not None else None
    F, C = counts.shape[:2]
    shape = tuple(int(x) for x in counts.shape[2:])
    n = cf.class_counts.cpu()
    sel: list[tuple[Tensor, Tensor]] = []
    train, test, ins = fold_reduce(counts.reshape(F, C, -1), n, subtasks, shape, sel)  # type: ignore[arg-type]
    out = PromptFolds(train, test, n.sum(1).to(torch.float64), ins)
    out.position = torch.stack([pos for pos, _ in sel], 1).to(torch.int16)  # positions: a prompt's length
    out.positive = torch.stack([d for _, d in sel], 1)
    if null is None:
        return out
    dt = torch.int16 if int(n.sum()) <= 2**15 - 1 else torch.int32
    g = counts.to(dt).sum(1, dtype=dt).reshape(F, -1)  # [F, LTN] label-free totals per fold
    R = null.shape[0]
    out.null_in_sample = torch.empty((R, len(subtasks), shape[0], shape[2]), dtype=torch.float64)
    if cf.heldout_null:
        out.null_train = torch.empty((R, *train.shape), dtype=torch.float32)
        out.null_test = torch.empty_like(out.null_train)
    for r in range(R):
        rest = null[r].to(dt).reshape(null.shape[1], C - 1, -1)  # [F', C-1, LTN]
        if cf.heldout_null:
            full = torch.cat([(g - rest.sum(1, dtype=dt)).unsqueeze(1), rest], 1)  # [F, C, LTN]
            tr, te, ins_r = fold_reduce(full, n, subtasks, shape)  # type: ignore[arg-type]
            out.null_train[r], out.null_test[r] = tr, te  # type: ignore[index]
            out.null_in_sample[r] = ins_r
        else:
            full = torch.cat([(g.sum(0, dtype=dt) - rest[0].sum(0, dtype=dt)).unsqueeze(0), rest[0]], 0)
            out.null_in_sample[r] = _in_sample_only(full, n.sum(0), subtasks, shape)
    return out


def _aggregate(scores: Sequence[Tensor], how: str) -> Tensor:
    if how not in ("mean", "min"):
        raise ConfigError(f"aggregation {how!r} is unknown: use 'mean' or 'min'")
    if len(scores) == 1:  # the mean or min of one value is that value
        return scores[0].to(torch.float64)
    stacked = torch.stack([s.to(torch.float64) for s in scores])
    if how == "mean":
        return stacked.mean(0)
    if how == "min":
        return stacked.amin(0)
    raise ConfigError(f"aggregation {how!r} is unknown: use 'mean' or 'min'")


def _best_subtask(agg: Tensor) -> tuple[Tensor, Tensor]:
    """``(max over subtasks [L*N], first subtask attaining it [L*N])`` of ``agg`` [S, L, N]."""
    flat = agg.reshape(agg.shape[0], -1)
    S = flat.shape[0]
    if S == 1:
        return flat[0], torch.zeros(flat.shape[1], dtype=torch.int64)
    best = flat.amax(0)
    which = torch.where(flat == best, torch.arange(S).unsqueeze(1), S).amin(0)
    return best, which


def _top(score: Tensor, k: int) -> tuple[int, Tensor]:
    """The best address and the top ``k`` addresses of ``score`` [M] in the stable order (descending,
    ties to the lower address), without sorting all M: those above the k-th value, then the lowest
    addresses equal to it."""
    first = int(score.argmax())  # the first maximum (documented)
    kth = score.topk(k).values[-1]
    above = (score > kth).nonzero().reshape(-1)
    ties = (score == kth).nonzero().reshape(-1)[: k - above.numel()]
    return first, torch.cat([above, ties])


def in_sample_figures(scores: Sequence[Tensor], how: str, rho: float) -> tuple[float, float]:
    """Top-1 and mean of the top ``rho`` of the prompts' [S, L, N] in-sample scores (aggregated over
    prompts, then the best subtask per neuron)."""
    best, _ = _best_subtask(_aggregate(scores, how))
    k = top_count(best.numel(), rho)
    return float(best.max()), float(best.topk(k).values.mean())


def heldout_figures(
    train: Sequence[Tensor], test: Sequence[Tensor], weight: Sequence[Tensor], how: str, rho: float
) -> tuple[float, float]:
    """Held-out top-1 and top-``rho`` mean: per fold select by the prompts' aggregated training-fold
    scores (``train[p]`` [F, S, L, N]), measure each prompt's ``test[p]`` on that fold, combine the
    folds weighted by ``weight[p]`` [F], then the mean over prompts."""
    F = train[0].shape[0]
    P = len(train)
    top1 = torch.zeros(P, F, dtype=torch.float64)
    topk = torch.zeros(P, F, dtype=torch.float64)
    for f in range(F):
        best, which = _best_subtask(_aggregate([t[f] for t in train], how))
        first, chosen = _top(best, top_count(best.numel(), rho))
        for p in range(P):
            te = test[p][f].reshape(test[p].shape[1], -1).to(torch.float64)
            top1[p, f] = te[which[first], first]
            topk[p, f] = te[which[chosen], chosen].mean()
    w = torch.stack([x.to(torch.float64) for x in weight])
    per_prompt1 = (top1 * w).sum(1) / w.sum(1)
    per_promptk = (topk * w).sum(1) / w.sum(1)
    return float(per_prompt1.mean()), float(per_promptk.mean())


@dataclass
class FoldSelection:
    """What cross-fitting selected for ONE prompt, per fold f (on the other folds), as
    :func:`heldout_figures` selects it: column 0 the top-1 neuron, columns 1..k the top ``rho``.

    Attributes:
        subtask, layer, position, neuron: [F, 1 + k] int64 (``position``: in the prompt's positions,
            or in a pooled control's slice).
        positive: [F, 1 + k] bool: above the baseline predicts the subtask's positive side.
    """

    subtask: Tensor
    layer: Tensor
    position: Tensor
    neuron: Tensor
    positive: Tensor


def heldout_selection(folds: PromptFolds, rho: float) -> FoldSelection:
    """The neurons :func:`heldout_figures` measures on each fold for the single prompt ``folds``
    (which must hold ``position`` and ``positive``: :func:`prompt_folds` keeps them)."""
    if folds.position is None or folds.positive is None:
        raise ConfigError("these fold reductions have no selection positions: score the prompt again")
    F, _, L, N = (int(x) for x in folds.train.shape)
    k = top_count(L * N, rho)
    cols = []
    for f in range(F):
        best, which = _best_subtask(folds.train[f])
        first, chosen = _top(best, k)
        addr = torch.cat([torch.tensor([first], dtype=torch.int64), chosen.to(torch.int64)])
        cols.append((which[addr], addr))
    sub = torch.stack([w for w, _ in cols])
    addr = torch.stack([a for _, a in cols])
    layer, neuron = addr // N, addr % N
    fidx = torch.arange(F).unsqueeze(1).expand_as(sub)
    pos = folds.position[fidx, sub, layer, neuron].to(torch.int64)
    positive = folds.positive[fidx, sub, layer, neuron]
    return FoldSelection(sub, layer, pos, neuron, positive)


@dataclass
class SetFigures:
    """The figures of one set of prompts (the trained prompts, or one control): in-sample and held-out
    top-1 and top-``rho`` mean, and their null distributions ([R] each, or None)."""

    in_top1: float
    in_topk: float
    ho_top1: float
    ho_topk: float
    null_in_top1: np.ndarray | None = None
    null_in_topk: np.ndarray | None = None
    null_ho_top1: np.ndarray | None = None
    null_ho_topk: np.ndarray | None = None


def set_figures(folds: Sequence[PromptFolds], how: str, rho: float) -> SetFigures:
    """All figures of a set of prompts (one per seed) from their :class:`PromptFolds`."""
    if not folds:
        raise ConfigError("no prompts to compute figures of: pass at least one")
    in1, ink = in_sample_figures([f.in_sample for f in folds], how, rho)
    ho1, hok = heldout_figures(
        [f.train for f in folds], [f.test for f in folds], [f.weight for f in folds], how, rho
    )
    out = SetFigures(in1, ink, ho1, hok)
    nulls = [f.null_in_sample for f in folds]
    if all(x is not None for x in nulls):
        R = min(int(x.shape[0]) for x in nulls)  # type: ignore[union-attr]
        vals = [in_sample_figures([x[r] for x in nulls], how, rho) for r in range(R)]  # type: ignore[index]
        out.null_in_top1 = np.array([v[0] for v in vals])
        out.null_in_topk = np.array([v[1] for v in vals])
    trs, tes = [f.null_train for f in folds], [f.null_test for f in folds]
    if all(x is not None for x in trs) and all(x is not None for x in tes):
        R = min(int(x.shape[0]) for x in trs)  # type: ignore[union-attr]
        w = [f.weight for f in folds]
        hv = [
            heldout_figures([x[r] for x in trs], [x[r] for x in tes], w, how, rho)  # type: ignore[index]
            for r in range(R)
        ]
        out.null_ho_top1 = np.array([v[0] for v in hv])
        out.null_ho_topk = np.array([v[1] for v in hv])
    return out
