"""Perturbation experiments and task similarity (REFERENCE.md sections 3-4).

* :mod:`.interventions`: :class:`Perturbation` and the :func:`perturbed` context manager (gaussian
  noise, zeroing, mean replacement of chosen neurons at chosen layers and positions);
* :mod:`.experiments`: the accuracy-vs-rho sweep against a repeated random control, and the
  cross-task perturbation matrix;
* :mod:`.scale`: each neuron's activation std on the train split (the unit of the scaled gaussian);
* :mod:`.similarity`: Spearman correlation of neuron predictivity between tasks and skill-set overlap;
* :mod:`.config`: the options (torch-free); :mod:`.results`: the typed results;
* :mod:`.plots`: their figures; :mod:`.cli`: the ``perturb``, ``cross-perturb`` and ``similarity`` commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.perturb.config import (
        DEFAULT_RHOS,
        MODES,
        POSITIONS,
        CrossPerturbConfig,
        PerturbConfig,
        SimilarityConfig,
        SweepConfig,
    )
    from skillneurons.perturb.experiments import (
        PromptRun,
        accuracy,
        correctness,
        cross_task_matrix,
        load_prompt_run,
        mean_ci,
        perturbation_sweep,
        random_orders,
        run_cross,
        run_sweep,
    )
    from skillneurons.perturb.interventions import Perturbation, perturbed
    from skillneurons.perturb.results import (
        CrossResult,
        RandomControl,
        RandomStats,
        SimilarityResult,
        SweepPoint,
        SweepResult,
    )
    from skillneurons.perturb.scale import neuron_std
    from skillneurons.perturb.similarity import chance_jaccard, run_similarity, task_similarity

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DEFAULT_RHOS": ".config",
        "MODES": ".config",
        "POSITIONS": ".config",
        "CrossPerturbConfig": ".config",
        "PerturbConfig": ".config",
        "SimilarityConfig": ".config",
        "SweepConfig": ".config",
        "CrossResult": ".results",
        "RandomControl": ".results",
        "RandomStats": ".results",
        "SimilarityResult": ".results",
        "SweepPoint": ".results",
        "SweepResult": ".results",
        "PromptRun": ".experiments",
        "accuracy": ".experiments",
        "correctness": ".experiments",
        "neuron_std": ".scale",
        "cross_task_matrix": ".experiments",
        "load_prompt_run": ".experiments",
        "mean_ci": ".experiments",
        "perturbation_sweep": ".experiments",
        "random_orders": ".experiments",
        "run_cross": ".experiments",
        "run_sweep": ".experiments",
        "Perturbation": ".interventions",
        "perturbed": ".interventions",
        "chance_jaccard": ".similarity",
        "run_similarity": ".similarity",
        "task_similarity": ".similarity",
    },
)

__all__ = [
    "DEFAULT_RHOS",
    "MODES",
    "POSITIONS",
    "CrossPerturbConfig",
    "CrossResult",
    "PerturbConfig",
    "Perturbation",
    "PromptRun",
    "RandomControl",
    "RandomStats",
    "SimilarityConfig",
    "SimilarityResult",
    "SweepConfig",
    "SweepPoint",
    "SweepResult",
    "accuracy",
    "chance_jaccard",
    "correctness",
    "cross_task_matrix",
    "load_prompt_run",
    "mean_ci",
    "neuron_std",
    "perturbation_sweep",
    "perturbed",
    "random_orders",
    "run_cross",
    "run_similarity",
    "run_sweep",
    "task_similarity",
]
