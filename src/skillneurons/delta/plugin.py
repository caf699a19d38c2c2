"""Registers the delta-tuning methods (BitFit, adapters, LoRA) as tuning methods, each with its config
class: ``tune --method`` builds them (``wrap(prompt_model, config)``) and
:func:`skillneurons.prompts.load_prompt` rebuilds their saved models (``rebuild``).

Imported through the ``skillneurons.plugins`` entry point; see :mod:`skillneurons.registry`.
"""

from __future__ import annotations

from typing import Any

from skillneurons.delta.build import METHOD_TYPES
from skillneurons.delta.model import delta_from_artifact, delta_model
from skillneurons.prompts.methods import TUNING_METHODS, TuningMethod
from skillneurons.prompts.model import PromptModel

__all__: list[str] = []


def _wrapper(name: str) -> Any:
    def wrap(model: PromptModel, config: Any) -> PromptModel:
        return delta_model(model, name, config)

    return wrap


for _name, (_config, _) in METHOD_TYPES.items():
    TUNING_METHODS.register(_name, TuningMethod(_name, _config, _wrapper(_name), delta_from_artifact))
