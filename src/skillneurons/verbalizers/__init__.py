"""Verbalizers beyond one word per class: the knowledgeable verbalizer (KPT) with expanded label
words, refinement and contextual calibration (REFERENCE.md section 8), and zero-shot evaluation
with a hand-written template.

* :mod:`~skillneurons.verbalizers.config` - :class:`VerbalizerConfig` (tuning), :class:`KPTEvalConfig`
  (``kpt-evaluate``), no torch;
* :mod:`~skillneurons.verbalizers.words` - label-word files and mappings;
* :mod:`~skillneurons.verbalizers.expand` - expansion by embedding neighbours;
* :mod:`~skillneurons.verbalizers.refine` - the refinement steps as pure tensor functions;
* :mod:`~skillneurons.verbalizers.kpt` - :class:`KnowledgeableHead` (head kind ``"kpt"``);
* :mod:`~skillneurons.verbalizers.tuning` - the head of a tuned prompt from its config;
* :mod:`~skillneurons.verbalizers.zero_shot` - template reading and the zero-shot run (the
  ``kpt-evaluate`` command, :mod:`skillneurons.cli.kpt`).
"""

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.verbalizers.config import VERBALIZERS, KPTEvalConfig, VerbalizerConfig
    from skillneurons.verbalizers.expand import expand_label_words, nearest_words, whole_word_vocabulary
    from skillneurons.verbalizers.kpt import ContextStats, KnowledgeableHead
    from skillneurons.verbalizers.refine import (
        aggregate,
        calibrate_log_probs,
        calibrate_probs,
        combine_pieces,
        contextual_prior,
        frequency_keep,
        frequency_keep_words,
        relevance_keep,
        shared_keep,
        token_prior,
    )
    from skillneurons.verbalizers.tuning import prepare_head, tuning_head
    from skillneurons.verbalizers.words import load_label_words, parse_label_words
    from skillneurons.verbalizers.zero_shot import (
        DEFAULT_TEMPLATES,
        TemplateReader,
        build_kpt_head,
        head_accuracy,
        prompt_hidden_batches,
        read_states,
        refine_in_prompt_model,
        unlabelled_contexts,
        verbalizer_words,
        zero_shot_evaluate,
        zero_shot_parts,
    )

__all__ = [
    "DEFAULT_TEMPLATES",
    "VERBALIZERS",
    "ContextStats",
    "KPTEvalConfig",
    "KnowledgeableHead",
    "TemplateReader",
    "VerbalizerConfig",
    "aggregate",
    "build_kpt_head",
    "calibrate_log_probs",
    "calibrate_probs",
    "combine_pieces",
    "contextual_prior",
    "expand_label_words",
    "frequency_keep",
    "frequency_keep_words",
    "head_accuracy",
    "load_label_words",
    "nearest_words",
    "parse_label_words",
    "prepare_head",
    "prompt_hidden_batches",
    "read_states",
    "refine_in_prompt_model",
    "relevance_keep",
    "shared_keep",
    "token_prior",
    "tuning_head",
    "unlabelled_contexts",
    "verbalizer_words",
    "whole_word_vocabulary",
    "zero_shot_evaluate",
    "zero_shot_parts",
]
_EXPORTS = {
    ".config": ["VERBALIZERS", "KPTEvalConfig", "VerbalizerConfig"],
    ".expand": ["expand_label_words", "nearest_words", "whole_word_vocabulary"],
    ".kpt": ["ContextStats", "KnowledgeableHead"],
    ".refine": [
        "aggregate",
        "calibrate_log_probs",
        "calibrate_probs",
        "combine_pieces",
        "contextual_prior",
        "frequency_keep",
        "frequency_keep_words",
        "relevance_keep",
        "shared_keep",
        "token_prior",
    ],
    ".tuning": ["prepare_head", "tuning_head"],
    ".words": ["load_label_words", "parse_label_words"],
    ".zero_shot": [
        "DEFAULT_TEMPLATES",
        "TemplateReader",
        "build_kpt_head",
        "head_accuracy",
        "prompt_hidden_batches",
        "read_states",
        "refine_in_prompt_model",
        "unlabelled_contexts",
        "verbalizer_words",
        "zero_shot_evaluate",
        "zero_shot_parts",
    ],
}
__getattr__, __dir__ = lazy_exports(__name__, {n: mod for mod, names in _EXPORTS.items() for n in names})
