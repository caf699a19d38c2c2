"""Typed results of the high-level runs: a tuning run's ``results.json`` and an evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skillneurons.evidence import Estimate, accuracy_estimate
from skillneurons.fpt.progressive import ProgressiveSummary
from skillneurons.results import Result

__all__ = ["EvalResult", "TuneResult", "accuracy_estimate"]


@dataclass
class TuneResult(Result):
    """What a tuning run reports (``RUN/results.json``); accuracies are on the run's own split."""

    SCHEMA = "skillneurons.tune"

    model: dict[str, Any]
    task: str
    seed: int
    split_seed: int
    sizes: dict[str, int]
    prompt_length: int
    head: str
    layout: str
    best_dev_accuracy: float
    best_step: int
    steps: int
    test_accuracy: float
    test_loss: float
    train_seconds: float
    test_seconds: float
    train_config: dict[str, Any]
    resumed_from_step: int
    prompt: str | None
    progressive: ProgressiveSummary | None = None
    method: str | None = None
    method_options: dict[str, Any] | None = None
    trainable_parameters: int | None = None
    dev_ci: Estimate | None = None
    test_ci: Estimate | None = None

    def accuracy_text(self) -> str:
        """``test accuracy 0.725 [0.680, 0.766] (n=400), best dev 0.731 [...] (n=400) at step 250``."""
        test = self.test_ci.format(4, n=True) if self.test_ci else f"{self.test_accuracy:.4f}"
        dev = self.dev_ci.format(4, n=True) if self.dev_ci else f"{self.best_dev_accuracy:.4f}"
        return f"test accuracy {test}, best dev {dev} at step {self.best_step}"

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        for key in ("progressive", "method", "method_options", "trainable_parameters", "dev_ci", "test_ci"):
            if out.get(key) is None:  # keys of other methods stay out of a prompt run's file
                out.pop(key, None)
        return out


@dataclass
class EvalResult(Result):
    """A saved prompt evaluated on one part of a task."""

    SCHEMA = "skillneurons.evaluate"

    prompt: str
    task: str
    split: str
    accuracy: float
    loss: float
    n: int
    ci: Estimate | None = None

    def __post_init__(self) -> None:
        if self.ci is None:
            self.ci = accuracy_estimate(self.accuracy, self.n)
