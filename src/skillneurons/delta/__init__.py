"""Delta tuning beyond prompts: BitFit, bottleneck adapters (Houlsby / Pfeiffer) and LoRA behind the
prompt-tuning trainer, heads and artifact format, and the experiment asking whether skill neurons
found with prompt tuning are crucial for models tuned with these methods (REFERENCE.md section 3)."""

from skillneurons.delta.adapters import Adapters, Bottleneck
from skillneurons.delta.bitfit import BitFit
from skillneurons.delta.experiment import delta_perturbation, run_delta_perturbation
from skillneurons.delta.lora import LoRA
from skillneurons.delta.methods import METHODS, DeltaMethod, build_method
from skillneurons.delta.model import DeltaModel, NoPrompt, delta_from_artifact, delta_model

__all__ = [
    "METHODS",
    "Adapters",
    "BitFit",
    "Bottleneck",
    "DeltaMethod",
    "DeltaModel",
    "LoRA",
    "NoPrompt",
    "build_method",
    "delta_from_artifact",
    "delta_model",
    "delta_perturbation",
    "run_delta_perturbation",
]
