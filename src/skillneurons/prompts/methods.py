"""Tuning methods as plug-ins: what is trained on the frozen backbone, and how a saved one is rebuilt.

``prompt`` (a soft prompt, :class:`~skillneurons.prompts.PromptModel` itself) is built in; other
methods (BitFit, adapters, LoRA: :mod:`skillneurons.delta`) register a :class:`TuningMethod` in
:data:`TUNING_METHODS` from their plugin module. ``tune_prompt`` and :func:`~skillneurons.prompts.load_prompt`
look methods up here by name, so adding a method never edits either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from skillneurons.backbones import Backbone
from skillneurons.prompts.heads import Head
from skillneurons.prompts.model import PromptModel
from skillneurons.registry import Registry

__all__ = ["TUNING_METHODS", "TuningMethod"]


@dataclass(frozen=True)
class TuningMethod:
    """A tuning method.

    Attributes:
        name: the method's name (``--method NAME``, ``manifest["method"]``).
        config: the dataclass of its options (a torch-free ``config.py``), or ``None`` for none.
        wrap: ``wrap(model, options) -> model``: the model trained by this method, built from a prompt
            model (its head, layout, length and template); ``options`` is a ``config`` instance.
        rebuild: ``rebuild(backbone, head, tensors, manifest) -> model``: a saved model loaded back.
        tunes_prompt: whether the soft prompt is trained (only ``prompt``).
    """

    name: str
    config: type | None
    wrap: Callable[[PromptModel, Any], PromptModel]
    rebuild: Callable[[Backbone, Head, Mapping[str, torch.Tensor], Mapping[str, Any]], PromptModel] | None
    tunes_prompt: bool = False


TUNING_METHODS: Registry[TuningMethod] = Registry("tuning method")
TUNING_METHODS.register("prompt", TuningMethod("prompt", None, lambda model, options: model, None, True))
