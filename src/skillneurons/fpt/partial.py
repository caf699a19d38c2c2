"""Partial models of a frozen backbone: fewer layers, narrower FFNs, or both (REFERENCE.md section 7).

A :class:`PartialModel` is a context manager over a :class:`~skillneurons.backbones.Backbone`:
inside it the backbone's block ``ModuleList`` (found through the family's
:class:`~skillneurons.backbones.FFNSpec` ``layers`` path) holds only the kept blocks - the very
same module objects, nothing is copied - and the FFNs of the kept blocks may be narrowed to their
top neurons. On exit everything is put back, so outside the context the backbone is the untouched
full model (bit-for-bit the same outputs).

Narrowing reuses :func:`skillneurons.pruning.prune_backbone`: the kept rows of the up (and gate)
projection and the kept columns of the down projection are sliced copies (the only weights copied,
a fraction of the FFN), and each removed neuron's constant baseline (its mean activation, by
default) is folded into the down-projection bias. Layer indices keep their original meaning:
causal-LM attention layers keep their ``layer_idx``. The config is not changed, except that a
per-layer ``config.layer_types`` list (e.g. Qwen2/Mistral-style sliding-window layers, which the
model reads by position in the running layer list) is temporarily cut to the kept layers' entries
inside the context, with ``config.use_cache`` off (a KV cache is sized by ``layer_types``).

Layer selection rules (:func:`select_layers`):

* ``even``: keep the first and the last layer and spread the rest evenly. With ``L`` layers and
  ``k`` kept, the ``k - 1`` gaps between kept layers are ``floor((L - 1) / (k - 1))``, and the
  remainder ``(L - 1) mod (k - 1)`` is given one each to the LAST gaps: ``L=24, k=6`` ->
  gaps ``4,4,5,5,5`` -> layers ``0,4,8,13,18,23`` (the FPT paper's choice; ``linspace``+round would
  give ``0,5,9,14,18,23``).
* ``first``: the first ``k`` layers.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from skillneurons.backbones import Backbone, neuron_hooks
from skillneurons.backbones.surgery import parent_of, replace_module
from skillneurons.data import Task
from skillneurons.errors import ConfigError
from skillneurons.prompts.model import PromptModel
from skillneurons.pruning.prune import prune_backbone
from skillneurons.training.trainer import autocast_context, encode_examples, iterate_batches, length_order

__all__ = [
    "DepthRule",
    "PartialModel",
    "activation_magnitudes",
    "count_for_fraction",
    "select_layers",
    "top_fraction_mask",
]

DepthRule = Literal["even", "first"]


def count_for_fraction(fraction: float, total: int, minimum: int = 1) -> int:
    """``round(fraction * total)`` (halves up), clamped to ``[minimum, total]``."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"a kept fraction must be in (0, 1], got {fraction}")
    return max(min(minimum, total), min(total, math.floor(fraction * total + 0.5)))


def select_layers(num_layers: int, keep: int, rule: DepthRule = "even") -> list[int]:
    """Indices of the ``keep`` layers kept out of ``num_layers`` (see the module docstring).

    ``even`` keeps first and last (so ``keep >= 2`` unless the model has one layer); ``first`` keeps
    ``0 .. keep-1``.
    """
    if num_layers < 1:
        raise ConfigError("the model has no layers")
    if not 1 <= keep <= num_layers:
        raise ConfigError(f"cannot keep {keep} of {num_layers} layers: keep between 1 and {num_layers}")
    if rule == "first":
        return list(range(keep))
    if rule != "even":
        raise ConfigError(f"unknown layer rule '{rule}': use even or first")
    if keep == num_layers:
        return list(range(num_layers))
    if keep == 1:
        if num_layers == 1:
            return [0]
        raise ConfigError(
            "the even rule keeps the first and the last layer: keep at least 2 layers (or use the first rule)"
        )
    gaps = keep - 1
    base, extra = divmod(num_layers - 1, gaps)
    out = [0]
    for j in range(gaps):
        out.append(out[-1] + base + (1 if j >= gaps - extra else 0))
    return out


def top_fraction_mask(scores: Sequence[Tensor], fraction: float) -> list[Tensor]:
    """Per layer, a bool mask of the ``fraction`` highest-scoring neurons (at least one per layer;
    ties broken towards the lower index)."""
    out = []
    for s in scores:
        s = s.detach().double().cpu()
        n = count_for_fraction(fraction, int(s.numel()))
        # stable: sort by descending score, lower index first among equals
        order = torch.sort(-s, stable=True).indices[:n]
        m = torch.zeros(s.numel(), dtype=torch.bool)
        m[order] = True
        out.append(m)
    return out


