"""DynSAN model (issue #19): the DynSA block's gate, selection and attention, and the two heads."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from skillneurons.errors import ConfigError
from skillneurons.reading.config import ReaderConfig
from skillneurons.reading.dynsa import DynSA, select_tokens
from skillneurons.reading.network import ReadBatch, Reader, choice_log_probs, sinusoid, span_log_likelihood
from skillneurons.reading.train import decode_spans


def _block(selection: str = "gate", top_k: int = 4, **kw: object) -> DynSA:
    torch.manual_seed(0)
    return DynSA(16, 4, top_k, selection=selection, dropout=0.0, **kw).eval()  # type: ignore[arg-type]


def _inputs(b: int = 2, length: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    x = torch.randn(b, length, 16)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[1, length - 5 :] = False
    return x, mask


def test_the_gate_receives_gradient_through_the_gated_output() -> None:
    blk = _block("gate")
    x, mask = _inputs()
    y, l1 = blk(x, mask)
    (y * mask[..., None]).square().sum().backward()  # no L1 term: the gradient comes through Z alone
    assert blk.f_g.weight.grad is not None
    assert float(blk.f_g.weight.grad.abs().sum()) > 0
    assert float(l1.detach()) > 0


def test_padding_is_never_selected() -> None:
    g = torch.rand(3, 2, 10)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[0, 6:] = False  # 6 real tokens, K = 8: only the real ones are valid
    mask[1, :4] = False
    g[1, :, :4] = 0.99  # padding with the largest gate values is still not picked
    for random in (False, True):
        index, valid = select_tokens(g, mask, 8, torch.Generator().manual_seed(0), random=random)
        picked = mask[:, None, :].expand(3, 2, 10).gather(-1, index)
        assert torch.equal(picked, valid)  # a slot is valid exactly when it holds a real token
        assert int(valid[0].sum(-1).max()) == 6  # fewer real tokens than K: only the real ones
        assert bool(valid[2].all())  # 10 real tokens: all K slots are real
        assert bool((index[1][valid[1]] >= 4).all())  # the high-gate padding of row 1 is never taken
        for h in range(2):  # every real token of row 0 is selected once
            assert sorted(index[0, h][valid[0, h]].tolist()) == list(range(6))


def test_padding_gets_no_attention_output_and_does_not_change_real_tokens() -> None:
    blk = _block(top_k=4)
    x, mask = _inputs()
    y1, _ = blk(x, mask)
    x2 = x.clone()
    x2[1, -5:] = 100.0  # change only the padding
    y2, _ = blk(x2, mask)
    assert torch.allclose(y1[1, :-5], y2[1, :-5], atol=1e-5)


@pytest.mark.parametrize("conv", [True, False])
def test_gate_selection_with_k_at_least_l_equals_full_attention(conv: bool) -> None:
    x, mask = _inputs(length=12)
    gate = _block("gate", top_k=12, conv=conv)
    full = _block("full", top_k=12, conv=conv)
    full.load_state_dict(gate.state_dict())
    y_gate, l1_gate = gate(x, mask)
    y_full, l1_full = full(x, mask)
    assert torch.allclose(y_gate, y_full, atol=1e-5)
    assert torch.allclose(l1_gate, l1_full)
    small = _block("gate", top_k=3, conv=conv)
    small.load_state_dict(gate.state_dict())
    assert not torch.allclose(small(x, mask)[0], y_full, atol=1e-4)  # K < L really selects


def test_random_selection_is_reproducible_from_its_seed() -> None:
    x, mask = _inputs(length=20)
    for selection in ("random", "random_nogate"):
        blk = _block(selection, top_k=5)
        a, _ = blk(x, mask, torch.Generator().manual_seed(7))
        b, _ = blk(x, mask, torch.Generator().manual_seed(7))
        c, _ = blk(x, mask, torch.Generator().manual_seed(8))
        assert torch.equal(a, b)
        assert not torch.allclose(a, c)


def test_random_nogate_has_no_gate_term_and_no_attention_ablation_runs() -> None:
    x, mask = _inputs()
    _, l1 = _block("random_nogate")(x, mask, torch.Generator().manual_seed(0))
    assert float(l1) == 0.0
    y, _ = _block(attention=False)(x, mask)
    assert y.shape == x.shape and bool(torch.isfinite(y).all())


def test_the_block_never_builds_an_l_by_l_matrix_in_gate_mode() -> None:
    blk = _block("gate", top_k=4)
    x, mask = _inputs(length=40)
    shapes: list[tuple[int, ...]] = []
    real_softmax = torch.softmax

    def spy(t: torch.Tensor, dim: int) -> torch.Tensor:
        shapes.append(tuple(t.shape))
        return real_softmax(t, dim=dim)

    torch.softmax = spy  # type: ignore[assignment]
    try:
        blk(x, mask)
    finally:
        torch.softmax = real_softmax  # type: ignore[assignment]
    assert shapes == [(2, 4, 4, 4)]  # [B, H, K, K]


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="multiple"):
        ReaderConfig(dim=10, heads=4)
    with pytest.raises(ConfigError, match="selection"):
        ReaderConfig(selection="best")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="odd"):
        ReaderConfig(kernel=4)


def _reader(head: str = "span") -> Reader:
    torch.manual_seed(0)
    c = ReaderConfig(dim=16, heads=4, top_k=8, blocks=2, passages=3, max_answer_tokens=4, head=head)  # type: ignore[arg-type]
    return Reader(c, torch.randn(40, 12)).eval()


def _batch(b: int = 2, p: int = 3, lp: int = 9) -> ReadBatch:
    g = torch.Generator().manual_seed(3)
    pm = torch.ones(b, p, lp, dtype=torch.bool)
    pm[1, 2, 4:] = False
    return ReadBatch(
        torch.randint(0, 40, (b, 5), generator=g),
        torch.ones(b, 5, dtype=torch.bool),
        torch.randint(0, 40, (b, p, lp), generator=g),
        pm,
    )


def test_span_loss_equals_cross_entropy_when_the_answer_occurs_once() -> None:
    out = _reader()(_batch())
    assert out.start is not None and out.end is not None
    spans = torch.tensor([[[4, 6]], [[10, 10]]])
    ll = span_log_likelihood(out.start, out.end, spans)
    for i, (s, e) in enumerate([(4, 6), (10, 10)]):
        ce = F.nll_loss(out.start[i : i + 1], torch.tensor([s])) + F.nll_loss(
            out.end[i, s][None], torch.tensor([e - s])
        )
        assert torch.allclose(-ll[i], ce, atol=1e-5)


def test_span_loss_sums_over_every_occurrence() -> None:
    out = _reader()(_batch())
    assert out.start is not None and out.end is not None
    both = span_log_likelihood(out.start, out.end, torch.tensor([[[1, 2], [12, 13]], [[0, 0], [-1, -1]]]))
    one = span_log_likelihood(out.start, out.end, torch.tensor([[[1, 2]], [[0, 0]]]))
    other = span_log_likelihood(out.start, out.end, torch.tensor([[[12, 13]], [[0, 0]]]))
    assert torch.allclose(both[0], torch.logaddexp(one[0], other[0]), atol=1e-6)
    assert torch.allclose(both[1], one[1])


def test_spans_stay_in_one_passage_and_are_at_most_w_long() -> None:
    out = _reader()(_batch())
    assert out.end is not None
    lp = 9
    probs = out.end.detach().exp()
    real = out.mask
    for i in range(out.end.shape[1]):
        for w in range(out.end.shape[2]):
            for b in range(2):
                bad = i + w >= out.end.shape[1] or (i + w) // lp != i // lp or not real[b, i + w]
                if real[b, i] and bad:  # an end in another passage, past the end, or on padding
                    assert float(probs[b, i, w]) < 1e-6
    start, end = decode_spans(out)
    assert bool(((end >= start) & (end - start < 4)).all())
    assert bool((start // lp == end // lp).all())
    assert float(out.start.detach().exp()[1, 2 * lp + 4 :].max()) < 1e-6  # padding is never a start


def test_choice_head_sums_r_over_every_mention() -> None:
    r = torch.log_softmax(torch.randn(2, 10), dim=-1)
    mentions = torch.zeros(2, 3, 10, dtype=torch.bool)
    mentions[0, 0, [1, 4, 5]] = True
    mentions[0, 1, 7] = True
    mentions[1, 2, [0, 9]] = True
    lp = choice_log_probs(r, mentions)
    assert torch.allclose(lp[0, 0].exp(), r[0, [1, 4, 5]].exp().sum())
    assert torch.allclose(lp[0, 1], r[0, 7])
    assert lp[0, 2] == -math.inf and lp[1, 0] == -math.inf
    assert torch.allclose(lp[1, 2].exp(), r[1, [0, 9]].exp().sum())


def test_choice_reader_gives_a_distribution_over_mentioned_candidates() -> None:
    batch = _batch()
    batch.mentions = torch.zeros(2, 2, 27, dtype=torch.bool)
    batch.mentions[:, 0, [2, 3, 20]] = True
    batch.mentions[:, 1, [5]] = True
    batch.label = torch.tensor([0, 1])
    out = _reader("choice")(batch)
    assert out.choice is not None and out.choice.shape == (2, 2)
    assert bool((out.choice.exp().sum(-1) <= 1 + 1e-5).all())


def test_the_highway_once_per_distinct_piece_equals_the_per_token_one() -> None:
    model = _reader("choice")
    ids = torch.tensor([[3, 5, 3, 7], [5, 5, 0, 0]])
    mask = ids > 0
    feature = torch.tensor([[True, False, False, False], [False, True, False, False]])
    got = model.embed(ids, mask, feature)
    x = torch.cat([F.embedding(ids, model.table), feature[..., None].float()], dim=-1)
    want = (model.proj(model.highway(x)) + sinusoid(4, 16, ids.device)) * mask[..., None]
    assert torch.allclose(got, want, atol=1e-6)
