"""Backbones: loading any supported model and locating its neurons.

Exports are lazy (:mod:`skillneurons._lazy`): ``import skillneurons.backbones.config`` imports neither
torch nor transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.backbones.architectures import (
        FFNSpec,
        known_architectures,
        parse_ffn_option,
        register_architecture,
        spec_for,
    )
    from skillneurons.backbones.config import BackboneOptions
    from skillneurons.backbones.loading import (
        Backbone,
        backbone_geometry,
        default_device,
        home,
        load_backbone,
        load_with_options,
    )
    from skillneurons.backbones.offline import offline_model_status, offline_models
    from skillneurons.backbones.sites import SiteFn, has_hooks, neuron_hooks, record_neurons

__all__ = [
    "Backbone",
    "BackboneOptions",
    "FFNSpec",
    "SiteFn",
    "backbone_geometry",
    "default_device",
    "has_hooks",
    "home",
    "known_architectures",
    "load_backbone",
    "load_with_options",
    "neuron_hooks",
    "offline_model_status",
    "offline_models",
    "parse_ffn_option",
    "record_neurons",
    "register_architecture",
    "spec_for",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Backbone": ".loading",
        "BackboneOptions": ".config",
        "backbone_geometry": ".loading",
        "FFNSpec": ".architectures",
        "SiteFn": ".sites",
        "default_device": ".loading",
        "has_hooks": ".sites",
        "home": ".loading",
        "known_architectures": ".architectures",
        "load_backbone": ".loading",
        "load_with_options": ".loading",
        "neuron_hooks": ".sites",
        "offline_model_status": ".offline",
        "offline_models": ".offline",
        "parse_ffn_option": ".architectures",
        "record_neurons": ".sites",
        "register_architecture": ".architectures",
        "spec_for": ".architectures",
    },
)