@torch.inference_mode()
def activation_magnitudes(
    model: PromptModel,
    task: Task,
    *,
    batch_size: int = 64,
    precision: str = "auto",
    progress: bool = False,
) -> tuple[list[Tensor], list[Tensor]]:
    """Streaming ``(mean |activation|, mean activation)`` of every neuron, one float64 ``[d_ff_l]``
    tensor per layer, over all real (non-padding) positions of ``task``, prompt included.

    Only per-neuron sums are kept (nothing per example). Run it on the full model.
    """
    if len(task) == 0:
        raise ConfigError(f"task '{task.name}' has no examples to rank neurons on")
    bb = model.backbone
    acc = bb.device if bb.device.type != "mps" else torch.device("cpu")
    abs_sums = [torch.zeros(n, dtype=torch.float64, device=acc) for n in bb.d_ff]
    sums = [torch.zeros(n, dtype=torch.float64, device=acc) for n in bb.d_ff]
    tokens = 0
    mask: Tensor | None = None

    def reduce(layer: int, acts: Tensor) -> None:
        assert mask is not None
        a = acts.float() * mask
        abs_sums[layer] += a.abs().sum((0, 1)).to(acc, torch.float64)
        sums[layer] += a.sum((0, 1)).to(acc, torch.float64)

    bar = tqdm(total=len(task), desc="neuron magnitudes", disable=not progress, leave=False, unit="ex")
    with neuron_hooks(bb, reduce):
        for idx in iterate_batches(task, batch_size, length_order(model, task)):  # sums: any order
            batch = encode_examples(model, task, idx).to(bb.device)
            full = model.sequence_mask(batch)
            mask = full.unsqueeze(-1).float()
            tokens += int(full.sum())
            with autocast_context(bb.device, precision):
                model.hidden_states(batch)
            bar.update(len(idx))
    bar.close()
    mean_abs = [(s / max(tokens, 1)).cpu() for s in abs_sums]
    mean = [(s / max(tokens, 1)).cpu() for s in sums]
    return mean_abs, mean


#: the partial model active on each full model (one at a time)
_ACTIVE: weakref.WeakKeyDictionary[nn.Module, PartialModel] = weakref.WeakKeyDictionary()


def _layer_container(backbone: Backbone) -> tuple[nn.Module, str, nn.ModuleList]:
    parent, attr = parent_of(backbone.model, backbone.layers_path)
    layers = getattr(parent, attr)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(f"{backbone.layers_path} of {backbone.name} is not a ModuleList")
    return parent, attr, layers


def _ffn_paths(backbone: Backbone) -> list[str]:
    spec = backbone.spec
    return [p for p in (spec.up, spec.gate, spec.down) if p]


