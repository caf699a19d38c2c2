"""Verbalizers beyond one word per class: the knowledgeable verbalizer (KPT) with expanded label
words, refinement and contextual calibration (REFERENCE.md section 8), and zero-shot evaluation
with a hand-written template.

* :mod:`~skillneurons.verbalizers.words` - label-word files and mappings;
* :mod:`~skillneurons.verbalizers.expand` - expansion by embedding neighbours;
* :mod:`~skillneurons.verbalizers.refine` - the refinement steps as pure tensor functions;
* :mod:`~skillneurons.verbalizers.kpt` - :class:`KnowledgeableHead` (head kind ``"kpt"``);
* :mod:`~skillneurons.verbalizers.zero_shot` - template reading and the zero-shot run;
* :mod:`~skillneurons.verbalizers.cli` - the ``kpt-evaluate`` command.
"""

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
    "ContextStats",
    "KnowledgeableHead",
    "TemplateReader",
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
    "prompt_hidden_batches",
    "read_states",
    "refine_in_prompt_model",
    "relevance_keep",
    "shared_keep",
    "token_prior",
    "unlabelled_contexts",
    "verbalizer_words",
    "whole_word_vocabulary",
    "zero_shot_evaluate",
    "zero_shot_parts",
]
