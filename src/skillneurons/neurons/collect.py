"""Streaming collection of neuron activations from a prompt model (the two passes of REFERENCE.md
section 2), reduced inside the forward hooks: nothing per example outlives its batch.

A batch's activations are gathered at the neuron site of every layer (the input of the FFN down
projection) into one ``[batch, L, T, N]`` buffer: T = the P+1 prompt positions (read slot and soft
tokens), or T = 2 for the pooled text-token control (mean and max over the real text tokens). The
buffer feeds :class:`~skillneurons.neurons.stats.BaselineStats` (pass 1) or
:class:`~skillneurons.neurons.stats.PredictivityStats` (pass 2) and is then dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from skillneurons.backbones.sites import neuron_hooks
from skillneurons.data import Task
from skillneurons.errors import ConfigError, DataError
from skillneurons.neurons.stats import BaselineStats, PredictivityStats
from skillneurons.prompts.model import Batch, PromptModel
from skillneurons.training.trainer import autocast_context, encode_examples, iterate_batches

Positions = Literal["prompt", "pooled"]


def uniform_width(model: PromptModel) -> int:
    """Neurons per layer N; a :class:`ConfigError` if layers differ (a pruned model)."""
    widths = set(model.backbone.d_ff)
    if len(widths) != 1:
        raise ConfigError(
            f"layers of {model.backbone.name} have different FFN widths {sorted(widths)}: skill neurons are found "
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


class _Gather:
    """Hook body: writes each layer's reduced activations into ``out[:, layer]``."""

    def __init__(self, model: PromptModel, positions: Positions, token_sums: Tensor | None) -> None:
        self.model = model
        self.positions = positions
        self.token_sums = token_sums  # [L, N] float64: running sum over ALL real tokens (pass 1 only)
        self.out: Tensor | None = None
        self.index: Tensor | None = None
        self.mask: Tensor | None = None

    def start(self, batch: Batch) -> None:
        self.index = self.model.prompt_positions(batch)  # [B, P+1]
        self.mask = self.model.text_mask(batch)  # [B, S]
        self.out = None
        self.full_mask = torch.cat(
            [torch.ones(len(batch), self.model.prefix_length, dtype=torch.bool, device=batch.input_ids.device),
             batch.attention_mask.bool()], 1,
        )  # fmt: skip

    def __call__(self, layer: int, acts: Tensor) -> None:
        assert self.index is not None and self.mask is not None
        b, _, n = acts.shape
        if self.positions == "prompt":
            idx = self.index.unsqueeze(-1).expand(-1, -1, n)
            red = torch.gather(acts, 1, idx)
        else:
            m = self.mask.unsqueeze(-1).to(acts.dtype)
            count = m.sum(1).clamp(min=1)
            mean = (acts * m).sum(1) / count
            mx = acts.masked_fill(~self.mask.unsqueeze(-1), float("-inf")).amax(1)
            red = torch.stack([mean, mx], 1)
        if self.out is None:
            L = self.model.backbone.num_layers
            self.out = torch.empty((b, L, red.shape[1], n), dtype=torch.float32, device=acts.device)
        self.out[:, layer] = red.float()
        if self.token_sums is not None:
            fm = self.full_mask.unsqueeze(-1).to(torch.float64)
            self.token_sums[layer] += (acts.double() * fm).sum((0, 1)).to(self.token_sums.device)


@torch.inference_mode()
def activation_batches(
    model: PromptModel,
    task: Task,
    *,
    positions: Positions = "prompt",
    batch_size: int = 64,
    precision: str = "auto",
    token_sums: Tensor | None = None,
    progress: bool = False,
    desc: str = "activations",
) -> Iterator[tuple[Tensor, Tensor, int]]:
    """Yield ``(acts [B, L, T, N] float32, labels [B], real_tokens)`` batch by batch.

    ``token_sums`` ([L, N] float64), when given, accumulates the sum of every neuron's activation
    over all real (non-padding) tokens, prompt included; ``real_tokens`` counts them.
    """
    if len(task) == 0:
        raise DataError(f"task '{task.name}' has no examples in this split: use a larger split")
    uniform_width(model)
    device = model.backbone.device
    gather = _Gather(model, positions, token_sums)
    bar = tqdm(total=len(task), desc=desc, disable=not progress, leave=False, unit="ex")
    with neuron_hooks(model.backbone, gather):
        for idx in iterate_batches(task, batch_size):
            batch = encode_examples(model, task, idx).to(device)
            gather.start(batch)
            with autocast_context(device, precision):
                model.hidden_states(batch)
            assert gather.out is not None and batch.labels is not None
            acts = gather.out
            if not bool(torch.isfinite(acts).all()):
                raise DataError(
                    f"NaN or inf neuron activations in task '{task.name}' (batch starting at example {idx[0]}): "
                    "check the prompt for NaN values, or use --precision fp32"
                )
            real = int(gather.full_mask.sum())
            gather.out = None
            yield acts, batch.labels, real
            bar.update(len(idx))
    bar.close()


def baseline_pass(
    model: PromptModel,
    train: Task,
    *,
    positions: Positions = "prompt",
    batch_size: int = 64,
    precision: str = "auto",
    progress: bool = False,
) -> tuple[BaselineStats, Tensor]:
    """Pass 1 over the TRAIN split: ``(BaselineStats [L, T, N], token_mean [L, N])``.

    ``token_mean`` is every neuron's mean activation over all real tokens of the train split (the
    constant a pruned neuron is replaced by).
    """
    L, T, N = model.backbone.num_layers, num_positions(model, positions), uniform_width(model)
    device = model.backbone.device
    stats = BaselineStats(L, T, N, device=device if device.type != "mps" else "cpu")
    sums = torch.zeros(L, N, dtype=torch.float64, device=stats.device)
    tokens = 0
    for acts, _, real in activation_batches(model, train, positions=positions, batch_size=batch_size,
                                           precision=precision, token_sums=sums, progress=progress,
                                           desc="pass 1 (train)"):  # fmt: skip
        stats.update(acts)
        tokens += real
    return stats, (sums / max(tokens, 1)).cpu()


def predictivity_pass(
    model: PromptModel,
    dev: Task,
    baseline: BaselineStats,
    *,
    positions: Positions = "prompt",
    batch_size: int = 64,
    hist_bins: int | None = None,
    precision: str = "auto",
    progress: bool = False,
) -> PredictivityStats:
    """Pass 2 over the DEV split: per-class counts of activations above the baseline (+ histograms)."""
    stats = PredictivityStats(baseline, dev.num_classes, hist_bins=hist_bins)
    for acts, labels, _ in activation_batches(model, dev, positions=positions, batch_size=batch_size,
                                             precision=precision, progress=progress, desc="pass 2 (dev)"):  # fmt: skip
        stats.update(acts, labels)
    return stats
