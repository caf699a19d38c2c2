"""Registers the delta-tuning methods (BitFit, adapters, LoRA) as tuning methods: ``tune --method``
builds them and :func:`skillneurons.prompts.load_prompt` rebuilds their saved models.

Imported through the ``skillneurons.plugins`` entry point; see :mod:`skillneurons.registry`.
"""

from __future__ import annotations

from skillneurons.delta.methods import METHODS
from skillneurons.delta.model import delta_from_artifact, delta_model
from skillneurons.prompts.methods import TUNING_METHODS, TuningMethod


def _register(name: str) -> None:
    TUNING_METHODS.register(
        name,
        TuningMethod(
            name, None, lambda model, options: delta_model(model, name, options), delta_from_artifact
        ),
    )


for _name in METHODS:
    if _name != "prompt":
        _register(_name)
