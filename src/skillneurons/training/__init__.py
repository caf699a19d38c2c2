"""Training and evaluation loops."""

from skillneurons.training.fit import fit_and_test
from skillneurons.training.trainer import TrainConfig, Trainer, TrainResult, autocast_context, evaluate

__all__ = ["TrainConfig", "TrainResult", "Trainer", "autocast_context", "evaluate", "fit_and_test"]
