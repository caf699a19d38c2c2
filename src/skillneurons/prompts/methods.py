"""Tuning methods as plug-ins: what is trained on the frozen backbone, and how a saved one is rebuilt.

``prompt`` (a soft prompt, :class:`~skillneurons.prompts.PromptModel` itself) is built in; other
methods (BitFit, adapters, LoRA: :mod:`skillneurons.delta`) register a :class:`TuningMethod` in
:data:`TUNING_METHODS` from their plugin module. ``tune_prompt`` and :func:`~skillneurons.prompts.load_prompt`
look methods up here by name, so adding a method never edits either::

    method = TUNING_METHODS.get("lora")
    model = method.wrap(prompt_model, method.config_from_options({"r": 4}))   # LoraConfig(r=4)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from skillneurons.backbones import Backbone
from skillneurons.errors import ConfigError
from skillneurons.prompts.heads import Head
from skillneurons.prompts.model import PromptModel
from skillneurons.registry import Registry

__all__ = ["TUNING_METHODS", "TuningMethod", "options_to_config"]


def options_to_config(config: type | None, options: Any, method: str) -> Any:
    """``options`` (a mapping of keyword arguments, e.g. a manifest's ``method_options``, or already a
    ``config`` instance) as an instance of the dataclass ``config`` of method ``method``; an unknown
    option is a one-line :class:`ConfigError` listing the known ones. ``None`` when ``config`` is None
    (a method without options, which then refuses any)."""
    if config is not None and isinstance(options, config):
        return options
    opts = dict(options or {})
    if config is None:
        if opts:
            raise ConfigError(f"{method} tuning takes no method options (got {', '.join(opts)})")
        return None
    allowed = [f.name for f in dataclasses.fields(config) if f.init]
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ConfigError(
            f"method '{method}' has no option {', '.join(map(repr, unknown))}: "
            f"its options are {', '.join(allowed) or 'none'}"
        )
    return config(**opts)


@dataclass(frozen=True)
class TuningMethod:
    """A tuning method.

    Attributes:
        name: the method's name (``--method NAME``, ``manifest["method"]``).
        config: the dataclass of its options (a torch-free ``config.py``), or ``None`` for none.
        wrap: ``wrap(model, config) -> model``: the model trained by this method, built from a prompt
            model (its head, layout, length and template); ``config`` is a ``config`` instance (see
            :meth:`config_from_options`).
        rebuild: ``rebuild(backbone, head, tensors, manifest) -> model``: a saved model loaded back.
        tunes_prompt: whether the soft prompt is trained (only ``prompt``).
    """

    name: str
    config: type | None
    wrap: Callable[[PromptModel, Any], PromptModel]
    rebuild: Callable[[Backbone, Head, Mapping[str, torch.Tensor], Mapping[str, Any]], PromptModel] | None
    tunes_prompt: bool = False

    def config_from_options(self, options: Any = None) -> Any:
        """The method's config from keyword options (``tune_prompt``'s ``method_options``, a saved
        ``manifest["method_options"]``) or a config instance; see :func:`options_to_config`."""
        return options_to_config(self.config, options, self.name)


TUNING_METHODS: Registry[TuningMethod] = Registry("tuning method")
TUNING_METHODS.register("prompt", TuningMethod("prompt", None, lambda model, options: model, None, True))
