"""find for large models (issue 20, "Large models"): the statistics on another device than the model,
prompt positions compared in chunks (both bit for bit the same results), and the memory formula of
every statistic, checked against the tensors a tiny random model of a 7B FFN width allocates."""

from __future__ import annotations

import pytest
import torch

import skillneurons.neurons.stats as stats_mod
from conftest import separable_task
from skillneurons.errors import ConfigError
from skillneurons.neurons import decompose
from skillneurons.neurons.collect import activation_batches, baseline_pass, predictivity_pass, stats_device
from skillneurons.neurons.config import FindConfig
from skillneurons.neurons.find import _check_stats_memory, find_memory_bytes, score_prompt
from skillneurons.neurons.stats import (
    BaselineStats,
    FoldPlan,
    PredictivityStats,
    chunk_elements,
    find_stats_bytes,
    reduction_bytes,
)
from skillneurons.prompts import PromptModel, SoftPrompt, build_head
from skillneurons.testing import tiny_model

SEVEN_B = (32, 21, 11008)  # layers, prompt positions (20 soft tokens + the read slot), FFN width


def _nbytes(*ts: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in ts if t is not None)


def _pm(d_ff: int = 48, hidden: int = 32, layers: int = 2, length: int = 3) -> PromptModel:
    bb = tiny_model("bert", hidden=hidden, d_ff=d_ff, layers=layers)
    torch.manual_seed(0)
    prompt = SoftPrompt.create(bb, length, "normal", std=0.5)
    return PromptModel(bb, prompt, build_head("auto", bb, [["bad"], ["good"]]), max_length=24)


# --------------------------------------------------------------------------------------------------
# position chunks


@pytest.mark.parametrize("max_chunk", [None, 300], ids=["batchchunks", "layerchunks"])
@pytest.mark.parametrize("heldout_null", [True, False])
def test_position_chunks_give_the_same_bits(
    monkeypatch: pytest.MonkeyPatch, max_chunk: int | None, heldout_null: bool
) -> None:
    """Continuous data (float sums depend on their order): every chunk size gives the same baseline,
    counts, histograms, fold counts and null counts as the unchunked update."""
    if max_chunk is not None:
        monkeypatch.setattr(stats_mod, "MAX_CHUNK_ELEMENTS", max_chunk)
    L, T, N, n = 3, 7, 16, 90
    g = torch.Generator().manual_seed(3)
    train = torch.randn(120, L, T, N, generator=g) * 1.7 + 0.2
    dev = torch.randn(n, L, T, N, generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    labels[:15] = torch.arange(15) % 3
    dev[:, 1, 4, 3] += labels.float() * 2
    plan = FoldPlan.make(labels, 3, 5, 4, seed=1)

    def run(pc: int | None) -> dict[str, torch.Tensor]:
        base = BaselineStats(L, T, N, position_chunk=pc)
        for s in range(0, 120, 37):
            base.update(train[s : s + 37])
        stats = PredictivityStats(
            base, 3, hist_bins=5, plan=plan, heldout_null=heldout_null, position_chunk=pc
        )
        for s in range(0, n, 16):
            stats.update(dev[s : s + 16], labels[s : s + 16], torch.arange(s, min(s + 16, n)))
        return {**{f"base.{k}": v for k, v in base.state_dict().items()}, **stats.state_dict()}

    want = run(None)
    assert torch.count_nonzero(want["crossfit.null"]) > 0
    for pc in (1, 3, 7, 100):
        got = run(pc)
        assert got.keys() == want.keys()
        for k, v in want.items():
            assert torch.equal(got[k], v), (pc, k)


def test_position_chunks_bound_the_comparison_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """No update chunk holds more than ``position_chunk`` positions; chunk_elements is their largest."""
    seen: list[tuple[int, ...]] = []
    real_gt = torch.Tensor.__gt__

    def spy(a: torch.Tensor, b: object) -> torch.Tensor:
        seen.append(tuple(a.shape))
        return real_gt(a, b)

    L, T, N = 2, 21, 64
    base = BaselineStats(L, T, N)
    base.update(torch.randn(6, L, T, N))
    for pc in (None, 4):
        seen.clear()
        stats = PredictivityStats(base, 2, position_chunk=pc)
        monkeypatch.setattr(torch.Tensor, "__gt__", spy)
        stats.update(torch.randn(9, L, T, N), torch.arange(9) % 2)
        monkeypatch.undo()
        assert seen and max(s[2] for s in seen) == (T if pc is None else pc)
        assert max(s[0] * s[1] * s[2] * s[3] for s in seen) == chunk_elements(9, (L, T, N), pc)


def test_find_rejects_bad_chunks_and_devices_in_one_line() -> None:
    for kw, msg in (
        ({"position_chunk": 0}, "--position-chunk 0 is invalid"),
        ({"stats_device": "gpu"}, "--stats-device 'gpu' is unknown"),
        ({"stats_memory_gb": 0}, "--stats-memory-gb 0 is invalid"),
    ):
        with pytest.raises(ConfigError, match=msg) as e:
            FindConfig(**kw)  # type: ignore[arg-type]
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="position_chunk=0 is invalid"):
        BaselineStats(1, 2, 3, position_chunk=0)


