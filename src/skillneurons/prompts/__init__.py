"""Prompt tuning: soft prompts, heads, the prompt model, and prompt artifacts."""

from skillneurons.prompts.heads import HEAD_TYPES, Head, LabelWordHead, LinearHead, SimilarityHead, build_head
from skillneurons.prompts.io import check_backbone, export_peft, import_peft, load_prompt, save_prompt
from skillneurons.prompts.model import Batch, PromptModel
from skillneurons.prompts.soft_prompt import SoftPrompt

__all__ = [
    "HEAD_TYPES",
    "Batch",
    "Head",
    "LabelWordHead",
    "LinearHead",
    "PromptModel",
    "SimilarityHead",
    "SoftPrompt",
    "build_head",
    "check_backbone",
    "export_peft",
    "import_peft",
    "load_prompt",
    "save_prompt",
]