class PartialModel:
    """A partial view of ``backbone``: only ``layers`` run, and the FFN of kept layer ``l`` keeps the
    neurons ``keep[l]`` (the others replaced by their constant ``baseline[l]``, folded into the bias).

    Args:
        backbone: the full frozen backbone (layers may already differ in width).
        layers: indices of the blocks to run, in the original numbering (default: all).
        keep: one bool ``[d_ff_l]`` mask per layer of the FULL model (True = keep), or None for full
            width; rows of dropped layers are ignored.
        baseline: one float ``[d_ff_l]`` tensor per layer: the constant a removed neuron is replaced by
            (e.g. its mean activation; zeros drop it outright). Required with ``keep``.

    Use as a context manager (re-entrant use is refused); outside it the backbone is unchanged.
    With all layers and no ``keep`` the context changes nothing at all.
    """

    def __init__(
        self,
        backbone: Backbone,
        layers: Sequence[int] | None = None,
        keep: Sequence[Tensor] | None = None,
        baseline: Sequence[Tensor] | None = None,
    ) -> None:
        L = backbone.num_layers
        self.backbone = backbone
        _refuse_active(backbone)
        chosen = list(range(L)) if layers is None else sorted({int(i) for i in layers})
        if not chosen:
            raise ConfigError("a partial model needs at least one layer")
        for i in chosen:
            if not 0 <= i < L:
                raise ConfigError(f"layer {i} does not exist: {backbone.name} has layers 0..{L - 1}")
        self.layers = chosen
        self._parent, self._attr, self._full_list = _layer_container(backbone)
        if len(self._full_list) != L:
            raise ConfigError(
                f"{backbone.name} is already a partial model: build partial models from the full one"
            )
        self._partial_list = (
            nn.ModuleList([self._full_list[i] for i in chosen]) if chosen != list(range(L)) else None
        )
        self._narrow: dict[int, dict[str, nn.Module]] = {}  # layer -> {path: sliced module}
        self._orig: dict[int, dict[str, nn.Module]] = {}
        if keep is not None:
            if baseline is None:
                raise ConfigError("narrowing the FFN needs a baseline per layer (mean activations, or zeros)")
            self._build_narrow(keep, baseline)
        self._active = False
        self._layer_types: Any = None  # the full config.layer_types while a depth-partial model is active

    # ---- geometry ---------------------------------------------------------------------------
    @property
    def widths(self) -> list[int]:
        """Neurons per kept layer while active."""
        out = []
        for i in self.layers:
            down = self._narrow.get(i, {}).get(self.backbone.spec.down)
            out.append(self.backbone.neuron_count(i) if down is None else _in_features(down, self.backbone))
        return out

    @property
    def is_full(self) -> bool:
        """True when the context changes nothing (all layers, full width)."""
        return self._partial_list is None and not self._narrow

    # ---- construction of the narrowed FFNs ---------------------------------------------------
    @torch.no_grad()
    def _build_narrow(self, keep: Sequence[Tensor], baseline: Sequence[Tensor]) -> None:

        bb = self.backbone
        if len(keep) != bb.num_layers or len(baseline) != bb.num_layers:
            raise ConfigError(
                f"the keep mask and baseline need one row per layer of {bb.name} ({bb.num_layers}), "
                f"got {len(keep)} and {len(baseline)}"
            )
        kept_layers = set(self.layers)
        rows = [
            k.detach().cpu().bool() if i in kept_layers else torch.ones(bb.neuron_count(i), dtype=torch.bool)
            for i, k in enumerate(keep)
        ]
        paths = _ffn_paths(bb)
        originals = {i: {p: bb.blocks[i].get_submodule(p) for p in paths} for i in range(bb.num_layers)}
        try:
            # prune_backbone slices in place; the sliced modules are collected, then the originals restored
            prune_backbone(bb, rows, [b.detach().cpu().double() for b in baseline], inplace=True)
            for i in range(bb.num_layers):
                now = {p: bb.blocks[i].get_submodule(p) for p in paths}
                if any(now[p] is not originals[i][p] for p in paths):
                    self._narrow[i] = now
        finally:
            for i, mods in originals.items():
                for p, m in mods.items():
                    replace_module(bb.blocks[i], p, m)
        self._orig = {i: originals[i] for i in self._narrow}

    # ---- activation ---------------------------------------------------------------------------
    def __enter__(self) -> PartialModel:
        if self._active:
            raise ConfigError("this partial model is already active")
        _refuse_active(self.backbone)
        _ACTIVE[self.backbone.model] = self
        for i, mods in self._narrow.items():
            for p, m in mods.items():
                replace_module(self.backbone.blocks[i], p, m)
        if self._partial_list is not None:
            setattr(self._parent, self._attr, self._partial_list)
            types = getattr(self.backbone.config, "layer_types", None)
            if isinstance(types, (list, tuple)) and len(types) == len(self._full_list):
                # the model reads layer_types[i] for the i-th RUNNING layer: give each kept layer its own
                # (and no KV cache: caches are sized by layer_types, kept layers keep their layer_idx)
                self._layer_types = (types, getattr(self.backbone.config, "use_cache", None))
                self.backbone.config.layer_types = [types[i] for i in self.layers]
                self.backbone.config.use_cache = False
        self._active = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._active:
            return
        setattr(self._parent, self._attr, self._full_list)
        if self._layer_types is not None:
            self.backbone.config.layer_types, self.backbone.config.use_cache = self._layer_types
            self._layer_types = None
        for i, mods in self._orig.items():
            for p, m in mods.items():
                replace_module(self.backbone.blocks[i], p, m)
        self._active = False
        _ACTIVE.pop(self.backbone.model, None)

    def describe(self) -> dict[str, object]:
        """JSON-ready summary: kept layers and their widths."""
        return {"layers": self.layers, "widths": self.widths}


def _refuse_active(backbone: Backbone) -> None:
    if backbone.model in _ACTIVE:
        raise ConfigError(
            f"a partial model of {backbone.name} is active: leave it before building or entering another"
        )


def _in_features(down: nn.Module, backbone: Backbone) -> int:
    w = down.weight
    assert isinstance(w, Tensor)
    return int(w.shape[0] if backbone.spec.linear_kind == "conv1d" else w.shape[1])
