"""Held-out predictivity by cross-fitting (#18 item 1): equals a naive fold-by-fold reference computed
from every example's stored activations with numpy loops, exactly; shards merge to one pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import separable_task
from skillneurons.data import Task
from skillneurons.errors import ConfigError
from skillneurons.neurons import PredictivityStats, decompose
from skillneurons.neurons.crossfit import PromptFolds, set_figures
from skillneurons.neurons.find import score_prompt
from skillneurons.neurons.ranking import Subtask
from skillneurons.neurons.stats import BaselineStats, FoldPlan
from skillneurons.prompts import PromptModel, SoftPrompt, build_head
from skillneurons.testing import tiny_model
from test_find import _naive_prompt_acts


def _pm(seed: int = 0, classes: int = 2) -> PromptModel:
    bb = tiny_model("bert")
    torch.manual_seed(seed)
    words = [["bad"], ["good"], ["ok"]][:classes]
    return PromptModel(
        bb, SoftPrompt.create(bb, 3, "normal", std=0.5), build_head("auto", bb, words), max_length=24
    )


def three_class(n: int, seed: int) -> Task:
    t = separable_task(n, seed=seed)
    labels = tuple((i * 7 + seed) % 3 for i in range(n))
    return Task(
        name="tiny-3",
        texts=t.texts,
        labels=labels,
        label_names=("a", "b", "c"),
        label_words=(("bad",), ("good",), ("ok",)),
    )


# ----------------------------------------------------------------------------------------------------
# the naive reference: per-example 0/1 indicators, numpy, one fold at a time


def naive_acc(gt: np.ndarray, y: np.ndarray, s: Subtask) -> np.ndarray:
    """[L, T, N] accuracy of ``1[a > base]`` as a predictor of the positive side, on examples gt [n, ...]."""
    pos, neg = np.isin(y, s.positive), np.isin(y, s.negative)
    tp = gt[pos].sum(0).astype(np.int64)
    tn = neg.sum() - gt[neg].sum(0).astype(np.int64)
    if s.balanced:
        return 0.5 * (tp.astype(np.float64) / pos.sum() + tn.astype(np.float64) / neg.sum())
    return (tp + tn).astype(np.float64) / (pos.sum() + neg.sum())


def naive_select(
    gt: np.ndarray, y: np.ndarray, subtasks: list[Subtask], cast: type = np.float64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per subtask: training score [S, L, N] (max over positions), best position, direction (+1: above
    the baseline means the positive side)."""
    scores, best, sign = [], [], []
    for s in subtasks:
        acc = naive_acc(gt, y, s)
        pred = np.maximum(acc, 1.0 - acc)
        t = pred.argmax(1)  # numpy: the first maximum
        a = np.take_along_axis(acc, t[:, None, :], 1)[:, 0]
        scores.append(np.take_along_axis(pred, t[:, None, :], 1)[:, 0].astype(cast).astype(np.float64))
        best.append(t)
        sign.append(np.where(a >= 1.0 - a, 1, -1))
    return np.stack(scores), np.stack(best), np.stack(sign)


