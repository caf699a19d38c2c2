"""The permutation null in the same forward passes (#18 item 2): with a fixed seed it equals a naive
loop over the permuted labels; its memory formula is the memory held; find refuses a null over the cap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import separable_task
from skillneurons.errors import ConfigError
from skillneurons.evidence import permutation_p, z_score
from skillneurons.neurons import decompose
from skillneurons.neurons.config import FindConfig
from skillneurons.neurons.crossfit import PromptFolds, set_figures
from skillneurons.neurons.find import find_skill_neurons, format_summary, null_memory_bytes, score_prompt
from skillneurons.neurons.results import FindSummary, NullFigures, SetEvidence, StatFigures
from skillneurons.neurons.stats import CrossFitCounts, FoldPlan, null_counts_bytes
from test_find import _saved_prompts
from test_heldout import _pm, imbalanced, indicators, naive_heldout, naive_in_sample, three_class


@pytest.mark.parametrize(
    ("classes", "heldout_null", "score"),
    [
        (2, True, "accuracy"),
        (3, True, "accuracy"),
        (2, False, "accuracy"),
        (2, True, "balanced"),
        (2, False, "balanced"),
    ],
)
def test_null_equals_a_naive_loop_over_permuted_labels(classes: int, heldout_null: bool, score: str) -> None:
    """The balanced cases on imbalanced labels (30 positive, 15 negative): the permutations keep
    every fold's class counts, so each side's rate has the same denominators as the real figures."""
    make = separable_task if classes == 2 else three_class
    train, dev = make(30, seed=1), (make(40, seed=2) if score == "accuracy" else imbalanced(60, seed=2))
    subtasks = decompose(classes, score=score)  # type: ignore[arg-type]
    R = 7
    plan = FoldPlan.make(dev.labels, classes, 4, R, seed=11)
    pms = [_pm(0, classes), _pm(1, classes)]
    folds, gts = [], []
    for pm in pms:
        sc = score_prompt(pm, train, dev, subtasks, batch_size=9, plan=plan, heldout_null=heldout_null)
        folds.append(PromptFolds.from_tensors(sc, "cf."))
        gts.append(indicators(pm, train, dev))
    got = set_figures(folds, "mean", 0.02)
    fo = plan.fold.numpy()
    assert got.null_in_top1 is not None and got.null_in_topk is not None
    for r in range(R):
        yr = plan.perm_labels[r].numpy()
        # within-fold permutations: every fold keeps its class counts
        for f in range(4):
            assert np.array_equal(
                np.bincount(yr[fo == f], minlength=classes),
                np.bincount(np.asarray(dev.labels)[fo == f], minlength=classes),
            )
        assert (got.null_in_top1[r], got.null_in_topk[r]) == naive_in_sample(
            gts, [yr, yr], subtasks, "mean", 0.02
        )
        if heldout_null:
            assert got.null_ho_top1 is not None and got.null_ho_topk is not None
            # the held-out null's per-prompt reductions are stored in float32
            want = naive_heldout(gts, [yr, yr], [fo, fo], subtasks, "mean", 0.02, cast=np.float32)
            assert (got.null_ho_top1[r], got.null_ho_topk[r]) == want
    if not heldout_null:
        assert got.null_ho_top1 is None
    assert len({tuple(p.tolist()) for p in plan.perm_labels}) > 1  # the permutations differ


def test_null_memory_formula_is_the_memory_held() -> None:
    L, T, N = 3, 4, 5
    for n, dtype in ((40, torch.int16), (5 * 40_000, torch.int32)):
        y = [i % 3 for i in range(n)]
        plan = FoldPlan.make(y, 3, 5, 2, seed=0)
        for heldout in (True, False):
            cf = CrossFitCounts((L, T, N), plan, heldout_null=heldout)
            assert cf.null is not None and cf.dtype == dtype
            largest = max(plan.fold_sizes()) if heldout else n
            want = null_counts_bytes(2, 5, 3, L, T, N, largest, heldout)
            assert cf.null.numel() * cf.null.element_size() == want
    # MiniLM geometry, as documented: 194 MB with the held-out null, 39 MB without
    assert null_counts_bytes(100, 5, 2, 6, 21, 1536, 80, True) == 193_536_000
    assert null_counts_bytes(100, 5, 2, 6, 21, 1536, 400, False) == 38_707_200


def test_find_refuses_a_null_over_the_memory_cap_naming_a_smaller_r(tmp_path: Path) -> None:
    task = separable_task(200)
    bb, prompts = _saved_prompts(tmp_path, task, n=1)
    cfg = FindConfig(permutations=1000, null_memory_gb=0.001)
    plan = FoldPlan.make([i % 2 for i in range(20)], 2, 5, 1000, seed=0)
    need = null_memory_bytes(cfg, bb.num_layers, 4, bb.d_ff[0], plan, 1, 1)
    fits = int(1000 * 1e6 / need)
    with pytest.raises(ConfigError, match=f"use --permutations {fits},"):
        find_skill_neurons(bb, prompts, task, tmp_path / "n", cfg, progress=False)
    for bad in ({"folds": 1}, {"permutations": -1}, {"null_memory_gb": 0}):
        with pytest.raises(ConfigError):
            FindConfig(**bad)  # type: ignore[arg-type]


def test_find_reports_null_p_and_z_and_flags_a_top1_not_above_it(tmp_path: Path) -> None:
    task = separable_task(200)
    bb, prompts = _saved_prompts(tmp_path, task, n=1)
    res = find_skill_neurons(bb, prompts, task, tmp_path / "n", FindConfig(permutations=20), progress=False)
    ev = res.summary.evidence
    assert ev is not None and ev.top1.null is not None and ev.top1.in_sample_null is not None
    assert res.summary.top1_predictivity == ev.top1.heldout and ev.top1.n == res.summary.prompts[0].dev_size
    assert ev.top1.lo <= ev.top1.heldout <= ev.top1.hi and ev.top1.null.permutations == 20
    assert (
        "top-1 predictivity (held-out)" in res.text
        and "in-sample (selected and measured on the same" in res.text
    )
    assert res.summary.controls is not None and all(
        c.evidence is not None for c in res.summary.controls.values()
    )
    saved = FindSummary.load(tmp_path / "n" / "summary.json")
    assert saved == res.summary and saved.evidence is not None
    # each control against the first prompt, paired over the same ranking examples: the difference of
    # the two held-out figures, with a bootstrap interval and p
    first = res.summary.first_prompt
    assert first is not None
    for name, c in res.summary.controls.items():
        assert c.versus_top1 is not None and c.versus_top1pct is not None, name
        assert c.versus_top1.value == pytest.approx(first.top1 - c.top1, abs=1e-12)
        assert c.versus_top1pct.value == pytest.approx(first.top1pct_mean - c.top1pct_mean, abs=1e-12)
        assert c.versus_top1.n == len(res.summary.prompts) * res.summary.prompts[0].dev_size
        assert c.versus_top1.lo <= c.versus_top1.value <= c.versus_top1.hi and c.versus_top1.p is not None
    assert "first prompt minus it, paired over the examples: top-1" in res.text
    # a rerun at another rho into the same folder does not reuse parts made for the old top-k
    other = find_skill_neurons(
        bb, prompts, task, tmp_path / "n", FindConfig(permutations=20, rho=0.05), progress=False
    ).summary
    assert other.first_prompt is not None and other.controls
    for c in other.controls.values():
        assert c.versus_top1pct is not None
        assert c.versus_top1pct.value == pytest.approx(
            other.first_prompt.top1pct_mean - c.top1pct_mean, abs=1e-12
        )
    # the p-value and z are evidence's
    null = np.array([0.5, 0.6, 0.7, 0.55])
    nf = NullFigures(
        4, float(null.mean()), float(null.std(ddof=1)), permutation_p(0.6, null), z_score(0.6, null)
    )
    assert nf.p == pytest.approx(3 / 5)
    s = res.summary
    s.evidence = SetEvidence(
        5, StatFigures(0.6, 0.5, 0.7, 200, 0.8, nf), StatFigures(0.6, 0.5, 0.7, 200, 0.8)
    )
    assert any(f.startswith("top-1 not above the null (p >= 0.05): held-out p=0.6000") for f in s.check())
    s.evidence.top1.null = NullFigures(4, 0.5, 0.01, 0.01, None)
    assert not any(f.startswith("top-1 not above the null") for f in s.check())


def test_a_version_1_summary_is_still_read(tmp_path: Path) -> None:
    task = separable_task(200)
    bb, prompts = _saved_prompts(tmp_path, task, n=1)
    res = find_skill_neurons(
        bb, prompts, task, None, FindConfig(permutations=0, controls=False), progress=False
    )
    old = res.summary.to_json()
    old["schema_version"] = 1
    old.pop("evidence")
    s = FindSummary.from_json(old)
    assert s.evidence is None
    assert "(in-sample: selected and measured on the same examples)" in format_summary(s)
    assert res.summary.evidence is not None and res.summary.evidence.top1.null is None


def test_buffering_and_product_chunks_change_no_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import skillneurons.neurons.stats as st

    g = torch.Generator().manual_seed(1)
    L, T, N, n = 2, 3, 7, 45
    gt = torch.rand(n, L, T, N, generator=g) > 0.4
    plan = FoldPlan.make([i % 3 for i in range(n)], 3, 5, 9, seed=2)
    want = CrossFitCounts((L, T, N), plan)
    want.add(gt, torch.arange(n), slice(0, L), True)
    monkeypatch.setattr(st, "CROSSFIT_BUFFER", 50)
    monkeypatch.setattr(st, "_PRODUCT_ELEMENTS", 20)
    got = CrossFitCounts((L, T, N), plan)
    for b in range(0, n, 4):  # layer by layer, as the chunks of a wide model arrive
        for layer in range(L):
            got.add(
                gt[b : b + 4, layer : layer + 1],
                torch.arange(b, min(b + 4, n)),
                slice(layer, layer + 1),
                layer == 0,
            )
    assert torch.equal(got.counts, want.counts) and torch.equal(got.null, want.null)  # type: ignore[arg-type]
    assert torch.equal(got.class_counts, want.class_counts)


def test_the_memory_of_every_statistic_at_a_7b_width() -> None:
    """#20: 11,008 neurons x 21 positions, 2 layers allocated for real; 32 layers by the formula."""
    from skillneurons.neurons.stats import BaselineStats, PredictivityStats, find_stats_bytes

    L, T, N, n = 2, 21, 11008, 60
    base = BaselineStats(L, T, N)
    base.update(torch.randn(3, L, T, N))
    plan = FoldPlan.make([i % 2 for i in range(n)], 2, 5, 3, seed=0)
    stats = PredictivityStats(base, 2, hist_bins=4, plan=plan)
    cf = stats.crossfit
    assert cf is not None and cf.null is not None
    want = find_stats_bytes(L, T, N, 2, n, hist_bins=4, folds=5, permutations=3)
    nbytes = lambda *ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    assert want["baseline"] == nbytes(base.sum, base.sum_sq)
    assert want["counts"] == nbytes(stats.baseline, stats._baseline32, stats.above, stats.class_counts)
    assert want["histograms"] == nbytes(stats.hist, stats.hist_lo, stats.hist_hi)  # type: ignore[arg-type]
    assert want["fold_counts"] == nbytes(cf.counts, cf.class_counts) and want["null"] == nbytes(cf.null)
    stats.update(torch.randn(n, L, T, N), plan.labels, torch.arange(n))
    assert cf._pending_elements <= want["buffer"]
    seven_b = find_stats_bytes(32, 21, 11008, 2, 1000)  # the prompt positions alone (no controls)
    assert seven_b["null"] == 7_397_376_000 and seven_b["total"] - seven_b["null"] < 3.2e9
    assert find_stats_bytes(32, 21, 11008, 2, 1000, permutations=50)["null"] < 4e9  # fits the default cap
