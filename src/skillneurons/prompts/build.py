"""Building the prompt model a :class:`~skillneurons.prompts.config.PromptConfig` describes."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from skillneurons.backbones import Backbone
from skillneurons.prompts.config import PromptConfig
from skillneurons.prompts.heads import Head, build_head
from skillneurons.prompts.model import PromptModel
from skillneurons.prompts.soft_prompt import SoftPrompt

__all__ = ["build_prompt_model", "new_prompt"]


def new_prompt(
    backbone: Backbone, config: PromptConfig, generator: torch.Generator | None = None
) -> SoftPrompt:
    """A fresh soft prompt of ``config.prompt_length`` vectors, initialised as ``config.init`` says."""
    return SoftPrompt.create(
        backbone,
        config.prompt_length,
        config.init,  # type: ignore[arg-type]  # checked by PromptConfig
        text=config.init_text,
        generator=generator,
    )


def build_prompt_model(
    backbone: Backbone,
    label_words: Sequence[Sequence[str]],
    config: PromptConfig,
    *,
    prompt: SoftPrompt | None = None,
    head: Head | None = None,
    generator: torch.Generator | None = None,
) -> PromptModel:
    """The prompt model of ``config`` on ``backbone``: ``prompt`` (default: :func:`new_prompt` drawn
    from ``generator``) and ``head`` (default: a ``config.head`` head for ``label_words``), with the
    config's layout, template and maximum length."""
    if prompt is None:
        prompt = new_prompt(backbone, config, generator)
    if head is None:
        head = build_head(config.head, backbone, label_words)
    return PromptModel(
        backbone,
        prompt,
        head,
        layout=config.layout,
        max_length=config.max_length,
        template=config.template,
    )
