"""Options of fast prompt tuning (``tune --progressive ...``). No torch here: the schedule itself
(:class:`~skillneurons.fpt.schedule.ProgressiveSchedule`) and the trainer hooks
(:class:`~skillneurons.fpt.progressive.ProgressiveTraining`) are built from this config by
:meth:`ProgressiveSchedule.from_config` / :func:`~skillneurons.fpt.progressive.progressive_hooks`."""

from __future__ import annotations

from dataclasses import dataclass

from skillneurons.errors import ConfigError
from skillneurons.options import option

__all__ = ["DEPTH_RULES", "EVAL_POLICIES", "WIDTH_RANKINGS", "ProgressiveConfig"]

DEPTH_RULES: tuple[str, ...] = ("even", "first")
WIDTH_RANKINGS: tuple[str, ...] = ("mean_abs", "skill")
EVAL_POLICIES: tuple[str, ...] = ("final", "all")


@dataclass
class ProgressiveConfig:
    """Fast prompt tuning: train first on partial models, then the full one (off without a schedule)."""

    schedule: str | None = option(
        None,
        "train first on partial models, then the full one: comma-separated stages, each 'full', "
        "'dPCT' (keep PCT%% of the layers), 'wPCT' (keep PCT%% of the FFN neurons per layer), 'dPCTwPCT' or "
        "'PCT' (both), optionally ':WEIGHT' (share of the steps; default 1 each, 2 for the final full "
        "stage). The last stage must be 'full'. E.g. '25,50,75,full' (compound), 'w25,w50,w75,full', "
        "'d50,full:3'",
        flag="--progressive",
        metavar="SCHEDULE",
    )
    depth_rule: str = option(
        "even",
        "which layers a depth stage keeps: even (first and last, evenly spread) or first (the first k)",
        choices=DEPTH_RULES,
        flag="--progressive-depth",
    )
    width_by: str = option(
        "mean_abs",
        "which neurons a width stage keeps: the top by mean |activation| over a seeded sample of the "
        "TRAINING split (unsupervised; the dev split is kept for model selection only), "
        "or by skill-neuron predictivity (--progressive-neurons)",
        choices=WIDTH_RANKINGS,
        flag="--progressive-width-by",
    )
    neurons: str | None = option(
        None,
        "skill-neuron artifact (NEURONS/skill_neurons.safetensors) for --progressive-width-by skill",
        flag="--progressive-neurons",
        metavar="PATH",
    )
    evaluate: str = option(
        "final",
        "dev evaluation (and best checkpoint) only in the final full stage, or at every evaluation "
        "(always on the full model)",
        choices=EVAL_POLICIES,
        flag="--progressive-eval",
    )
    reset_optimizer: bool = option(
        False, "clear the optimizer moments at every expansion (default: carried over with the prompt)"
    )
    rewarm: float = option(
        0.0,
        "re-warm the learning rate at every expansion: linearly from 0 to the schedule's value over this "
        "fraction of the new stage's steps (0: off)",
        flag="--progressive-rewarm",
    )
    width_examples: int = option(
        256, "training examples read for the mean-|activation| neuron ranking", cli=False
    )
    fold_baseline: bool = option(
        True, "replace a removed neuron by its mean activation (folded into the bias)", cli=False
    )

    def __post_init__(self) -> None:
        if self.depth_rule not in DEPTH_RULES:
            raise ConfigError(f"unknown depth rule '{self.depth_rule}': use even or first")
        if self.width_by not in WIDTH_RANKINGS:
            raise ConfigError(f"unknown width ranking '{self.width_by}': use mean_abs or skill")
        if self.width_examples < 1:
            raise ConfigError("width_examples must be >= 1")
        if not 0 <= self.rewarm <= 1:
            raise ConfigError(f"--progressive-rewarm must be a fraction in [0, 1], got {self.rewarm}")
        if self.evaluate not in EVAL_POLICIES:
            raise ConfigError(f"unknown evaluation policy '{self.evaluate}': use final or all")

    @property
    def enabled(self) -> bool:
        """Whether a schedule is given (fast prompt tuning on)."""
        return bool(self.schedule)

    def schedule_options(self) -> dict[str, object]:
        """The schedule's other options, as :func:`~skillneurons.fpt.schedule.parse_schedule` takes them."""
        return {
            "depth_rule": self.depth_rule,
            "width_by": self.width_by,
            "neurons": self.neurons,
            "width_examples": self.width_examples,
            "fold_baseline": self.fold_baseline,
            "reset_optimizer": self.reset_optimizer,
            "rewarm": self.rewarm,
            "evaluate": self.evaluate,
        }
