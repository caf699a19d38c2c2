"""Fit then test: what every training run (prompt, delta, projector) does after building its model."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from skillneurons.data import Task
from skillneurons.training.trainer import Trainer, TrainResult, evaluate

__all__ = ["fit_and_test"]


def fit_and_test(trainer: Trainer, test: Task) -> tuple[TrainResult, dict[str, Any]]:
    """Train (best dev checkpoint, resume), then evaluate on ``test``: the training result and the
    metrics every run's ``results.json`` reports."""
    config = trainer.config
    result = trainer.fit()
    t0 = time.perf_counter()
    metrics = evaluate(
        trainer.model,
        test,
        config.eval_batch_size,
        precision=config.precision,
        progress=trainer.progress,
        desc="test",
    )
    return result, {
        "best_dev_accuracy": result.best_dev_accuracy,
        "best_step": result.best_step,
        "steps": result.steps,
        "test_accuracy": metrics["accuracy"],
        "test_loss": metrics["loss"],
        "train_seconds": result.seconds,
        "test_seconds": time.perf_counter() - t0,
        "train_config": asdict(config),
    }
