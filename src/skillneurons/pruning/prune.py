"""Pruning a backbone to its skill neurons, as a physically smaller network (REFERENCE.md section 5).

For every layer with a keep set S (the skill neurons) and the removed neurons' constant baseline
``a_bar`` (the mean activation over all real tokens of the train split,
:attr:`~skillneurons.neurons.find.SkillNeurons.token_mean`), the FFN is rebuilt as::

    W1' = W1[S, :]   b1' = b1[S]          (and the gate rows S for gated FFNs)
    W2' = W2[:, S]   b2' = b2 + W2[:, not S] @ a_bar[not S]

so the pruned block computes exactly what the original computes when every removed neuron's
activation is replaced by its baseline (the original code added the baseline of ALL neurons, kept
ones included: a bug this module does not repeat). A down projection without a bias (LLaMA, T5, ...)
is given one. Layers where every neuron is kept are left untouched. Which modules to slice comes
from the backbone's :class:`~skillneurons.backbones.FFNSpec` (``up``/``gate``/``down`` and
``linear_kind``), so every registered family prunes the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from skillneurons.backbones import Backbone
from skillneurons.backbones.masks import MaskLike, NeuronMask, layer_indices, rows_for, split_rows
from skillneurons.backbones.surgery import check_linear, fold_down, replace_module, slice_rows
from skillneurons.errors import ConfigError

__all__ = [
    "MaskLike",
    "count_parameters",
    "default_first_layer",
    "ffn_parameters",
    "kept_indices",
    "prune_backbone",
    "skill_keep_mask",
]


# ----------------------------------------------------------------------------------------------------
# masks


def default_first_layer(num_layers: int) -> int:
    """The first pruned layer by default: the original kept the first quarter (3 of 12) untouched."""
    return num_layers // 4


def skill_keep_mask(
    skill_mask: Tensor, first_layer: int | None = None, layers: Sequence[int] | None = None
) -> Tensor:
    """[L, N] bool keep mask: the skill neurons in the pruned layers, every neuron elsewhere.

    Args:
        skill_mask: [L, N] bool, e.g. ``SkillNeurons.mask(rho)``.
        first_layer: prune layers ``[first_layer, L)`` (default :func:`default_first_layer`).
        layers: prune exactly these layers instead (overrides ``first_layer``); negative counts from
            the end.
    """
    if not isinstance(skill_mask, Tensor) or skill_mask.dim() != 2:
        raise ConfigError(
            "the skill mask must be a [layers, neurons] bool tensor: pass SkillNeurons.mask(rho)"
        )
    L = int(skill_mask.shape[0])
    if layers is None:
        l0 = default_first_layer(L) if first_layer is None else int(first_layer)
        if not 0 <= l0 < L:
            raise ConfigError(
                f"first layer {l0} is out of range: pass a --first-layer between 0 and {L - 1} (the model "
                f"has {L} layers)"
            )
        chosen = list(range(l0, L))
    else:
        chosen = layer_indices(
            layers, L, fix=f"pass --layers between 0 and {L - 1} (the model has {L} layers)"
        )
    keep = torch.ones(skill_mask.shape, dtype=torch.bool)
    if chosen:
        keep[chosen] = skill_mask.detach().cpu().bool()[chosen]
    return keep


def kept_indices(keep_mask: MaskLike) -> list[list[int]]:
    """Per layer, the sorted indices of the kept neurons."""
    return NeuronMask(tuple(r.bool() for r in split_rows(keep_mask))).indices()


# ----------------------------------------------------------------------------------------------------
# parameter counts


def count_parameters(backbone: Backbone) -> int:
    """Parameters of the whole model, tied ones counted once."""
    return sum(p.numel() for p in backbone.model.parameters())


def ffn_parameters(backbone: Backbone) -> int:
    """Parameters of the FFN matrices (up, gate, down, with biases) over all layers."""
    total = 0
    for i in range(backbone.num_layers):
        mods = [backbone.up_proj(i), backbone.gate_proj(i), backbone.down_proj(i)]
        total += sum(p.numel() for m in mods if m is not None for p in m.parameters())
    return total


# ----------------------------------------------------------------------------------------------------
# the public entry point


@torch.no_grad()
def prune_backbone(
    backbone: Backbone, keep_mask: MaskLike, baseline: MaskLike, *, inplace: bool = False
) -> Backbone:
    """Remove every neuron not in ``keep_mask``, folding its baseline into the down-projection bias.

    Args:
        backbone: the model to prune (its layers may already have different widths).
        keep_mask: [L, N] bool (or one 1-D bool tensor per layer), True = keep. Build it with
            :func:`skill_keep_mask` from ``SkillNeurons.mask(rho)``; rows of all True leave a layer
            untouched. Every layer must keep at least one neuron.
        baseline: [L, N] (or per layer) constant each removed neuron is replaced by, e.g.
            ``SkillNeurons.token_mean``. Only the removed neurons' values are used.
        inplace: modify ``backbone`` itself instead of a deep copy of its model.

    Returns:
        A frozen :class:`Backbone` with physically smaller FFN matrices: ``d_ff`` are the kept counts.
        Its outputs equal the original's with the removed neurons set to their baselines (exactly, up
        to float rounding; the fold is computed in float64).
    """
    keeps = NeuronMask.for_model(keep_mask, backbone.d_ff, "keep mask", backbone.name, nonempty=True).rows
    bases = rows_for(baseline, backbone.d_ff, "baseline", backbone.name)
    for i, (k, a) in enumerate(zip(keeps, bases)):
        if not a.is_floating_point() or not bool(torch.isfinite(a[~k]).all()):
            raise ConfigError(
                f"the baseline of layer {i} has non-finite or non-float values: pass the finite mean "
                "activations "
                "(SkillNeurons.token_mean)"
            )
    spec = backbone.spec
    for i in range(backbone.num_layers):
        mods: dict[str, Any] = {"up": backbone.up_proj(i), "down": backbone.down_proj(i)}
        if spec.gate:
            mods["gate"] = backbone.gate_proj(i)
        for role, m in mods.items():
            check_linear(m, spec, role, backbone.name)
    if inplace:
        target = backbone
    else:
        target = Backbone(
            model=copy.deepcopy(backbone.model),
            tokenizer=backbone.tokenizer,
            name=backbone.name,
            kind=backbone.kind,
            spec=backbone.spec,
        )
    kind = spec.linear_kind
    for i, (k, a) in enumerate(zip(keeps, bases)):
        if bool(k.all()):
            continue
        keep_idx = torch.nonzero(k).view(-1)
        block = target.blocks[i]
        replace_module(block, spec.up, slice_rows(target.up_proj(i), keep_idx, kind))
        gate = target.gate_proj(i)
        if gate is not None and spec.gate is not None:
            replace_module(block, spec.gate, slice_rows(gate, keep_idx, kind))
        replace_module(block, spec.down, fold_down(target.down_proj(i), keep_idx, ~k, a, kind))
    return target.freeze()
