"""The neuron site: the input of each block's FFN down projection, ``[batch, seq, d_ff]``.

Record and edit activations there through context managers whose hooks are always removed, even
when the body raises. Hooks are ``forward_pre_hook``s on the down projection, so they see exactly
``act(up(x))`` (or ``act(gate(x)) * up(x)`` for gated FFNs) for every family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from skillneurons.backbones.loading import Backbone
from skillneurons.backbones.masks import layer_indices

#: ``fn(layer, activations[batch, seq, d_ff]) -> replacement or None``
SiteFn = Callable[[int, torch.Tensor], torch.Tensor | None]


def _layers(backbone: Backbone, layers: Sequence[int] | None) -> list[int]:
    return layer_indices(layers, backbone.num_layers, model=backbone.name)


@contextmanager
def neuron_hooks(backbone: Backbone, fn: SiteFn, layers: Sequence[int] | None = None) -> Iterator[None]:
    """Call ``fn(layer, acts)`` at the neuron site of each chosen layer during every forward pass.

    ``acts`` is ``[batch, seq, d_ff]``. If ``fn`` returns a tensor of the same shape it replaces the
    activations (an edit); if it returns None the forward pass is unchanged (a recording).
    """
    handles: list[RemovableHandle] = []

    def make(layer: int) -> Callable[..., Any]:
        def hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            new = fn(layer, args[0])
            if new is None:
                return None
            return (new, *args[1:])

        return hook

    try:
        for layer in _layers(backbone, layers):
            handles.append(backbone.down_proj(layer).register_forward_pre_hook(make(layer)))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def record_neurons(
    backbone: Backbone, layers: Sequence[int] | None = None, detach: bool = True
) -> Iterator[dict[int, torch.Tensor]]:
    """Record full activations ``{layer: [batch, seq, d_ff]}`` of the LAST forward pass.

    Stores whole tensors: meant for inspection and tests. Statistics over a dataset use
    :func:`neuron_hooks` with a reducing function instead (see ``skillneurons.neurons``).
    """
    store: dict[int, torch.Tensor] = {}

    def fn(layer: int, acts: torch.Tensor) -> None:
        store[layer] = acts.detach() if detach else acts

    with neuron_hooks(backbone, fn, layers):
        yield store


def has_hooks(backbone: Backbone) -> bool:
    """True if any down projection still carries a forward pre-hook (used by tests)."""
    return any(bool(backbone.down_proj(i)._forward_pre_hooks) for i in range(backbone.num_layers))
