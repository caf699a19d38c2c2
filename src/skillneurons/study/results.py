"""The result of ``skillneurons study``: ``study.json`` as a typed :class:`StudyResult`. No torch.

Every figure carries its interval and the number of units it rests on (an
:class:`~skillneurons.evidence.Estimate`: examples for an accuracy, seeds for a mean over prompts,
pairs for a correlation). The experiments' own results are embedded as their JSON (``find``,
``perturb``, ``cross``, ``similarity``, ``transfer_matrix``, ``transferability``, ``delta``), so the
fields another version of those results adds travel into the study file unchanged; ``steps`` says
which folder and spec each came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from skillneurons.evidence import Estimate
from skillneurons.results import Result

__all__ = [
    "GroupComparison",
    "PromptFigures",
    "StepRecord",
    "StudyResult",
    "SweepFigures",
    "TaskFigures",
]


@dataclass
class PromptFigures:
    """One trained prompt: its test accuracy (Wilson interval over the test examples), its dev curve
    (``[step, dev accuracy]`` per evaluation) and whether the curve had flattened: ``late_gain`` is
    the best dev accuracy of the last third of the evaluations minus the best before them (> 0.01:
    still rising)."""

    seed: int
    prompt: str
    test_accuracy: Estimate
    best_dev_accuracy: float
    best_step: int
    steps: int
    train_seconds: float
    dev_curve: list[list[float]]
    late_gain: float | None
    converged: bool | None


@dataclass
class SweepFigures:
    """One fraction of a perturbation mode, over the task's prompts (seeds): the accuracy drops
    (unperturbed minus perturbed) of the skill neurons and of the random control (mean of its draws),
    and the difference skill drop - random drop, each a mean over seeds with a t interval.
    ``paired``: each prompt's skill - random accuracy, paired over its test examples and the random
    draws (the sweep's own estimate); ``paired_pooled``: the same with each example's correctness
    averaged over the prompts (negative: the skill neurons matter more); ``skill_drop_pooled``:
    unperturbed - skill, paired over the examples (None where the sweeps record no per-example
    correctness)."""

    mode: str
    rho: float
    neurons: int
    skill_drop: Estimate
    random_drop: Estimate | None
    difference: Estimate | None
    paired: list[Estimate] | None = None
    paired_pooled: Estimate | None = None
    skill_drop_pooled: Estimate | None = None


@dataclass
class TaskFigures:
    """One task of the study (or, with ``excluded``, why it was left out)."""

    name: str
    task: str
    excluded: str | None = None
    classes: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    prompts: list[PromptFigures] = field(default_factory=list)
    test_accuracy: Estimate | None = None
    majority: float | None = None
    find: dict[str, Any] | None = None
    perturb: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sweep: list[SweepFigures] = field(default_factory=list)


@dataclass
class GroupComparison:
    """A similarity measure over task pairs, pairs within a group vs pairs across groups (mean with a
    t interval over the pairs; the pairs share tasks, so they are not independent: read the interval
    as descriptive) and the within - across difference of the means."""

    measure: str
    within_pairs: list[str]
    within: Estimate | None
    across_pairs: list[str]
    across: Estimate | None
    difference: float | None


@dataclass
class StepRecord:
    """A step of the study: its folder, whether this run computed it or reused it, and its seconds."""

    name: str
    kind: str
    folder: str
    computed: bool
    seconds: float


@dataclass
class StudyResult(Result):
    """``study.json``: the spec, every task's figures and the cross-task experiments."""

    SCHEMA = "skillneurons.study"
    VERSION = 1

    name: str
    model: dict[str, Any]
    spec: dict[str, Any]
    spec_file: str | None
    seeds: list[int]
    tasks: list[TaskFigures]
    groups: dict[str, str] = field(default_factory=dict)
    similarity: dict[str, Any] | None = None
    similarity_groups: list[GroupComparison] = field(default_factory=list)
    cross: dict[str, dict[str, Any]] = field(default_factory=dict)
    cross_groups: list[GroupComparison] = field(default_factory=list)
    transfer_matrix: dict[str, Any] | None = None
    transferability: dict[str, Any] | None = None
    indicator_spearman: dict[str, Estimate | None] = field(default_factory=dict)
    indicator_windows: dict[str, dict[str, Estimate | None]] = field(default_factory=dict)
    delta: dict[str, Any] | None = None
    #: claim 5, per ``task/method``: the prompt-found skill neurons perturbed in the method's tuned
    #: models, skill vs random paired over the test examples with the seeds pooled (as a task's sweep)
    delta_sweeps: dict[str, list[SweepFigures]] = field(default_factory=dict)
    #: per ``task/method``: the tuned models' unperturbed test accuracy, mean over seeds [t]
    delta_accuracy: dict[str, Estimate] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)
    seconds: float = 0.0
    reports: list[str] = field(default_factory=list)

    def task(self, name: str) -> TaskFigures:
        """The figures of task ``name``."""
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)
