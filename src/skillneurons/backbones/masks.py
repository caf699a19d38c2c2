"""Neuron masks and layer indices: the one place that converts and validates them.

A neuron mask says, per layer, which neurons an operation touches (perturbs, keeps, narrows). It comes
as one ``[layers, neurons]`` bool tensor (``SkillNeurons.mask(rho)``) or, once layers have different
widths (a pruned model), as one 1-D row per layer. :class:`NeuronMask` holds the rows (bool, CPU) and
answers counts, kept indices, shape checks and layer restriction; :func:`as_rows` converts per-neuron
values (masks or float baselines) leniently, :func:`rows_for` strictly against a model's widths, and
:func:`layer_indices` checks layer numbers (negative ones count from the end). Each keeps the error
texts of the callers it replaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from skillneurons.errors import ConfigError

__all__ = ["MaskLike", "NeuronMask", "as_rows", "layer_indices", "rows_for", "shape_text", "split_rows"]

#: a mask: one [L, N] tensor, or one 1-D tensor per layer (layers of different widths)
MaskLike = Tensor | Sequence[Tensor]


def layer_indices(
    layers: Sequence[int] | None,
    num_layers: int,
    *,
    model: str = "the model",
    fix: str | None = None,
    negative: bool = True,
) -> list[int]:
    """``layers`` as indices ``0..num_layers-1`` in the given order (all layers for None); negative
    ones count from the end unless ``negative`` is False. A layer out of range is a ConfigError
    ``layer X does not exist: <fix>`` (default fix: ``<model> has layers 0..L-1``)."""
    L = int(num_layers)
    if layers is None:
        return list(range(L))
    out = []
    for layer in layers:
        i = int(layer)
        if not (-L if negative else 0) <= i < L:
            raise ConfigError(f"layer {layer} does not exist: {fix or f'{model} has layers 0..{L - 1}'}")
        out.append(i % L)
    return out


def split_rows(value: MaskLike) -> list[Tensor]:
    """The rows of an [L, N] tensor or a sequence of rows, unchecked (detached, on the CPU)."""
    rows = list(value.unbind(0)) if isinstance(value, Tensor) else list(value)
    return [r.detach().cpu() for r in rows]


def as_rows(value: Any, what: str, dtype: torch.dtype = torch.bool) -> tuple[Tensor, ...]:
    """A [L, N] tensor or a sequence of L 1-D tensors (layers of different widths) -> L CPU rows of
    ``dtype``: 0/1 values become bool for a mask; float values must be finite."""
    if isinstance(value, Tensor):
        if value.dim() != 2:
            raise ConfigError(
                f"the {what} has shape {list(value.shape)}: pass a [layers, neurons] tensor "
                "(e.g. neurons.mask(rho))"
            )
        rows = tuple(value.detach().cpu())
    elif isinstance(value, Sequence) and value and all(isinstance(r, Tensor) for r in value):
        rows = tuple(r.detach().cpu() for r in value)
        if any(r.dim() != 1 for r in rows):
            raise ConfigError(f"the {what} rows must be 1-D (one per layer): pass a [layers, neurons] tensor")
    else:
        raise ConfigError(
            f"the {what} is a {type(value).__name__}: pass a [layers, neurons] tensor (e.g. "
            "neurons.mask(rho))"
        )
    if dtype == torch.bool and any(r.dtype != torch.bool for r in rows):
        if not all(bool(((r == 0) | (r == 1)).all()) for r in rows):
            raise ConfigError(f"the {what} holds values other than 0/1: pass a bool [layers, neurons] mask")
        rows = tuple(r != 0 for r in rows)
    if dtype != torch.bool:
        rows = tuple(r.to(dtype) for r in rows)
        if not all(bool(torch.isfinite(r).all()) for r in rows):
            raise ConfigError(f"the {what} contains NaN or inf: pass finite per-neuron values")
    return rows


def rows_for(value: MaskLike, widths: Sequence[int], what: str, model: str) -> list[Tensor]:
    """Split ``value`` ([L, N] tensor or L 1-D tensors) into per-layer 1-D CPU tensors, checked
    against the model's layer ``widths``."""
    widths = list(widths)
    L = len(widths)
    rows = list(value.unbind(0)) if isinstance(value, Tensor) and value.dim() == 2 else None
    if rows is None and not isinstance(value, Tensor) and isinstance(value, Sequence):
        rows = list(value)
    geometry = f"{L} layers of {widths[0]} neurons" if len(set(widths)) == 1 else f"layers of widths {widths}"
    got = list(value.shape) if isinstance(value, Tensor) else f"{len(rows) if rows is not None else '?'} rows"
    whole_mismatch = isinstance(value, Tensor) and value.dim() == 2 and list(value.shape) != [L, max(widths)]
    if rows is None or len(rows) != L or whole_mismatch:
        raise ConfigError(
            f"the {what} has shape {got} but {model} has {geometry}: pass the {what} of the model the skill "
            "neurons were found on"
        )
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, Tensor) or r.dim() != 1 or int(r.shape[0]) != widths[i]:
            shape = list(r.shape) if isinstance(r, Tensor) else type(r).__name__
            raise ConfigError(
                f"the {what} of layer {i} has shape {shape} but {model} has {widths[i]} neurons there: pass "
                f"the {what} of the model the skill neurons were found on"
            )
        out.append(r.detach().cpu())
    return out