# --------------------------------------------------------------------------------------------------
# statistics on another device


def test_stats_device_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    pm = _pm()
    assert stats_device(pm, "auto") == stats_device(pm, "model") == pm.backbone.device
    assert stats_device(pm, "cpu") == torch.device("cpu")
    monkeypatch.setattr(type(pm.backbone), "device", property(lambda self: torch.device("mps")))
    assert stats_device(pm, "auto") == torch.device("cpu")  # MPS has no float64
    with pytest.raises(ConfigError, match="MPS has no float64"):
        stats_device(pm, "model")


def test_stats_on_cpu_or_the_models_device_and_position_chunks_give_the_same_scores() -> None:
    """score_prompt with every stats_device and position chunk: the same tensors, bit for bit (on a
    CPU-only machine the devices coincide; tests/test_cuda.py runs the copy from a GPU)."""
    pm = _pm()
    train, dev = separable_task(30, seed=1), separable_task(25, seed=2)
    plan = FoldPlan.make(dev.labels, 2, 5, 3, seed=0)
    kw = dict(pooled=True, hist_bins=6, plan=plan, batch_size=7)
    want = score_prompt(pm, train, dev, decompose(2), **kw)  # type: ignore[arg-type]
    for device, pc in (("cpu", None), ("model", None), ("cpu", 1), ("auto", 2)):
        got = score_prompt(pm, train, dev, decompose(2), stats_device=device, position_chunk=pc, **kw)  # type: ignore[arg-type]
        assert got.keys() == want.keys()
        for k, v in want.items():
            assert torch.equal(got[k], v), (device, pc, k)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_stats_on_the_cpu_of_a_cuda_model_equal_those_on_the_gpu() -> None:
    pm = _pm()
    pm.backbone.model.cuda()
    pm.cuda()
    train, dev = separable_task(30, seed=1), separable_task(25, seed=2)
    plan = FoldPlan.make(dev.labels, 2, 5, 3, seed=0)
    kw = dict(pooled=True, hist_bins=6, plan=plan, batch_size=7, precision="fp32")
    on_gpu = score_prompt(pm, train, dev, decompose(2), stats_device="model", **kw)  # type: ignore[arg-type]
    on_cpu = score_prompt(pm, train, dev, decompose(2), stats_device="cpu", position_chunk=2, **kw)  # type: ignore[arg-type]
    for k, v in on_gpu.items():
        assert torch.equal(on_cpu[k].cpu(), v.cpu()), k


# --------------------------------------------------------------------------------------------------
# memory


