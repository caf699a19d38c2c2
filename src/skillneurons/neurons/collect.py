"""Streaming collection of neuron activations from a prompt model (the two passes of REFERENCE.md
section 2), reduced inside the forward hooks: nothing per example outlives its batch.

A batch's activations are gathered at the neuron site of every layer (the input of the FFN down
projection) into one ``[batch, L, T, N]`` buffer: T = the P+1 prompt positions (read slot and soft
tokens), or T = 2 for the pooled text-token control (mean and max over the real text tokens). The
buffer feeds :class:`~skillneurons.neurons.stats.BaselineStats` (pass 1) or
:class:`~skillneurons.neurons.stats.PredictivityStats` (pass 2) and is then dropped.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from skillneurons.backbones.sites import neuron_hooks
from skillneurons.data import Task
from skillneurons.distributed import all_reduce_sum, is_main, my_share
from skillneurons.errors import ConfigError, DataError
from skillneurons.neurons.stats import BaselineStats, FoldPlan, PredictivityStats
from skillneurons.prompts.model import Batch, PromptModel
from skillneurons.training.trainer import autocast_context, encode_examples, iterate_batches, length_order

Positions = Literal["prompt", "pooled"]


def uniform_width(model: PromptModel) -> int:
    """Neurons per layer N; a :class:`ConfigError` if layers differ (a pruned model)."""
    widths = set(model.backbone.d_ff)
    if len(widths) != 1:
        raise ConfigError(
            f"layers of {model.backbone.name} have different FFN widths {sorted(widths)}: skill neurons are "
            "found "
            "on the unpruned model (find them first, then prune)"
        )
    return widths.pop()


def num_positions(model: PromptModel, positions: Positions) -> int:
    """T: ``P + 1`` prompt positions, or 2 pooled text positions (mean, max)."""
    if positions == "prompt":
        return model.prompt.length + 1
    if positions == "pooled":
        return 2
    raise ConfigError(f"unknown positions {positions!r}: use 'prompt' or 'pooled'")


def stats_device(model: PromptModel, choice: str = "auto") -> torch.device:
    """Where the running statistics of ``model`` live: ``"model"`` its device, ``"cpu"`` the CPU,
    ``"auto"`` the model's device but the CPU on MPS (no float64 there)."""
    device = model.backbone.device
    if choice == "cpu" or (choice == "auto" and device.type == "mps"):
        return torch.device("cpu")
    if choice not in ("auto", "model"):
        raise ConfigError(f"stats_device {choice!r} is unknown: use auto, cpu or model")
    if device.type == "mps":
        raise ConfigError("MPS has no float64 for the statistics: use --stats-device cpu (or auto)")
    return device


