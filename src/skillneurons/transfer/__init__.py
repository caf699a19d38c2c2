"""Prompt transferability (Su et al., NAACL 2022; REFERENCE.md section 6).

* :mod:`.config`: the options of every computation below (no torch);
* :mod:`.matrix`: cross-task zero-shot transfer, every source prompt on every target task with the
  target's head, accuracy and accuracy relative to the target's own prompt (:class:`TransferMatrix`);
* :mod:`.tpt`: transfer as initialisation (``tune_prompt(init_prompt=...)``) and the speed-up
  comparison of finished runs (:class:`TPTComparison`);
* :mod:`.projector`: the cross-model prompt projector (flatten, Linear, Tanh, Linear, LayerNorm),
  trained with the target model's task loss (:class:`ProjectorRun`, :class:`ProjectedPromptResult`);
* :mod:`.indicators`: E_avg, E_tok (aligned / all pairs), ON (overlap of activated neurons),
  skill-neuron overlaps, and their Spearman/Pearson correlation with the measured transfer
  (:class:`Transferability`);
* the ``transfer-matrix``, ``transferability``, ``project`` and ``tpt-compare`` commands are
  :mod:`skillneurons.cli.transfer`.
"""

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.transfer.config import (
        OnOptions,
        ProjectApplyConfig,
        ProjectTrainConfig,
        TPTCompareConfig,
        TransferabilityConfig,
        TransferMatrixConfig,
        parse_layers,
    )
    from skillneurons.transfer.indicators import (
        INDICATORS,
        Transferability,
        TransferPair,
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
        TransferMatrix,
        TransferTarget,
        load_target,
        prompt_names,
        run_transfer_matrix,
        transfer_accuracy,
        transfer_matrix,
    )
    from skillneurons.transfer.projector import (
        ProjectedPrompt,
        ProjectedPromptResult,
        ProjectorRun,
        PromptProjector,
        apply_projector,
        load_projector,
        save_projector,
        train_projector,
    )
    from skillneurons.transfer.tpt import (
        TPTComparison,
        TPTRun,
        compare_runs,
        initial_prompt,
        load_run,
        steps_to_reach,
    )

__all__ = [
    "INDICATORS",
    "OnOptions",
    "ProjectApplyConfig",
    "ProjectTrainConfig",
    "ProjectedPrompt",
    "ProjectedPromptResult",
    "ProjectorRun",
    "PromptProjector",
    "TPTCompareConfig",
    "TPTComparison",
    "TPTRun",
    "TransferMatrix",
    "TransferMatrixConfig",
    "TransferPair",
    "TransferTarget",
    "Transferability",
    "TransferabilityConfig",
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
    "parse_layers",
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
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "OnOptions": ".config",
        "ProjectApplyConfig": ".config",
        "ProjectTrainConfig": ".config",
        "TPTCompareConfig": ".config",
        "TransferMatrixConfig": ".config",
        "TransferabilityConfig": ".config",
        "parse_layers": ".config",
        "INDICATORS": ".indicators",
        "TransferPair": ".indicators",
        "Transferability": ".indicators",
        "activated_neurons": ".indicators",
        "correlations": ".indicators",
        "e_avg": ".indicators",
        "e_tok": ".indicators",
        "find_neurons_for": ".indicators",
        "neuron_overlap": ".indicators",
        "pearson": ".indicators",
        "spearman": ".indicators",
        "transferability": ".indicators",
        "TransferMatrix": ".matrix",
        "TransferTarget": ".matrix",
        "load_target": ".matrix",
        "prompt_names": ".matrix",
        "run_transfer_matrix": ".matrix",
        "transfer_accuracy": ".matrix",
        "transfer_matrix": ".matrix",
        "ProjectedPrompt": ".projector",
        "ProjectedPromptResult": ".projector",
        "ProjectorRun": ".projector",
        "PromptProjector": ".projector",
        "apply_projector": ".projector",
        "load_projector": ".projector",
        "save_projector": ".projector",
        "train_projector": ".projector",
        "TPTComparison": ".tpt",
        "TPTRun": ".tpt",
        "compare_runs": ".tpt",
        "initial_prompt": ".tpt",
        "load_run": ".tpt",
        "steps_to_reach": ".tpt",
    },
)
