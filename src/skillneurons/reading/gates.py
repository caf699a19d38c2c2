"""The gates as token-level neurons (issue #19 item 5): how well each head's gate value predicts "this
token is inside a gold answer" (an answer occurrence; for the choice head, a mention of the answer
candidate), with the project's streaming statistics.

Every real passage token of the evaluated questions is one example of a two-class task (in an answer
occurrence or not); the activations are the gate values ``[blocks, 1, heads]`` of the blocks that see
passage tokens (the shared encoder, the per-passage modeler, the cross-passage blocks). The AUROC comes
from :class:`~skillneurons.neurons.stats.PredictivityStats` histograms (gates lie in [0, 1]: 1,000 bins;
the error bound against the exact Mann-Whitney AUROC is reported). Alongside, the share of answer tokens
among the K tokens each head's gate ranks highest (in each sequence the block runs on), against their
share among all tokens: does the gate pick the answer?
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from skillneurons.neurons.stats import PredictivityStats
from skillneurons.reading.dynsa import select_tokens
from skillneurons.reading.network import Reader, ReaderOutput
from skillneurons.reading.results import GateAuroc

__all__ = ["GATE_STATISTIC", "GateRecorder", "exact_auroc"]

BINS = 1000
GATE_STATISTIC = (
    f"PredictivityStats AUROC ({BINS} bins over [0, 1]) of each head's gate for 'token in a gold answer', "
    "over the real passage tokens of the split"
)


class GateRecorder:
    """Collects gate statistics over evaluation batches (``evaluate_reader(..., on_batch=recorder)``)."""

    def __init__(self, model: Reader) -> None:
        self.model = model
        self.blocks = model.blocks()  # the encoder records its last call: the passages
        self.names = ["encoder", "modeler"] + [f"cross{i}" for i in range(len(model.cross))]
        heads = model.config.heads
        n = len(self.names)
        self.stats = PredictivityStats(
            torch.full((n, 1, heads), 0.5, dtype=torch.float64),
            2,
            hist_bins=BINS,
            hist_range=(0.0, 1.0 + 1e-6),
        )
        self.selected = torch.zeros(n, heads, dtype=torch.float64)
        self.selected_answer = torch.zeros(n, heads, dtype=torch.float64)
        self.answer_tokens = 0
        self.tokens = 0
        for blk in self.blocks:
            blk.record = True

    def close(self) -> None:
        for blk in self.blocks:
            blk.record, blk.last_gate = False, None

    def __call__(self, batch: Any, out: ReaderOutput, examples: list[Any]) -> None:
        b, p, lp = batch.passages.shape
        mask = out.mask.cpu()  # [B, T]
        label = torch.zeros_like(mask)
        if batch.spans is not None:  # span head: every answer occurrence
            for i, row in enumerate(batch.spans.cpu()):
                for s, e in row.tolist():
                    if s >= 0:
                        label[i, s : e + 1] = True
        else:  # choice head: the mentions of the answer candidate
            assert batch.mentions is not None and batch.label is not None
            for i, k in enumerate(batch.label.tolist()):
                if k >= 0:
                    label[i] = batch.mentions[i, k].cpu()
        gates, picked = [], []
        pmask = batch.passage_mask.reshape(b * p, lp).cpu()
        for j, blk in enumerate(self.blocks):
            g = blk.last_gate
            assert g is not None
            g = g.float().cpu()
            seq_mask = pmask if j < 2 else mask
            index, valid = select_tokens(g, seq_mask, self.model.config.top_k)
            sel = torch.zeros_like(g, dtype=torch.bool).scatter(2, index, valid)
            if j < 2:  # [B*P, H, lp] -> [B, H, P*lp], the concatenated layout
                g, sel = (t.view(b, p, -1, lp).transpose(1, 2).reshape(b, -1, p * lp) for t in (g, sel))
            gates.append(g)
            picked.append(sel)
        g_all = torch.stack(gates, 1)  # [B, n, H, T]
        s_all = torch.stack(picked, 1)
        acts = g_all.permute(0, 3, 1, 2)[mask]  # [tokens, n, H]
        y = label[mask].long()
        self.stats.update(acts[:, :, None, :].double(), y)
        lab = label[:, None, None, :]
        self.selected += s_all.sum((0, 3)).double()
        self.selected_answer += (s_all & lab).sum((0, 3)).double()
        self.answer_tokens += int(y.sum())
        self.tokens += int(y.numel())

    def result(self) -> list[GateAuroc]:
        auc = self.stats.auroc()[:, 0, :]  # [n, H]
        share = self.answer_tokens / max(1, self.tokens)
        out = []
        for j, name in enumerate(self.names):
            sel = (self.selected_answer[j] / self.selected[j].clamp_min(1)).tolist()
            out.append(GateAuroc(name, auc[j].tolist(), sel, share, self.tokens))
        return out

    def error_bound(self) -> float:
        """The largest bound on |histogram AUROC - exact AUROC| over the heads."""
        return float(self.stats.auroc_error_bound().max())


def exact_auroc(scores: Tensor, labels: Tensor) -> float:
    """The Mann-Whitney AUROC (ties count 1/2), for checking the histogram figure in tests."""
    pos, neg = scores[labels.bool()], scores[~labels.bool()]
    greater = (pos[:, None] > neg[None, :]).double().sum()
    ties = (pos[:, None] == neg[None, :]).double().sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))
