"""Ranking, aggregation and selection of skill neurons; task-similarity helpers.

REFERENCE.md section 2 steps 4-7 and section 4. Everything works on [L, N] score tensors
(layer x neuron), float64, on the CPU; a neuron is addressed as ``(layer, index)``.

Conventions:

* **Order**: descending score; ties go to the lower layer, then the lower index (a stable sort of the
  flattened ``layer * N + index`` addresses), so rankings and masks are deterministic.
* **Quota rounding**: a fraction ``rho`` of ``n`` neurons is ``round_half_up(rho * n)`` neurons,
  computed on the decimal value of ``rho`` as written (``repr``), so ``rho=0.125, n=4`` gives 1 and
  ``rho=0.02, n=3072`` gives 61 (61.44, the original's "2% = 61 per layer"); see :func:`quota_size`.
* **Per-layer selection** (the original): every layer gets the same quota ``quota_size(rho, N)``;
  **global**: the top ``quota_size(rho, L * N)`` of all neurons.
* **Union over binary subtasks** (:func:`union_mask`): see there.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor

from skillneurons.artifacts import load_artifact, save_artifact
from skillneurons.errors import ArtifactError, ConfigError
from skillneurons.neurons.config import DECOMPOSITION_SCHEMES, SCORES

__all__ = [
    "DECOMPOSITION_SCHEMES",
    "Overlap",
    "SkillRanking",
    "Subtask",
    "aggregate",
    "balanced_accuracy",
    "decompose",
    "overlap",
    "per_prompt",
    "prediction_accuracy",
    "quota_size",
    "spearman",
    "union_mask",
]


# ----------------------------------------------------------------------------------------------------
# per prompt / over prompts


def per_prompt(pred: Tensor) -> tuple[Tensor, Tensor]:
    """Per-prompt score: max over positions (REFERENCE.md section 2 step 4).

    Args:
        pred: [L, T, N] predictivity of one prompt.

    Returns:
        ``(score, best_position)``: [L, N] float64 maximum over T, and [L, N] int64 position attaining
        it (the first such position on ties).
    """
    if not isinstance(pred, Tensor) or pred.dim() != 3 or pred.shape[1] < 1:
        shape = list(pred.shape) if isinstance(pred, Tensor) else type(pred).__name__
        raise ConfigError(f"predictivity has shape {shape}: pass a [layers, positions, neurons] tensor")
    p = pred.detach().to(torch.float64)
    score = p.amax(dim=1)
    T = p.shape[1]
    positions = torch.arange(T, device=p.device).view(1, T, 1).expand_as(p)
    best = torch.where(p == score.unsqueeze(1), positions, T).amin(dim=1)
    return score, best


def aggregate(scores: Sequence[Tensor], how: Literal["mean", "min"] = "mean") -> Tensor:
    """Combine the [L, N] scores of several prompts (random seeds) into one [L, N] float64 score.

    ``how="mean"`` (the paper's default) or ``"min"`` (a neuron must be predictive for every prompt).
    """
    if len(scores) == 0:
        raise ConfigError("no scores to aggregate: pass the [L, N] score of at least one prompt")
    shapes = {tuple(s.shape) for s in scores}
    if len(shapes) != 1 or scores[0].dim() != 2:
        raise ConfigError(
            f"scores of shapes {sorted(shapes)} cannot be aggregated: pass [L, N] scores of one model"
        )
    stacked = torch.stack([s.detach().to(device="cpu", dtype=torch.float64) for s in scores])
    if how == "mean":
        return stacked.mean(0)
    if how == "min":
        return stacked.amin(0)
    raise ConfigError(f"aggregation {how!r} is unknown: use 'mean' or 'min'")


# ----------------------------------------------------------------------------------------------------
# selection


def quota_size(rho: float, n: int) -> int:
    """``round_half_up(rho * n)`` with ``rho`` taken as the decimal it prints as; ``0 <= rho <= 1``."""
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0.0 <= float(rho) <= 1.0:
        raise ConfigError(f"rho={rho!r} is invalid: pass a fraction between 0 and 1 (e.g. 0.02 for 2%)")
    k = int((Decimal(repr(float(rho))) * n).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return min(max(k, 0), n)


@dataclass
class SkillRanking:
    """The full ranking of every neuron by its skill score; masks for any ``rho`` derive from it.

    Args:
        scores: [L, N] score per (layer, neuron), e.g. :func:`aggregate` of :func:`per_prompt`
            predictivities. Stored as float64 on the CPU; must be finite.
        meta: JSON-able provenance (model, task, subtask, seeds, how ...), saved in the manifest.
    """

    scores: Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.scores, Tensor) or self.scores.dim() != 2 or self.scores.numel() == 0:
            raise ConfigError(
                "SkillRanking scores must be a non-empty [layers, neurons] tensor: pass "
                "per_prompt()/aggregate() output"
            )
        self.scores = self.scores.detach().to(device="cpu", dtype=torch.float64).contiguous()
        if not bool(torch.isfinite(self.scores).all()):
            raise ConfigError("SkillRanking scores contain NaN or inf: recompute them from finite statistics")

    @property
    def n_layers(self) -> int:
        return int(self.scores.shape[0])

    @property
    def d_ff(self) -> int:
        return int(self.scores.shape[1])

    def order(self, per_layer: bool = True) -> Tensor:
        """Neurons best first. ``per_layer``: [L, N] int64 neuron indices per layer; otherwise [L*N]
        int64 flat addresses ``layer * N + index``. Ties: lower layer, then lower index, first."""
        s = self.scores.numpy()
        if per_layer:
            return torch.from_numpy(np.argsort(-s, axis=1, kind="stable"))
        return torch.from_numpy(np.argsort(-s.reshape(-1), kind="stable"))

    def quota(self, rho: float, per_layer: bool = True) -> int:
        """Neurons selected per layer (``per_layer``) or in total for fraction ``rho``."""
        return quota_size(rho, self.d_ff if per_layer else self.n_layers * self.d_ff)

    def mask(self, rho: float, per_layer: bool = True) -> Tensor:
        """[L, N] bool mask of the top fraction ``rho``: ``quota(rho)`` neurons in every layer
        (``per_layer``, the original) or the top ``quota(rho, False)`` overall."""
        k = self.quota(rho, per_layer)
        out = torch.zeros(self.scores.shape, dtype=torch.bool)
        if per_layer:
            out.scatter_(1, self.order(True)[:, :k], True)
        else:
            out.view(-1)[self.order(False)[:k]] = True
        return out

    def top(self, k: int) -> list[tuple[int, int, float]]:
        """The ``k`` best neurons overall as ``(layer, index, score)``, best first."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ConfigError(f"k={k!r} is invalid: pass a non-negative integer")
        flat = self.order(False)[:k].tolist()
        N = self.d_ff
        s = self.scores.view(-1)
        return [(f // N, f % N, float(s[f])) for f in flat]

    def layer_distribution(self, rho: float) -> Tensor:
        """[L] int64: how many of the global top-``rho`` neurons lie in each layer."""
        return self.mask(rho, per_layer=False).sum(1)

    def save(self, path: str | os.PathLike[str], manifest: Mapping[str, Any] | None = None) -> Path:
        """Save as a ``skill_ranking`` artifact: the full [L, N] scores plus ``meta`` in the manifest."""
        info = {"n_layers": self.n_layers, "d_ff": self.d_ff, "meta": self.meta}
        return save_artifact(
            path, {"scores": self.scores}, kind="skill_ranking", manifest={**info, **dict(manifest or {})}
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SkillRanking:
        """Load a ``skill_ranking`` artifact written by :meth:`save`."""
        tensors, manifest = load_artifact(path, kind="skill_ranking")
        scores = tensors.get("scores")
        if scores is None or scores.dim() != 2:
            raise ArtifactError(
                f"{path} has no [L, N] 'scores' tensor: the artifact is corrupted; re-create it"
            )
        meta = manifest.get("meta", {})
        return cls(scores, dict(meta) if isinstance(meta, dict) else {})


# ----------------------------------------------------------------------------------------------------
# multi-class


@dataclass(frozen=True)
class Subtask:
    """A binary subtask of a multi-class task: ``positive`` classes (label 1) vs ``negative`` (label 0).

    ``balanced``: score it with the balanced accuracy (mean of the per-side rates); :func:`decompose`
    sets it for every subtask of a task with 3 or more classes (the paper balanced its 3-class
    subtasks) and, for a 2-class task, only with ``score="balanced"`` (default: the paper's plain
    accuracy).
    """

    positive: tuple[int, ...]
    negative: tuple[int, ...]
    name: str
    balanced: bool = False


def _side_name(side: tuple[int, ...]) -> str:
    return "+".join(str(c) for c in side)


def prediction_accuracy(confusion: Tensor, subtask: Subtask) -> float | None:
    """A classifier's accuracy on a binary subtask, weighted as the neurons' predictivity is
    (:meth:`~skillneurons.neurons.stats.PredictivityStats.accuracy`), from its ``confusion`` [C, C]
    (true x predicted): a prediction in the positive classes counts as positive. None when a side has
    no examples."""
    conf = confusion.double().cpu()
    pos, neg = list(subtask.positive), list(subtask.negative)
    n = conf.sum(1)
    n_pos, n_neg = float(n[pos].sum()), float(n[neg].sum())
    if n_pos == 0 or n_neg == 0:
        return None
    said_pos = conf[:, pos].sum(1)
    tp, tn = float(said_pos[pos].sum()), n_neg - float(said_pos[neg].sum())
    if subtask.balanced:  # the exact rational, rounded once (as the neurons' balanced accuracy)
        return (tp * n_neg + tn * n_pos) / (2 * n_pos * n_neg)
    return (tp + tn) / (n_pos + n_neg)


def balanced_accuracy(confusion: Tensor) -> float | None:
    """The mean recall over the classes that have examples, from ``confusion`` [C, C] (true x predicted)."""
    conf = confusion.double().cpu()
    n = conf.sum(1)
    keep = n > 0
    if not bool(keep.any()):
        return None
    return float((conf.diagonal()[keep] / n[keep]).mean())


def decompose(
    num_classes: int,
    scheme: Literal["one_vs_rest", "pairwise", "paper"] = "one_vs_rest",
    score: Literal["accuracy", "balanced"] = "accuracy",
) -> list[Subtask]:
    """Binary subtasks of a ``num_classes``-way task (REFERENCE.md section 2 step 7).

    * 2 classes, any scheme: one subtask, class 1 vs class 0 (balanced only with
      ``score="balanced"``).
    * ``one_vs_rest``: class c vs all others, for c = 0..C-1.
    * ``pairwise``: class j vs class i for every i < j.
    * ``paper`` (3 classes only): class 0 vs class 2, then class 1 vs rest (0 and 2), as the original.

    With 3+ classes every subtask is ``balanced`` whatever ``score``. Names: ``"1_vs_0"``,
    ``"1_vs_rest"``, ...
    """
    if score not in SCORES:
        raise ConfigError(f"score {score!r} is unknown: use 'accuracy' or 'balanced'")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes={num_classes!r} is invalid: a task needs at least 2 classes")
    if scheme not in DECOMPOSITION_SCHEMES:
        raise ConfigError(
            f"decomposition scheme {scheme!r} is unknown: use one of {', '.join(DECOMPOSITION_SCHEMES)}"
        )
    if num_classes == 2:
        return [Subtask((1,), (0,), "1_vs_0", balanced=score == "balanced")]
    classes = tuple(range(num_classes))
    if scheme == "one_vs_rest":
        return [
            Subtask((c,), tuple(o for o in classes if o != c), f"{c}_vs_rest", balanced=True) for c in classes
        ]
    if scheme == "pairwise":
        return [Subtask((j,), (i,), f"{j}_vs_{i}", balanced=True) for i in classes for j in classes if i < j]
    if num_classes != 3:
        raise ConfigError(
            f"the 'paper' decomposition is defined for 2 or 3 classes, not {num_classes}: use 'one_vs_rest' "
            "or 'pairwise'"
        )
    return [
        Subtask((0,), (2,), "0_vs_2", balanced=True),
        Subtask((1,), (0, 2), "1_vs_rest", balanced=True),
    ]


def _union_1d(orders: list[np.ndarray], k: int) -> np.ndarray:
    """Indices chosen from per-subtask orders (each a permutation of 0..n-1) for a quota of ``k``."""
    S = len(orders)
    n = orders[0].shape[0]
    chosen = np.zeros(n, dtype=bool)
    ptr = [k // S + (1 if s < k % S else 0) for s in range(S)]
    for s in range(S):
        chosen[orders[s][: ptr[s]]] = True
    missing = k - int(chosen.sum())
    s = 0
    while missing > 0:
        o = orders[s]
        while chosen[o[ptr[s]]]:
            ptr[s] += 1
        chosen[o[ptr[s]]] = True
        ptr[s] += 1
        missing -= 1
        s = (s + 1) % S
    return chosen


def union_mask(rankings: Sequence[SkillRanking], rho: float, per_layer: bool = True) -> Tensor:
    """[L, N] bool union of the subtasks' skill neurons, with exactly the quota of one ranking.

    Rule, applied to every layer (``per_layer``, quota ``K = quota_size(rho, N)``) or to all neurons at
    once (quota ``K = quota_size(rho, L*N)``), with S rankings in the given order:

    1. ranking s contributes its own top ``K // S`` neurons, plus one more if ``s < K % S`` (the first
       rankings take the remainder; for the paper's 3-class split each takes half of the quota);
    2. if subtasks share neurons the union is smaller than K; it is filled up round-robin: ranking 0,
       1, ..., S-1, 0, ... each adds its best neuron not yet selected, until the union holds K neurons.

    Hence ``|union| == K`` exactly, and with one ranking this equals ``rankings[0].mask(rho, per_layer)``.
    """
    if len(rankings) == 0:
        raise ConfigError("no rankings to unite: pass the SkillRanking of at least one subtask")
    shapes = {tuple(r.scores.shape) for r in rankings}
    if len(shapes) != 1:
        raise ConfigError(f"rankings of shapes {sorted(shapes)} cannot be united: pass rankings of one model")
    L, N = rankings[0].scores.shape
    out = np.zeros((L, N), dtype=bool)
    if per_layer:
        k = quota_size(rho, N)
        orders = [r.order(True).numpy() for r in rankings]
        for layer in range(L):
            out[layer] = _union_1d([o[layer] for o in orders], k)
    else:
        k = quota_size(rho, L * N)
        out.reshape(-1)[:] = _union_1d([r.order(False).numpy() for r in rankings], k)
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------------------------------
# task similarity (REFERENCE.md section 4)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b)) / denom if denom > 0 else math.nan


def spearman(a: Tensor, b: Tensor, per_layer: bool = False) -> float | Tensor:
    """Spearman rank correlation of two [L, N] score tensors (average ranks for ties).

    Returns a float over all L*N neurons, or with ``per_layer`` a [L] float64 tensor of per-layer
    correlations. NaN where one side is constant (the correlation is undefined).
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ConfigError(
            f"cannot correlate scores of shapes {list(a.shape)} and {list(b.shape)}: pass two [L, N] scores "
            "of one model"
        )
    x = a.detach().to(device="cpu", dtype=torch.float64).numpy()
    y = b.detach().to(device="cpu", dtype=torch.float64).numpy()
    if per_layer:
        return torch.tensor(
            [_pearson(rankdata(x[i]), rankdata(y[i])) for i in range(x.shape[0])], dtype=torch.float64
        )
    return _pearson(rankdata(x.reshape(-1)), rankdata(y.reshape(-1)))


class Overlap(NamedTuple):
    """Overlap of two neuron sets A and B."""

    jaccard: float  # |A n B| / |A u B|  (NaN if both are empty)
    cosine: float  # |A n B| / sqrt(|A| |B|)  (NaN if one is empty)
    intersection: int
    size_a: int
    size_b: int


def overlap(mask_a: Tensor, mask_b: Tensor) -> Overlap:
    """Overlap of two boolean masks of the same shape (e.g. [L, N] skill-neuron masks)."""
    if mask_a.shape != mask_b.shape:
        raise ConfigError(
            f"masks of shapes {list(mask_a.shape)} and {list(mask_b.shape)} cannot be compared: pass masks "
            "of one model"
        )
    a, b = mask_a.detach().cpu().bool(), mask_b.detach().cpu().bool()
    inter = int((a & b).sum())
    union = int((a | b).sum())
    na, nb = int(a.sum()), int(b.sum())
    jac = inter / union if union else math.nan
    cos = inter / math.sqrt(na * nb) if na and nb else math.nan
    return Overlap(jac, cos, inter, na, nb)