class _Gather:
    """Hook body: writes each layer's reduced activations into ``out[kind][:, layer]``, one buffer per
    kind of positions (several statistics from ONE forward pass). The buffers live on ``device`` (the
    statistics' device): from a GPU to the CPU they are pinned and every layer's copy is asynchronous,
    overlapping the next layers' forward; :meth:`ready` waits for them."""

    def __init__(
        self,
        model: PromptModel,
        kinds: tuple[Positions, ...],
        token_sums: Tensor | None,
        device: torch.device | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self.kinds = kinds
        self.token_sums = token_sums  # [L, N] float64: running sum over ALL real tokens (pass 1 only)
        self.out: dict[str, Tensor] = {}
        self.index: Tensor | None = None
        self.mask: Tensor | None = None
        self.full_mask: Tensor | None = None
        self.lead = 0
        self.token_weight: Tensor | None = None
        self.product: Tensor | None = None

    def start(self, batch: Batch) -> None:
        self.index = self.model.prompt_positions(batch)  # [B, P+1]
        self.lead = _leading_positions(self.index)
        self.mask = self.model.text_mask(batch)  # [B, S]
        self.out = {}
        self.full_mask = self.model.sequence_mask(batch)
        self.token_weight = self.full_mask.unsqueeze(-1).float()
        self.product = None  # the token sums' [B, S, N] product, reused across layers

    def reduce(self, kind: Positions, acts: Tensor) -> Tensor:
        assert self.index is not None and self.mask is not None
        if kind == "prompt":
            return torch.gather(acts, 1, self.index.unsqueeze(-1).expand(-1, -1, acts.shape[-1]))
        m = self.mask.unsqueeze(-1)
        mean = (acts * m.to(acts.dtype)).sum(1) / m.sum(1).clamp(min=1).to(acts.dtype)
        mx = acts.masked_fill(~m, float("-inf")).amax(1)
        return torch.stack([mean, mx], 1)

    def ready(self, device: torch.device) -> None:
        """Wait for the asynchronous copies of the batch from ``device`` (the model's)."""
        if device.type == "cuda" and any(t.device != device for t in self.out.values()):
            torch.cuda.current_stream(device).synchronize()

    def __call__(self, layer: int, acts: Tensor) -> None:
        for kind in self.kinds:
            if kind not in self.out:
                T = self.index.shape[1] if kind == "prompt" else 2  # type: ignore[union-attr]
                shape = (acts.shape[0], self.model.backbone.num_layers, T, acts.shape[-1])
                dev = self.device or acts.device
                pin = dev.type == "cpu" and acts.device.type == "cuda"
                self.out[kind] = torch.empty(shape, dtype=torch.float32, device=dev, pin_memory=pin)
            dest = self.out[kind][:, layer]
            if dest.device != acts.device:  # statistics on another device: reduce here, copy async
                dest.copy_(self.reduce(kind, acts).float(), non_blocking=True)
            elif kind == "prompt" and self.lead:  # leading positions 0..lead-1: a slice, not a gather
                dest[:, : self.lead] = acts[:, : self.lead]
                if self.lead < dest.shape[1]:
                    assert self.index is not None
                    rest = self.index[:, self.lead :].unsqueeze(-1).expand(-1, -1, acts.shape[-1])
                    dest[:, self.lead :] = torch.gather(acts, 1, rest)
            else:
                dest[:] = self.reduce(kind, acts)
        if self.token_sums is not None:
            self.token_sums[layer] += self._token_sum(acts).to(self.token_sums.device, torch.float64)

    def _token_sum(self, acts: Tensor) -> Tensor:
        """[N] float32: the sum over the batch's real tokens (the same product and sum every layer, into
        one buffer: a fresh [B, S, N] tensor per layer costs more than the product itself on a CPU)."""
        assert self.token_weight is not None
        if acts.dtype != torch.float32:
            return (acts.float() * self.token_weight).sum((0, 1))
        if self.product is None or self.product.shape != acts.shape:
            self.product = torch.empty_like(acts)
        return torch.mul(acts, self.token_weight, out=self.product).sum((0, 1))


def _leading_positions(index: Tensor) -> int:
    """How many of the [B, T] ``index``'s first columns are 0, 1, 2, ... in every row (read by a slice)."""
    same = (index.cpu() == torch.arange(index.shape[1])).all(0).tolist()
    return same.index(False) if False in same else len(same)


def _all_finite(acts: Tensor) -> bool:
    """Whether every activation is finite: a finite sum says so (NaN and inf propagate); only a sum that
    is not (an overflow, or a NaN or inf) is checked element by element."""
    return bool(torch.isfinite(acts.sum())) or bool(torch.isfinite(acts).all())


def _kinds(positions: Positions | tuple[Positions, ...]) -> tuple[Positions, ...]:
    kinds = (positions,) if isinstance(positions, str) else tuple(positions)
    for k in kinds:
        if k not in ("prompt", "pooled"):
            raise ConfigError(f"unknown positions {k!r}: use 'prompt' or 'pooled'")
    return kinds


@torch.inference_mode()
def activation_batches(
    model: PromptModel,
    task: Task,
    *,
    positions: Positions | tuple[Positions, ...] = "prompt",
    batch_size: int = 64,
    precision: str = "auto",
    token_sums: Tensor | None = None,
    progress: bool = False,
    desc: str = "activations",
    confusion: Tensor | None = None,
    out_device: torch.device | None = None,
    order: Literal["length", "given"] = "length",
) -> Generator[tuple[dict[str, Tensor], Tensor, int, Tensor], None, None]:
    """Yield ``({kind: acts [B, L, T, N] float32}, labels [B], real_tokens, index [B])`` batch by
    batch (``index``: the examples' positions in ``task``).

    ``positions`` is one kind or several (each gets its buffer from the same forward pass).
    ``token_sums`` ([L, N] float64), when given, accumulates the sum of every neuron's activation
    over all real (non-padding) tokens, prompt included; ``real_tokens`` counts them.
    ``confusion`` ([C, C] float64, true x predicted), when given, counts the prompt model's own
    predictions, read from the same forward passes (the head at the read position). ``out_device``:
    where the activations are gathered (default: the model's device; the statistics' device).
    ``order``: ``length`` batches examples of similar token length (:func:`length_order`: little
    padding; for sums and counts, which do not depend on the order), ``given`` keeps the task's order
    (a pass that may stop early, e.g. the adaptive baseline over a random order).
    """
    if len(task) == 0:
        raise DataError(f"task '{task.name}' has no examples in this split: use a larger split")
    uniform_width(model)
    device = model.backbone.device
    gather = _Gather(model, _kinds(positions), token_sums, out_device)
    sequence = length_order(model, task) if order == "length" else None
    batches = my_share(iterate_batches(task, batch_size, sequence))  # data parallel: whole batches per rank
    bar = tqdm(
        total=sum(map(len, batches)), desc=desc, disable=not progress or not is_main(), leave=False, unit="ex"
    )
    with neuron_hooks(model.backbone, gather):
        for idx in batches:
            batch = encode_examples(model, task, idx).to(device)
            gather.start(batch)
            with autocast_context(device, precision):
                hidden = model.hidden_states(batch)
                if confusion is not None:
                    read = hidden[torch.arange(hidden.shape[0], device=hidden.device), batch.read_index]
                    _count_predictions(confusion, batch.labels, model.head(read).argmax(-1))
            assert batch.labels is not None and gather.full_mask is not None
            gather.ready(device)
            out = gather.out
            for acts in out.values():
                if not _all_finite(acts):
                    raise DataError(
                        f"NaN or inf neuron activations in task '{task.name}' (batch starting at example "
                        f"{idx[0]}): "
                        "check the prompt for NaN values, or use --precision fp32"
                    )
            real = int(gather.full_mask.sum())
            gather.out = {}
            yield out, batch.labels, real, torch.tensor(idx, dtype=torch.int64)
            bar.update(len(idx))
    bar.close()


def _desc(what: str, label: str) -> str:
    """A progress bar's name: the pass, and what is scored (``"pass 1 (train), prompt 2/3"``)."""
    return f"{what}, {label}" if label else what


def _count_predictions(confusion: Tensor, labels: Tensor | None, predicted: Tensor) -> None:
    assert labels is not None
    c = confusion.shape[0]
    flat = labels.to(confusion.device).long() * c + predicted.to(confusion.device).long()
    confusion += torch.bincount(flat, minlength=c * c).view(c, c).to(confusion.dtype)


def baseline_pass(
    model: PromptModel,
    train: Task,
    *,
    positions: Positions | tuple[Positions, ...] = "prompt",
    batch_size: int = 64,
    precision: str = "auto",
    progress: bool = False,
    label: str = "",
    stop_fraction: float | None = None,
    min_examples: int = 64,
    stats_on: str = "auto",
    position_chunk: int | None = None,
) -> tuple[Any, Tensor]:
    """Pass 1 over the TRAIN split: ``(BaselineStats [L, T, N], token_mean [L, N])``; with several
    ``positions`` kinds, a ``{kind: BaselineStats}`` dict from the same forward passes.

    ``stop_fraction`` (adaptive baseline; None: every example): stop after the first batch, once
    ``min_examples`` are seen, in which at most this fraction of the prompt-position activations lie
    within one standard error of their running mean (:meth:`BaselineStats.within_se_fraction`);
    feed ``train`` in a random order. Each rank decides on its own share (no collective in the loop).

    ``token_mean`` is every neuron's mean activation over all real tokens of the train split (the
    constant a pruned neuron is replaced by).

    ``stats_on`` (:func:`stats_device`: ``auto``, ``cpu``, ``model``) says where the statistics
    live; ``position_chunk``: update at most this many positions at a time. Neither changes a bit.
    """
    kinds = _kinds(positions)
    L, N = model.backbone.num_layers, uniform_width(model)
    acc_device = stats_device(model, stats_on)
    stats = {
        k: BaselineStats(L, num_positions(model, k), N, device=acc_device, position_chunk=position_chunk)
        for k in kinds
    }
    sums = torch.zeros(L, N, dtype=torch.float64, device=acc_device)
    tokens = 0
    batches = activation_batches(
        model,
        train,
        positions=kinds,
        batch_size=batch_size,
        precision=precision,
        token_sums=sums,
        progress=progress,
        desc=_desc("pass 1 (train)", label),
        out_device=acc_device,
        order="given" if stop_fraction is not None else "length",  # an early stop needs the random order
    )
    for acts, _, real, _ in batches:
        for k in kinds:
            stats[k].update(acts[k], finite_checked=True)  # activation_batches checked them
        tokens += real
        first = stats[kinds[0]]
        if stop_fraction is not None and first.count >= max(2, min_examples):
            if first.within_se_fraction(acts[kinds[0]]) <= stop_fraction:
                break
    batches.close()  # the hooks go with the generator, also after an early stop
    count = torch.tensor([float(tokens)], dtype=torch.float64, device=sums.device)
    all_reduce_sum(sums, count)
    for st in stats.values():
        st.reduce_across_ranks()
    token_mean = (sums / count.clamp(min=1)).cpu()
    return (stats if not isinstance(positions, str) else stats[positions]), token_mean


def predictivity_pass(
    model: PromptModel,
    dev: Task,
    baseline: Any,
    *,
    positions: Positions | tuple[Positions, ...] = "prompt",
    batch_size: int = 64,
    hist_bins: int | None = None,
    precision: str = "auto",
    progress: bool = False,
    label: str = "",
    confusion: Tensor | None = None,
    plan: FoldPlan | None = None,
    heldout_null: bool = True,
    position_chunk: int | None = None,
) -> Any:
    """Pass 2 over the DEV split: per-class counts of activations above the baseline (+ histograms).
    With a ``plan`` (:class:`FoldPlan` of ``dev``), also the per-fold counts and the permutation
    null's, from the same comparisons (:class:`CrossFitCounts`, ``heldout_null``: per fold).

    With several ``positions`` kinds, ``baseline`` and the result are ``{kind: stats}`` dicts.
    ``label`` names the pass on its progress bar (``"control: random prompt"``); ``confusion``
    ([C, C] float64), when given, also counts the prompt model's own dev predictions (summed across
    ranks). The statistics live on the baseline's device (the activations are gathered there);
    ``position_chunk``: compare at most this many positions at a time (the same counts).
    """
    kinds = _kinds(positions)
    bases = baseline if not isinstance(positions, str) else {positions: baseline}
    if plan is not None and plan.size != len(dev):
        raise ConfigError(
            f"the fold plan covers {plan.size} examples, the dev split has {len(dev)}: make it from dev"
        )
    stats = {
        k: PredictivityStats(
            bases[k],
            dev.num_classes,
            hist_bins=hist_bins if k == "prompt" else None,
            plan=plan,
            heldout_null=heldout_null,
            position_chunk=position_chunk,
        )
        for k in kinds
    }
    out_device = next(iter(stats.values())).device
    for acts, labels, _, index in activation_batches(
        model,
        dev,
        positions=kinds,
        batch_size=batch_size,
        precision=precision,
        progress=progress,
        desc=_desc("pass 2 (dev)", label),
        confusion=confusion,
        out_device=out_device,
    ):
        for k in kinds:
            stats[k].update(acts[k], labels, index, finite_checked=True)
    for st in stats.values():
        st.reduce_across_ranks()
    if confusion is not None:
        all_reduce_sum(confusion)
    return stats if not isinstance(positions, str) else stats[positions]
