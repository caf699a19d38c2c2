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
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from skillneurons.backbones import Backbone, FFNSpec
from skillneurons.errors import ConfigError, ModelError

__all__ = [
    "MaskLike",
    "count_parameters",
    "default_first_layer",
    "ffn_parameters",
    "kept_indices",
    "prune_backbone",
    "skill_keep_mask",
]

#: a keep mask: one [L, N] bool tensor, or one 1-D bool tensor per layer (layers of different widths)
MaskLike = Tensor | Sequence[Tensor]


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
                f"first layer {l0} is out of range: pass a --first-layer between 0 and {L - 1} (the model has {L} layers)"
            )
        chosen = list(range(l0, L))
    else:
        chosen = []
        for layer in layers:
            if not -L <= int(layer) < L:
                raise ConfigError(
                    f"layer {layer} does not exist: pass --layers between 0 and {L - 1} (the model has {L} layers)"
                )
            chosen.append(int(layer) % L)
    keep = torch.ones(skill_mask.shape, dtype=torch.bool)
    if chosen:
        keep[chosen] = skill_mask.detach().cpu().bool()[chosen]
    return keep


def _per_layer(x: MaskLike, widths: list[int], what: str, name: str) -> list[Tensor]:
    """Split ``x`` ([L, N] tensor or L 1-D tensors) into per-layer 1-D CPU tensors, checking shapes."""
    L = len(widths)
    rows = list(x.unbind(0)) if isinstance(x, Tensor) and x.dim() == 2 else None
    if rows is None and not isinstance(x, Tensor) and isinstance(x, Sequence):
        rows = list(x)
    geometry = f"{L} layers of {widths[0]} neurons" if len(set(widths)) == 1 else f"layers of widths {widths}"
    got = list(x.shape) if isinstance(x, Tensor) else f"{len(rows) if rows is not None else '?'} rows"
    whole_mismatch = isinstance(x, Tensor) and x.dim() == 2 and list(x.shape) != [L, max(widths)]
    if rows is None or len(rows) != L or whole_mismatch:
        raise ConfigError(
            f"the {what} has shape {got} but {name} has {geometry}: pass the {what} of the model the skill "
            "neurons were found on"
        )
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, Tensor) or r.dim() != 1 or int(r.shape[0]) != widths[i]:
            shape = list(r.shape) if isinstance(r, Tensor) else type(r).__name__
            raise ConfigError(
                f"the {what} of layer {i} has shape {shape} but {name} has {widths[i]} neurons there: pass the "
                f"{what} of the model the skill neurons were found on"
            )
        out.append(r.detach().cpu())
    return out


def _check_masks(backbone: Backbone, keep_mask: MaskLike) -> list[Tensor]:
    rows = _per_layer(keep_mask, backbone.d_ff, "keep mask", backbone.name)
    out = []
    for i, r in enumerate(rows):
        if r.dtype != torch.bool:
            if r.is_floating_point() or r.is_complex() or not bool(((r == 0) | (r == 1)).all()):
                raise ConfigError(
                    f"the keep mask must be boolean (True = keep), got {r.dtype} values in layer {i}"
                )
            r = r.bool()
        if not bool(r.any()):
            raise ConfigError(
                f"the keep mask keeps no neuron of layer {i}: keep at least one neuron per layer "
                "(raise rho, or leave that layer unpruned with --first-layer)"
            )
        out.append(r)
    return out


def kept_indices(keep_mask: MaskLike) -> list[list[int]]:
    """Per layer, the sorted indices of the kept neurons."""
    rows = list(keep_mask.unbind(0)) if isinstance(keep_mask, Tensor) else list(keep_mask)
    return [torch.nonzero(r.detach().cpu().bool()).view(-1).tolist() for r in rows]


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
# module surgery


def _linear_like(module: nn.Module, spec: FFNSpec, role: str, name: str) -> nn.Module:
    want: type[nn.Module] = Conv1D if spec.linear_kind == "conv1d" else nn.Linear
    if not isinstance(module, want):
        raise ModelError(
            f"the FFN {role} projection of {name} is a {type(module).__name__}, not {want.__name__}: pruning needs "
            "plain nn.Linear (or GPT-2 Conv1D with linear_kind=conv1d) FFN matrices; load the model unquantized"
        )
    return module


