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


def imbalanced(n: int, seed: int) -> Task:
    """``separable_task`` with half its negatives left out: 2/3 positive (fine_food: 65%)."""
    t = separable_task(n, seed=seed)
    neg = [i for i, y in enumerate(t.labels) if y == 0]
    return t.subset([i for i, y in enumerate(t.labels) if y == 1] + neg[: len(neg) // 2])


# ----------------------------------------------------------------------------------------------------
# the naive reference: per-example 0/1 indicators, numpy, one fold at a time


def naive_hits(gt: np.ndarray, y: np.ndarray, s: Subtask) -> tuple[np.ndarray, int]:
    """``(m [L, T, N], D)``: the accuracy of ``1[a > base]`` as a predictor of the positive side, on
    examples gt [n, ...], as the exact fraction m / D: plain (TP + TN) / n; balanced, the mean of the
    two sides' rates TP / n_pos and TN / n_neg, over the common denominator 2 * n_pos * n_neg."""
    pos, neg = np.isin(y, s.positive), np.isin(y, s.negative)
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    tp = gt[pos].sum(0).astype(np.int64)
    tn = n_neg - gt[neg].sum(0).astype(np.int64)
    if s.balanced:
        return tp * n_neg + tn * n_pos, 2 * n_pos * n_neg
    return tp + tn, n_pos + n_neg


def naive_acc(gt: np.ndarray, y: np.ndarray, s: Subtask) -> np.ndarray:
    """[L, T, N] float64: :func:`naive_hits` rounded once; balanced: the textbook
    ``0.5 * (P[a > base | pos] + P[a <= base | neg])`` to float64 rounding."""
    m, d = naive_hits(gt, y, s)
    acc = m.astype(np.float64) / d
    if s.balanced:
        pos, neg = np.isin(y, s.positive), np.isin(y, s.negative)
        textbook = 0.5 * (gt[pos].mean(0) + (1 - gt[neg]).mean(0))
        np.testing.assert_allclose(acc, textbook, rtol=0, atol=1e-15)
    return acc


def naive_select(
    gt: np.ndarray, y: np.ndarray, subtasks: list[Subtask], cast: type = np.float64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per subtask: training score [S, L, N] (max over positions), best position, direction (+1: above
    the baseline means the positive side)."""
    scores, best, sign = [], [], []
    for s in subtasks:
        acc = naive_acc(gt, y, s)
        m, d = naive_hits(gt, y, s)  # selected by max(m, D - m) / D, the integers compared exactly
        pred = np.maximum(m, d - m) / d
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
    def pred(g: np.ndarray, y: np.ndarray) -> np.ndarray:  # Pred = max(Acc, 1 - Acc), max over positions
        return np.stack([np.maximum(a, 1.0 - a).max(1) for a in (naive_acc(g, y, s) for s in subtasks)])

    stack = np.stack([pred(g, y) for g, y in zip(gts, ys, strict=True)])
    comb = (stack.mean(0) if how == "mean" else stack.min(0)).max(0).reshape(-1)
    k = max(1, round(rho * comb.size))
    return float(comb.max()), float(np.sort(comb)[::-1][:k].mean())


def indicators(pm: PromptModel, train: Task, dev: Task) -> np.ndarray:
    base = _naive_prompt_acts(pm, train).double().mean(0)
    return (_naive_prompt_acts(pm, dev).double() > base).numpy()


# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "rho", "classes", "score"),
    [
        ("mean", 0.01, 2, "accuracy"),
        ("min", 0.05, 2, "accuracy"),
        ("mean", 0.02, 3, "accuracy"),
        ("mean", 0.02, 2, "balanced"),
        ("min", 0.05, 2, "balanced"),
    ],
)
def test_heldout_equals_naive_fold_by_fold_reference(how: str, rho: float, classes: int, score: str) -> None:
    """The balanced cases rank on imbalanced dev labels (30 positive, 15 negative: 5 folds of 6 + 3)."""
    make = separable_task if classes == 2 else three_class
    train, dev = make(30, seed=1), (make(40, seed=2) if score == "accuracy" else imbalanced(60, seed=2))
    subtasks = decompose(classes, score=score)  # type: ignore[arg-type]
    assert all(s.balanced == (score == "balanced" or classes > 2) for s in subtasks)
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


def test_balanced_score_on_balanced_folds_is_the_accuracy_exactly() -> None:
    """20 + 20 ranking examples in 5 folds of 4 + 4: every side of every fold (and of the other
    folds) is even, so the balanced held-out and in-sample figures and their nulls ARE the plain
    ones, bit for bit; so is the prompt's own accuracy on the subtask."""
    from skillneurons.neurons.ranking import prediction_accuracy

    train, dev = separable_task(30, seed=1), separable_task(40, seed=2)
    plan = FoldPlan.make(dev.labels, 2, 5, 6, seed=3)
    y, fo = np.asarray(dev.labels), plan.fold.numpy()
    assert all(np.bincount(y[fo == f]).tolist() == [4, 4] for f in range(5))
    pm = _pm(0, 2)
    figs = []
    for score in ("accuracy", "balanced"):
        subtasks = decompose(2, score=score)  # type: ignore[arg-type]
        sc = score_prompt(pm, train, dev, subtasks, batch_size=7, plan=plan)
        figs.append((sc, set_figures([PromptFolds.from_tensors(sc, "cf.")], "mean", 0.02)))
        assert prediction_accuracy(sc["confusion"], subtasks[0]) == prediction_accuracy(
            sc["confusion"], decompose(2)[0]
        )
    (plain_sc, plain), (bal_sc, bal) = figs
    assert torch.equal(plain_sc["pred.1_vs_0"], bal_sc["pred.1_vs_0"])
    for key in ("in_top1", "in_topk", "ho_top1", "ho_topk"):
        assert getattr(plain, key) == getattr(bal, key), key
    for key in ("null_in_top1", "null_in_topk", "null_ho_top1", "null_ho_topk"):
        assert np.array_equal(getattr(plain, key), getattr(bal, key)), key


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


def test_float32_comparison_with_the_rounded_down_baseline_is_exact() -> None:
    """#20: pass 2 compares float32 activations with the baseline rounded down to float32; at and
    around every baseline (the float32 neighbours of a float64 mean) it equals the float64 test."""
    g = torch.Generator().manual_seed(0)
    L, T, N = 2, 3, 64
    base = BaselineStats(L, T, N)
    base.update(torch.randn(7, L, T, N, generator=g, dtype=torch.float64) / 3)  # means off the float32 grid
    m32 = base.mean().to(torch.float32)
    inf = torch.full_like(m32, float("inf"))
    near = torch.stack(
        [m32, torch.nextafter(m32, inf), torch.nextafter(m32, -inf), torch.randn(L, T, N, generator=g)]
    )
    fast = PredictivityStats(base, 2)
    fast.update(near, [0, 1, 0, 1])
    slow = PredictivityStats(base, 2)
    slow.update(near.double(), [0, 1, 0, 1])  # the float64 path
    assert torch.equal(fast.above, slow.above)
    assert torch.equal(fast.above.sum(0), (near.double() > base.mean()).sum(0))


# ----------------------------------------------------------------------------------------------------
# adaptive baseline (#20 section 2)


def test_baseline_options_off_are_todays_pass_1_and_a_sample_is_its_examples() -> None:
    from skillneurons.data import stratified_sample
    from skillneurons.neurons.collect import baseline_pass

    pm, train, dev = _pm(), separable_task(30, seed=1), separable_task(20, seed=2)
    subtasks = decompose(2)
    today = baseline_pass(pm, train, batch_size=7)[0]
    off = score_prompt(pm, train, dev, subtasks, batch_size=7, baseline_examples=None, baseline_stop=None)
    assert int(off["baseline_count"]) == 30 and torch.equal(off["baseline"], today.mean())
    got = score_prompt(pm, train, dev, subtasks, batch_size=7, baseline_examples=12, seed=4)
    keep = stratified_sample(train.labels, 12, np.random.default_rng(4)).tolist()
    want = baseline_pass(pm, train.subset(keep), batch_size=7)[0]
    assert int(got["baseline_count"]) == 12 and torch.equal(got["baseline"], want.mean())


def test_adaptive_baseline_stops_by_its_rule() -> None:
    from skillneurons.neurons.collect import baseline_pass

    pm, train = _pm(), separable_task(30, seed=1)
    early = baseline_pass(pm, train, batch_size=4, stop_fraction=0.99, min_examples=8)[0]
    assert early.count == 8  # the first batch once 8 are seen: nearly nothing lies within one SE
    never = baseline_pass(pm, train, batch_size=4, stop_fraction=1e-12, min_examples=8)[0]
    assert never.count == 30
    acts = _naive_prompt_acts(pm, train).double()
    base = BaselineStats(*acts.shape[1:])
    base.update(acts[:20])
    se = base.std() / 20**0.5
    want = float(((acts[20:] - base.mean()).abs() < se).double().mean())
    assert base.within_se_fraction(acts[20:]) == pytest.approx(want, abs=1e-12)
    with pytest.raises(ConfigError):
        from skillneurons.neurons.config import FindConfig

        FindConfig(baseline_stop=1.5)


@pytest.mark.parametrize("per_class", [(9, 5), (40_000, 30_000)], ids=["int32", "int64"])
def test_balanced_selection_is_the_exact_fraction(per_class: tuple[int, int]) -> None:
    """The training-fold score of a balanced subtask is max(m, D - m) / D of the exact fraction
    m / D = (TP / n_pos + TN / n_neg) / 2, rounded once, also where D = 2 n_pos n_neg exceeds int32
    (40,000 x 30,000 on the other fold); the held-out figure is measured in the direction selected."""
    from fractions import Fraction

    from skillneurons.neurons.crossfit import fold_reduce

    n0, n1 = per_class
    F, (L, T, N) = 2, (1, 3, 4)
    g = torch.Generator().manual_seed(0)
    n = torch.tensor([[n0, n1]] * F)
    counts = torch.stack(  # [F, C, L*T*N]: examples above the baseline per fold and class
        [
            torch.stack([torch.randint(0, k + 1, (L * T * N,), generator=g) for k in (n0, n1)])
            for _ in range(F)
        ]
    )
    (s,) = decompose(2, score="balanced")
    train, test, _ = fold_reduce(counts, n, [s], (L, T, N))

    def acc(c: torch.Tensor, x: int) -> Fraction:  # 0.5 * (P[above | y=1] + P[not above | y=0])
        return (Fraction(int(c[1, x]), n1) + Fraction(n0 - int(c[0, x]), n0)) / 2

    for f in range(F):
        other = counts[1 - f]  # F = 2: the other fold is the training fold
        for i in range(N):
            accs = [acc(other, t * N + i) for t in range(T)]
            preds = [max(a, 1 - a) for a in accs]
            t = preds.index(max(preds))  # the first best position
            assert float(train[f, 0, 0, i]) == float(preds[t])
            held = acc(counts[f], t * N + i)
            assert float(test[f, 0, 0, i]) == pytest.approx(
                float(held if accs[t] >= 0.5 else 1 - held), abs=1e-15
            )


def test_balanced_interval_rests_on_the_effective_number_of_examples() -> None:
    """A balanced figure (mean of two sides' rates) varies like a plain accuracy on
    4 n_pos n_neg / (n_pos + n_neg) examples: its Wilson interval uses that n, not the split size."""
    from skillneurons.neurons.find import interval_examples
    from skillneurons.neurons.results import PromptInfo

    def info(counts: list[int]) -> PromptInfo:
        return PromptInfo("p", 0, 0, 0.7, sum(counts), len(counts), 0.7, None, counts)

    five = decompose(5)  # one class against the rest, balanced for 3+ classes
    assert all(s.balanced for s in five)
    assert interval_examples(info([80] * 5), five) == 256
    assert interval_examples(info([200, 200]), decompose(2)) == 400  # plain accuracy: the split
    assert interval_examples(info([100, 300]), decompose(2)) == 400
    assert interval_examples(info([100, 300]), decompose(2, score="balanced")) == 300
    assert interval_examples(info([200, 200]), decompose(2, score="balanced")) == 400
    old = PromptInfo("p", 0, 0, 0.7, 400, 5, 0.7)  # a summary written before class counts
    assert interval_examples(old, five) == 400


def naive_examples(
    gt: np.ndarray, y: np.ndarray, fo: np.ndarray, subtasks: list[Subtask], rho: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each example's part in the held-out top-1 / top-rho figure of one prompt, from 0/1 indicators:
    the neurons selected on the other folds (as naive_heldout), right or wrong on the example, weighted
    so that a fold's mean is its plain or balanced accuracy."""
    F = int(fo.max()) + 1
    e1, ek = np.zeros(len(y)), np.zeros(len(y))
    for f in range(F):
        agg, best, sign = naive_select(gt[fo != f], y[fo != f], subtasks)
        comb, sub = agg.max(0).reshape(-1), agg.argmax(0).reshape(-1)
        order = np.argsort(-comb, kind="stable")
        k = max(1, round(rho * comb.size))
        N = gt.shape[3]
        idx = np.flatnonzero(fo == f)
        parts = np.zeros((len(idx), k))
        for j, flat in enumerate(order[:k]):
            s, layer, i = int(sub[flat]), int(flat // N), int(flat % N)
            st = subtasks[s]
            says_pos = gt[idx, layer, best[s, layer, i], i] == (sign[s, layer, i] > 0)
            yy = y[idx]
            is_pos, is_neg = np.isin(yy, st.positive), np.isin(yy, st.negative)
            right = (is_pos & says_pos) | (is_neg & ~says_pos)
            n_pos, n_neg = is_pos.sum(), is_neg.sum()
            if st.balanced:
                w = np.where(is_pos, len(idx) / (2 * n_pos), np.where(is_neg, len(idx) / (2 * n_neg), 0.0))
            else:
                w = np.where(is_pos | is_neg, len(idx) / (n_pos + n_neg), 0.0)
            parts[:, j] = right * w
        e1[idx], ek[idx] = parts[:, 0], parts.mean(1)
    return e1, ek


@pytest.mark.parametrize(
    ("classes", "score", "rho"), [(2, "accuracy", 0.01), (3, "accuracy", 0.02), (2, "balanced", 0.05)]
)
def test_paired_pass_gives_each_examples_part_in_the_heldout_figure(
    classes: int, score: str, rho: float
) -> None:
    """The third pass's per-example parts equal a naive fold-by-fold reference example by example,
    and their means are the held-out figures of the counts (the basis of the paired comparisons)."""
    make = separable_task if classes == 2 else three_class
    train, dev = make(30, seed=1), (make(40, seed=2) if score == "accuracy" else imbalanced(60, seed=2))
    subtasks = decompose(classes, score=score)  # type: ignore[arg-type]
    plan = FoldPlan.make(dev.labels, classes, 5, 0, seed=3)
    pm = _pm(0, classes)
    sc = score_prompt(pm, train, dev, subtasks, batch_size=7, plan=plan, pooled=True, paired_rho=rho)
    cf = PromptFolds.from_tensors(sc, "cf.")
    assert cf.examples_top1 is not None and cf.examples_topk is not None
    y, fo = np.asarray(dev.labels), plan.fold.numpy()
    gt = indicators(pm, train, dev)
    want1, wantk = naive_examples(gt, y, fo, subtasks, rho)
    np.testing.assert_allclose(cf.examples_top1.numpy(), want1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cf.examples_topk.numpy(), wantk, rtol=0, atol=1e-12)
    ho1, hok = naive_heldout([gt], [y], [fo], subtasks, "mean", rho)
    assert float(cf.examples_top1.mean()) == pytest.approx(ho1, abs=1e-12)
    assert float(cf.examples_topk.mean()) == pytest.approx(hok, abs=1e-12)
    for t in range(2):  # the pooled controls, from the same pass
        pc = PromptFolds.from_tensors(sc, f"pooled.cf{t}.")
        got = set_figures([pc], "mean", rho)
        assert pc.examples_top1 is not None and pc.examples_topk is not None
        assert float(pc.examples_top1.mean()) == pytest.approx(got.ho_top1, abs=1e-12)
        assert float(pc.examples_topk.mean()) == pytest.approx(got.ho_topk, abs=1e-12)
