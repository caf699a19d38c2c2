"""Prompt transferability (Su et al., NAACL 2022; REFERENCE.md section 6).

* :mod:`.matrix`: cross-task zero-shot transfer, every source prompt on every target task with the
  target's head, accuracy and accuracy relative to the target's own prompt;
* :mod:`.tpt`: transfer as initialisation (``tune_prompt(init_prompt=...)``) and the speed-up
  comparison of finished runs;
* :mod:`.projector`: the cross-model prompt projector (flatten, Linear, Tanh, Linear, LayerNorm),
  trained with the target model's task loss;
* :mod:`.indicators`: E_avg, E_tok (aligned / all pairs), ON (overlap of activated neurons),
  skill-neuron overlaps, and their Spearman/Pearson correlation with the measured transfer;
* :mod:`.cli`: the ``transfer-matrix``, ``transferability``, ``project`` and ``tpt-compare`` commands.
"""

from skillneurons.transfer.indicators import (
    INDICATORS,
    OnOptions,
    activated_neurons,
    correlations,
    e_avg,
    e_tok,
    find_neurons_for,
    neuron_overlap,
    pearson,
    spearman,
    transferability,
)
from skillneurons.transfer.matrix import (
    TransferTarget,
    load_target,
    prompt_names,
    run_transfer_matrix,
    transfer_accuracy,
    transfer_matrix,
)
from skillneurons.transfer.projector import (
    ProjectedPrompt,
    PromptProjector,
    apply_projector,
    load_projector,
    save_projector,
    train_projector,
)
from skillneurons.transfer.tpt import compare_runs, initial_prompt, load_run, steps_to_reach

__all__ = [
    "INDICATORS",
    "OnOptions",
    "ProjectedPrompt",
    "PromptProjector",
    "TransferTarget",
    "activated_neurons",
    "apply_projector",
    "compare_runs",
    "correlations",
    "e_avg",
    "e_tok",
    "find_neurons_for",
    "initial_prompt",
    "load_projector",
    "load_run",
    "load_target",
    "neuron_overlap",
    "pearson",
    "prompt_names",
    "run_transfer_matrix",
    "save_projector",
    "spearman",
    "steps_to_reach",
    "train_projector",
    "transfer_accuracy",
    "transfer_matrix",
    "transferability",
]
