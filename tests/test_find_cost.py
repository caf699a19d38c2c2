"""The cheap paths of find's passes give exactly what the plain ones do (issue 20 item 2)."""

from __future__ import annotations

import torch

from skillneurons.neurons.collect import _all_finite, _leading_positions
from skillneurons.neurons.stats import BaselineStats, _class_count, _count_true, _tree_sum


def test_all_finite_falls_back_when_the_sum_overflows() -> None:
    big = torch.full((4, 3), 3e38)  # every value finite, the float32 sum is inf
    assert _all_finite(big)
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.randn(4, 3)
        x[2, 1] = bad
        assert not _all_finite(x)


def test_leading_positions() -> None:
    assert _leading_positions(torch.arange(5).expand(3, -1)) == 5
    idx = torch.cat([torch.arange(4).expand(3, -1), torch.tensor([[7], [9], [4]])], 1)
    assert _leading_positions(idx) == 4  # prompt_first: the read index differs per example
    assert _leading_positions(torch.tensor([[1, 2], [1, 2]])) == 0


def test_count_true_is_exact_in_every_width() -> None:
    gen = torch.Generator().manual_seed(0)
    for rows, dtype in ((255, torch.uint8), (256, torch.int16), (40000, torch.int32)):
        gt = torch.rand(rows, 7, generator=gen) > 0.3
        gt[:, 0] = True  # a column of all rows: the largest count
        out = _count_true(gt)
        assert out.dtype == dtype
        assert torch.equal(out.long(), gt.sum(0))
    labels = [0, 1, 1, 0, 1]
    gt = torch.rand(5, 2, 3, generator=gen) > 0.5
    for c in (0, 1):
        assert torch.equal(_class_count(gt, labels, c).long(), gt[torch.tensor(labels) == c].sum(0))
    assert torch.equal(_class_count(gt, [1] * 5, 1).long(), gt.sum(0))


def test_baseline_buffer_gives_the_same_sums_batch_after_batch() -> None:
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(b, 2, 3, 4, generator=gen) for b in (5, 3, 5)]
    st = BaselineStats(2, 3, 4)
    for x in batches:
        st.update(x)
    ref = torch.cat(batches).double()
    want = sum(_tree_sum(x.double()) for x in batches)  # the baseline's fixed order of additions
    assert torch.equal(st.sum, want)
    assert torch.equal(st.sum_sq, sum(_tree_sum(x.double().square()) for x in batches))
    assert torch.allclose(st.sum, ref.sum(0)) and torch.allclose(st.sum_sq, ref.square().sum(0))
    assert st.count == ref.shape[0]
