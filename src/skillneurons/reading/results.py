"""Results of ``skillneurons read train`` / ``read evaluate`` (typed, JSON). No torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from skillneurons.results import Result

__all__ = ["GateAuroc", "ReadEvaluation", "ReadTrainResult"]


@dataclass
class GateAuroc:
    """How well one head's gate value predicts "this token is inside a gold answer" (dev tokens).

    ``auroc`` per head (0.5: no signal); ``selected_answer_share``: answer tokens among the tokens the
    head selected (top-K by its gate), against ``answer_share``, the answer tokens among all tokens.
    """

    block: str  # "encoder", "modeler", "cross0", ...
    auroc: list[float]
    selected_answer_share: list[float]
    answer_share: float
    tokens: int


@dataclass
class ReadEvaluation(Result):
    """EM / F1 (span head) or accuracy (choice head, reported as ``em`` and ``f1`` alike) on a split,
    each a mean over examples with its 95% bootstrap interval."""

    SCHEMA = "skillneurons.read_evaluation"

    split: str
    head: str
    n: int
    em: float
    em_low: float
    em_high: float
    f1: float
    f1_low: float
    f1_high: float
    loss: float
    skipped: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    unanswerable: int = 0  # scored 0: no answer occurrence in the passages the reader reads
    gates: list[GateAuroc] = field(default_factory=list)
    gate_statistic: str = ""  # how the gate AUROC was computed
    seconds: float = 0.0


@dataclass
class ReadTrainResult(Result):
    """A reader's training: the best dev EM (EMA weights) and where it was reached."""

    SCHEMA = "skillneurons.read_train"

    best_dev_em: float
    best_dev_f1: float
    best_step: int
    steps: int
    resumed_from: int
    seconds: float
    n_train: int
    n_dev: int
    parameters: int
    skipped_train: dict[str, int] = field(default_factory=dict)
    skipped_dev: dict[str, int] = field(default_factory=dict)
    stopped_by_time: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
