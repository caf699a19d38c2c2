"""Streaming statistics for skill-neuron discovery (REFERENCE.md section 2).

Two passes over a trained prompt's data, both *streaming*: only running sums and counts are kept,
so memory does not depend on the number of examples, and every statistic is additive, so shards
computed on different workers merge by summation (:meth:`BaselineStats.merge`,
:meth:`PredictivityStats.merge`, or ``a + b``).

1. :class:`BaselineStats`, TRAIN split: per (layer l, position t, neuron i) the sum and the sum of
   squares of the activation (float64) and the number of examples; ``mean()`` is the baseline
   ``a_bar(l,t,i)``.
2. :class:`PredictivityStats`, DEV split: per class c the number of examples whose activation lies
   strictly above the baseline, ``above[c,l,t,i] = #{x in class c : a(l,t,i|x) > a_bar(l,t,i)}``, and
   the class totals. From these, for any binary subtask (a set of positive classes against a set of
   negative classes):

   ``Acc = (sum_{c in pos} above[c] + sum_{c in neg} (n_c - above[c])) / (n_pos + n_neg)``

   i.e. the fraction of the subtask's examples with ``1[a > a_bar] == 1[y in pos]`` (REFERENCE.md
   section 2 step 2), and ``Pred = max(Acc, 1 - Acc)`` (step 3). With ``balanced=True`` the accuracy is
   the mean of the two per-side rates, ``(TP / n_pos + TN / n_neg) / 2``, which class imbalance cannot
   inflate (``find --score balanced``; the same counts, no extra memory). Optional per-class
   histograms give a threshold-free score, the AUROC.

Activations arrive as ``acts`` of shape ``[batch, n_layers, n_positions, d_ff]`` (any floating dtype,
any device; they are converted to float64 chunk by chunk, so float32 values are compared with the
baseline exactly). The "position" axis is generic: for prompt positions it has P+1 entries (mask slot
and P soft tokens); for the paper's pooled-text controls feed ``[batch, n_layers, 2, d_ff]`` with the
mean-pooled text-token activation at position 0 and the max-pooled one at position 1
(:data:`POOLED_POSITIONS`) and build the statistics with ``n_positions=2``; every formula is the same.

Memory (bytes), with ``LTN = n_layers * n_positions * d_ff`` and C classes:
``BaselineStats``: ``16 * LTN``; ``PredictivityStats``: ``8 * LTN * (C + 1) + 4 * LTN`` plus, with histograms,
``4 * C * LTN * (hist_bins + 2) + 16 * LTN`` (see :func:`predictivity_stats_bytes`). ``update`` also
allocates transient buffers of at most about ``17 * MAX_CHUNK_ELEMENTS`` bytes (about 140 MB), or
``33 *`` that with histograms, whatever the batch size; pass 1 keeps its float64 chunk buffer
(``8 * MAX_CHUNK_ELEMENTS`` bytes at most) from one batch to the next.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from skillneurons.artifacts import load_artifact, save_artifact
from skillneurons.distributed import all_reduce_sum, world_size
from skillneurons.errors import ArtifactError, ConfigError, DataError

__all__ = [
    "MAX_CHUNK_ELEMENTS",
    "POOLED_POSITIONS",
    "BaselineStats",
    "CrossFitCounts",
    "FoldPlan",
    "PredictivityStats",
    "baseline_stats_bytes",
    "chunk_elements",
    "find_stats_bytes",
    "histogram_bytes",
    "null_counts_bytes",
    "predictivity_stats_bytes",
    "reduction_bytes",
    "threshold_accuracy",
]

#: Names of the position axis for the pooled text-token controls: ``acts[:, :, 0]`` is the mean over
#: the text tokens, ``acts[:, :, 1]`` the max (REFERENCE.md section 2, "reference controls").
POOLED_POSITIONS: tuple[str, str] = ("mean", "max")

#: At most this many activations are converted to float64 at once inside ``update`` (64 MiB).
MAX_CHUNK_ELEMENTS = 1 << 23

_INT32_MAX = 2**31 - 1


# ----------------------------------------------------------------------------------------------------
# memory estimates


def baseline_stats_bytes(n_layers: int, n_positions: int, d_ff: int) -> int:
    """Bytes held by a :class:`BaselineStats` (two float64 tensors of shape [L, T, N])."""
    return 16 * n_layers * n_positions * d_ff


def histogram_bytes(num_classes: int, n_layers: int, n_positions: int, d_ff: int, hist_bins: int) -> int:
    """Bytes of the AUROC histograms: ``4 * C * L * T * N * (hist_bins + 2)`` (int32, 2 overflow bins).

    Example: RoBERTa-base (12 x 3072), 129 prompt positions, 2 classes, 64 bins: about 2.5 GB. Reduce
    the bins, or the positions (e.g. the mask slot only), when this is too big.
    """
    return 4 * num_classes * n_layers * n_positions * d_ff * (hist_bins + 2)


def predictivity_stats_bytes(
    num_classes: int, n_layers: int, n_positions: int, d_ff: int, hist_bins: int | None = None
) -> int:
    """Bytes held by a :class:`PredictivityStats`: the float64 baseline and its float32 copy rounded
    down (for exact float32 comparisons), the int64 counts ``[C, L, T, N]`` and, with ``hist_bins``,
    the int32 histograms and two float64 bin-range tensors."""
    ltn = n_layers * n_positions * d_ff
    total = 12 * ltn + 8 * num_classes * ltn + 8 * num_classes
    if hist_bins is not None:
        total += histogram_bytes(num_classes, n_layers, n_positions, d_ff, hist_bins) + 16 * ltn
    return total


def find_stats_bytes(
    n_layers: int,
    n_positions: int,
    d_ff: int,
    num_classes: int,
    dev_size: int,
    *,
    hist_bins: int | None = None,
    folds: int = 5,
    permutations: int = 100,
    heldout_null: bool = True,
    batch_size: int = 64,
    pooled: bool = False,
    subtasks: int = 1,
    position_chunk: int | None = None,
) -> dict[str, int]:
    """Bytes of everything one prompt's two passes hold at once, by name (``total`` their sum), for a
    ranking split of ``dev_size`` examples dealt into ``folds`` folds; with ``pooled`` (find's
    controls, the first prompt) the 2 pooled text positions' statistics come on top of each entry.

    On the statistics' device (``--stats-device``):
    * ``baseline``: pass 1's float64 sums (kept through pass 2);
    * ``counts``: pass 2's float64 baseline, its float32 copy and the int64 per-class counts;
    * ``histograms``: the AUROC bins (prompt positions only) and their float64 ranges;
    * ``fold_counts``: ``[F, C, LTN]`` (int16 while a fold holds at most 32,767 examples) and the
      per-fold class counts;
    * ``null``: :func:`null_counts_bytes`; ``plan``: the fold plan's labels, folds and ``[R, n]``
      permuted labels (int64);
    * ``batch``: one batch's gathered float32 activations ``[B, L, T, N]``; ``buffer``: the
      indicators buffered before they are counted (``CROSSFIT_BUFFER`` and a chunk);
    * ``transients`` (a bound): one update chunk's conversions and comparisons
      (:func:`chunk_elements` x 17 bytes, x 33 with histograms; ``position_chunk`` bounds it), and a
      flush's concatenated buffer and 64 MiB float32 product.

    On the CPU, after pass 2 and while its statistics are still held: ``reductions``, what the
    prompt's scores keep until the summary (:func:`reduction_bytes`), and ``reduce`` (a bound), the
    int16 copies of the fold counts they make (3 x ``fold_counts``; from a GPU, the null's too).

    ``total`` is the peak: the statistics held (``baseline`` to ``plan``) plus the larger of pass 2's
    working set (``batch + buffer + transients``) and the reductions' (``reductions + reduce``). The
    exact entries (all but ``buffer``, ``transients`` and ``reduce``) are tested against the tensors
    allocated. A find over several prompts keeps each earlier prompt's ``reductions`` on top.

    Example, a 7B geometry (32 layers x 11,008 neurons x 21 positions, 2 classes, 1,000 dev
    examples, find's defaults: batch 64, R = 100, 5 folds, the pooled controls, no AUROC): 14.4 GB
    at the peak (the reductions'), of which the held-out null's counts are 8.1 GB and their
    reductions 4.2 GB; one batch's activations are 2.1 GB. At R = 54 (what the default
    ``--null-memory-gb 4`` allows) 8.3 GB. ``--stats-device cpu`` keeps all of it off the GPU."""
    kinds = [n_positions] + ([2] if pooled else [])
    largest = -(-dev_size // folds) if folds else dev_size
    fold_b = 2 if largest <= _INT16_MAX else 4
    out = dict.fromkeys(
        ("baseline", "counts", "histograms", "fold_counts", "null", "plan", "batch", "buffer", "transients"),
        0,
    )
    for t in kinds:
        ltn = n_layers * t * d_ff
        out["baseline"] += baseline_stats_bytes(n_layers, t, d_ff)
        out["counts"] += 12 * ltn + 8 * num_classes * ltn + 8 * num_classes
        out["fold_counts"] += folds * num_classes * (ltn * fold_b + 8)
        out["null"] += null_counts_bytes(
            permutations,
            folds,
            num_classes,
            n_layers,
            t,
            d_ff,
            largest if heldout_null else dev_size,
            heldout_null,
        )
        out["batch"] += 4 * batch_size * ltn
        chunk = chunk_elements(batch_size, (n_layers, t, d_ff), position_chunk)
        out["buffer"] += min(CROSSFIT_BUFFER + chunk, dev_size * ltn)
        out["transients"] = max(out["transients"], chunk * (33 if hist_bins is not None else 17))
    if hist_bins is not None:
        ltn = n_layers * n_positions * d_ff
        out["histograms"] = histogram_bytes(num_classes, n_layers, n_positions, d_ff, hist_bins) + 16 * ltn
    out["plan"] = 8 * dev_size * (2 + permutations)
    out["transients"] += (
        min(CROSSFIT_BUFFER, dev_size * n_layers * n_positions * d_ff) + 4 * _PRODUCT_ELEMENTS
    )
    out["reductions"] = reduction_bytes(
        n_layers,
        n_positions,
        d_ff,
        num_classes,
        subtasks=subtasks,
        folds=folds,
        permutations=permutations,
        heldout_null=heldout_null,
        hist_bins=hist_bins,
        pooled=pooled,
        paired_examples=dev_size if pooled else 0,
    )
    out["reduce"] = 3 * max(folds * num_classes * n_layers * t * d_ff * fold_b for t in kinds)
    held = sum(out[k] for k in ("baseline", "counts", "histograms", "fold_counts", "null", "plan"))
    out["total"] = held + max(
        out["batch"] + out["buffer"] + out["transients"], out["reductions"] + out["reduce"]
    )
    return out


def reduction_bytes(
    n_layers: int,
    n_positions: int,
    d_ff: int,
    num_classes: int,
    *,
    subtasks: int = 1,
    folds: int = 5,
    permutations: int = 100,
    heldout_null: bool = True,
    hist_bins: int | None = None,
    pooled: bool = False,
    paired_examples: int = 0,
) -> int:
    """Bytes of one prompt's scores (``score_prompt``'s tensors, kept on the CPU until the summary):
    float64 predictivity ``[S, L, T, N]`` (and AUROC), the baseline ``[L, T, N]``, the token means,
    the held-out figures ``2 x [F, S, L, N]`` float64 with their null (``[R, S, L, N]`` float64 and,
    held-out, ``2 x [R, F, S, L, N]`` float32), for the prompt positions and, with ``pooled``, the
    pooled control (2 positions, its mean and max each with fold figures of their own). Every fold
    reduction also keeps where and in which direction each neuron was selected (``[F, S, L, N]``
    int16 and bool) and, with ``paired_examples`` (the ranking split's size, for find's paired pass),
    two float64 ``[n]`` per-example parts."""
    L, T, N, C, S, F, R = n_layers, n_positions, d_ff, num_classes, subtasks, folds, permutations
    sln = S * L * N

    def folds_bytes() -> int:
        b = 2 * F * sln * 8 + F * 8 + sln * 8 + F * sln * 3 + 16 * paired_examples
        if R > 0:
            b += R * sln * 8 + (2 * R * F * sln * 4 if heldout_null else 0)
        return b

    total = S * L * T * N * 8 * (2 if hist_bins is not None else 1) + L * T * N * 8 + L * N * 8
    total += folds_bytes() + 8 * C + 8 * C * C + 8  # class counts, confusion, baseline count
    if pooled:
        total += S * L * 2 * N * 8 + 2 * folds_bytes()
    return total


# ----------------------------------------------------------------------------------------------------
# helpers


def threshold_accuracy(
    tp: Tensor, tn: Tensor, n_pos: int | Tensor, n_neg: int | Tensor, balanced: bool = False
) -> Tensor:
    """The one formula of a binary subtask's threshold accuracy, float64, from integer counts:
    ``(TP + TN) / (n_pos + n_neg)``, or balanced ``(TP / n_pos + TN / n_neg) / 2`` computed as the
    exact rational ``(TP * n_neg + TN * n_pos) / (2 * n_pos * n_neg)`` rounded once (int64
    numerator, exact below 2^53: every split of fewer than ~10^8 examples). One rounding makes the
    balanced accuracy equal to the plain one, bit for bit, when ``n_pos == n_neg``, and equal
    rationals equal floats (ties stay ties). ``tp``, ``tn``: integer tensors; ``n_pos``, ``n_neg``:
    ints or integer tensors broadcasting against them."""
    if balanced:
        num = tp.to(torch.int64) * n_neg + tn.to(torch.int64) * n_pos
        return num.to(torch.float64) / (2 * n_pos * n_neg)
    return (tp + tn).to(torch.float64) / (n_pos + n_neg)


def _check_geometry(n_layers: int, n_positions: int, d_ff: int) -> tuple[int, int, int]:
    for name, v in (("n_layers", n_layers), ("n_positions", n_positions), ("d_ff", d_ff)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name}={v!r} is invalid: pass a positive integer")
    return n_layers, n_positions, d_ff


def _check_acts(acts: Tensor, shape: tuple[int, int, int], finite: bool = True) -> Tensor:
    """Validate ``acts`` [batch, L, T, N] (floating, matching geometry and, unless the caller has
    checked it (``finite=False``), finite)."""
    if not isinstance(acts, Tensor):
        raise ConfigError(f"activations must be a torch.Tensor, got {type(acts).__name__}: pass a tensor")
    if acts.dim() != 4 or tuple(acts.shape[1:]) != shape:
        raise ConfigError(
            f"activations have shape {list(acts.shape)} but these statistics expect "
            f"[batch, {shape[0]}, {shape[1]}, {shape[2]}] (batch, layers, positions, d_ff): "
            "feed activations of the same model, layers and positions"
        )
    if not acts.is_floating_point():
        raise ConfigError(f"activations have dtype {acts.dtype}: pass floating-point activations")
    for bs, ls in (
        () if not finite else _chunks(acts.shape[0], shape[0], shape[1] * shape[2], MAX_CHUNK_ELEMENTS)
    ):
        ok = torch.isfinite(acts[bs, ls])
        if not bool(ok.all()):
            layer = (ls.start or 0) + int((~ok).flatten(2).any(-1).any(0).nonzero()[0, 0])
            raise DataError(
                f"activations contain NaN or inf (first in layer {layer}): run the backbone in float32 "
                "or bfloat16 instead of float16, or check the inputs"
            )
    return acts


def _round_down32(b: Tensor) -> Tensor:
    """The largest float32 <= each float64 of ``b``: for float32 activations ``a > b`` iff
    ``a > _round_down32(b)``, so pass 2 compares in float32, exactly."""
    b32 = b.to(torch.float32)
    over = b32.to(torch.float64) > b
    return torch.where(over, torch.nextafter(b32, torch.full_like(b32, -float("inf"))), b32)


def _chunks(batch: int, n_layers: int, per_layer: int, max_elements: int) -> Iterator[tuple[slice, slice]]:
    """Yield ``(batch_slice, layer_slice)`` covering [batch, n_layers] with at most ``max_elements``
    activations per chunk (but at least one layer of one example)."""
    per_example = n_layers * per_layer
    if per_example <= max_elements:
        step = max_elements // per_example
        for b in range(0, batch, step):
            yield slice(b, min(b + step, batch)), slice(0, n_layers)
        return
    lstep = max(1, max_elements // per_layer)
    for b in range(batch):
        for layer in range(0, n_layers, lstep):
            yield slice(b, b + 1), slice(layer, min(layer + lstep, n_layers))


def _update_chunks(
    batch: int, shape: tuple[int, int, int], position_chunk: int | None
) -> Iterator[tuple[slice, slice, slice]]:
    """The chunks of an ``update``: ``(batch, layer, position)`` slices. The batch and layer slices
    are :func:`_chunks`' whatever ``position_chunk``, so every float sum runs in the same order (the
    results are bit-identical); each is cut into runs of at most ``position_chunk`` positions, so no
    comparison tensor holds more than ``position_chunk`` positions."""
    L, T, N = shape
    step = T if position_chunk is None else max(1, min(position_chunk, T))
    for bs, ls in _chunks(batch, L, T * N, MAX_CHUNK_ELEMENTS):
        for t in range(0, T, step):
            yield bs, ls, slice(t, min(t + step, T))


def chunk_elements(batch: int, shape: tuple[int, int, int], position_chunk: int | None = None) -> int:
    """The most activations one chunk of an ``update`` holds (:func:`_update_chunks`): at most
    ``MAX_CHUNK_ELEMENTS``, or one layer of one example's positions when that is more."""
    L, T, N = shape
    per_example = L * T * N
    if per_example <= MAX_CHUNK_ELEMENTS:
        b, layers = min(batch, MAX_CHUNK_ELEMENTS // per_example), L
    else:
        b, layers = min(batch, 1), min(L, max(1, MAX_CHUNK_ELEMENTS // (T * N)))
    tc = T if position_chunk is None else max(1, min(position_chunk, T))
    return b * layers * tc * N


def _tree_sum(x: Tensor) -> Tensor:
    """``x.sum(0)`` by a fixed binary tree of elementwise additions: the same bits on every device (a
    reduction kernel's order differs between the CPU and CUDA; IEEE additions do not)."""
    while x.shape[0] > 1:
        h = x.shape[0] // 2
        y = x[:h] + x[h : 2 * h]
        if x.shape[0] % 2:
            y[-1] += x[-1]
        x = y
    return x[0]


def _check_position_chunk(position_chunk: int | None) -> int | None:
    pc = position_chunk
    if pc is not None and (isinstance(pc, bool) or not isinstance(pc, int) or pc < 1):
        raise ConfigError(f"position_chunk={pc!r} is invalid: pass a positive number of positions or None")
    return pc


def _require(state: Mapping[str, Tensor], keys: Sequence[str], what: str) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise ArtifactError(
            f"{what} state lacks {missing}: pass a state_dict written by {what}.state_dict() / save()"
        )


def _scalar_int(t: Tensor, name: str, what: str) -> int:
    if t.numel() != 1 or t.is_floating_point() or t.dtype == torch.bool:
        raise ArtifactError(
            f"{what} state entry '{name}' is not an integer scalar: the state is corrupted; re-create it"
        )
    return int(t.reshape(()).item())


# ----------------------------------------------------------------------------------------------------
# pass 1


class BaselineStats:
    """Pass 1 (TRAIN split): running sum, sum of squares and count of every neuron activation.

    Args:
        n_layers: L, number of layers whose FFN neurons are recorded.
        n_positions: T, number of recorded positions (prompt positions, or 2 for the pooled controls).
        d_ff: N, neurons per layer (input width of the FFN down projection).
        device: where the float64 accumulators live (the activations are moved there). Use ``"cpu"``
            on backends without float64 (MPS).
        position_chunk: update at most this many positions at a time (None: all); the same bits.

    Attributes:
        sum: [L, T, N] float64, sum of activations.
        sum_sq: [L, T, N] float64, sum of squared activations.
        count: number of examples seen.

    The variance is derived as ``sum_sq / n - mean^2`` (clamped at 0): in float64 this is accurate for
    activations whose mean is not many orders of magnitude larger than their spread, the case for FFN
    neurons; it keeps the statistics additive.
    """

    def __init__(
        self,
        n_layers: int,
        n_positions: int,
        d_ff: int,
        device: str | torch.device = "cpu",
        position_chunk: int | None = None,
    ) -> None:
        self.shape = _check_geometry(n_layers, n_positions, d_ff)
        self.device = torch.device(device)
        self.position_chunk = _check_position_chunk(position_chunk)
        self.sum = torch.zeros(self.shape, dtype=torch.float64, device=self.device)
        self.sum_sq = torch.zeros(self.shape, dtype=torch.float64, device=self.device)
        self.count = 0
        self._buffer: Tensor | None = None

    @property
    def n_layers(self) -> int:
        return self.shape[0]

    @property
    def n_positions(self) -> int:
        return self.shape[1]

    @property
    def d_ff(self) -> int:
        return self.shape[2]

    def __repr__(self) -> str:
        return (
            f"BaselineStats(n_layers={self.n_layers}, n_positions={self.n_positions}, d_ff={self.d_ff}, "
            f"count={self.count})"
        )

    @torch.no_grad()
    def update(self, acts: Tensor, *, finite_checked: bool = False) -> None:
        """Add a batch. ``acts``: [batch, L, T, N], any floating dtype and device.

        Raises :class:`DataError` (and changes nothing) when the batch holds NaN or inf (unless the
        caller has checked that: ``finite_checked``, as the collection does once per batch).
        """
        acts = _check_acts(acts, self.shape, not finite_checked).to(self.device)
        for bs, ls, ts in _update_chunks(acts.shape[0], self.shape, self.position_chunk):
            x = self._float64(acts[bs, ls, ts])
            self.sum[ls, ts] += _tree_sum(x)
            self.sum_sq[ls, ts] += _tree_sum(x.square_())
        self.count += int(acts.shape[0])

    def _float64(self, chunk: Tensor) -> Tensor:
        """``chunk`` as float64, in a buffer kept from one batch to the next (at most
        :data:`MAX_CHUNK_ELEMENTS`, 64 MiB, or one layer of one example): on a CPU a fresh 64 MiB
        tensor per chunk costs more than the conversion."""
        n = chunk.numel()
        if self._buffer is None or self._buffer.numel() < n:
            self._buffer = torch.empty(n, dtype=torch.float64, device=self.device)
        return self._buffer[:n].view(chunk.shape).copy_(chunk)

    def _require_data(self, minimum: int = 1) -> None:
        if self.count < minimum:
            raise ConfigError(
                f"baseline statistics have seen {self.count} example(s), {minimum} needed: "
                "call update() with the train split's activations first"
            )

    def mean(self) -> Tensor:
        """The baseline ``a_bar``: [L, T, N] float64, mean activation over the examples seen."""
        self._require_data()
        return self.sum / self._scalar(self.count)

    def _scalar(self, value: float) -> Tensor:
        # a 0-d tensor, not a Python number: CUDA divides by a Python scalar through its reciprocal,
        # which differs from the CPU's true division in the last bit; tensor / tensor is exact on both
        return torch.tensor(float(value), dtype=torch.float64, device=self.sum.device)

    def var(self, unbiased: bool = False) -> Tensor:
        """Variance [L, T, N] float64 (population variance unless ``unbiased``)."""
        self._require_data(2 if unbiased else 1)
        m = self.sum / self._scalar(self.count)
        v = (self.sum_sq - self.sum * m).clamp_min_(0.0)
        return v / self._scalar(self.count - 1 if unbiased else self.count)

    @torch.no_grad()
    def within_se_fraction(self, acts: Tensor) -> float:
        """The fraction of the activations ``acts`` [batch, L, T, N] that lie within one standard error
        (``std / sqrt(count)``) of the running mean: the share whose side of the baseline the
        baseline's own uncertainty could still flip (the adaptive stopping rule of pass 1)."""
        acts = _check_acts(acts, self.shape, finite=False).to(self.device)
        self._require_data(2)
        mean = self.mean()
        se = self.std().div_(self._scalar(math.sqrt(self.count)))
        L, T, N = self.shape
        inside = 0
        for bs, ls in _chunks(acts.shape[0], L, T * N, MAX_CHUNK_ELEMENTS):
            d = (acts[bs, ls].to(torch.float64) - mean[ls]).abs_()
            inside += int((d < se[ls]).sum())
        return inside / max(1, acts.numel())

    def std(self, unbiased: bool = False) -> Tensor:
        """Standard deviation [L, T, N] float64 (population unless ``unbiased``)."""
        return self.var(unbiased).sqrt_()

    def hist_range(self, k: float = 4.0) -> tuple[Tensor, Tensor]:
        """Histogram range ``(mean - k*std, mean + k*std)``, each [L, T, N] float64 (for AUROC bins)."""
        if not k > 0:
            raise ConfigError(f"hist_k={k!r} is invalid: pass a positive number of standard deviations")
        m, s = self.mean(), self.std()
        return m - k * s, m + k * s

    # -- merging / serialisation -----------------------------------------------------------------------

    def copy(self) -> BaselineStats:
        """An independent copy."""
        return BaselineStats.from_state_dict(
            {k: v.clone() for k, v in self.state_dict().items()}, self.device
        )

    def merge(self, other: BaselineStats) -> BaselineStats:
        """Add ``other``'s statistics (another shard of the same split) into ``self``; returns ``self``."""
        if not isinstance(other, BaselineStats):
            raise ConfigError(
                f"cannot merge BaselineStats with {type(other).__name__}: merge BaselineStats shards"
            )
        if other.shape != self.shape:
            raise ArtifactError(
                f"cannot merge baseline statistics of shape {list(other.shape)} into {list(self.shape)}: "
                "merge shards recorded from the same model, layers and positions"
            )
        self.sum += other.sum.to(self.device)
        self.sum_sq += other.sum_sq.to(self.device)
        self.count += other.count
        return self

    def __add__(self, other: BaselineStats) -> BaselineStats:
        return self.copy().merge(other)

    def reduce_across_ranks(self) -> BaselineStats:
        """Sum the shards of all ``torch.distributed`` ranks into every rank (no-op single-process)."""
        if world_size() > 1:
            count = torch.tensor([self.count], dtype=torch.float64, device=self.device)
            all_reduce_sum(self.sum, self.sum_sq, count)
            self.count = int(count.item())
        return self

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors only (safetensors-compatible): ``sum``, ``sum_sq`` [L,T,N] float64, ``count`` int64
        scalar."""
        return {"sum": self.sum, "sum_sq": self.sum_sq, "count": torch.tensor(self.count, dtype=torch.int64)}

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, Tensor], device: str | torch.device = "cpu"
    ) -> BaselineStats:
        """Rebuild from :meth:`state_dict`; raises :class:`ArtifactError` on a malformed state."""
        _require(state, ("sum", "sum_sq", "count"), "BaselineStats")
        s, q = state["sum"], state["sum_sq"]
        if s.dim() != 3 or q.shape != s.shape or s.dtype != torch.float64 or q.dtype != torch.float64:
            raise ArtifactError(
                "BaselineStats state has inconsistent 'sum'/'sum_sq' tensors (need two float64 [L,T,N]): "
                "the state is corrupted; re-create it"
            )
        count = _scalar_int(state["count"], "count", "BaselineStats")
        if count < 0:
            raise ArtifactError(
                "BaselineStats state has a negative count: the state is corrupted; re-create it"
            )
        out = cls(int(s.shape[0]), int(s.shape[1]), int(s.shape[2]), device)
        out.sum.copy_(s)
        out.sum_sq.copy_(q)
        out.count = count
        return out

    def save(self, path: str | os.PathLike[str], manifest: Mapping[str, Any] | None = None) -> Path:
        """Save as a ``baseline_stats`` artifact (``manifest`` adds provenance: model, task, split, seed)."""
        info = {
            "n_layers": self.n_layers,
            "n_positions": self.n_positions,
            "d_ff": self.d_ff,
            "count": self.count,
        }
        return save_artifact(
            path, self.state_dict(), kind="baseline_stats", manifest={**info, **dict(manifest or {})}
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> BaselineStats:
        """Load a ``baseline_stats`` artifact written by :meth:`save`."""
        tensors, _ = load_artifact(path, kind="baseline_stats")
        return cls.from_state_dict(tensors, device)


# ----------------------------------------------------------------------------------------------------
# pass 2, cross-fitting folds and the permutation null (REFERENCE.md section 10)

#: at most this many above-baseline indicators (bool, 1 byte each) are buffered by
#: :meth:`CrossFitCounts.add` before they are counted (256 MiB; the count converts one fold's share to
#: float32 at a time)
CROSSFIT_BUFFER = 1 << 28

#: the float32 product of one flush step holds at most this many counts (64 MiB)
_PRODUCT_ELEMENTS = 1 << 24

#: counts are held in int16 while every fold (or, for an in-sample null, the whole split) has at most
#: this many examples: exact, and a quarter of int64's memory
_INT16_MAX = 2**15 - 1


def _count_dtype(largest: int) -> torch.dtype:
    return torch.int16 if largest <= _INT16_MAX else torch.int32


def _count_true(gt: Tensor) -> Tensor:
    """``gt.sum(0)`` of a bool tensor in the narrowest exact integer type (uint8 up to 255 rows, int16 up
    to 32,767, else int32): the sum to int64 costs several times the comparisons on a CPU."""
    rows = gt.shape[0]
    if rows <= 255:
        return gt.view(torch.uint8).sum(0, dtype=torch.uint8)
    return gt.view(torch.uint8).sum(0, dtype=torch.int16 if rows <= _INT16_MAX else torch.int32)


def null_counts_bytes(
    permutations: int,
    folds: int,
    num_classes: int,
    n_layers: int,
    n_positions: int,
    d_ff: int,
    largest_group: int,
    heldout: bool = True,
) -> int:
    """Bytes of the permutation null's counts in pass 2:
    ``R * F' * (C - 1) * L * T * N * b``, ``F' = folds`` for the held-out null (else 1), ``b = 2``
    (int16) while the largest fold (or, for the in-sample null, the split) has at most 32,767
    examples, else 4. Class 0 is not stored: a neuron's count of examples above its baseline, over all
    classes, does not depend on the labels, so class 0's count is that total minus the others'.

    Example: MiniLM (6 x 1536), 21 prompt positions, 2 classes, R = 100, F = 5, folds of at most
    32,767 examples: 194 MB (39 MB for an in-sample null only)."""
    fp = folds if heldout else 1
    b = 2 if largest_group <= _INT16_MAX else 4
    return permutations * fp * (num_classes - 1) * n_layers * n_positions * d_ff * b


@dataclass(frozen=True)
class FoldPlan:
    """Which fold every ranking (dev) example belongs to, and the label permutations of the null.

    Made by :meth:`make` from the split's labels and a seed alone, so every shard (rank) of the split
    builds the same plan. Folds are stratified: each class's examples, in a seeded order, are dealt to
    the folds in turn, so every fold holds ``n_c // F`` or one more examples of class c. The null's
    labels are permuted WITHIN each fold: each permutation keeps every fold's class counts, so the
    held-out figures under the null are computed exactly as the real ones.

    Attributes:
        fold: [n] int64, the fold of example j (its index in the split).
        perm_labels: [R, n] int64, the label of example j under permutation r.
        labels: [n] int64, the real labels.
        folds: F; num_classes: C.
    """

    fold: Tensor
    perm_labels: Tensor
    labels: Tensor
    folds: int
    num_classes: int

    @property
    def permutations(self) -> int:
        return int(self.perm_labels.shape[0])

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])

    def fold_sizes(self) -> list[int]:
        return torch.bincount(self.fold, minlength=self.folds).tolist()

    @classmethod
    def make(
        cls, labels: Sequence[int] | Tensor, num_classes: int, folds: int, permutations: int, seed: int
    ) -> FoldPlan:
        """Stratified folds and within-fold label permutations, deterministic given ``seed``."""
        y = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
        if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
            raise ConfigError(f"folds={folds!r} is invalid: cross-fitting needs at least 2 folds (e.g. 5)")
        if isinstance(permutations, bool) or not isinstance(permutations, int) or permutations < 0:
            raise ConfigError(f"permutations={permutations!r} is invalid: pass 0 (no null) or more")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise DataError(f"labels must lie in [0, {num_classes}): map them to class ids first")
        counts = torch.bincount(y, minlength=num_classes).tolist()
        few = [(c, k) for c, k in enumerate(counts) if k < folds]
        if few:
            c, k = few[0]
            raise ConfigError(
                f"class {c} has {k} ranking example(s), fewer than the {folds} folds: every fold needs "
                f"every class; use --folds {max(2, min(k for _, k in few))} or more dev examples"
                if k >= 2
                else f"class {c} has {k} ranking example(s): cross-fitting needs at least 2 per class; "
                "use more dev examples"
            )
        gen = torch.Generator().manual_seed(int(seed))
        fold = torch.empty_like(y)
        offset = 0
        for c in range(num_classes):
            members = (y == c).nonzero().reshape(-1)
            order = members[torch.randperm(members.numel(), generator=gen)]
            fold[order] = (torch.arange(members.numel()) + offset) % folds
            offset += members.numel()
        perm = torch.empty((permutations, y.numel()), dtype=torch.int64)
        groups = [(fold == f).nonzero().reshape(-1) for f in range(folds)]
        for r in range(permutations):
            for g in groups:
                perm[r, g] = y[g[torch.randperm(g.numel(), generator=gen)]]
        return cls(fold, perm, y, folds, num_classes)

    def state_dict(self) -> dict[str, Tensor]:
        return {
            "fold": self.fold,
            "perm_labels": self.perm_labels,
            "labels": self.labels,
            "folds": torch.tensor(self.folds, dtype=torch.int64),
            "num_classes": torch.tensor(self.num_classes, dtype=torch.int64),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> FoldPlan:
        _require(state, ("fold", "perm_labels", "labels", "folds", "num_classes"), "FoldPlan")
        return cls(
            state["fold"].to(torch.int64),
            state["perm_labels"].to(torch.int64),
            state["labels"].to(torch.int64),
            _scalar_int(state["folds"], "folds", "FoldPlan"),
            _scalar_int(state["num_classes"], "num_classes", "FoldPlan"),
        )

    def same_as(self, other: FoldPlan) -> bool:
        return (
            self.folds == other.folds
            and torch.equal(self.fold, other.fold)
            and torch.equal(self.perm_labels, other.perm_labels)
            and torch.equal(self.labels, other.labels)
        )


def _all_reduce_narrow(t: Tensor) -> Tensor:
    wide = t.to(torch.int32)
    all_reduce_sum(wide)
    return wide.to(t.dtype)


def _class_count(gt: Tensor, labels: Sequence[int], c: int) -> Tensor:
    """``gt[labels == c].sum(0)`` (counts of the rows of class c) for host ``labels``, narrow-typed."""
    sel = [j for j, y in enumerate(labels) if y == c]
    if len(sel) == len(labels):
        return _count_true(gt)
    return _count_true(gt.index_select(0, torch.tensor(sel, dtype=torch.int64, device=gt.device)))


class CrossFitCounts:
    """Pass-2 counts per fold and under the null's label permutations (filled by
    :meth:`PredictivityStats.update` from the same comparisons, or by :meth:`add`).

    Attributes:
        counts: [F, C, L, T, N] (int16 or int32), ``#{x in fold f, class c : a(l,t,i|x) > a_bar}``.
        class_counts: [F, C] int64, examples per fold and class seen.
        null: [R, F', C - 1, L, T, N] (int16 or int32) or None: the counts of classes 1..C-1 under
            permutation r (``F' = F`` with ``heldout_null``, else 1: all folds together). Class 0's
            count is derived (see :func:`null_counts_bytes`).

    Memory: ``F * C * LTN * b`` plus :func:`null_counts_bytes`. Additive: shards merge by summation.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        plan: FoldPlan,
        heldout_null: bool = True,
        device: str | torch.device = "cpu",
    ) -> None:
        self.shape = shape
        self.plan = plan
        self.device = torch.device(device)
        F, C, R = plan.folds, plan.num_classes, plan.permutations
        sizes = plan.fold_sizes()
        self.dtype = _count_dtype(max(sizes))
        self._counts = torch.zeros((F, C, *shape), dtype=self.dtype, device=self.device)
        self._class_counts = torch.zeros((F, C), dtype=torch.int64, device=self.device)
        self.heldout_null = bool(heldout_null)
        self._null: Tensor | None = None
        if R > 0:
            fp = F if heldout_null else 1
            ndt = self.dtype if heldout_null else _count_dtype(plan.size)
            self._null = torch.zeros((R, fp, C - 1, *shape), dtype=ndt, device=self.device)
        self._pending: list[tuple[Tensor, Tensor, slice, slice]] = []
        self._pending_elements = 0
        self._fold = plan.fold.to(self.device)
        self._perm = plan.perm_labels.to(self.device)
        self._labels = plan.labels.to(self.device)

    @torch.no_grad()
    def add(
        self, gt: Tensor, index: Tensor, ls: slice, count_examples: bool, ts: slice | None = None
    ) -> None:
        """Add ``gt`` [b, l, t, N] (bool: above the baseline) of the examples ``index`` [b] (their
        positions in the split), layers ``ls`` and positions ``ts`` (None: all); ``count_examples``:
        also count them in class_counts (once per example: on its first chunk).

        The indicators are buffered (at most :data:`CROSSFIT_BUFFER` of them, as bool) and counted
        by a few large matrix products at :meth:`flush` (called when the buffer is full and by every
        reader): the null's counts are written once per flush, not once per batch."""
        F, C = self.plan.folds, self.plan.num_classes
        index = index.to(self.device)
        if count_examples:
            key = self._fold[index] * C + self._labels[index]
            self._class_counts += torch.bincount(key, minlength=F * C).view(F, C)
        if gt.numel() == 0:
            return
        ts = slice(0, self.shape[1]) if ts is None else slice(ts.start or 0, ts.stop)
        self._pending.append((gt.to(device=self.device, dtype=torch.bool), index, ls, ts))
        self._pending_elements += gt.numel()
        if self._pending_elements >= CROSSFIT_BUFFER:
            self.flush()

    @torch.no_grad()
    def flush(self) -> None:
        """Count the buffered indicators (see :meth:`add`)."""
        pending, self._pending, self._pending_elements = self._pending, [], 0
        groups: dict[tuple[int, int, int, int], list[tuple[Tensor, Tensor]]] = {}
        for gt, index, ls, ts in pending:
            groups.setdefault((ls.start or 0, ls.stop, ts.start, ts.stop), []).append((gt, index))
        for (start, stop, t0, t1), items in groups.items():
            gt = torch.cat([g for g, _ in items])
            index = torch.cat([i for _, i in items])
            self._count(gt, index, slice(start, stop), slice(t0, t1))

    def _count(self, gt: Tensor, index: Tensor, ls: slice, ts: slice) -> None:
        F, C = self.plan.folds, self.plan.num_classes
        b = gt.shape[0]
        fold, lab = self._fold[index], self._labels[index]
        key = fold * C + lab
        for g in key.unique().tolist():  # the real counts: one sum per (fold, class)
            self._counts[g // C, g % C, ls, ts] += _count_true(gt[key == g]).to(self.dtype)
        if self._null is None:
            return
        R = self.plan.permutations
        perm = self._perm[:, index]  # [R, b]
        groups = range(F) if self.heldout_null else (None,)
        for f in groups:
            sel = torch.arange(b, device=self.device) if f is None else (fold == f).nonzero().reshape(-1)
            if sel.numel() == 0:
                continue
            y = torch.zeros((sel.numel(), R, C), dtype=torch.float32, device=self.device)
            y.scatter_(2, perm[:, sel].T.unsqueeze(-1), 1.0)
            y = y[:, :, 1:].reshape(sel.numel(), R * (C - 1))
            null = self._null[:, 0 if f is None else f]
            if ts.stop - ts.start == self.shape[1]:  # all positions: the layers' counts are one view
                blocks = [(null[:, :, ls], gt[sel])]
            else:  # a run of positions is contiguous within a layer only
                part = gt[sel]
                blocks = [
                    (null[:, :, layer, ts], part[:, k])
                    for k, layer in enumerate(range(ls.start or 0, ls.stop))
                ]
            step = max(1, _PRODUCT_ELEMENTS // (R * (C - 1)))  # bounds the float32 product
            for counts, indicators in blocks:
                dest = counts.view(R, C - 1, -1)  # a view: += counts
                flat = indicators.reshape(sel.numel(), -1)
                for j in range(0, flat.shape[1], step):
                    x = flat[:, j : j + step].to(torch.float32)  # 0/1: exact sums below 2^24
                    dest[:, :, j : j + step] += (y.T @ x).view(R, C - 1, -1).to(dest.dtype)

    @property
    def counts(self) -> Tensor:
        self.flush()
        return self._counts

    @property
    def class_counts(self) -> Tensor:
        return self._class_counts

    @property
    def null(self) -> Tensor | None:
        self.flush()
        return self._null

    def merge(self, other: CrossFitCounts) -> CrossFitCounts:
        """Add another shard's counts (same plan, geometry and options); returns ``self``."""
        if (
            not isinstance(other, CrossFitCounts)
            or other.shape != self.shape
            or other.heldout_null != self.heldout_null
            or not self.plan.same_as(other.plan)
        ):
            raise ArtifactError(
                "cannot merge cross-fitting counts of another fold plan or geometry: give every shard "
                "the same split, folds, permutations and seed"
            )
        self.counts.add_(other.counts.to(self.device))
        self._class_counts += other.class_counts.to(self.device)
        if self.null is not None:
            assert other.null is not None
            self.null.add_(other.null.to(self.device))
        return self

    def reduce_across_ranks(self) -> CrossFitCounts:
        """Sum the shards of all ``torch.distributed`` ranks (int16 travels as int32: NCCL has no int16;
        the sums still fit, the plan covers the whole split)."""
        if world_size() > 1:
            self._counts = _all_reduce_narrow(self.counts)
            all_reduce_sum(self._class_counts)
            if self.null is not None:
                self._null = _all_reduce_narrow(self.null)
        return self

    def totals(self) -> Tensor:
        """[F, L, T, N] int64: per fold, examples above the baseline over all classes (label-free)."""
        return self.counts.to(torch.int64).sum(1)

    def state_dict(self) -> dict[str, Tensor]:
        out = {"counts": self.counts, "class_counts": self.class_counts}
        out.update({f"plan.{k}": v for k, v in self.plan.state_dict().items()})
        out["heldout_null"] = torch.tensor(int(self.heldout_null), dtype=torch.int64)
        if self.null is not None:
            out["null"] = self.null
        return out

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, Tensor], device: str | torch.device = "cpu"
    ) -> CrossFitCounts:
        _require(state, ("counts", "class_counts", "heldout_null"), "CrossFitCounts")
        plan = FoldPlan.from_state_dict({k[5:]: v for k, v in state.items() if k.startswith("plan.")})
        shape = tuple(int(s) for s in state["counts"].shape[2:])
        if len(shape) != 3:
            raise ArtifactError("CrossFitCounts state has no [F, C, L, T, N] counts: re-create it")
        out = cls(
            shape, plan, bool(_scalar_int(state["heldout_null"], "heldout_null", "CrossFitCounts")), device
        )  # type: ignore[arg-type]
        out.counts.copy_(state["counts"])
        out.class_counts.copy_(state["class_counts"])
        if out.null is not None:
            _require(state, ("null",), "CrossFitCounts")
            out.null.copy_(state["null"])
        return out


# ----------------------------------------------------------------------------------------------------
# pass 2


class PredictivityStats:
    """Pass 2 (DEV split): per class, how often each neuron's activation exceeds its baseline.

    Args:
        baseline: the pass-1 :class:`BaselineStats` (preferred: also gives the AUROC bin ranges), or the
            baseline ``a_bar`` itself as a [L, T, N] tensor (converted to float64).
        num_classes: C; labels must lie in ``[0, C)``.
        hist_bins: if set, also keep per-class histograms of every activation for :meth:`auroc`:
            ``hist_bins`` equal-width bins over ``[lo, hi)`` per (l,t,i) plus an underflow bin
            (``a < lo``) and an overflow bin (``a >= hi``). Memory: :func:`histogram_bytes`.
        hist_range: ``(lo, hi)``, each a float or a [L, T, N] tensor. Default (needs ``baseline`` to be
            a :class:`BaselineStats`): ``mean -/+ hist_k * std`` from pass 1. Where ``hi <= lo`` (a
            neuron constant on the train split) the range is widened to ``[lo, lo + 1)``.
        hist_k: standard deviations on each side of the mean for the default ``hist_range``.
        device: where the accumulators live (default: the baseline's device).
        position_chunk: compare at most this many positions at a time (None: all); the same counts.
        plan: a :class:`FoldPlan` of the split: also keep the per-fold counts and the permutation
            null's (:class:`CrossFitCounts`, attribute ``crossfit``); :meth:`update` then needs every
            example's index in the split. ``heldout_null``: the null's counts per fold too.

    Attributes:
        baseline: [L, T, N] float64.
        class_counts: [C] int64, dev examples seen per class.
        above: [C, L, T, N] int64, ``#{x in class c : a(l,t,i|x) > baseline(l,t,i)}``.
        hist: [C, L, T, N, hist_bins + 2] int32 or None (bin 0 = underflow, last = overflow).
        hist_lo, hist_hi: [L, T, N] float64 or None.
    """

    def __init__(
        self,
        baseline: Tensor | BaselineStats,
        num_classes: int,
        hist_bins: int | None = None,
        hist_range: tuple[Tensor | float, Tensor | float] | None = None,
        hist_k: float = 4.0,
        device: str | torch.device | None = None,
        plan: FoldPlan | None = None,
        heldout_null: bool = True,
        position_chunk: int | None = None,
    ) -> None:
        self.position_chunk = _check_position_chunk(position_chunk)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"num_classes={num_classes!r} is invalid: a task needs at least 2 classes")
        if isinstance(baseline, BaselineStats):
            mean = baseline.mean()
            if hist_bins is not None and hist_range is None:
                hist_range = baseline.hist_range(hist_k)
        elif isinstance(baseline, Tensor):
            if baseline.dim() != 3 or not baseline.is_floating_point():
                raise ConfigError(
                    f"baseline has shape {list(baseline.shape)} and dtype {baseline.dtype}: "
                    "pass the floating [L, T, N] mean from BaselineStats.mean()"
                )
            mean = baseline
            if not bool(torch.isfinite(mean).all()):
                raise ConfigError(
                    "the baseline contains NaN or inf: recompute it from finite train activations"
                )
        else:
            raise ConfigError(f"baseline must be BaselineStats or a tensor, got {type(baseline).__name__}")
        self.device = torch.device(device) if device is not None else mean.device
        self.baseline = mean.detach().to(device=self.device, dtype=torch.float64).clone()
        self.shape: tuple[int, int, int] = tuple(self.baseline.shape)  # type: ignore[assignment]
        self._baseline32 = _round_down32(self.baseline)
        self.num_classes = num_classes
        self.class_counts = torch.zeros(num_classes, dtype=torch.int64, device=self.device)
        self.above = torch.zeros((num_classes, *self.shape), dtype=torch.int64, device=self.device)
        self.hist: Tensor | None = None
        self.hist_lo: Tensor | None = None
        self.hist_hi: Tensor | None = None
        if hist_bins is not None:
            if isinstance(hist_bins, bool) or not isinstance(hist_bins, int) or hist_bins < 1:
                raise ConfigError(
                    f"hist_bins={hist_bins!r} is invalid: pass a positive integer (e.g. 64) or None"
                )
            if hist_range is None:
                raise ConfigError(
                    "hist_bins needs bin ranges: pass the BaselineStats (not only its mean) or "
                    "hist_range=(lo, hi)"
                )
            lo, hi = (
                torch.as_tensor(r, dtype=torch.float64, device=self.device).expand(self.shape).clone()
                for r in hist_range
            )
            if not (bool(torch.isfinite(lo).all()) and bool(torch.isfinite(hi).all())):
                raise ConfigError("hist_range contains NaN or inf: pass finite bin ranges")
            self.hist_lo, self.hist_hi = lo, hi
            self.hist = torch.zeros(
                (num_classes, *self.shape, hist_bins + 2), dtype=torch.int32, device=self.device
            )
        elif hist_range is not None:
            raise ConfigError(
                "hist_range was given without hist_bins: pass hist_bins too, or drop hist_range"
            )
        self.crossfit: CrossFitCounts | None = None
        if plan is not None:
            if plan.num_classes != num_classes:
                raise ConfigError(
                    f"the fold plan has {plan.num_classes} classes, these statistics {num_classes}: "
                    "make the plan from the same split"
                )
            self.crossfit = CrossFitCounts(self.shape, plan, heldout_null, self.device)

    @property
    def hist_bins(self) -> int | None:
        """Inner histogram bins (None without histograms); the histograms have ``hist_bins + 2`` bins."""
        return None if self.hist is None else int(self.hist.shape[-1]) - 2

    @property
    def count(self) -> int:
        """Dev examples seen (all classes)."""
        return int(self.class_counts.sum())

    def __repr__(self) -> str:
        L, T, N = self.shape
        return (
            f"PredictivityStats(n_layers={L}, n_positions={T}, d_ff={N}, num_classes={self.num_classes}, "
            f"hist_bins={self.hist_bins}, class_counts={self.class_counts.tolist()})"
        )

    def _bin_width(self, ls: slice | tuple[slice, slice]) -> Tensor:
        assert self.hist_lo is not None and self.hist_hi is not None and self.hist_bins is not None
        bins = torch.tensor(float(self.hist_bins), dtype=torch.float64, device=self.device)
        width = (self.hist_hi[ls] - self.hist_lo[ls]) / bins  # tensor / tensor: the same bits on CUDA
        return torch.where(width > 0, width, torch.full_like(width, 1.0 / self.hist_bins))

    @torch.no_grad()
    def update(
        self,
        acts: Tensor,
        labels: Tensor | Sequence[int],
        index: Tensor | Sequence[int] | None = None,
        *,
        finite_checked: bool = False,
    ) -> None:
        """Add a batch. ``acts``: [batch, L, T, N] floating; ``labels``: [batch] integers in ``[0, C)``;
        ``index``: [batch] the examples' positions in the split (needed with a fold plan; their
        labels must be the plan's).

        Raises :class:`DataError` (and changes nothing) on NaN/inf activations or out-of-range labels.
        """
        acts = _check_acts(acts, self.shape, not finite_checked).to(self.device)
        y = torch.as_tensor(labels, device=self.device)
        if y.dim() != 1 or y.shape[0] != acts.shape[0]:
            raise ConfigError(
                f"labels have shape {list(y.shape)} for {acts.shape[0]} examples: pass one label per example"
            )
        if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
            raise ConfigError(f"labels have dtype {y.dtype}: pass integer class ids")
        y = y.to(torch.int64)
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise DataError(
                f"labels must lie in [0, {self.num_classes}) but range over [{int(y.min())}, "
                f"{int(y.max())}]: "
                "map the labels to class ids 0..C-1 or set num_classes"
            )
        batch_counts = torch.bincount(y, minlength=self.num_classes)
        ix = self._check_index(index, y)
        if self.hist is not None and int((self.class_counts + batch_counts).max()) > _INT32_MAX:
            raise DataError(
                f"more than {_INT32_MAX} examples of one class would overflow the int32 histograms: "
                "merge fewer shards or drop hist_bins"
            )
        present = [c for c, n in enumerate(batch_counts.tolist()) if n > 0]
        per_elem_bins = self.hist_bins + 2 if self.hist_bins is not None else 0
        fast = acts.dtype == torch.float32 and self.hist is None
        rows = y.tolist()
        for bs, ls, ts in _update_chunks(acts.shape[0], self.shape, self.position_chunk):
            yb = y[bs]
            if fast:  # exact: a float32 a exceeds b iff it exceeds b rounded down to float32
                gt = acts[bs, ls, ts] > self._baseline32[ls, ts]
            else:
                x = acts[bs, ls, ts].to(torch.float64)
                gt = x > self.baseline[ls, ts]
            if self.hist is not None:
                assert self.hist_lo is not None
                lt = (ls, ts)
                idx = ((x - self.hist_lo[lt]) / self._bin_width(lt)).floor_().clamp_(-1, per_elem_bins - 2)
                flat = idx.to(torch.int64).add_(1).add_(self._hist_offsets(ls, ts, per_elem_bins))
                hist_flat = self.hist.view(self.num_classes, -1)
            for c in present:
                if self.hist is None:  # no host sync per chunk: the rows of class c, from the host labels
                    self.above[c, ls, ts] += _class_count(gt, rows[bs], c)
                    continue
                sel = yb == c
                if not bool(sel.any()):
                    continue
                self.above[c, ls, ts] += gt[sel].sum(0)
                if self.hist is not None:
                    f = flat[sel].reshape(-1)
                    hist_flat[c].index_add_(
                        0, f, torch.ones(1, dtype=torch.int32, device=self.device).expand(f.numel())
                    )
            if self.crossfit is not None:
                assert ix is not None
                first = (ls.start or 0) == 0 and (ts.start or 0) == 0
                self.crossfit.add(gt, ix[bs], ls, count_examples=first, ts=ts)
        self.class_counts += batch_counts

    def _hist_offsets(self, ls: slice, ts: slice, per_elem_bins: int) -> Tensor:
        """[l, t, N] int64: the first histogram bin of each (layer, position, neuron) of the chunk in
        the flat histograms."""
        _, T, N = self.shape
        dev = self.device
        lt = torch.arange(ls.start or 0, ls.stop, device=dev).view(-1, 1, 1) * T
        lt = lt + torch.arange(ts.start or 0, ts.stop, device=dev).view(1, -1, 1)
        return (lt * N + torch.arange(N, device=dev)) * per_elem_bins

    def _check_index(self, index: Tensor | Sequence[int] | None, y: Tensor) -> Tensor | None:
        if self.crossfit is None:
            return None
        plan = self.crossfit.plan
        if index is None:
            raise ConfigError("these statistics keep per-fold counts: pass index= (the examples' positions)")
        ix = torch.as_tensor(index, device=self.device).to(torch.int64).reshape(-1)
        if ix.shape != y.shape:
            raise ConfigError(
                f"index has {ix.numel()} entries for {y.numel()} examples: pass one per example"
            )
        if ix.numel() and (int(ix.min()) < 0 or int(ix.max()) >= plan.size):
            raise DataError(
                f"example indices must lie in [0, {plan.size}): the fold plan is of another split"
            )
        if not torch.equal(plan.labels.to(self.device)[ix], y):
            raise DataError("the labels differ from the fold plan's: make the plan from the same split")
        return ix

    # -- scores ----------------------------------------------------------------------------------------

    def _sides(self, positive: Sequence[int], negative: Sequence[int] | None) -> tuple[list[int], list[int]]:
        C = self.num_classes
        pos = [int(c) for c in positive]
        neg = [c for c in range(C) if c not in pos] if negative is None else [int(c) for c in negative]
        for name, side in (("positive", pos), ("negative", neg)):
            if not side:
                raise ConfigError(
                    f"the {name} side of the subtask is empty: give at least one class on each side"
                )
            if len(set(side)) != len(side) or any(not 0 <= c < C for c in side):
                raise ConfigError(f"{name} classes {side} are invalid: give distinct class ids in [0, {C})")
        if set(pos) & set(neg):
            raise ConfigError(
                f"classes {sorted(set(pos) & set(neg))} are on both sides: make the sides disjoint"
            )
        counts = self.class_counts.tolist()
        for name, side in (("positive", pos), ("negative", neg)):
            if sum(counts[c] for c in side) == 0:
                raise DataError(
                    f"the dev data has no examples of the {name} classes {side}: "
                    "use a dev split that contains every class of the subtask"
                )
        return pos, neg

    def accuracy(
        self, positive: Sequence[int] = (1,), negative: Sequence[int] | None = None, balanced: bool = False
    ) -> Tensor:
        """Threshold accuracy [L, T, N] float64 of the binary subtask ``positive`` vs ``negative``.

        ``negative=None`` means all other classes. Only examples of the subtask's classes count.
        ``Acc = (TP + TN) / (n_pos + n_neg)``, ``TP = sum_{c in pos} above[c]``,
        ``TN = sum_{c in neg} (n_c - above[c])``; ``balanced``: ``(TP / n_pos + TN / n_neg) / 2``
        (:func:`threshold_accuracy`: exact, so equal to ``Acc`` when ``n_pos == n_neg``).
        """
        pos, neg = self._sides(positive, negative)
        n_pos = int(self.class_counts[pos].sum())
        n_neg = int(self.class_counts[neg].sum())
        tp = self.above[pos].sum(0)
        tn = n_neg - self.above[neg].sum(0)
        return threshold_accuracy(tp, tn, n_pos, n_neg, balanced)

    def predictivity(
        self, positive: Sequence[int] = (1,), negative: Sequence[int] | None = None, balanced: bool = False
    ) -> Tensor:
        """Predictivity ``max(Acc, 1 - Acc)`` [L, T, N] float64 (see :meth:`accuracy`)."""
        acc = self.accuracy(positive, negative, balanced)
        return torch.maximum(acc, 1.0 - acc)

    def _side_hist(self, sides: list[int], layer: int, balanced: bool) -> Tensor:
        assert self.hist is not None
        h = self.hist[sides, layer].to(torch.float64)  # [k, T, N, B+2]
        if balanced:
            n = self.class_counts[sides].to(torch.float64)
            keep = n > 0
            return (h[keep] / n[keep].view(-1, 1, 1, 1)).mean(0)
        return h.sum(0)

    def _auroc_parts(
        self, positive: Sequence[int], negative: Sequence[int] | None, balanced: bool
    ) -> tuple[Tensor, Tensor]:
        if self.hist is None:
            raise ConfigError("AUROC needs histograms: create PredictivityStats with hist_bins=... (e.g. 64)")
        pos, neg = self._sides(positive, negative)
        auc = torch.empty(self.shape, dtype=torch.float64, device=self.device)
        tie = torch.empty_like(auc)
        for layer in range(self.shape[0]):
            p = self._side_hist(pos, layer, balanced)  # [T, N, B+2]
            q = self._side_hist(neg, layer, balanced)
            q_below = q.cumsum(-1) - q
            norm = p.sum(-1) * q.sum(-1)
            same = (p * q).sum(-1)
            auc[layer] = ((p * q_below).sum(-1) + 0.5 * same) / norm
            tie[layer] = same / norm
        return auc, tie

    def auroc(
        self, positive: Sequence[int] = (1,), negative: Sequence[int] | None = None, balanced: bool = False
    ) -> Tensor:
        """AUROC [L, T, N] float64 of the activation as a score for ``positive`` vs ``negative``.

        ``P(a_pos > a_neg) + P(a_pos, a_neg in the same bin) / 2`` from the histograms: pairs sharing a
        bin count 1/2, so the difference to the exact Mann-Whitney AUROC (exact ties 1/2) is at most
        :meth:`auroc_error_bound`; it is zero when every distinct value has a bin of its own.
        ``balanced``: classes within a side weigh equally (matters only for sides of several classes).
        """
        return self._auroc_parts(positive, negative, balanced)[0]

    def auroc_predictivity(
        self, positive: Sequence[int] = (1,), negative: Sequence[int] | None = None, balanced: bool = False
    ) -> Tensor:
        """Threshold-free predictivity ``max(AUC, 1 - AUC)`` [L, T, N] float64."""
        auc = self.auroc(positive, negative, balanced)
        return torch.maximum(auc, 1.0 - auc)

    def auroc_error_bound(
        self, positive: Sequence[int] = (1,), negative: Sequence[int] | None = None, balanced: bool = False
    ) -> Tensor:
        """Upper bound [L, T, N] on ``|auroc() - exact AUROC|``: half the fraction of (pos, neg) pairs
        that share a bin. Large values mean too few bins, or too much mass in the overflow bins."""
        return 0.5 * self._auroc_parts(positive, negative, balanced)[1]

    # -- merging / serialisation -----------------------------------------------------------------------

    def copy(self) -> PredictivityStats:
        """An independent copy."""
        return PredictivityStats.from_state_dict(
            {k: v.clone() for k, v in self.state_dict().items()}, self.device
        )

    def merge(self, other: PredictivityStats) -> PredictivityStats:
        """Add ``other``'s counts (another shard of the same split, same baseline) into ``self``."""
        if not isinstance(other, PredictivityStats):
            raise ConfigError(
                f"cannot merge PredictivityStats with {type(other).__name__}: merge PredictivityStats shards"
            )
        if (
            other.shape != self.shape
            or other.num_classes != self.num_classes
            or other.hist_bins != self.hist_bins
        ):
            raise ArtifactError(
                f"cannot merge predictivity statistics ({list(other.shape)}, {other.num_classes} classes, "
                f"{other.hist_bins} bins) into ({list(self.shape)}, {self.num_classes} classes, "
                f"{self.hist_bins} bins): "
                "merge shards recorded with the same model, positions, task and options"
            )
        if not torch.equal(other.baseline.to(self.device), self.baseline):
            raise ArtifactError(
                "cannot merge predictivity statistics computed against different baselines: "
                "give every shard the same pass-1 BaselineStats"
            )
        if self.hist is not None:
            assert other.hist is not None and other.hist_lo is not None and other.hist_hi is not None
            assert self.hist_lo is not None and self.hist_hi is not None
            if not (
                torch.equal(other.hist_lo.to(self.device), self.hist_lo)
                and torch.equal(other.hist_hi.to(self.device), self.hist_hi)
            ):
                raise ArtifactError(
                    "cannot merge histograms with different bin ranges: give every shard the same hist_range"
                )
            if int((self.class_counts + other.class_counts.to(self.device)).max()) > _INT32_MAX:
                raise DataError(
                    f"more than {_INT32_MAX} examples of one class would overflow the int32 histograms"
                )
            self.hist += other.hist.to(self.device)
        self.class_counts += other.class_counts.to(self.device)
        self.above += other.above.to(self.device)
        if self.crossfit is not None or other.crossfit is not None:
            if self.crossfit is None or other.crossfit is None:
                raise ArtifactError("cannot merge statistics with and without fold counts: use one fold plan")
            self.crossfit.merge(other.crossfit)
        return self

    def __add__(self, other: PredictivityStats) -> PredictivityStats:
        return self.copy().merge(other)

    def reduce_across_ranks(self) -> PredictivityStats:
        """Sum the counts (and histograms) of all ``torch.distributed`` ranks into every rank; every rank
        must have used the same baseline (:meth:`BaselineStats.reduce_across_ranks` gives it)."""
        all_reduce_sum(self.class_counts, self.above, *(() if self.hist is None else (self.hist,)))
        if self.crossfit is not None:
            self.crossfit.reduce_across_ranks()
        return self

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors only (safetensors-compatible): ``baseline``, ``class_counts``, ``above`` and, with
        histograms, ``hist``, ``hist_lo``, ``hist_hi``."""
        out = {"baseline": self.baseline, "class_counts": self.class_counts, "above": self.above}
        if self.hist is not None:
            assert self.hist_lo is not None and self.hist_hi is not None
            out.update(hist=self.hist, hist_lo=self.hist_lo, hist_hi=self.hist_hi)
        if self.crossfit is not None:
            out.update({f"crossfit.{k}": v for k, v in self.crossfit.state_dict().items()})
        return out

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, Tensor], device: str | torch.device = "cpu"
    ) -> PredictivityStats:
        """Rebuild from :meth:`state_dict`; raises :class:`ArtifactError` on a malformed state."""
        _require(state, ("baseline", "class_counts", "above"), "PredictivityStats")
        base, counts, above = state["baseline"], state["class_counts"], state["above"]
        bad = "PredictivityStats state is inconsistent ({}): the state is corrupted; re-create it"
        if base.dim() != 3 or base.dtype != torch.float64:
            raise ArtifactError(bad.format("baseline must be float64 [L,T,N]"))
        if counts.dim() != 1 or counts.dtype != torch.int64 or counts.shape[0] < 2:
            raise ArtifactError(bad.format("class_counts must be int64 [C]"))
        C = int(counts.shape[0])
        if above.dtype != torch.int64 or tuple(above.shape) != (C, *base.shape):
            raise ArtifactError(bad.format("above must be int64 [C,L,T,N]"))
        has_hist = "hist" in state
        if has_hist:
            _require(state, ("hist_lo", "hist_hi"), "PredictivityStats")
            hist = state["hist"]
            if (
                hist.dtype != torch.int32
                or hist.dim() != 5
                or tuple(hist.shape[:4]) != (C, *base.shape)
                or hist.shape[4] < 3
            ):
                raise ArtifactError(bad.format("hist must be int32 [C,L,T,N,bins+2]"))
            for k in ("hist_lo", "hist_hi"):
                if state[k].shape != base.shape or state[k].dtype != torch.float64:
                    raise ArtifactError(bad.format(f"{k} must be float64 [L,T,N]"))
            out = cls(
                base,
                C,
                hist_bins=int(hist.shape[4]) - 2,
                hist_range=(state["hist_lo"], state["hist_hi"]),
                device=device,
            )
            assert out.hist is not None
            out.hist.copy_(hist)
        else:
            out = cls(base, C, device=device)
        out.class_counts.copy_(counts)
        out.above.copy_(above)
        cf = {k[9:]: v for k, v in state.items() if k.startswith("crossfit.")}
        if cf:
            out.crossfit = CrossFitCounts.from_state_dict(cf, out.device)
        return out

    def save(self, path: str | os.PathLike[str], manifest: Mapping[str, Any] | None = None) -> Path:
        """Save as a ``predictivity_stats`` artifact (``manifest`` adds provenance)."""
        L, T, N = self.shape
        info = {
            "n_layers": L,
            "n_positions": T,
            "d_ff": N,
            "num_classes": self.num_classes,
            "hist_bins": self.hist_bins,
            "class_counts": self.class_counts.tolist(),
        }
        return save_artifact(
            path, self.state_dict(), kind="predictivity_stats", manifest={**info, **dict(manifest or {})}
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> PredictivityStats:
        """Load a ``predictivity_stats`` artifact written by :meth:`save`."""
        tensors, _ = load_artifact(path, kind="predictivity_stats")
        return cls.from_state_dict(tensors, device)
