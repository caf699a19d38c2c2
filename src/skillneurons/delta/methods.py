"""Delta-tuning methods: trainable additions to a frozen backbone that never touch its neuron weights.

A :class:`DeltaMethod` is an ``nn.Module`` holding only the method's own trainable tensors. It edits
the backbone's forward pass only while :meth:`DeltaMethod.attached` is active (forward hooks, or
PEFT's adapter switch for LoRA), so one frozen :class:`~skillneurons.backbones.Backbone` can be shared
by plain prompt models and by any number of delta-tuned models (e.g. in a perturbation experiment)
without one leaking into another. The backbone's own parameters are never written:

* ``bitfit`` (:class:`~skillneurons.delta.bitfit.model.BitFit`): every bias term of the transformer body;
* ``adapter`` (:class:`~skillneurons.delta.adapter.model.Adapters`): bottleneck adapters after the FFN
  (Pfeiffer) or after the attention output and the FFN (Houlsby);
* ``lora`` (:class:`~skillneurons.delta.lora.model.LoRA`): low-rank updates of the attention query/value
  projections through PEFT.

The FFN up/gate/down weights (the neurons, REFERENCE.md section 0) stay frozen under every method,
which is what makes skill neurons found by prompt tuning comparable across methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from skillneurons.backbones import Backbone
from skillneurons.delta.config import METHOD_NAMES

#: the tuning methods, ``prompt`` included (it is the plain :class:`~skillneurons.prompts.PromptModel`)
METHODS: tuple[str, ...] = METHOD_NAMES

__all__ = ["METHODS", "DeltaMethod", "output_hook", "output_hooks"]


class DeltaMethod(nn.Module):
    """Base class of a delta-tuning method on a frozen backbone.

    Subclasses set :attr:`name`, create their trainable tensors in ``__init__``, implement
    :meth:`_install` (put the edits on the backbone; return callables that take them off) and
    :meth:`options` (the options that rebuild the method, its config's fields: saved in artifacts).
    :meth:`_install` must leave the backbone plain when it raises (see :func:`output_hooks`).
    """

    name: ClassVar[str] = ""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self._backbone = [backbone]  # not a submodule: frozen and saved elsewhere
        self._depth = 0

    @property
    def backbone(self) -> Backbone:
        return self._backbone[0]

    def options(self) -> dict[str, Any]:
        raise NotImplementedError

    def _install(self) -> list[Callable[[], None]]:
        raise NotImplementedError

    @contextmanager
    def attached(self) -> Iterator[None]:
        """Apply the method to every backbone forward pass inside the block (re-entrant: a nested
        ``attached()`` is a no-op); the backbone is plain again on exit, even when the block raises."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        undo = self._install()
        self._depth = 1
        try:
            yield
        finally:
            self._depth = 0
            for fn in reversed(undo):
                fn()

    def release(self) -> None:
        """Take anything the method left in the backbone's module tree out of it (LoRA); the
        method is unusable afterwards. A no-op for hook-based methods."""

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options().items())


def output_hook(module: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> RemovableHandle:
    """A forward hook replacing ``module``'s output ``y`` (or ``y[0]`` of a tuple) by ``fn(y)``."""

    def hook(_m: nn.Module, _args: Any, out: Any) -> Any:
        if isinstance(out, tuple):
            return (fn(out[0]), *out[1:])
        return fn(out)

    return module.register_forward_hook(hook)


def output_hooks(
    hooks: Iterable[tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]],
) -> list[Callable[[], None]]:
    """:func:`output_hook` on each ``(module, fn)`` of ``hooks`` (iterated lazily); returns the
    callables removing them. If the iteration or a registration raises, the hooks already put on
    are removed before the error propagates."""
    handles: list[RemovableHandle] = []
    try:
        for module, fn in hooks:
            handles.append(output_hook(module, fn))
    except BaseException:
        for h in reversed(handles):
            h.remove()
        raise
    return [h.remove for h in handles]
