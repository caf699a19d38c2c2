"""Delta tuning beyond prompts: BitFit, bottleneck adapters (Houlsby / Pfeiffer) and LoRA behind the
prompt-tuning trainer, heads and artifact format, and the experiment asking whether skill neurons
found with prompt tuning are crucial for models tuned with these methods (REFERENCE.md section 3).

Each method is a plug-in folder ``delta/<method>/`` with ``config.py`` (its options, no torch) and
``model.py`` (its :class:`DeltaMethod`), registered as a tuning method in :mod:`skillneurons.delta.plugin`.
"""

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.delta.adapter.config import AdapterConfig
    from skillneurons.delta.adapter.model import Adapters, Bottleneck
    from skillneurons.delta.bitfit.config import BitFitConfig
    from skillneurons.delta.bitfit.model import BitFit
    from skillneurons.delta.build import METHOD_TYPES, build_method, method_config
    from skillneurons.delta.config import DeltaPerturbConfig
    from skillneurons.delta.experiment import (
        DeltaPerturbResult,
        delta_perturbation,
        run_delta_perturbation,
    )
    from skillneurons.delta.lora.config import LoraConfig
    from skillneurons.delta.lora.model import LoRA
    from skillneurons.delta.methods import METHODS, DeltaMethod
    from skillneurons.delta.model import DeltaModel, NoPrompt, delta_from_artifact, delta_model

__all__ = [
    "METHODS",
    "METHOD_TYPES",
    "AdapterConfig",
    "Adapters",
    "BitFit",
    "BitFitConfig",
    "Bottleneck",
    "DeltaMethod",
    "DeltaModel",
    "DeltaPerturbConfig",
    "DeltaPerturbResult",
    "LoRA",
    "LoraConfig",
    "NoPrompt",
    "build_method",
    "delta_from_artifact",
    "delta_model",
    "delta_perturbation",
    "method_config",
    "run_delta_perturbation",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "METHODS": ".methods",
        "METHOD_TYPES": ".build",
        "AdapterConfig": ".adapter.config",
        "Adapters": ".adapter.model",
        "BitFit": ".bitfit.model",
        "BitFitConfig": ".bitfit.config",
        "Bottleneck": ".adapter.model",
        "DeltaMethod": ".methods",
        "DeltaModel": ".model",
        "DeltaPerturbConfig": ".config",
        "DeltaPerturbResult": ".experiment",
        "LoRA": ".lora.model",
        "LoraConfig": ".lora.config",
        "NoPrompt": ".model",
        "build_method": ".build",
        "delta_from_artifact": ".model",
        "delta_model": ".model",
        "delta_perturbation": ".experiment",
        "method_config": ".build",
        "run_delta_perturbation": ".experiment",
    },
)
