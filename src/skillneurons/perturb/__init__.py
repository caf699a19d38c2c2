"""Perturbation experiments and task similarity (REFERENCE.md sections 3-4).

* :mod:`.interventions`: :class:`Perturbation` and the :func:`perturbed` context manager (gaussian
  noise, zeroing, mean replacement of chosen neurons at chosen layers and positions);
* :mod:`.experiments`: the accuracy-vs-rho sweep against a repeated random control, and the
  cross-task perturbation matrix;
* :mod:`.similarity`: Spearman correlation of neuron predictivity between tasks and skill-set overlap;
* :mod:`.plots`: their figures; :mod:`.cli`: the ``perturb``, ``cross-perturb`` and ``similarity`` commands.
"""

from skillneurons.perturb.experiments import (
    DEFAULT_RHOS,
    PromptRun,
    accuracy,
    cross_task_matrix,
    load_prompt_run,
    mean_ci,
    perturbation_sweep,
    random_orders,
    run_cross,
    run_sweep,
)
from skillneurons.perturb.interventions import MODES, POSITIONS, Perturbation, perturbed
from skillneurons.perturb.similarity import chance_jaccard, run_similarity, task_similarity

__all__ = [
    "DEFAULT_RHOS",
    "MODES",
    "POSITIONS",
    "Perturbation",
    "PromptRun",
    "accuracy",
    "chance_jaccard",
    "cross_task_matrix",
    "load_prompt_run",
    "mean_ci",
    "perturbation_sweep",
    "perturbed",
    "random_orders",
    "run_cross",
    "run_similarity",
    "run_sweep",
    "task_similarity",
]