def _param(data: Tensor, like: Tensor) -> nn.Parameter:
    return nn.Parameter(
        data.to(dtype=like.dtype, device=like.device).contiguous(), requires_grad=like.requires_grad
    )


def make_linear(kind: str, in_features: int, out_features: int, bias: bool, like: Tensor) -> nn.Module:
    """An uninitialised ``nn.Linear`` / GPT-2 ``Conv1D`` of the given shape on ``like``'s device/dtype."""
    with torch.device("meta"):
        mod: nn.Module = (
            Conv1D(out_features, in_features)
            if kind == "conv1d"
            else nn.Linear(in_features, out_features, bias=bias)
        )
    mod = mod.to_empty(device=like.device).to(like.dtype)
    if kind == "conv1d" and not bias:
        # Conv1D always has a bias: a zero bias is the same function
        with torch.no_grad():
            mod.bias.zero_()  # type: ignore[operator]
    mod.requires_grad_(like.requires_grad)
    return mod


def _replace(block: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = block.get_submodule(parent_path) if parent_path else block
    setattr(parent, attr, new)


def _slice_rows(mod: nn.Module, keep: Tensor, kind: str) -> nn.Module:
    """Up/gate projection keeping output features ``keep`` (index tensor)."""
    w = mod.weight
    b = mod.bias
    assert isinstance(w, Tensor)
    idx = keep.to(w.device)
    has_bias = isinstance(b, Tensor)
    if kind == "conv1d":
        new = make_linear(kind, int(w.shape[0]), len(keep), True, w)
        new.weight = _param(w[:, idx], w)
    else:
        new = make_linear(kind, int(w.shape[1]), len(keep), has_bias, w)
        new.weight = _param(w[idx, :], w)
    if has_bias:
        assert isinstance(b, Tensor)
        new.bias = _param(b[idx], b)
    return new


def _fold_down(mod: nn.Module, keep: Tensor, removed: Tensor, baseline: Tensor, kind: str) -> nn.Module:
    """Down projection on the kept input channels, with the removed ones' baseline in the bias."""
    w = mod.weight
    b = mod.bias
    assert isinstance(w, Tensor)
    w_out_in = w.T if kind == "conv1d" else w  # [hidden, d_ff]
    # in float64 on the CPU (exact enough to be float-rounding-equal; MPS has no float64)
    fold = w_out_in[:, removed.to(w.device)].detach().cpu().double() @ baseline[removed].double()
    bias = fold + (b.detach().cpu().double() if isinstance(b, Tensor) else 0.0)
    idx = keep.to(w.device)
    hidden = int(w_out_in.shape[0])
    new = make_linear(kind, len(keep), hidden, True, w)
    new.weight = _param(w[idx, :] if kind == "conv1d" else w[:, idx], w)
    new.bias = _param(bias, w if not isinstance(b, Tensor) else b)
    return new


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
    keeps = _check_masks(backbone, keep_mask)
    bases = _per_layer(baseline, backbone.d_ff, "baseline", backbone.name)
    for i, (k, a) in enumerate(zip(keeps, bases)):
        if not a.is_floating_point() or not bool(torch.isfinite(a[~k]).all()):
            raise ConfigError(
                f"the baseline of layer {i} has non-finite or non-float values: pass the finite mean activations "
                "(SkillNeurons.token_mean)"
            )
    spec = backbone.spec
    for i in range(backbone.num_layers):
        mods: dict[str, Any] = {"up": backbone.up_proj(i), "down": backbone.down_proj(i)}
        if spec.gate:
            mods["gate"] = backbone.gate_proj(i)
        for role, m in mods.items():
            _linear_like(m, spec, role, backbone.name)
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
        _replace(block, spec.up, _slice_rows(target.up_proj(i), keep_idx, kind))
        gate = target.gate_proj(i)
        if gate is not None and spec.gate is not None:
            _replace(block, spec.gate, _slice_rows(gate, keep_idx, kind))
        _replace(block, spec.down, _fold_down(target.down_proj(i), keep_idx, ~k, a, kind))
    return target.freeze()
