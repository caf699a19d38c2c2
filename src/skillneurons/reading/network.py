"""The DynSAN network (../shared/REFERENCE.md section 9) and its two answer heads.

frozen word-piece table (or the cached vectors of a frozen encoder, ``embeddings_kind = "encoder"``) ->
2-layer highway -> linear to D -> sinusoidal positions; one shared DynSA block
encodes the question and every passage separately; QANet trilinear context-query attention plus
query-to-context, a linear map back to D, one more DynSA block per passage; the passages are
concatenated, a learned passage-rank embedding is added, and N cross-passage DynSA blocks run over the
concatenation. Heads: ``span`` (start over all tokens of all passages; end conditioned on the start,
within ``max_answer_tokens`` of it and in the same passage) or ``choice`` (a distribution r over tokens,
``P(candidate) = sum of r over its mentions``, with a binary candidate-token input feature).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skillneurons.errors import DataError
from skillneurons.reading.config import ReaderConfig
from skillneurons.reading.dynsa import DynSA

__all__ = ["ReadBatch", "Reader", "ReaderOutput", "choice_log_probs", "span_log_likelihood"]

NEG = -1e9  # a logit that never wins (finite: bf16-safe, and a masked row stays NaN-free)


@dataclass
class ReadBatch:
    """Padded tensors of a batch of encoded questions (``reading.encode.collate``).

    question [B, Lq] ids, question_mask [B, Lq]; passages [B, P, Lp] ids, passage_mask [B, P, Lp];
    spans [B, S, 2] (start, end) indices into the concatenated ``P * Lp`` tokens, -1 padded (span head);
    mentions [B, C, P * Lp] bool candidate-mention masks and label [B] (choice head); with encoder
    embeddings, question_vectors [B, Lq, E] and passage_vectors [B, P, Lp, E] (zero on padding) made by
    the encoder of ``vectors_key``.
    """

    question: Tensor
    question_mask: Tensor
    passages: Tensor
    passage_mask: Tensor
    spans: Tensor | None = None
    mentions: Tensor | None = None
    label: Tensor | None = None
    question_vectors: Tensor | None = None
    passage_vectors: Tensor | None = None
    vectors_key: str | None = None

    def to(self, device: torch.device | str) -> ReadBatch:
        moved: dict[str, Any] = {
            k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()
        }
        return ReadBatch(**moved)


@dataclass
class ReaderOutput:
    """``start`` [B, T] and ``end`` [B, T, W] log-probabilities (span head: ``end[b, i, w]`` is the end
    ``i + w`` given the start ``i``), or ``choice`` [B, C] log-probabilities; ``l1`` the gate sum."""

    mask: Tensor
    l1: Tensor
    start: Tensor | None = None
    end: Tensor | None = None
    choice: Tensor | None = None


class Highway(nn.Module):
    def __init__(self, dim: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.gates = nn.ModuleList([nn.Linear(dim, dim) for _ in range(layers)])
        self.maps = nn.ModuleList([nn.Linear(dim, dim) for _ in range(layers)])
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        for gate, lin in zip(self.gates, self.maps):
            t = torch.sigmoid(gate(x))
            x = t * self.drop(F.relu(lin(x))) + (1 - t) * x
        return x


def sinusoid(length: int, dim: int, device: torch.device) -> Tensor:
    """The [length, dim] sinusoidal position table (Vaswani et al.)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return table


