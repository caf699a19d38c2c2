"""The example texts that most activate chosen neurons: one streaming pass, a running top-k.

For each chosen neuron (layer, index, prompt position), the activation at the neuron site (the input
of the FFN down projection) at that prompt position is read inside a :func:`neuron_hooks` hook, only
for the chosen neurons of that layer; per batch a running top-k (value, example) per neuron and
per-class sums are updated, and the batch is dropped. Memory: O(neurons x k), whatever the data size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from skillneurons.backbones.sites import neuron_hooks
from skillneurons.data import Task
from skillneurons.errors import ConfigError
from skillneurons.prompts.model import Batch, PromptModel
from skillneurons.training.trainer import autocast_context, encode_examples, iterate_batches, length_order

__all__ = ["NeuronExamples", "sample_indices", "top_activating"]


@dataclass
class NeuronExamples:
    """The top-k examples of one neuron on the scanned data.

    ``top``: ``(example index in the scanned task, activation)``, highest first; ``class_mean``:
    mean activation per class (NaN for a class absent from the data).
    """

    layer: int
    index: int
    position: int
    top: list[tuple[int, float]] = field(default_factory=list)
    class_mean: list[float] = field(default_factory=list)


def sample_indices(n: int, size: int | None, seed: int = 0) -> list[int]:
    """``size`` of ``range(n)`` drawn with ``seed`` (sorted), or all of them."""
    if size is None or size >= n:
        return list(range(n))
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n, generator=g)[:size].tolist())


@torch.inference_mode()
def top_activating(
    model: PromptModel,
    task: Task,
    neurons: Sequence[tuple[int, int, int]],
    *,
    k: int = 3,
    batch_size: int = 32,
    precision: str = "auto",
) -> list[NeuronExamples]:
    """For every ``(layer, index, position)`` in ``neurons``, the ``k`` examples of ``task`` with the
    highest activation at that prompt position (``position`` indexes the P+1 prompt positions, as in
    ``SkillNeurons.best_position``), and its mean activation per class."""
    bb = model.backbone
    P1 = model.prompt.length + 1
    for layer, index, pos in neurons:
        if not (0 <= layer < bb.num_layers and 0 <= index < bb.d_ff[layer] and 0 <= pos < P1):
            raise ConfigError(
                f"neuron (layer {layer}, index {index}, position {pos}) is outside {bb.name} with a "
                f"{model.prompt.length}-token prompt: use skill neurons found with this prompt and model"
            )
    M, C = len(neurons), task.num_classes
    out = [NeuronExamples(layer, index, pos) for layer, index, pos in neurons]
    if M == 0 or k <= 0 or len(task) == 0:
        return out
    device = bb.device
    by_layer: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
    for layer in sorted({n[0] for n in neurons}):
        rows = [m for m, n in enumerate(neurons) if n[0] == layer]
        by_layer[layer] = (
            torch.tensor(rows, device=device),
            torch.tensor([neurons[m][1] for m in rows], device=device),
            torch.tensor([neurons[m][2] for m in rows], device=device),
        )
    best_val = torch.full((M, 0), float("-inf"), dtype=torch.float64)
    best_idx = torch.zeros((M, 0), dtype=torch.long)
    sums = torch.zeros(M, C, dtype=torch.float64)
    counts = torch.zeros(C, dtype=torch.float64)
    state: dict[str, Tensor] = {}

    def hook(layer: int, acts: Tensor) -> None:  # acts [B, S, N]
        rows, idx, pos = by_layer[layer]
        seq = state["positions"][:, pos]  # [B, m] sequence position of each neuron's prompt position
        b = torch.arange(acts.shape[0], device=acts.device).unsqueeze(1)
        state["buf"][:, rows] = acts[b, seq, idx.unsqueeze(0)].float()

    with neuron_hooks(bb, hook, layers=list(by_layer)):
        for ids in iterate_batches(task, batch_size, length_order(model, task)):
            batch: Batch = encode_examples(model, task, ids).to(device)
            state["positions"] = model.prompt_positions(batch)
            state["buf"] = torch.full((len(ids), M), float("nan"), device=device)
            with autocast_context(device, precision):
                model.hidden_states(batch)
            vals = state["buf"].double().cpu()  # [B, M]
            labels = torch.tensor([task.labels[i] for i in ids])
            sums.index_add_(1, labels, vals.T)
            counts += torch.bincount(labels, minlength=C).double()
            cand_val = torch.cat([best_val, vals.T], 1)
            cand_idx = torch.cat([best_idx, torch.tensor(ids).expand(M, -1)], 1)
            top = cand_val.topk(min(k, cand_val.shape[1]), dim=1)
            best_val, best_idx = top.values, cand_idx.gather(1, top.indices)
    means = sums / counts.clamp(min=1)
    means[:, counts == 0] = float("nan")
    for m, ne in enumerate(out):
        ne.top = [(int(i), float(v)) for i, v in zip(best_idx[m].tolist(), best_val[m].tolist())]
        ne.class_mean = [float(x) for x in means[m]]
    return out
