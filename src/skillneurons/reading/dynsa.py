"""The dynamic self-attention block (DynSA) of DynSAN (../shared/REFERENCE.md section 9).

A block: two depthwise-separable 1-D convolutions, each a residual ``X + Conv(LN(X))``; a per-head sigmoid
gate ``G = sigmoid(F_G(F_U(U)))`` (H x L); per head, the K tokens with the largest gate values are
selected (no gradient passes through the selection); scaled dot-product attention among the selected
tokens only, computed on the gathered ``[B, H, K, d]`` tensors (an L x L matrix is never built outside
``selection="full"``); the output ``Z_h = (F_h + A_h) * g_h / max(g_h)`` with ``A_h`` scattered back to
the L positions (zero where not selected); ``Y = F_Y([Z_1 .. Z_H]) + U``; and the L1 term ``||G||_1``.

Padding is never selected: its gate is masked to -inf before the top-k, and a selected slot that falls
on padding (a sequence with fewer than K real tokens) is neither a key nor written back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skillneurons.errors import ConfigError
from skillneurons.reading.config import SELECTIONS

__all__ = ["DynSA", "SeparableConv", "select_tokens"]


class SeparableConv(nn.Module):
    """``X + ReLU(pointwise(depthwise(LN(X))))``; padded positions are zeroed before the convolution."""

    def __init__(self, dim: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim, bias=False)
        self.pointwise = nn.Conv1d(dim, dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.norm(x).masked_fill(~mask[..., None], 0.0).transpose(1, 2)
        h = F.relu(self.pointwise(self.depthwise(h))).transpose(1, 2)
        return x + self.drop(h)


def select_tokens(
    scores: Tensor, mask: Tensor, k: int, generator: torch.Generator | None = None, random: bool = False
) -> tuple[Tensor, Tensor]:
    """Per head, the indices of the ``k`` tokens with the largest ``scores`` ([B, H, L]; uniform random
    scores drawn from ``generator`` on the CPU when ``random``), padding excluded.

    Returns ``(index [B, H, k'], valid [B, H, k'])`` with ``k' = min(k, L)``; ``valid`` is False where a
    slot fell on padding (fewer than ``k`` real tokens).
    """
    b, h, length = scores.shape
    if random:
        scores = torch.rand((b, h, length), generator=generator).to(scores.device)
    scores = scores.detach().float().masked_fill(~mask[:, None, :], -math.inf)
    index = scores.topk(min(k, length), dim=-1).indices
    valid = mask[:, None, :].expand(b, h, length).gather(-1, index)
    return index, valid


class DynSA(nn.Module):
    """One DynSA block over ``[B, L, D]`` token vectors with a ``[B, L]`` bool mask (True: a real token).

    ``forward`` returns ``(Y, l1)``: the block output and ``sum(G)`` over real tokens and heads, averaged
    over the batch (0 for ``random_nogate``, which has no gate). With ``record=True`` the last gate
    values (``[B, H, L]``, detached, 0 on padding) are kept in ``last_gate``.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        top_k: int,
        *,
        selection: str = "gate",
        conv: bool = True,
        attention: bool = True,
        kernel: int = 7,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if selection not in SELECTIONS:
            raise ConfigError(f"selection '{selection}' is not known: use one of {', '.join(SELECTIONS)}")
        if dim % heads:
            raise ConfigError(f"dim {dim} is not a multiple of heads {heads}")
        self.dim, self.heads, self.top_k, self.selection = dim, heads, top_k, selection
        self.use_attention = attention
        self.convs = nn.ModuleList([SeparableConv(dim, kernel, dropout) for _ in range(2 if conv else 0)])
        self.f_u = nn.Linear(dim, dim)
        self.f_g = nn.Linear(dim, heads)
        self.f_h = nn.Linear(dim, dim)  # the per-head linear maps of F_U(U), one D/H slice each
        self.qkv = nn.Linear(dim, 3 * dim) if attention else None
        self.f_y = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.attn_drop = nn.Dropout(dropout)
        self.record = False
        self.last_gate: Tensor | None = None

    def forward(
        self, x: Tensor, mask: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        for conv in self.convs:
            x = conv(x, mask)
        b, length, d = x.shape
        h, dh = self.heads, d // self.heads
        fu = F.relu(self.f_u(x))
        f = self.f_h(fu).view(b, length, h, dh).transpose(1, 2)  # [B, H, L, dh]
        g = torch.sigmoid(self.f_g(fu).float()).transpose(1, 2).masked_fill(~mask[:, None, :], 0.0)
        if self.record:
            self.last_gate = g.detach()
        z = f
        if self.qkv is not None:
            z = z + self._attend(x, mask, g, generator)
        if self.selection == "random_nogate":
            l1 = x.new_zeros((), dtype=torch.float32)
        else:
            scale = g / g.amax(-1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
            z = z * scale[..., None].to(z.dtype)
            l1 = g.sum() / b
        y = self.f_y(z.transpose(1, 2).reshape(b, length, d))
        return x + self.drop(y), l1

    def _attend(self, x: Tensor, mask: Tensor, g: Tensor, generator: torch.Generator | None) -> Tensor:
        """The attention output ``A`` ([B, H, L, dh]), zero where a token is not selected. Outside
        ``full``, each head projects only its K selected tokens to queries, keys and values."""
        assert self.qkv is not None
        b, length, d = x.shape
        h, dh = self.heads, d // self.heads
        if self.selection == "full":
            q, k, v = self.qkv(x).view(b, length, 3, h, dh).permute(2, 0, 3, 1, 4)  # each [B, H, L, dh]
            return self._scores_to_output(q, k, v, mask[:, None, :].expand(b, h, length))
        random = self.selection in ("random", "random_nogate")
        index, valid = select_tokens(g, mask, self.top_k, generator, random=random)
        xs = x[:, None].expand(b, h, length, d).gather(2, index[..., None].expand(-1, -1, -1, d))
        w = self.qkv.weight.view(3, h, dh, d).transpose(0, 1).reshape(h, 3 * dh, d)
        bias = self.qkv.bias.view(3, h, dh).transpose(0, 1).reshape(h, 1, 3 * dh)
        qkv = torch.einsum("bhkd,hed->bhke", xs, w.to(xs.dtype)) + bias.to(xs.dtype)  # [B, H, K, 3 dh]
        q, k, v = qkv.split(dh, dim=-1)
        out = self._scores_to_output(q, k, v, valid)
        gi = index[..., None].expand(-1, -1, -1, dh)
        return torch.zeros((b, h, length, dh), dtype=out.dtype, device=out.device).scatter(2, gi, out)

    def _scores_to_output(self, q: Tensor, k: Tensor, v: Tensor, valid: Tensor) -> Tensor:
        """Scaled dot-product attention among the tokens of ``q, k, v`` ([B, H, n, dh]); ``valid``
        ([B, H, n]) marks the real ones (keys restricted to them; other rows give zero)."""
        scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        scores = scores.masked_fill(~valid[:, :, None, :], torch.finfo(scores.dtype).min)
        p = self.attn_drop(torch.softmax(scores, dim=-1))
        return (p @ v) * valid[..., None].to(v.dtype)
