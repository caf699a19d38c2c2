"""The knowledgeable verbalizer's steps as pure functions on tensors (REFERENCE.md section 8).

Shapes: ``B`` examples, ``N`` unlabelled contexts, ``V`` vocabulary tokens, ``W`` label words (of
all classes, class by class), ``P`` pieces per word (padded), ``C`` classes. ``owner[w]`` is the
class of word ``w``. Each step is one function, so a pipeline is a composition and every step is
tested on hand-made logits:

1. :func:`token_prior` / :func:`contextual_prior` - the contextual prior;
2. :func:`frequency_keep` (the original rule, on the vocabulary) or :func:`frequency_keep_words`,
   and :func:`shared_keep` - frequency refinement and words shared between classes;
3. :func:`calibrate_log_probs` - softmax over all label words, divided by the prior, renormalised;
4. :func:`relevance_keep` - relevance refinement against each class's anchor word;
5. :func:`aggregate` - mean of log p over a class's words, or learned softmax weights.

Multi-token words are scored from their pieces' logits at the read position by
:func:`combine_pieces`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

import torch

from skillneurons.errors import ConfigError

MultiToken = Literal["first", "mean", "max"]
MULTI_TOKEN = ("first", "mean", "max")


def combine_pieces(piece_logits: torch.Tensor, piece_mask: torch.Tensor, how: str = "first") -> torch.Tensor:
    """One score per word from its pieces' logits, all taken at the read position.

    Args:
        piece_logits: ``[..., W, P]`` logit of every piece of every word (padding anywhere).
        piece_mask: ``[W, P]`` bool, True at real pieces; column 0 (the first piece) is always real.
        how: ``"first"`` (the first piece's logit: the original KPT default, and for a causal LM
            the only exact one, since ``log p(word|x)`` starts with ``log p(piece_1|x)``), ``"mean"``
            or ``"max"`` over the pieces. Mean and max score the later pieces at the same read
            position as the first, which is where a masked LM's single mask slot is; for a causal LM
            they are a heuristic (the later pieces' logits are not conditioned on the earlier ones).

    Returns:
        ``[..., W]``.
    """
    if how == "first":
        return piece_logits[..., 0]
    mask = piece_mask.to(device=piece_logits.device)
    if how == "mean":
        m = mask.to(piece_logits.dtype)
        return (piece_logits * m).sum(-1) / m.sum(-1).clamp(min=1)
    if how == "max":
        return piece_logits.masked_fill(~mask, float("-inf")).amax(-1)
    raise ConfigError(f"unknown multi-token rule '{how}': use one of {', '.join(MULTI_TOKEN)}")


# ---- 1. contextual prior -----------------------------------------------------------------------
def token_prior(vocab_logits: torch.Tensor) -> torch.Tensor:
    """``s_bar(t)`` for every vocabulary token: the mean over contexts of ``log p(t|c)``.

    ``vocab_logits``: ``[N, V]`` read-position logits of ``N`` unlabelled contexts. Per context,
    log-probabilities differ from logits by a constant, so the ranking equals that of the mean
    logit (the original code's ``calibrate`` output). Returns ``[V]``.
    """
    return torch.log_softmax(vocab_logits.float(), -1).mean(0)


def contextual_prior(word_logits: torch.Tensor) -> torch.Tensor:
    """``p~(v)``: the mean over contexts of the softmax over all label words (step 3's distribution).

    ``word_logits``: ``[N, W]``. Returns ``[W]``, summing to 1.
    """
    return torch.softmax(word_logits.float(), -1).mean(0)


# ---- 2. frequency and shared-word refinement ---------------------------------------------------
def _check_cutoff(cutoff: float) -> None:
    if not 0.0 <= cutoff < 1.0:
        raise ConfigError(f"frequency cutoff {cutoff} is outside [0, 1): give the fraction to drop, e.g. 0.5")


def frequency_keep(
    word_pieces: Sequence[Sequence[int]], prior: torch.Tensor, cutoff: float = 0.5
) -> list[bool]:
    """The original KPT frequency refinement: rank every vocabulary token by its prior ``prior``
    (``[V]``) and drop a word when one of ``word_pieces[w]`` (its scored token ids) is among the
    lowest ``floor(cutoff * V)`` tokens."""
    _check_cutoff(cutoff)
    n_low = int(cutoff * prior.numel())
    low = set(torch.argsort(prior.float(), stable=True)[:n_low].tolist())
    return [not any(int(t) in low for t in pieces) for pieces in word_pieces]


def frequency_keep_words(word_prior: torch.Tensor, cutoff: float = 0.5) -> list[bool]:
    """Frequency refinement among the label words themselves: drop the ``floor(cutoff * W)`` words
    with the lowest prior ``word_prior`` (``[W]``, e.g. the mean ``log p(w|c)``)."""
    _check_cutoff(cutoff)
    n_low = int(cutoff * word_prior.numel())
    low = set(torch.argsort(word_prior.float(), stable=True)[:n_low].tolist())
    return [w not in low for w in range(word_prior.numel())]


def shared_keep(keys: Sequence[Hashable], owner: Sequence[int]) -> list[bool]:
    """Drop every word whose key (its scored token ids) occurs in more than one class: it cannot
    tell them apart. Within a class, only the first of several words with the same key is kept."""
    classes: dict[Hashable, set[int]] = {}
    for k, c in zip(keys, owner, strict=True):
        classes.setdefault(k, set()).add(int(c))
    seen: set[tuple[Hashable, int]] = set()
    keep = []
    for k, c in zip(keys, owner, strict=True):
        ok = len(classes[k]) == 1 and (k, int(c)) not in seen
        seen.add((k, int(c)))
        keep.append(ok)
    return keep


# ---- 3. calibration ----------------------------------------------------------------------------
def calibrate_probs(probs: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Contextual calibration ``p(v|x) / p~(v)``, renormalised over all label words.

    ``probs``: ``[..., W]`` (each row sums to 1); ``prior``: ``[W]``. Returns ``[..., W]``.
    """
    r = probs / prior
    return r / r.sum(-1, keepdim=True)


def calibrate_log_probs(word_logits: torch.Tensor, log_prior: torch.Tensor | None) -> torch.Tensor:
    """Step 3 in log space: ``log softmax`` over all label words, then (when ``log_prior`` ``[W]`` is
    given) ``log p(v|x) - log p~(v)`` renormalised; equal to ``log calibrate_probs(...)``."""
    logp = torch.log_softmax(word_logits, -1)
    if log_prior is None:
        return logp
    return torch.log_softmax(logp - log_prior, -1)


# ---- 4. relevance refinement -------------------------------------------------------------------
def _pearson_columns(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correlation between every column of ``x`` ``[N, W]`` and of ``y`` ``[N, C]`` -> ``[W, C]``
    (0 where a column is constant)."""
    xc = x - x.mean(0, keepdim=True)
    yc = y - y.mean(0, keepdim=True)
    xn = xc / xc.norm(dim=0, keepdim=True).clamp(min=1e-12)
    yn = yc / yc.norm(dim=0, keepdim=True).clamp(min=1e-12)
    return xn.T @ yn


def relevance_scores(word_scores: torch.Tensor, anchors: Sequence[int]) -> torch.Tensor:
    """``[W, C]`` Pearson correlation, over the unlabelled contexts, between every word's
    ``log p(w|c)`` (``word_scores`` ``[N, W]``) and each class's anchor word (column ``anchors[c]``)."""
    return _pearson_columns(word_scores.double(), word_scores[:, list(anchors)].double()).float()


def relevance_keep(
    word_scores: torch.Tensor, owner: Sequence[int], anchors: Sequence[int], margin: float = 0.0
) -> list[bool]:
    """Keep a word when its behaviour over the contexts correlates with its own class's anchor more
    than with every other class's anchor (by more than ``margin``). Anchors are always kept."""
    r = relevance_scores(word_scores, anchors)
    keep = []
    anchor_set = {int(a) for a in anchors}
    for w, c in enumerate(owner):
        others = torch.cat([r[w, :c], r[w, c + 1 :]])
        ok = w in anchor_set or not len(others) or bool(r[w, c] > others.max() + margin)
        keep.append(ok)
    return keep


# ---- 5. aggregation ----------------------------------------------------------------------------
def membership(owner: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[C, W]`` bool: word ``w`` belongs to class ``c``."""
    return torch.arange(num_classes, device=owner.device).unsqueeze(1) == owner.unsqueeze(0)


def aggregate(
    log_probs: torch.Tensor, member: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Class scores ``[..., C]`` from word log-probabilities ``[..., W]``.

    Without ``weights``: the mean over each class's words (KPT zero-shot). With ``weights`` ``[W]``
    (trainable logits): ``sum_v softmax_class(weights)_v * log p(v)``, a learned weighting of each
    class's words (KPT few-shot); all-zero weights give the mean.
    """
    theta = torch.zeros(member.shape[1], device=log_probs.device) if weights is None else weights
    alpha = torch.softmax(theta.float().unsqueeze(0).masked_fill(~member, float("-inf")), -1)  # [C, W]
    return log_probs @ alpha.T.to(log_probs.dtype)
