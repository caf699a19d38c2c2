"""skillneurons.evidence: intervals, paired bootstrap, Spearman and permutation p-values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from skillneurons.errors import ConfigError
from skillneurons.evidence import (
    Estimate,
    bootstrap_mean,
    mean_over_seeds,
    paired_difference,
    permutation_p,
    spearman,
    wilson,
    z_score,
)


def test_wilson_matches_the_textbook_formula():
    est = wilson(50, 100)
    assert est.value == 0.5 and est.n == 100 and est.method == "wilson"
    assert est.lo == pytest.approx(0.4038, abs=1e-4) and est.hi == pytest.approx(0.5962, abs=1e-4)
    # k = 0 stays inside [0, 1] and is not degenerate (unlike the Wald interval)
    zero = wilson(0, 20)
    assert zero.lo == 0.0 and 0.1 < zero.hi < 0.2
    assert wilson(20, 20).hi == 1.0


def test_wilson_refuses_bad_counts():
    for k, n in ((3, 2), (-1, 5), (0, 0)):
        with pytest.raises(ConfigError):
            wilson(k, n)


def test_estimate_formats_and_round_trips():
    est = Estimate(0.68, 0.655, 0.7041, 400, "wilson")
    assert est.format() == "0.680 [0.655, 0.704]"
    assert Estimate.from_json(est.to_json()) == est
    assert Estimate(0.5, None, None, 1, "t").format() == "0.500 [n/a]"
    assert est.excludes(0.5) and not est.excludes(0.68)
    with pytest.raises(ConfigError, match="non-finite"):
        Estimate(float("nan"), 0.0, 1.0, 3, "t")


def test_mean_over_seeds_is_a_t_interval():
    vals = [0.71, 0.74, 0.69, 0.73, 0.72]
    est = mean_over_seeds(vals)
    lo, hi = sps.t.interval(0.95, 4, loc=np.mean(vals), scale=sps.sem(vals))
    assert est.lo == pytest.approx(lo) and est.hi == pytest.approx(hi) and est.n == 5
    one = mean_over_seeds([0.7])
    assert one.lo is None and one.hi is None


def test_bootstrap_mean_is_seeded_and_covers_the_mean():
    vals = np.random.default_rng(1).random(300)
    a, b = bootstrap_mean(vals, seed=3), bootstrap_mean(vals, seed=3)
    assert a == b and a.lo < vals.mean() < a.hi
    with pytest.raises(ConfigError, match="non-finite"):
        bootstrap_mean([0.1, float("inf")])


def test_paired_difference_uses_the_pairing():
    # the same examples are hard for both: a paired interval is much narrower than two independent ones
    rng = np.random.default_rng(0)
    base = rng.random(400) < 0.7
    a = base & (rng.random(400) < 0.9)  # the treatment loses ~10% of the correct examples
    b = base.astype(float)
    est = paired_difference(a.astype(float), b, seed=0)
    assert est.value == pytest.approx(a.mean() - b.mean())
    assert est.hi < 0 and est.p is not None and est.p < 0.01
    width_indep = (wilson(int(a.sum()), 400).hi - wilson(int(a.sum()), 400).lo) * math.sqrt(2)
    assert est.hi - est.lo < width_indep


def test_paired_difference_with_k_control_draws():
    rng = np.random.default_rng(2)
    a = (rng.random(200) < 0.6).astype(float)
    b = (rng.random((5, 200)) < 0.6).astype(float)
    est = paired_difference(a, b, seed=1)
    assert est.value == pytest.approx(a.mean() - b.mean())
    with pytest.raises(ConfigError, match="same examples"):
        paired_difference(a, b[:, :100])


def test_paired_bootstrap_covers_the_true_difference_at_about_the_nominal_rate():
    # seeded coverage check: 200 synthetic experiments with a known true difference of -0.05
    rng = np.random.default_rng(123)
    covered = 0
    trials = 200
    for t in range(trials):
        p_ctrl = rng.random(300) * 0.6 + 0.2  # per-example difficulty
        ctrl = (rng.random(300) < p_ctrl).astype(float)
        treat = (rng.random(300) < p_ctrl - 0.05).astype(float)
        est = paired_difference(treat, ctrl, draws=400, seed=t)
        covered += est.lo <= -0.05 <= est.hi
    assert 0.88 <= covered / trials <= 0.99


def test_spearman_matches_scipy_and_gives_a_permutation_p():
    rng = np.random.default_rng(4)
    x = rng.random(30)
    y = x + 0.3 * rng.random(30)
    est = spearman(x, y, seed=0)
    assert est.value == pytest.approx(sps.spearmanr(x, y).statistic)
    assert est.lo < est.value < est.hi and est.p is not None and est.p < 0.01
    noise = spearman(x, rng.random(30), seed=0)
    assert noise.p is not None and noise.p > 0.01
    with pytest.raises(ConfigError, match="at least 3"):
        spearman([1, 2], [2, 1])
    with pytest.raises(ConfigError, match="constant"):
        spearman([1, 1, 1, 1], [1, 2, 3, 4])


def test_permutation_p_and_z():
    null = np.array([0.50, 0.52, 0.51, 0.55, 0.53])
    assert permutation_p(0.60, null) == pytest.approx(1 / 6)
    assert permutation_p(0.52, null) == pytest.approx(4 / 6)
    z = z_score(0.60, null)
    assert z is not None and z == pytest.approx((0.60 - null.mean()) / null.std(ddof=1))
    assert z_score(0.6, [0.5, 0.5]) is None