def test_the_memory_formula_matches_a_tiny_model_of_a_7b_width() -> None:
    """A 2-layer random model with the 7B FFN width (11,008) and 20 soft tokens: every exact entry of
    find_stats_bytes equals the bytes of the tensors the passes allocate."""
    layers, T, N = 2, 21, 11008
    pm = _pm(d_ff=N, hidden=64, layers=layers, length=T - 1)
    train, dev = separable_task(12, seed=1), separable_task(40, seed=2)
    B, R, F, bins = 8, 3, 5, 4
    plan = FoldPlan.make(dev.labels, 2, F, R, seed=0)
    kinds = ("prompt", "pooled")
    base, _ = baseline_pass(pm, train, positions=kinds, batch_size=B)
    stats = predictivity_pass(pm, dev, base, positions=kinds, batch_size=B, hist_bins=bins, plan=plan)
    want = find_stats_bytes(
        layers, T, N, 2, len(dev), hist_bins=bins, folds=F, permutations=R, batch_size=B, pooled=True
    )
    p, q = stats["prompt"], stats["pooled"]
    cfs = [p.crossfit, q.crossfit]
    assert all(cf is not None and cf.null is not None for cf in cfs)
    assert want["baseline"] == sum(_nbytes(b.sum, b.sum_sq) for b in base.values())
    assert want["counts"] == sum(_nbytes(s.baseline, s._baseline32, s.above, s.class_counts) for s in (p, q))
    assert want["histograms"] == _nbytes(p.hist, p.hist_lo, p.hist_hi) and q.hist is None
    assert want["fold_counts"] == sum(_nbytes(cf.counts, cf.class_counts) for cf in cfs)  # type: ignore[union-attr]
    assert want["null"] == sum(_nbytes(cf.null) for cf in cfs)  # type: ignore[union-attr]
    assert want["plan"] == _nbytes(plan.fold, plan.labels, plan.perm_labels)
    acts = next(activation_batches(pm, dev, positions=kinds, batch_size=B))[0]
    assert want["batch"] == sum(_nbytes(a) for a in acts.values())
    # one prompt's scores, kept until the summary
    scores = score_prompt(
        pm, train, dev, decompose(2), pooled=True, hist_bins=bins, plan=plan, batch_size=B, paired_rho=0.01
    )
    red = reduction_bytes(
        layers, T, N, 2, folds=F, permutations=R, hist_bins=bins, pooled=True, paired_examples=len(dev)
    )
    assert want["reductions"] == red == sum(_nbytes(v) for v in scores.values())
    held = sum(want[k] for k in ("baseline", "counts", "histograms", "fold_counts", "null", "plan"))
    working = want["batch"] + want["buffer"] + want["transients"]
    assert want["total"] == held + max(working, want["reductions"] + want["reduce"])


def test_a_7b_geometry_at_find_defaults_fits_16_gb() -> None:
    cfg = FindConfig()
    L, T, N = SEVEN_B
    one = find_stats_bytes(L, T, N, 2, 1000, pooled=cfg.controls)
    assert one["null"] == 8_101_888_000  # 7,397,376,000 of the prompt positions, the rest pooled
    assert 14e9 < one["total"] < 16e9
    plan = FoldPlan.make([i % 2 for i in range(1000)], 2, cfg.folds, 2, seed=0)
    plan = FoldPlan(plan.fold, torch.zeros(cfg.permutations, 1000, dtype=torch.int64), plan.labels, 5, 2)
    need, _ = find_memory_bytes(cfg, L, T, N, plan, prompts=1, subtasks=1)
    assert need < cfg.stats_memory_gb * 1e9 == 16e9  # the whole find: one prompt and its controls
    need3, parts = find_memory_bytes(cfg, L, T, N, plan, prompts=3, subtasks=1)
    assert need3 > 16e9 and parts["kept"] > 0  # three prompts keep their reductions: refused


def test_find_refuses_statistics_over_the_memory_cap_in_one_line() -> None:
    pm = _pm(d_ff=11008, hidden=64, layers=2, length=20)
    dev = separable_task(40, seed=2)
    plan = FoldPlan.make(dev.labels, 2, 5, 100, seed=0)
    geometry = (pm.backbone.num_layers, pm.prompt.length + 1, max(pm.backbone.d_ff))
    _check_stats_memory(FindConfig(), geometry, plan, 1, 1)  # 2 layers: well under 16 GB
    with pytest.raises(ConfigError) as e:
        _check_stats_memory(FindConfig(stats_memory_gb=0.5), geometry, plan, 1, 1)
    msg = str(e.value)
    assert "\n" not in msg and "> --stats-memory-gb 0.5" in msg and "--permutations" in msg, msg
