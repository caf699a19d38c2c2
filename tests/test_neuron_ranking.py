"""Ranking, selection, multi-class decomposition and task-similarity helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from skillneurons.errors import ArtifactError, ConfigError
from skillneurons.neurons import (
    BaselineStats,
    PredictivityStats,
    SkillRanking,
    Subtask,
    aggregate,
    decompose,
    overlap,
    per_prompt,
    quota_size,
    spearman,
    union_mask,
)


def random_ranking(L: int = 4, N: int = 100, seed: int = 0, levels: int | None = None) -> SkillRanking:
    g = torch.Generator().manual_seed(seed)
    if levels is None:
        return SkillRanking(torch.rand(L, N, generator=g, dtype=torch.float64))
    return SkillRanking(torch.randint(0, levels, (L, N), generator=g).double() / levels)


# --------------------------------------------------------------------------------------------------
# per prompt / aggregation


def test_per_prompt_takes_the_max_over_positions_first_on_ties():
    pred = torch.tensor(
        [
            [[0.5, 0.9], [0.7, 0.9], [0.6, 0.1]],  # layer 0: positions x neurons
            [[0.8, 0.5], [0.8, 0.6], [0.1, 0.6]],
        ]
    )
    score, best = per_prompt(pred)
    assert score.dtype == torch.float64 and score.shape == (2, 2)
    torch.testing.assert_close(score, torch.tensor([[0.7, 0.9], [0.8, 0.6]], dtype=torch.float64))
    assert best.tolist() == [[1, 0], [0, 1]]
    with pytest.raises(ConfigError, match="positions"):
        per_prompt(torch.zeros(2, 3))


def test_aggregate_mean_and_min():
    a = torch.tensor([[0.6, 0.9]])
    b = torch.tensor([[0.8, 0.5]])
    torch.testing.assert_close(aggregate([a, b]), torch.tensor([[0.7, 0.7]], dtype=torch.float64))
    torch.testing.assert_close(aggregate([a, b], how="min"), torch.tensor([[0.6, 0.5]], dtype=torch.float64))
    with pytest.raises(ConfigError, match="'mean' or 'min'"):
        aggregate([a], how="max")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="one model"):
        aggregate([a, torch.zeros(1, 3)])
    with pytest.raises(ConfigError, match="at least one"):
        aggregate([])


# --------------------------------------------------------------------------------------------------
# quota and masks


@pytest.mark.parametrize(
    ("rho", "n", "k"),
    [
        (0.0, 100, 0),
        (0.01, 100, 1),
        (0.125, 4, 1),  # 0.5 rounds up
        (0.375, 4, 2),  # 1.5 rounds up
        (0.1, 5, 1),  # 0.5
        (0.29, 50, 15),  # 14.5 as written, though 0.29 * 50 == 14.499999999999998 in binary
        (0.145, 100, 15),  # idem
        (0.02, 3072, 61),  # the original's 2% of RoBERTa-base's 3072 = 61 per layer
        (0.2, 16, 3),
        (1.0, 16, 16),
        (1, 7, 7),
    ],
)
def test_quota_rounds_half_up(rho, n, k):
    assert quota_size(rho, n) == k


@pytest.mark.parametrize("rho", [-0.1, 1.5, math.nan, True, "0.1"])
def test_quota_rejects_bad_rho(rho):
    with pytest.raises(ConfigError, match="rho"):
        quota_size(rho, 10)


@pytest.mark.parametrize("rho", [0, 0.01, 0.1, 0.2, 1.0])
def test_per_layer_mask_has_the_exact_quota_and_the_top_neurons(rho):
    r = random_ranking(L=4, N=100)
    m = r.mask(rho)
    assert m.dtype == torch.bool and m.shape == (4, 100)
    assert m.sum(1).tolist() == [quota_size(rho, 100)] * 4
    for layer in range(4):
        sel, rest = r.scores[layer][m[layer]], r.scores[layer][~m[layer]]
        if len(sel) and len(rest):
            assert sel.min() > rest.max()


@pytest.mark.parametrize("rho", [0, 0.01, 0.1, 0.2, 1.0])
def test_global_mask_has_the_exact_quota(rho):
    r = random_ranking(L=4, N=100, seed=1)
    m = r.mask(rho, per_layer=False)
    k = quota_size(rho, 400)
    assert int(m.sum()) == k
    assert r.layer_distribution(rho).tolist() == m.sum(1).tolist()
    assert int(r.layer_distribution(rho).sum()) == k
    if 0 < k < 400:
        assert r.scores[m].min() > r.scores[~m].max()
    top = r.top(k)
    assert len(top) == k and all(m[la, i] for la, i, _ in top)
    assert [s for *_, s in top] == sorted((s for *_, s in top), reverse=True)


def test_ties_are_broken_by_lower_layer_then_lower_index():
    r = SkillRanking(torch.full((3, 5), 0.5, dtype=torch.float64))
    assert r.order(per_layer=True).tolist() == [[0, 1, 2, 3, 4]] * 3
    assert r.order(per_layer=False).tolist() == list(range(15))
    assert r.mask(0.4).nonzero().tolist() == [[la, i] for la in range(3) for i in (0, 1)]
    assert r.mask(0.4, per_layer=False).nonzero().tolist() == [[0, i] for i in range(5)] + [[1, 0]]
    scores = torch.tensor([[0.1, 0.9, 0.9], [0.9, 0.2, 0.9]], dtype=torch.float64)
    r = SkillRanking(scores)
    assert r.top(4) == [(0, 1, 0.9), (0, 2, 0.9), (1, 0, 0.9), (1, 2, 0.9)]
    assert r.order(per_layer=True).tolist() == [[1, 2, 0], [0, 2, 1]]


def test_ranking_validation():
    with pytest.raises(ConfigError, match="NaN"):
        SkillRanking(torch.tensor([[0.5, math.nan]]))
    with pytest.raises(ConfigError, match="layers, neurons"):
        SkillRanking(torch.zeros(3))
    with pytest.raises(ConfigError, match="k="):
        random_ranking().top(-1)


def test_ranking_save_load_keeps_the_full_scores(tmp_path):
    r = random_ranking(L=3, N=50, seed=2)
    r.meta.update(task="sst2", seeds=[1, 2, 3], how="mean")
    r.save(tmp_path / "rank", manifest={"model": "toy"})
    again = SkillRanking.load(tmp_path / "rank")
    assert torch.equal(again.scores, r.scores)
    assert again.meta == r.meta
    for rho in (0.02, 0.1, 0.5):
        assert torch.equal(again.mask(rho), r.mask(rho))
    BaselineStats(1, 1, 1).save(tmp_path / "other")
    with pytest.raises(ArtifactError, match="skill_ranking"):
        SkillRanking.load(tmp_path / "other")


# --------------------------------------------------------------------------------------------------
# multi-class


def test_decompose_schemes():
    for scheme in ("one_vs_rest", "pairwise", "paper"):
        assert decompose(2, scheme) == [Subtask((1,), (0,), "1_vs_0", balanced=False)]
    assert decompose(3, "paper") == [
        Subtask((0,), (2,), "0_vs_2", balanced=True),
        Subtask((1,), (0, 2), "1_vs_rest", balanced=True),
    ]
    ovr = decompose(4, "one_vs_rest")
    assert [(s.positive, s.negative) for s in ovr] == [
        ((0,), (1, 2, 3)),
        ((1,), (0, 2, 3)),
        ((2,), (0, 1, 3)),
        ((3,), (0, 1, 2)),
    ]
    assert [s.name for s in ovr] == ["0_vs_rest", "1_vs_rest", "2_vs_rest", "3_vs_rest"]
    pw = decompose(4, "pairwise")
    assert [(s.positive, s.negative) for s in pw] == [
        ((1,), (0,)),
        ((2,), (0,)),
        ((3,), (0,)),
        ((2,), (1,)),
        ((3,), (1,)),
        ((3,), (2,)),
    ]
    assert all(s.balanced for s in ovr + pw)
    with pytest.raises(ConfigError, match="one_vs_rest"):
        decompose(4, "paper")
    with pytest.raises(ConfigError, match="unknown"):
        decompose(3, "ovo")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at least 2"):
        decompose(1)


def test_subtasks_feed_predictivity_stats():
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(60, 2, 3, 8, generator=g)
    labels = torch.arange(60) % 3
    base = BaselineStats(2, 3, 8)
    base.update(acts)
    stats = PredictivityStats(base, 3)
    stats.update(acts, labels)
    scores = [
        per_prompt(stats.predictivity(s.positive, s.negative, balanced=s.balanced))[0]
        for s in decompose(3, "paper")
    ]
    m = union_mask([SkillRanking(s) for s in scores], 0.25)
    assert m.sum(1).tolist() == [2, 2]


def test_union_of_one_ranking_is_its_mask():
    r = random_ranking(seed=3)
    for rho in (0, 0.05, 0.2, 1.0):
        assert torch.equal(union_mask([r], rho), r.mask(rho))
        assert torch.equal(union_mask([r], rho, per_layer=False), r.mask(rho, per_layer=False))
        assert torch.equal(union_mask([r, r, r], rho), r.mask(rho))  # identical subtasks: fill = next best


def test_union_takes_equal_shares_and_fills_round_robin():
    a = SkillRanking(torch.tensor([[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]], dtype=torch.float64))  # order 0,1,2,...
    b = SkillRanking(
        torch.tensor([[8, 0, 1, 2, 9, 7, 3, 4, 5, 6]], dtype=torch.float64)
    )  # order 4,0,5,9,8,...
    # rho 0.4: K=4, each contributes 2: a -> {0,1}, b -> {4,0}; union {0,1,4}; fill: a adds 2.
    assert union_mask([a, b], 0.4).nonzero()[:, 1].tolist() == [0, 1, 2, 4]
    # K=5 (odd): a takes 3 {0,1,2}, b takes 2 {4,0}; union {0,1,2,4}; fill: a adds 3.
    assert union_mask([a, b], 0.5).nonzero()[:, 1].tolist() == [0, 1, 2, 3, 4]
    # K=6: a {0,1,2}, b {4,0,5} -> {0,1,2,4,5}; fill: a adds 3.
    assert union_mask([a, b], 0.6).nonzero()[:, 1].tolist() == [0, 1, 2, 3, 4, 5]
    # K=7: a {0,1,2,3}, b {4,0,5} -> 6; fill: a's next are 4 and 5 (taken), so a adds 6.
    assert union_mask([a, b], 0.7).nonzero()[:, 1].tolist() == [0, 1, 2, 3, 4, 5, 6]
    c = SkillRanking(torch.tensor([[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]], dtype=torch.float64))  # order 9,0,1,...
    # K=2: a {0}, b {4} -> {0,4}; no fill.
    assert union_mask([a, b], 0.2).nonzero()[:, 1].tolist() == [0, 4]
    # three subtasks, K=4: a {0,1}, b {4}, c {9}
    assert union_mask([a, b, c], 0.4).nonzero()[:, 1].tolist() == [0, 1, 4, 9]
    with pytest.raises(ConfigError, match="one model"):
        union_mask([a, random_ranking()], 0.1)
    with pytest.raises(ConfigError, match="at least one"):
        union_mask([], 0.1)


@settings(max_examples=40, deadline=None)
@given(
    n_sub=st.integers(1, 4),
    rho=st.floats(0, 1),
    per_layer=st.booleans(),
    seed=st.integers(0, 10_000),
    levels=st.sampled_from([None, 3]),
)
def test_union_always_has_the_full_quota(n_sub, rho, per_layer, seed, levels):
    rs = [random_ranking(L=3, N=20, seed=seed + s, levels=levels) for s in range(n_sub)]
    m = union_mask(rs, rho, per_layer=per_layer)
    if per_layer:
        assert m.sum(1).tolist() == [quota_size(rho, 20)] * 3
    else:
        assert int(m.sum()) == quota_size(rho, 60)
    # each subtask's own top share is always included
    k = quota_size(rho, 20 if per_layer else 60)
    for s, r in enumerate(rs):
        share = k // n_sub + (1 if s < k % n_sub else 0)
        if per_layer:
            top = r.order(True)[:, :share]
            assert bool(m.gather(1, top).all())
        else:
            assert bool(m.view(-1)[r.order(False)[:share]].all())


# --------------------------------------------------------------------------------------------------
# task similarity


@pytest.mark.parametrize("levels", [None, 4])
def test_spearman_matches_scipy(levels):
    a = random_ranking(L=3, N=40, seed=5, levels=levels).scores
    b = (a + 0.7 * random_ranking(L=3, N=40, seed=6, levels=levels).scores).round(decimals=1)
    expected = spearmanr(a.reshape(-1).numpy(), b.reshape(-1).numpy()).statistic
    assert spearman(a, b) == pytest.approx(expected, abs=1e-12)
    per = spearman(a, b, per_layer=True)
    assert isinstance(per, torch.Tensor) and per.shape == (3,)
    for layer in range(3):
        assert float(per[layer]) == pytest.approx(
            spearmanr(a[layer].numpy(), b[layer].numpy()).statistic, abs=1e-12
        )
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert math.isnan(spearman(a, torch.ones_like(a)))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="one model"):
        spearman(a, a[:2])


def test_overlap_on_hand_made_masks():
    a = torch.tensor([[True, True, False, False], [True, False, False, False]])
    b = torch.tensor([[True, False, True, False], [True, False, False, True]])
    o = overlap(a, b)
    assert (o.intersection, o.size_a, o.size_b) == (2, 3, 4)
    assert o.jaccard == pytest.approx(2 / 5)
    assert o.cosine == pytest.approx(2 / math.sqrt(12))
    same = overlap(a, a)
    assert same.jaccard == 1.0 and same.cosine == pytest.approx(1.0)
    empty = torch.zeros_like(a)
    assert overlap(a, empty).jaccard == 0.0 and math.isnan(overlap(a, empty).cosine)
    assert math.isnan(overlap(empty, empty).jaccard)
    with pytest.raises(ConfigError, match="one model"):
        overlap(a, a[:1, :3])


def test_end_to_end_planted_skill_neuron_ranks_first():
    """Example: two prompts (seeds) of a binary task; neuron (2, 11) tracks the label at position 1."""
    L, T, N = 3, 4, 16
    per_seed = []
    for seed in range(2):
        g = torch.Generator().manual_seed(seed)
        train_y = torch.randint(0, 2, (300,), generator=g)
        dev_y = torch.randint(0, 2, (120,), generator=g)
        train, dev = torch.randn(300, L, T, N, generator=g), torch.randn(120, L, T, N, generator=g)
        train[:, 2, 1, 11] += 3 * train_y
        dev[:, 2, 1, 11] += 3 * dev_y
        base = BaselineStats(L, T, N)
        base.update(train)
        stats = PredictivityStats(base, 2)
        stats.update(dev, dev_y)
        score, best = per_prompt(stats.predictivity())
        assert int(best[2, 11]) == 1
        per_seed.append(score)
    ranking = SkillRanking(aggregate(per_seed))
    assert ranking.top(1)[0][:2] == (2, 11)
    assert ranking.top(1)[0][2] > 0.85
    assert bool(ranking.mask(0.1)[2, 11])
    assert np.isclose(float(ranking.scores.max()), ranking.top(1)[0][2])
