"""Per-neuron activation spread on the train split: the unit of the scaled gaussian perturbation.

``a + m * eps`` with ``eps ~ N(0, (sigma * s_i)^2)``, ``s_i`` the standard deviation of neuron ``i``'s
activation on the prompt's TRAIN split (REFERENCE.md section 3; ``--sigma-scale neuron_std``), so that
``sigma = 0.5`` means half a neuron's own spread whatever the model's activation scale (MiniLM's
neurons have std ~1, where an absolute sigma of 0.1 changes nothing).

:func:`neuron_std` streams the train split once with recording hooks at the neuron site, summing every
neuron's activation and its square over the positions the perturbation edits (``all`` real tokens,
prompt included, or the ``prompt`` positions: read slot and soft tokens) in float64; the sums merge by
addition (shards, ranks), and ``std = sqrt(sum_sq / n - mean^2)`` (population).
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from skillneurons.backbones.sites import neuron_hooks
from skillneurons.data import Task
from skillneurons.distributed import all_reduce_sum, is_main, my_share
from skillneurons.errors import ConfigError, DataError
from skillneurons.prompts.model import Batch, PromptModel
from skillneurons.training.trainer import autocast_context, encode_examples, iterate_batches, length_order

__all__ = ["NeuronMoments", "neuron_std"]


class NeuronMoments:
    """Hook body: running float64 sum, sum of squares and count of each neuron over chosen positions.

    ``sum``, ``sum_sq`` are ``[L, N]`` and ``count`` ``[L]`` (tokens seen per layer); add two
    instances' tensors to merge them.
    """

    def __init__(self, model: PromptModel, positions: str, device: torch.device) -> None:
        widths = list(model.backbone.d_ff)
        if len(set(widths)) != 1:
            raise ConfigError(
                f"layers of {model.backbone.name} have different FFN widths {sorted(set(widths))}: "
                "the per-neuron std needs the unpruned model"
            )
        if positions not in ("all", "prompt"):
            raise ConfigError(f"positions {positions!r} are unknown: use 'all' or 'prompt'")
        L, N = len(widths), widths[0]
        self.model = model
        self.positions = positions
        self.sum = torch.zeros(L, N, dtype=torch.float64, device=device)
        self.sum_sq = torch.zeros(L, N, dtype=torch.float64, device=device)
        self.count = torch.zeros(L, dtype=torch.float64, device=device)
        self.where: Tensor | None = None  # [B, S] bool: the positions counted in this batch

    def start(self, batch: Batch, seq_len: int) -> None:
        m = self.model
        if self.positions == "prompt":
            idx = m.prompt_positions(batch)
            where = torch.zeros(idx.shape[0], seq_len, dtype=torch.bool, device=idx.device)
            self.where = where.scatter_(1, idx, True)
        else:
            self.where = m.sequence_mask(batch)

    def __call__(self, layer: int, acts: Tensor) -> None:
        assert self.where is not None
        x = acts[self.where.to(acts.device)].to(self.sum.device, torch.float64)  # [tokens, N]
        self.sum[layer] += x.sum(0)
        self.sum_sq[layer] += x.square().sum(0)
        self.count[layer] += x.shape[0]

    def std(self) -> Tensor:
        """``[L, N]`` float64 population standard deviation (CPU)."""
        if bool((self.count < 1).any()):
            raise DataError("no activations were seen: the per-neuron std needs at least one train example")
        n = self.count.unsqueeze(1)
        mean = self.sum / n
        return (self.sum_sq / n - mean * mean).clamp_min(0.0).sqrt().cpu()


@torch.inference_mode()
def neuron_std(
    model: PromptModel,
    train: Task,
    *,
    positions: str = "all",
    max_examples: int | None = None,
    batch_size: int = 64,
    precision: str = "auto",
    progress: bool = False,
) -> Tensor:
    """``[L, N]`` float64: every neuron's activation std on ``train`` (the first ``max_examples``
    examples when given) at ``positions`` (``all`` real tokens or the ``prompt`` positions)."""
    if len(train) == 0:
        raise DataError(f"task '{train.name}' has no train examples: the per-neuron std needs some")
    if max_examples is not None and max_examples > 0 and max_examples < len(train):
        train = train.subset(range(max_examples))
    device = model.backbone.device
    moments = NeuronMoments(model, positions, device if device.type != "mps" else torch.device("cpu"))
    hidden_states = model.hidden_states
    batches = my_share(iterate_batches(train, batch_size, length_order(model, train)))
    bar = tqdm(total=sum(map(len, batches)), desc="neuron std (train)", disable=not progress or not is_main())
    with neuron_hooks(model.backbone, moments):
        for idx in batches:
            batch = encode_examples(model, train, idx).to(device)
            seq = model.prefix_length + int(batch.input_ids.shape[1])
            moments.start(batch, seq)
            with autocast_context(device, precision):
                hidden_states(batch)
            bar.update(len(idx))
    bar.close()
    all_reduce_sum(moments.sum, moments.sum_sq, moments.count)
    return moments.std()
