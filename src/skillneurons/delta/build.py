"""The delta-tuning methods by name, each its config class and its :class:`DeltaMethod` (the
``delta/<method>/{config,model}.py`` plug-ins), and :func:`build_method`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from skillneurons.backbones import Backbone
from skillneurons.delta.adapter.config import AdapterConfig
from skillneurons.delta.adapter.model import Adapters
from skillneurons.delta.bitfit.config import BitFitConfig
from skillneurons.delta.bitfit.model import BitFit
from skillneurons.delta.lora.config import LoraConfig
from skillneurons.delta.lora.model import LoRA
from skillneurons.delta.methods import METHODS, DeltaMethod
from skillneurons.errors import ConfigError
from skillneurons.prompts.methods import options_to_config

__all__ = ["METHOD_TYPES", "build_method", "method_config"]

#: method name -> (its config dataclass, its DeltaMethod class)
METHOD_TYPES: dict[str, tuple[type, Callable[[Backbone, Any], DeltaMethod]]] = {
    "bitfit": (BitFitConfig, BitFit),
    "adapter": (AdapterConfig, Adapters),
    "lora": (LoraConfig, LoRA),
}


def _types(name: str) -> tuple[type, Callable[[Backbone, Any], DeltaMethod]]:
    if name not in METHOD_TYPES:
        raise ConfigError(f"unknown tuning method '{name}': use one of {', '.join(METHODS)}")
    return METHOD_TYPES[name]


def method_config(name: str, options: Mapping[str, Any] | Any = None) -> Any:
    """The config of delta method ``name`` from keyword ``options`` (a saved ``method_options``) or a
    config instance; unknown options are a one-line :class:`ConfigError`."""
    return options_to_config(_types(name)[0], options, name)


def build_method(name: str, backbone: Backbone, options: Mapping[str, Any] | Any = None) -> DeltaMethod:
    """The delta method ``name`` (``bitfit``, ``adapter``, ``lora``) on ``backbone`` with ``options``
    (its config, or the config's fields as keyword options; unknown ones are a :class:`ConfigError`)."""
    config = method_config(name, options)
    return _types(name)[1](backbone, config)
