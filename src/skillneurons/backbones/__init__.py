"""Backbones: loading any supported model and locating its neurons."""

from skillneurons.backbones.architectures import (
    FFNSpec,
    known_architectures,
    parse_ffn_option,
    register_architecture,
    spec_for,
)
from skillneurons.backbones.loading import Backbone, default_device, home, load_backbone, offline_models
from skillneurons.backbones.sites import SiteFn, has_hooks, neuron_hooks, record_neurons

__all__ = [
    "Backbone",
    "FFNSpec",
    "SiteFn",
    "default_device",
    "has_hooks",
    "home",
    "known_architectures",
    "load_backbone",
    "neuron_hooks",
    "offline_models",
    "parse_ffn_option",
    "record_neurons",
    "register_architecture",
    "spec_for",
]
