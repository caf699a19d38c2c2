"""FFN surgery: replace a submodule by path, and slice FFN projections to chosen neurons.

Used by pruning (:func:`skillneurons.pruning.prune_backbone`, physically smaller models) and by fast
prompt tuning (:class:`skillneurons.fpt.PartialModel`, which swaps sliced modules in and out). With
``S`` the kept neurons of a layer and ``a_bar`` the removed ones' constant baseline::

    up/gate:  W1' = W1[S, :]   b1' = b1[S]
    down:     W2' = W2[:, S]   b2' = b2 + W2[:, not S] @ a_bar[not S]   (computed in float64)

``linear_kind`` ``conv1d`` (GPT-2) stores weights transposed; a down projection without a bias is
given one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from skillneurons.backbones.architectures import FFNSpec
from skillneurons.errors import ModelError

__all__ = ["check_linear", "fold_down", "make_linear", "parent_of", "replace_module", "slice_rows"]


def parent_of(root: nn.Module, path: str) -> tuple[nn.Module, str]:
    """``(parent module, attribute)`` of the submodule at dotted ``path`` under ``root``."""
    parent_path, _, attr = path.rpartition(".")
    return (root.get_submodule(parent_path) if parent_path else root), attr


def replace_module(root: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` at dotted ``path`` under ``root`` (e.g. ``"intermediate.dense"`` of a block)."""
    parent, attr = parent_of(root, path)
    setattr(parent, attr, module)


def check_linear(module: nn.Module, spec: FFNSpec, role: str, name: str) -> nn.Module:
    """``module`` if it is the plain linear kind of ``spec`` (nn.Linear, or GPT-2 Conv1D); else a
    one-line ModelError naming the ``role`` (up/gate/down) and the model ``name``."""
    want: type[nn.Module] = Conv1D if spec.linear_kind == "conv1d" else nn.Linear
    if not isinstance(module, want):
        raise ModelError(
            f"the FFN {role} projection of {name} is a {type(module).__name__}, not {want.__name__}: pruning "
            "needs plain nn.Linear (or GPT-2 Conv1D with linear_kind=conv1d) FFN matrices; load the model "
            "unquantized"
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


def slice_rows(mod: nn.Module, keep: Tensor, kind: str) -> nn.Module:
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


def fold_down(mod: nn.Module, keep: Tensor, removed: Tensor, baseline: Tensor, kind: str) -> nn.Module:
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