class ContextQueryAttention(nn.Module):
    """QANet's trilinear ``S_ij = w . [c_i; q_j; c_i * q_j]``, context-to-query ``A = S1 q`` and
    query-to-context ``B = S1 S2^T c`` (computed as ``S1 (S2^T c)``: no Lc x Lc matrix), then a linear
    map of ``[c; A; c * A; c * B]`` back to D."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.w_c = nn.Linear(dim, 1)
        self.w_q = nn.Linear(dim, 1, bias=False)
        self.w_cq = nn.Parameter(torch.empty(dim).uniform_(-1 / math.sqrt(dim), 1 / math.sqrt(dim)))
        self.proj = nn.Linear(4 * dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, c: Tensor, q: Tensor, cmask: Tensor, qmask: Tensor) -> Tensor:
        s = self.w_c(c) + self.w_q(q).transpose(1, 2) + (c * self.w_cq) @ q.transpose(1, 2)  # [N, Lc, Lq]
        s1 = torch.softmax(s.float().masked_fill(~qmask[:, None, :], NEG), dim=2).to(c.dtype)
        s2 = torch.softmax(s.float().masked_fill(~cmask[:, :, None], NEG), dim=1).to(c.dtype)
        a = s1 @ q
        b = s1 @ (s2.transpose(1, 2) @ c)
        return self.proj(self.drop(torch.cat([c, a, c * a, c * b], dim=-1)))


class Reader(nn.Module):
    """DynSAN over the frozen word-piece table ``embeddings`` ([V, E]; kept as a non-persistent buffer,
    so a saved state dict holds only the trained weights), or, with ``config.embeddings_kind ==
    "encoder"``, over the batches' cached encoder vectors of width ``embeddings`` (an int, or a table
    whose width is taken; the reader then keeps an empty [0, E] table and never holds the encoder)."""

    table: Tensor

    def __init__(self, config: ReaderConfig, embeddings: Tensor | int) -> None:
        super().__init__()
        c = self.config = config
        if c.embeddings_kind == "encoder":
            width = embeddings if isinstance(embeddings, int) else int(embeddings.shape[1])
            table = torch.zeros(0, width)
        elif isinstance(embeddings, int):
            raise DataError("a reader of --embeddings-kind table needs the word-piece table, not a width")
        else:
            table = embeddings
        self.register_buffer("table", table.detach().float(), persistent=False)
        width = table.shape[1] + (1 if c.head == "choice" else 0)  # + the candidate-token feature
        self.highway = Highway(width, 2, c.dropout)
        self.proj = nn.Linear(width, c.dim)

        def block() -> DynSA:
            return DynSA(
                c.dim,
                c.heads,
                c.top_k,
                selection=c.selection,
                conv=c.conv,
                attention=c.attention,
                kernel=c.kernel,
                dropout=c.dropout,
            )

        self.encoder = block()
        self.align = ContextQueryAttention(c.dim, c.dropout)
        self.modeler = block()
        self.rank = nn.Embedding(c.passages, c.dim)
        self.cross = nn.ModuleList([block() for _ in range(c.blocks if c.cross else 0)])
        self.drop = nn.Dropout(c.dropout)
        if c.head == "span":
            self.start = nn.Linear(c.dim, 1)
            self.end_bias = nn.Linear(c.dim, 1)
            self.end_query = nn.Linear(c.dim, c.dim)
        else:
            self.pointer = nn.Linear(c.dim, 1)

    def blocks(self) -> list[DynSA]:
        """Every DynSA block: the shared encoder, the per-passage modeler, the cross-passage blocks."""
        return [self.encoder, self.modeler, *self.cross]

    def embed(self, ids: Tensor, mask: Tensor, feature: Tensor | None = None) -> Tensor:
        """Word pieces -> highway -> D, plus positions. The highway and the projection act on each token
        alone, so they run once per distinct (id, feature) of the batch and are gathered back (the same
        values as per token, several times cheaper: the table is wide); dropout follows per token."""
        key = ids * 2 + (feature.long() if feature is not None else 0)
        uniq, inverse = torch.unique(key, return_inverse=True)
        x = F.embedding(uniq // 2, self.table)
        if feature is not None:
            x = torch.cat([x, (uniq % 2)[:, None].to(x.dtype)], dim=-1)
        x = self.drop(self.proj(self.highway(x))[inverse])
        return (x + sinusoid(ids.shape[-1], x.shape[-1], x.device)) * mask[..., None]

    def embed_vectors(self, vectors: Tensor, mask: Tensor, feature: Tensor | None = None) -> Tensor:
        """Cached encoder vectors [N, L, E] -> highway -> D, plus positions (per token: the vectors of
        one word piece differ by context)."""
        x = vectors.to(self.proj.weight.dtype)
        if feature is not None:
            x = torch.cat([x, feature[..., None].to(x.dtype)], dim=-1)
        x = self.drop(self.proj(self.highway(x)))
        return (x + sinusoid(x.shape[-2], x.shape[-1], x.device)) * mask[..., None]

    def _inputs(
        self, batch: ReadBatch, pmask: Tensor, feature: Tensor | None, qfeature: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """The embedded question [B, Lq, D] and passages [B * P, Lp, D]."""
        b, p, lp = batch.passages.shape
        qmask = batch.question_mask
        if self.config.embeddings_kind == "table":
            qx = self.embed(batch.question, qmask, qfeature)
            return qx, self.embed(batch.passages.reshape(b * p, lp), pmask, feature)
        qv, pv = batch.question_vectors, batch.passage_vectors
        if qv is None or pv is None:
            raise DataError(
                "this reader reads encoder vectors but the batch has none: encode the examples with "
                "encode_examples(..., encoder=load_encoder(name))"
            )
        if qv.shape[-1] != self.table.shape[1]:
            raise DataError(
                f"the batch's encoder vectors are {qv.shape[-1]} wide, the reader was built for "
                f"{self.table.shape[1]}: encode with the encoder the reader was trained on"
            )
        qx = self.embed_vectors(qv, qmask, qfeature)
        return qx, self.embed_vectors(pv.reshape(b * p, lp, -1), pmask, feature)

    def forward(self, batch: ReadBatch, generator: torch.Generator | None = None) -> ReaderOutput:
        b, p, lp = batch.passages.shape
        if p > self.rank.num_embeddings:
            raise DataError(
                f"{p} passages per question, but the reader was built for {self.rank.num_embeddings}: "
                "pass at most that many"
            )
        qmask, pmask = batch.question_mask, batch.passage_mask.reshape(b * p, lp)
        feature = qfeature = None
        if self.config.head == "choice":  # the binary candidate-token feature (0 on question tokens)
            assert batch.mentions is not None
            feature = batch.mentions.any(1).reshape(b * p, lp)
            qfeature = torch.zeros_like(qmask)
        qin, pin = self._inputs(batch, pmask, feature, qfeature)
        q, l1q = self.encoder(qin, qmask, generator)
        x, l1p = self.encoder(pin, pmask, generator)
        qx = q.repeat_interleave(p, dim=0)
        x = self.align(x, qx, pmask, qmask.repeat_interleave(p, dim=0))
        x, l1m = self.modeler(x, pmask, generator)
        x = x.reshape(b, p, lp, -1) + self.rank.weight[:p][None, :, None, :].to(x.dtype)
        x, mask = x.reshape(b, p * lp, -1), batch.passage_mask.reshape(b, p * lp)
        l1 = l1q + (l1p + l1m) * p  # the passage blocks' per-sequence means, per question
        for blk in self.cross:
            x, l1_b = blk(x, mask, generator)
            l1 = l1 + l1_b
        if self.config.head == "span":
            start, end = self._span(x, mask, lp)
            return ReaderOutput(mask, l1, start=start, end=end)
        assert batch.mentions is not None
        r = torch.log_softmax(self.pointer(x).squeeze(-1).float().masked_fill(~mask, NEG), dim=-1)
        return ReaderOutput(mask, l1, choice=choice_log_probs(r, batch.mentions))

    def _span(self, x: Tensor, mask: Tensor, passage_len: int) -> tuple[Tensor, Tensor]:
        """Start log-probs [B, T]; end log-probs [B, T, W] given each start (same passage, within W)."""
        b, t, _ = x.shape
        width = self.config.max_answer_tokens
        start = torch.log_softmax(self.start(x).squeeze(-1).float().masked_fill(~mask, NEG), dim=-1)
        qe = self.end_query(x).float()
        xe, bias = x.float(), self.end_bias(x).squeeze(-1).float()
        seg = torch.arange(t, device=x.device) // passage_len
        cols = []
        for w in range(width):  # end = start + w: B x T x W scores, never a T x T matrix
            score = torch.full((b, t), NEG, device=x.device)
            if w < t:
                ok = mask[:, w:] & mask[:, : t - w] & (seg[w:] == seg[: t - w])
                s = (qe[:, : t - w] * xe[:, w:]).sum(-1) / math.sqrt(x.shape[-1]) + bias[:, w:]
                score[:, : t - w] = s.masked_fill(~ok, NEG)
            cols.append(score)
        end = torch.log_softmax(torch.stack(cols, dim=-1), dim=-1)
        return start, end


def span_log_likelihood(start: Tensor, end: Tensor, spans: Tensor) -> Tensor:
    """Per example ``log sum over the answer occurrences (s, e) of p(s) p(e | s)`` ([B]); ``spans``
    [B, S, 2] with -1 padding (every example has at least one occurrence with ``e - s < W``)."""
    b, s_max, _ = spans.shape
    width = end.shape[-1]
    st, en = spans[..., 0], spans[..., 1]
    ok = (st >= 0) & (en >= st) & (en - st < width)
    st_c, off = st.clamp_min(0), (en - st).clamp(0, width - 1)
    lp_s = start.gather(1, st_c)
    rows = end.gather(1, st_c[..., None].expand(b, s_max, width))  # [B, S, W]
    lp_e = rows.gather(2, off[..., None]).squeeze(-1)
    return torch.logsumexp((lp_s + lp_e).masked_fill(~ok, -math.inf), dim=1)


def choice_log_probs(r: Tensor, mentions: Tensor) -> Tensor:
    """``log P(candidate) = log sum of r over its mentions`` ([B, C]) from token log-probs ``r`` [B, T]
    and mention masks [B, C, T]; a candidate never mentioned gets -inf."""
    return torch.logsumexp(r[:, None, :].masked_fill(~mentions, -math.inf), dim=-1)
