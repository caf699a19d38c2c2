"""Prompt tuning: soft prompts, heads, the prompt model, and prompt artifacts.

Exports are lazy (:mod:`skillneurons._lazy`): ``import skillneurons.prompts.config`` imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.prompts.build import build_prompt_model
    from skillneurons.prompts.config import PromptConfig
    from skillneurons.prompts.heads import (
        HEAD_TYPES,
        HEADS,
        Head,
        HeadType,
        LabelWordHead,
        LinearHead,
        SimilarityHead,
        build_head,
    )
    from skillneurons.prompts.io import check_backbone, export_peft, import_peft, load_prompt, save_prompt
    from skillneurons.prompts.model import Batch, PromptModel
    from skillneurons.prompts.soft_prompt import SoftPrompt

__all__ = [
    "HEADS",
    "HEAD_TYPES",
    "Batch",
    "Head",
    "HeadType",
    "LabelWordHead",
    "LinearHead",
    "PromptConfig",
    "PromptModel",
    "SimilarityHead",
    "SoftPrompt",
    "build_head",
    "build_prompt_model",
    "check_backbone",
    "export_peft",
    "import_peft",
    "load_prompt",
    "save_prompt",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "HEADS": ".heads",
        "HEAD_TYPES": ".heads",
        "Batch": ".model",
        "Head": ".heads",
        "HeadType": ".heads",
        "LabelWordHead": ".heads",
        "LinearHead": ".heads",
        "PromptConfig": ".config",
        "PromptModel": ".model",
        "SimilarityHead": ".heads",
        "SoftPrompt": ".soft_prompt",
        "build_head": ".heads",
        "build_prompt_model": ".build",
        "check_backbone": ".io",
        "export_peft": ".io",
        "import_peft": ".io",
        "load_prompt": ".io",
        "save_prompt": ".io",
    },
)
