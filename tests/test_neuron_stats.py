"""Streaming skill-neuron statistics agree exactly with a naive reference that stores everything.

The naive reference keeps all activations and applies REFERENCE.md section 2 literally:
``a_bar = mean over train``, ``Acc = mean over dev of 1[1[a > a_bar] == y]``, ``Pred = max(Acc, 1-Acc)``.
Data "quantized" to multiples of 1/4 makes every float64 sum exact whatever the summation order, so
even the baseline must agree bit for bit; on continuous data the baseline agrees to float64 rounding
and the counts (nothing lies within rounding distance of the mean) still agree exactly.
"""

from __future__ import annotations

import math

import pytest
import torch

import skillneurons.neurons.stats as stats_mod
from skillneurons.artifacts import load_artifact, save_artifact
from skillneurons.errors import ArtifactError, ConfigError, DataError
from skillneurons.neurons import (
    POOLED_POSITIONS,
    BaselineStats,
    PredictivityStats,
    baseline_stats_bytes,
    histogram_bytes,
    predictivity_stats_bytes,
)

L, T, N = 3, 4, 16
BATCH_SIZES = [1, 7, 33, 64, 5, 2, 50, 38]  # uneven, sums to 200


def make_data(
    num_classes: int, seed: int, quantized: bool, n: int = 200
) -> tuple[torch.Tensor, torch.Tensor]:
    """``acts`` [n, L, T, N] float32 with a class-dependent shift (so some neurons are predictive),
    labels [n]."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    labels[:num_classes] = torch.arange(num_classes)  # every class present
    if quantized:
        acts = torch.randint(-12, 13, (n, L, T, N), generator=g).float() / 4
    else:
        acts = torch.randn(n, L, T, N, generator=g) * 1.5 + 0.3
    shift = torch.zeros(L, T, N)
    shift[1, 2, 5] = 5.0
    shift[2, 0, 7] = -3.0
    acts = acts + labels.view(-1, 1, 1, 1).float() * shift
    return acts, labels


def batches(n: int, sizes: list[int] = BATCH_SIZES) -> list[slice]:
    out, start = [], 0
    for s in sizes:
        if start >= n:
            break
        out.append(slice(start, min(start + s, n)))
        start += s
    if start < n:
        out.append(slice(start, n))
    return out


def stream_baseline(acts: torch.Tensor) -> BaselineStats:
    b = BaselineStats(L, T, N)
    for s in batches(acts.shape[0]):
        b.update(acts[s])
    return b


def stream_pred(
    base: BaselineStats | torch.Tensor, acts: torch.Tensor, labels: torch.Tensor, C: int, **kw
) -> PredictivityStats:
    p = PredictivityStats(base, C, **kw)
    for s in batches(acts.shape[0]):
        p.update(acts[s], labels[s])
    return p


def naive_accuracy(acts, labels, base, pos, neg, balanced):
    sel = torch.isin(labels, torch.tensor(pos + neg))
    a, y = acts[sel].double(), torch.isin(labels[sel], torch.tensor(pos))
    correct = (a > base) == y.view(-1, 1, 1, 1)
    if balanced:
        # the mean of the two sides' rates, as the exact rational k1/n1 + k0/n0 over 2, rounded once
        n1, n0 = int(y.sum()), int((~y).sum())
        k1, k0 = correct[y].sum(0), correct[~y].sum(0)
        exact = (k1 * n0 + k0 * n1).double() / (2 * n1 * n0)
        textbook = 0.5 * (correct[y].double().mean(0) + correct[~y].double().mean(0))
        torch.testing.assert_close(exact, textbook, rtol=0, atol=1e-15)
        return exact
    return correct.double().mean(0)


def subtasks(C: int) -> list[tuple[list[int], list[int]]]:
    if C == 2:
        return [([1], [0]), ([0], [1])]
    return [([0], [2]), ([1], [0, 2]), ([2], [0, 1]), ([0, 1], [2])]


@pytest.fixture(params=[None, 500, 40], ids=["nochunk", "batchchunks", "layerchunks"])
def chunking(request, monkeypatch):
    """Run with the default chunk size, with small batch chunks, and with per-layer chunks."""
    if request.param is not None:
        monkeypatch.setattr(stats_mod, "MAX_CHUNK_ELEMENTS", request.param)
    return request.param


@pytest.mark.parametrize("C", [2, 3])
@pytest.mark.parametrize("quantized", [True, False])
def test_streaming_equals_naive(C, quantized, chunking):
    train, _ = make_data(C, seed=1, quantized=quantized)
    dev, dev_y = make_data(C, seed=2, quantized=quantized, n=173)

    base = stream_baseline(train)
    naive_mean = train.double().mean(0)
    if quantized:
        assert torch.equal(base.mean(), naive_mean)
    else:
        torch.testing.assert_close(base.mean(), naive_mean, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(base.std(), train.double().std(0, unbiased=False), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(base.std(unbiased=True), train.double().std(0), rtol=1e-10, atol=1e-12)
    assert base.count == 200

    stats = stream_pred(base, dev, dev_y, C)
    assert stats.class_counts.tolist() == torch.bincount(dev_y, minlength=C).tolist()
    for c in range(C):
        assert torch.equal(stats.above[c], (dev[dev_y == c].double() > naive_mean).sum(0))
    for pos, neg in subtasks(C):
        for balanced in (False, True):
            ref = naive_accuracy(dev, dev_y, naive_mean, pos, neg, balanced)
            acc = stats.accuracy(pos, neg, balanced=balanced)
            assert acc.shape == (L, T, N) and acc.dtype == torch.float64
            assert torch.equal(acc, ref)
            assert torch.equal(stats.predictivity(pos, neg, balanced=balanced), torch.maximum(ref, 1 - ref))
    # negative=None means "all other classes"
    assert torch.equal(stats.accuracy([1]), stats.accuracy([1], [c for c in range(C) if c != 1]))
    # a planted neuron is the most predictive
    pred = stats.predictivity([1], [0])
    assert pred.max() in (pred[1, 2, 5], pred[2, 0, 7])


@pytest.mark.parametrize("C", [2, 3])
@pytest.mark.parametrize("quantized", [True, False])
def test_shards_merge_to_the_single_run(C, quantized, chunking):
    train, _ = make_data(C, seed=3, quantized=quantized)
    dev, dev_y = make_data(C, seed=4, quantized=quantized)
    whole = stream_baseline(train)
    a, b = stream_baseline(train[:71]), stream_baseline(train[71:])
    merged = a + b
    assert merged.count == whole.count and a.count == 71  # __add__ leaves the operands alone
    if quantized:
        assert torch.equal(merged.mean(), whole.mean())
    else:
        torch.testing.assert_close(merged.mean(), whole.mean(), rtol=1e-13, atol=1e-13)
    base = merged.mean()  # every shard of pass 2 uses the same (merged) baseline
    kw = {"hist_bins": 8, "hist_range": (-3.0, 3.0)}
    single = stream_pred(base, dev, dev_y, C, **kw)
    p1 = stream_pred(base, dev[:120], dev_y[:120], C, **kw)
    p2 = stream_pred(base, dev[120:], dev_y[120:], C, **kw)
    p1.merge(p2)
    assert torch.equal(p1.class_counts, single.class_counts)
    assert torch.equal(p1.above, single.above)
    assert p1.hist is not None and single.hist is not None
    assert torch.equal(p1.hist, single.hist)
    for pos, neg in subtasks(C):
        for balanced in (False, True):
            assert torch.equal(p1.predictivity(pos, neg, balanced), single.predictivity(pos, neg, balanced))


@pytest.mark.parametrize("quantized", [True, False])
def test_balanced_equals_plain_accuracy_exactly_on_balanced_labels(quantized):
    """``find --score balanced``: with as many examples on each side the balanced accuracy IS the
    accuracy, bit for bit (one rounding of the same rational); on imbalanced labels they differ."""
    train, _ = make_data(2, seed=5, quantized=quantized)
    dev, _ = make_data(2, seed=6, quantized=quantized, n=90)
    base = stream_baseline(train)
    even = torch.tensor([i % 2 for i in range(90)])
    stats = stream_pred(base, dev, even, 2)
    assert stats.class_counts.tolist() == [45, 45]
    for pos, neg in subtasks(2):
        assert torch.equal(stats.accuracy(pos, neg, balanced=True), stats.accuracy(pos, neg))
        assert torch.equal(stats.predictivity(pos, neg, balanced=True), stats.predictivity(pos, neg))
    skew = (torch.arange(90) % 3 != 0).long()  # 60 positive, 30 negative
    stats = stream_pred(base, dev, skew, 2)
    ref = naive_accuracy(dev, skew, base.mean(), [1], [0], True)
    assert torch.equal(stats.accuracy([1], [0], balanced=True), ref)
    assert not torch.equal(ref, stats.accuracy([1], [0]))
    # a neuron always above its baseline: plain accuracy is the positive rate, balanced is chance
    const = torch.zeros(90, L, T, N)
    flat = stream_pred(torch.full((L, T, N), -1.0), const, skew, 2)
    assert float(flat.accuracy()[0, 0, 0]) == pytest.approx(60 / 90)
    assert float(flat.accuracy(balanced=True)[0, 0, 0]) == 0.5


def test_bfloat16_input_is_converted_exactly():
    train, _ = make_data(2, seed=5, quantized=False)
    dev, dev_y = make_data(2, seed=6, quantized=False)
    train16, dev16 = train.bfloat16(), dev.bfloat16()
    base = stream_baseline(train16)
    ref_mean = train16.double().mean(0)
    torch.testing.assert_close(base.mean(), ref_mean, rtol=1e-13, atol=1e-13)
    stats = stream_pred(base, dev16, dev_y, 2)
    assert torch.equal(stats.accuracy(), naive_accuracy(dev16, dev_y, ref_mean, [1], [0], False))


def test_pooled_text_controls_use_the_same_classes():
    """Pooled controls: the position axis holds (mean, max) of the text tokens."""
    assert POOLED_POSITIONS == ("mean", "max")
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(40, L, len(POOLED_POSITIONS), N, generator=g)
    labels = torch.arange(40) % 2
    base = BaselineStats(L, 2, N)
    base.update(acts)
    stats = PredictivityStats(base, 2, hist_bins=4)
    stats.update(acts, labels)
    assert stats.predictivity().shape == (L, 2, N)
    assert torch.equal(stats.accuracy(), naive_accuracy(acts, labels, acts.double().mean(0), [1], [0], False))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_accumulators_match_cpu():
    train, _ = make_data(3, seed=12, quantized=True)
    dev, dev_y = make_data(3, seed=13, quantized=False)
    kw = {"hist_bins": 16, "hist_range": (-4.0, 4.0)}
    cpu_base = stream_baseline(train)
    gpu_base = BaselineStats(L, T, N, device="cuda")
    for s in batches(200):
        gpu_base.update(train[s].cuda().bfloat16().float())
    assert torch.equal(gpu_base.mean().cpu(), cpu_base.mean())
    cpu = stream_pred(cpu_base, dev, dev_y, 3, **kw)
    gpu = PredictivityStats(gpu_base, 3, **kw)
    for s in batches(200):
        gpu.update(dev[s].cuda(), dev_y[s].cuda())
    for k, v in cpu.state_dict().items():
        assert torch.equal(gpu.state_dict()[k].cpu(), v), k


# --------------------------------------------------------------------------------------------------
# AUROC


def exact_auroc(acts, labels, pos, neg):
    """Mann-Whitney AUROC [L, T, N], ties counted 1/2, over all (positive, negative) pairs."""
    xp = acts[torch.isin(labels, torch.tensor(pos))].double().flatten(1)
    xn = acts[torch.isin(labels, torch.tensor(neg))].double().flatten(1)
    gt = (xp[:, None] > xn[None]).double().mean((0, 1))
    eq = (xp[:, None] == xn[None]).double().mean((0, 1))
    return (gt + 0.5 * eq).view(L, T, N)


@pytest.mark.parametrize("C", [2, 3])
def test_auroc_exact_when_every_value_has_its_own_bin(C, chunking):
    """Integer values in [-8, 8) with 16 unit bins over [-8, 8): the histogram loses nothing."""
    g = torch.Generator().manual_seed(7)
    labels = torch.randint(0, C, (150,), generator=g)
    acts = torch.randint(-8, 8, (150, L, T, N), generator=g).float()
    acts[:, 0, 0, 0] = labels.float() * 3 - 3  # a strongly predictive neuron
    acts[:5, 1, 1, 1] = 20.0  # overflow bin
    acts[5:9, 1, 1, 1] = -20.0  # underflow bin
    base = BaselineStats(L, T, N)
    base.update(acts)
    stats = stream_pred(base, acts, labels, C, hist_bins=16, hist_range=(-8.0, 8.0))
    for pos, neg in subtasks(C):
        auc = stats.auroc(pos, neg)
        torch.testing.assert_close(auc, exact_auroc(acts, labels, pos, neg), rtol=0, atol=1e-14)
        sym = stats.auroc_predictivity(pos, neg)
        assert torch.equal(sym, torch.maximum(auc, 1 - auc))
    # balanced: classes within a side weigh equally = mean of the class-pair AUROCs
    if C == 3:
        ref = 0.5 * (exact_auroc(acts, labels, [1], [0]) + exact_auroc(acts, labels, [1], [2]))
        torch.testing.assert_close(stats.auroc([1], [0, 2], balanced=True), ref, rtol=0, atol=1e-14)


def test_auroc_with_many_bins_is_within_its_error_bound():
    """Continuous data, default range mean -/+ 4 std and 3000 bins: |error| <= bound, error < 1e-3."""
    train, _ = make_data(2, seed=8, quantized=False)
    dev, dev_y = make_data(2, seed=9, quantized=False)
    base = stream_baseline(train)
    stats = stream_pred(base, dev, dev_y, 2, hist_bins=3000)
    exact = exact_auroc(dev, dev_y, [1], [0])
    err = (stats.auroc() - exact).abs()
    bound = stats.auroc_error_bound()
    assert bool((err <= bound + 1e-12).all())
    assert float(err.max()) < 1e-3 and float(bound.max()) < 2e-3
    assert stats.auroc_predictivity()[1, 2, 5] == stats.auroc_predictivity().max()


def test_constant_neuron_gets_auroc_one_half():
    acts = torch.zeros(20, L, T, N)
    labels = torch.arange(20) % 2
    base = BaselineStats(L, T, N)
    base.update(acts)  # std 0: degenerate range is widened, never divides by zero
    stats = PredictivityStats(base, 2, hist_bins=4)
    stats.update(acts, labels)
    assert torch.equal(stats.auroc(), torch.full((L, T, N), 0.5, dtype=torch.float64))
    assert torch.equal(stats.predictivity(), torch.full((L, T, N), 0.5, dtype=torch.float64))


# --------------------------------------------------------------------------------------------------
# memory estimates, serialisation


def test_memory_estimates_match_the_allocations():
    base = BaselineStats(L, T, N)
    assert baseline_stats_bytes(L, T, N) == sum(v.nbytes for v in base.state_dict().values() if v.dim())
    base.update(torch.randn(3, L, T, N))
    for bins in (None, 10):
        stats = PredictivityStats(base, 3, hist_bins=bins)
        held = sum(v.nbytes for v in stats.state_dict().values()) + stats._baseline32.nbytes
        assert predictivity_stats_bytes(3, L, T, N, bins) == held
    assert stats.hist is not None
    assert histogram_bytes(3, L, T, N, 10) == stats.hist.nbytes
    # RoBERTa-base, 129 prompt positions, 2 classes, 64 bins: about 2.5 GB
    assert 2.4e9 < histogram_bytes(2, 12, 129, 3072, 64) < 2.6e9


def test_state_dict_round_trip_through_artifacts(tmp_path):
    train, _ = make_data(3, seed=10, quantized=False)
    dev, dev_y = make_data(3, seed=11, quantized=False)
    base = stream_baseline(train)
    stats = stream_pred(base, dev, dev_y, 3, hist_bins=6)

    save_artifact(tmp_path / "base", base.state_dict(), kind="baseline_stats", manifest={"split": "train"})
    tensors, manifest = load_artifact(tmp_path / "base", kind="baseline_stats")
    again = BaselineStats.from_state_dict(tensors)
    assert again.count == base.count and torch.equal(again.mean(), base.mean())
    assert manifest["split"] == "train"

    stats.save(tmp_path / "pred", manifest={"task": "toy"})
    loaded = PredictivityStats.load(tmp_path / "pred")
    for k, v in stats.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert loaded.hist_bins == 6 and loaded.num_classes == 3
    assert torch.equal(loaded.auroc([1]), stats.auroc([1]))

    base.save(tmp_path / "b2")
    assert torch.equal(BaselineStats.load(tmp_path / "b2").sum_sq, base.sum_sq)
    with pytest.raises(ArtifactError, match="not a 'predictivity_stats'"):
        PredictivityStats.load(tmp_path / "b2")
    # a merged copy keeps counting; the loaded one is independent of the original
    loaded.update(dev[:3], dev_y[:3])
    assert stats.count == 200 and loaded.count == 203


def test_malformed_states_raise_artifact_error():
    base = BaselineStats(L, T, N)
    with pytest.raises(ArtifactError, match="lacks"):
        BaselineStats.from_state_dict({"sum": base.sum})
    with pytest.raises(ArtifactError, match="inconsistent"):
        BaselineStats.from_state_dict(
            {"sum": base.sum, "sum_sq": base.sum_sq.float(), "count": torch.tensor(0)}
        )
    base.update(torch.randn(2, L, T, N))
    state = PredictivityStats(base, 2).state_dict()
    state["above"] = state["above"][:1]
    with pytest.raises(ArtifactError, match="inconsistent"):
        PredictivityStats.from_state_dict(state)


# --------------------------------------------------------------------------------------------------
# user errors


def test_user_errors_are_one_line_and_change_nothing():
    base = BaselineStats(L, T, N)
    with pytest.raises(ConfigError, match="update"):
        base.mean()
    with pytest.raises(ConfigError, match="expect"):
        base.update(torch.randn(2, L, T + 1, N))
    bad = torch.randn(2, L, T, N)
    bad[1, 2, 0, 0] = math.nan
    with pytest.raises(DataError, match="layer 2"):
        base.update(bad)
    assert base.count == 0 and not bool(base.sum.any())
    base.update(torch.randn(4, L, T, N))

    stats = PredictivityStats(base, 3)
    with pytest.raises(DataError, match=r"\[0, 3\)"):
        stats.update(torch.randn(2, L, T, N), torch.tensor([0, 3]))
    with pytest.raises(ConfigError, match="one label per example"):
        stats.update(torch.randn(2, L, T, N), torch.tensor([0]))
    assert stats.count == 0
    stats.update(torch.randn(2, L, T, N), [0, 1])
    with pytest.raises(DataError, match="no examples"):
        stats.accuracy([2], [0])
    with pytest.raises(ConfigError, match="both sides"):
        stats.accuracy([0, 1], [1])
    with pytest.raises(ConfigError, match="empty"):
        stats.accuracy([0, 1, 2])
    with pytest.raises(ConfigError, match="hist_bins"):
        stats.auroc()
    with pytest.raises(ConfigError, match="hist_bins"):
        PredictivityStats(base.mean(), 2, hist_bins=8)  # no ranges from a bare mean
    with pytest.raises(ConfigError, match="at least 2"):
        PredictivityStats(base, 1)

    other = BaselineStats(L, T, N)
    other.update(torch.randn(4, L, T, N))
    with pytest.raises(ArtifactError, match="different baselines"):
        stats.merge(PredictivityStats(other, 3))
    with pytest.raises(ArtifactError, match="same model"):
        base.merge(BaselineStats(L, T, N + 1))
    for err in (ConfigError("a\nb"), DataError("x \n y")):
        assert "\n" not in str(err)
