"""The verbalizer of a tuned prompt, built from its
:class:`~skillneurons.verbalizers.config.VerbalizerConfig`: ``tune_prompt`` asks for the head
(:func:`tuning_head`) and, once the model is built, lets the verbalizer prepare itself
(:func:`prepare_head`: a knowledgeable verbalizer is refined on unlabelled training texts read
through the initial prompt), so it never switches on the verbalizer's name."""

from __future__ import annotations

from typing import Any

from skillneurons.backbones import Backbone
from skillneurons.data import Task
from skillneurons.prompts.heads import Head, build_head
from skillneurons.prompts.model import PromptModel
from skillneurons.verbalizers.config import VerbalizerConfig
from skillneurons.verbalizers.kpt import KnowledgeableHead
from skillneurons.verbalizers.zero_shot import refine_in_prompt_model, unlabelled_contexts, verbalizer_words

__all__ = ["prepare_head", "tuning_head"]


def tuning_head(config: VerbalizerConfig, backbone: Backbone, task: Task, head: str = "auto") -> Head:
    """The head that reads ``task``'s label: ``head`` (a head kind) over the task's label words for
    ``single``; for ``kpt`` a :class:`KnowledgeableHead` over the words of ``config.words`` (or the
    task's) plus ``config.expand`` neighbours, with learned word weights, calibrated when asked."""
    if config.is_kpt:
        words = verbalizer_words(backbone, task, words=config.words, expand=config.expand)
        return KnowledgeableHead(backbone, words, aggregate="learned", calibrate=config.calibrate)
    return build_head(head, backbone, task.label_words)


def prepare_head(
    config: VerbalizerConfig, model: PromptModel, train: Task, seed: int
) -> dict[str, Any] | None:
    """Before training: refine a knowledgeable verbalizer in ``model`` on ``config.contexts``
    unlabelled texts of ``train`` (seeded); returns the refinement report (None for ``single``)."""
    if not config.is_kpt:
        return None
    contexts = unlabelled_contexts(train, config.contexts, seed)
    return refine_in_prompt_model(model, contexts, relevance=config.relevance)