def shape_text(rows: Sequence[Tensor]) -> str:
    """``[L, N]``, or ``L rows of [widths]`` when the rows differ in width."""
    widths = {int(r.numel()) for r in rows}
    return f"[{len(rows)}, {widths.pop()}]" if len(widths) == 1 else f"{len(rows)} rows of {sorted(widths)}"


def _widths_text(widths: list[int]) -> str:
    return str(widths[0]) if len(set(widths)) == 1 else str(widths)


@dataclass(frozen=True, eq=False)
class NeuronMask:
    """Per-layer bool rows (CPU), True = the neuron is chosen."""

    rows: tuple[Tensor, ...]

    @classmethod
    def of(cls, value: Any, what: str = "mask") -> NeuronMask:
        """From an [L, N] tensor or L rows; 0/1 values are accepted as bool (:func:`as_rows`)."""
        if isinstance(value, NeuronMask):
            return value
        return cls(as_rows(value, what, torch.bool))

    @classmethod
    def for_model(
        cls, value: MaskLike, widths: Sequence[int], what: str, model: str, *, nonempty: bool = False
    ) -> NeuronMask:
        """Strictly from ``value``: its rows must match the model's ``widths`` and be boolean (integer
        0/1 accepted, floats refused); with ``nonempty`` every layer must keep a neuron."""
        out = []
        for i, r in enumerate(rows_for(value, widths, what, model)):
            if r.dtype != torch.bool:
                if r.is_floating_point() or r.is_complex() or not bool(((r == 0) | (r == 1)).all()):
                    raise ConfigError(
                        f"the {what} must be boolean (True = keep), got {r.dtype} values in layer {i}"
                    )
                r = r.bool()
            if nonempty and not bool(r.any()):
                raise ConfigError(
                    f"the {what} keeps no neuron of layer {i}: keep at least one neuron per layer "
                    "(raise rho, or leave that layer unpruned with --first-layer)"
                )
            out.append(r)
        return cls(tuple(out))

    @classmethod
    def from_orders(cls, orders: Sequence[Tensor], counts: Sequence[int]) -> NeuronMask:
        """The first ``counts[l]`` neurons of each layer's order (a permutation of its neurons)."""
        rows = []
        for order, k in zip(orders, counts, strict=True):
            m = torch.zeros(order.numel(), dtype=torch.bool)
            m[order[: int(k)]] = True
            rows.append(m)
        return cls(tuple(rows))

    @property
    def widths(self) -> list[int]:
        return [int(r.numel()) for r in self.rows]

    @property
    def num_layers(self) -> int:
        return len(self.rows)

    def counts(self) -> list[int]:
        """Chosen neurons per layer."""
        return [int(r.sum()) for r in self.rows]

    def indices(self) -> list[list[int]]:
        """Per layer, the sorted indices of the chosen neurons."""
        return [torch.nonzero(r).view(-1).tolist() for r in self.rows]

    def shape_text(self) -> str:
        return shape_text(self.rows)

    def check_fits(self, widths: Sequence[int], model: str, what: str = "perturbation mask") -> None:
        """ConfigError unless the rows have the model's layer ``widths``."""
        widths = list(widths)
        if self.widths != widths:
            raise ConfigError(
                f"the {what} has shape {self.shape_text()} but {model} has {len(widths)} layers of "
                f"{_widths_text(widths)} neurons: pass a mask made for this model"
            )

    def restrict(self, layers: Sequence[int] | None) -> NeuronMask:
        """Only the rows of ``layers`` kept (the others all False); None keeps every layer."""
        if layers is None:
            return self
        keep = set(layer_indices(layers, self.num_layers))
        return NeuronMask(tuple(r if i in keep else torch.zeros_like(r) for i, r in enumerate(self.rows)))

    def tensor(self) -> Tensor:
        """[L, N] bool (the rows must have one width)."""
        return torch.stack(list(self.rows))