def naive_heldout(
    gts: list[np.ndarray],
    ys: list[np.ndarray],
    folds: list[np.ndarray],
    subtasks: list[Subtask],
    how: str,
    rho: float,
    cast: type = np.float64,
) -> tuple[float, float]:
    """Held-out top-1 and top-rho mean over prompts (each with its own examples and folds)."""
    F = int(folds[0].max()) + 1
    per1 = np.zeros((len(gts), F))
    perk = np.zeros((len(gts), F))
    for f in range(F):
        sel = [
            naive_select(g[fo != f], y[fo != f], subtasks, cast)
            for g, y, fo in zip(gts, ys, folds, strict=True)
        ]
        stack = np.stack([s[0] for s in sel])
        agg = stack.mean(0) if how == "mean" else stack.min(0)
        comb = agg.max(0).reshape(-1)
        sub = agg.argmax(0).reshape(-1)
        order = np.argsort(-comb, kind="stable")
        k = max(1, round(rho * comb.size))
        for p, (g, y, fo) in enumerate(zip(gts, ys, folds, strict=True)):
            _, best, sign = sel[p]
            N = g.shape[3]
            vals = []
            for flat in order[:k]:
                s, layer, i = int(sub[flat]), int(flat // N), int(flat % N)
                acc = naive_acc(g[fo == f], y[fo == f], subtasks[s])[layer, best[s, layer, i], i]
                v = acc if sign[s, layer, i] > 0 else 1.0 - acc
                vals.append(float(np.float64(v).astype(cast)))
            per1[p, f], perk[p, f] = vals[0], float(np.mean(vals))
    w = np.stack([np.bincount(fo, minlength=F) for fo in folds]).astype(np.float64)
    return float(((per1 * w).sum(1) / w.sum(1)).mean()), float(((perk * w).sum(1) / w.sum(1)).mean())


def naive_in_sample(
    gts: list[np.ndarray], ys: list[np.ndarray], subtasks: list[Subtask], how: str, rho: float
):
    stack = np.stack([naive_select(g, y, subtasks)[0] for g, y in zip(gts, ys, strict=True)])
    comb = (stack.mean(0) if how == "mean" else stack.min(0)).max(0).reshape(-1)
    k = max(1, round(rho * comb.size))
    return float(comb.max()), float(np.sort(comb)[::-1][:k].mean())


def indicators(pm: PromptModel, train: Task, dev: Task) -> np.ndarray:
    base = _naive_prompt_acts(pm, train).double().mean(0)
    return (_naive_prompt_acts(pm, dev).double() > base).numpy()


# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("how", "rho", "classes"), [("mean", 0.01, 2), ("min", 0.05, 2), ("mean", 0.02, 3)])
def test_heldout_equals_naive_fold_by_fold_reference(how: str, rho: float, classes: int) -> None:
    make = separable_task if classes == 2 else three_class
    train, dev = make(30, seed=1), make(40, seed=2)
    subtasks = decompose(classes)
    plan = FoldPlan.make(dev.labels, classes, 5, 0, seed=3)
    pms = [_pm(0, classes), _pm(1, classes)]
    folds, gts = [], []
    for pm in pms:
        sc = score_prompt(pm, train, dev, subtasks, batch_size=7, plan=plan)
        folds.append(PromptFolds.from_tensors(sc, "cf."))
        gts.append(indicators(pm, train, dev))
        # the in-sample figures from the fold counts are the usual scores
        for k, s in enumerate(subtasks):
            torch.testing.assert_close(folds[-1].in_sample[k], sc[f"pred.{s.name}"].amax(1), rtol=0, atol=0)
    y, fo = np.asarray(dev.labels), plan.fold.numpy()
    got = set_figures(folds, how, rho)
    assert (got.ho_top1, got.ho_topk) == naive_heldout(gts, [y, y], [fo, fo], subtasks, how, rho)
    assert (got.in_top1, got.in_topk) == naive_in_sample(gts, [y, y], subtasks, how, rho)
    assert got.null_in_top1 is None and got.null_ho_top1 is None


def test_folds_are_stratified_seeded_and_refuse_too_few() -> None:
    y = [0] * 23 + [1] * 17
    a, b = FoldPlan.make(y, 2, 5, 3, seed=0), FoldPlan.make(y, 2, 5, 3, seed=0)
    assert a.same_as(b) and not a.same_as(FoldPlan.make(y, 2, 5, 3, seed=1))
    for f in range(5):
        per_class = np.bincount(np.asarray(y)[a.fold.numpy() == f], minlength=2)
        assert set(per_class.tolist()) <= {3, 4, 5} and per_class[1] in (3, 4)
    with pytest.raises(ConfigError, match="use --folds 3"):
        FoldPlan.make([0, 0, 0, 1, 1, 1, 1], 2, 5, 0, seed=0)
    with pytest.raises(ConfigError, match="at least 2 folds"):
        FoldPlan.make(y, 2, 1, 0, seed=0)


def test_fold_counts_of_merged_shards_equal_one_pass() -> None:
    g = torch.Generator().manual_seed(0)
    L, T, N, n = 2, 3, 5, 37
    base = BaselineStats(L, T, N)
    base.update(torch.randn(20, L, T, N, generator=g))
    acts = torch.randn(n, L, T, N, generator=g)
    y = torch.tensor([i % 3 for i in range(n)])
    plan = FoldPlan.make(y, 3, 4, 6, seed=5)
    one = PredictivityStats(base, 3, plan=plan)
    one.update(acts, y, torch.arange(n))
    order = torch.randperm(n, generator=g)
    shards = [PredictivityStats(base, 3, plan=plan) for _ in range(3)]
    for k, part in enumerate(order.chunk(3)):
        shards[k].update(acts[part], y[part], part)
    merged = shards[0] + shards[1] + shards[2]
    assert merged.crossfit is not None and one.crossfit is not None
    for key, v in one.crossfit.state_dict().items():
        assert torch.equal(merged.crossfit.state_dict()[key], v), key
    assert torch.equal(one.crossfit.counts.to(torch.int64).sum(0), one.above)
    again = PredictivityStats.from_state_dict(merged.state_dict())
    assert again.crossfit is not None and torch.equal(again.crossfit.null, one.crossfit.null)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="fold plan"):
        PredictivityStats(base, 3, plan=plan).update(acts[:2], y[:2], torch.tensor([1, 0]))
