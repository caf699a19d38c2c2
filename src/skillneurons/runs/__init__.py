"""High-level runs: what the CLI commands do, as importable functions.

A run folder holds everything needed to reproduce and to check a result::

    RUN/run.json          the run's identity: every option that changes its result
    RUN/split.json        the seeded train/dev/test split (indices + per-example hashes)
    RUN/prompt.*          best prompt (.safetensors + manifest)
    RUN/checkpoint.*      resumable training state
    RUN/history.json      dev accuracy during training
    RUN/results.json      final metrics (:class:`TuneResult`)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.neurons.find import SkillNeurons, find_skill_neurons
    from skillneurons.rundir import make_splits, run_manifest
    from skillneurons.runs.config import RunOptions
    from skillneurons.runs.evaluate import evaluate_prompt
    from skillneurons.runs.results import EvalResult, TuneResult
    from skillneurons.runs.tune import tune_prompt
    from skillneurons.training import fit_and_test

__all__ = [
    "EvalResult",
    "RunOptions",
    "SkillNeurons",
    "TuneResult",
    "evaluate_prompt",
    "find_skill_neurons",
    "fit_and_test",
    "make_splits",
    "run_manifest",
    "tune_prompt",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "SkillNeurons": "skillneurons.neurons.find",
        "find_skill_neurons": "skillneurons.neurons.find",
        "make_splits": "skillneurons.rundir",
        "run_manifest": "skillneurons.rundir",
        "fit_and_test": "skillneurons.training",
        "RunOptions": ".config",
        "evaluate_prompt": ".evaluate",
        "EvalResult": ".results",
        "TuneResult": ".results",
        "tune_prompt": ".tune",
    },
)
