"""Training and evaluation loops; :class:`TrainConfig` (torch-free) holds the optimisation settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.training.config import TrainConfig
    from skillneurons.training.fit import fit_and_test
    from skillneurons.training.trainer import Trainer, TrainHooks, TrainResult, autocast_context, evaluate

__all__ = [
    "TrainConfig",
    "TrainHooks",
    "TrainResult",
    "Trainer",
    "autocast_context",
    "evaluate",
    "fit_and_test",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "TrainConfig": ".config",
        "TrainHooks": ".trainer",
        "TrainResult": ".trainer",
        "Trainer": ".trainer",
        "autocast_context": ".trainer",
        "evaluate": ".trainer",
        "fit_and_test": ".fit",
    },
)
