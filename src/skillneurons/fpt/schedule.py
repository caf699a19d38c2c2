"""Schedules of fast prompt tuning: a sequence of partial-model stages ending on the full model.

Written as a comma-separated list of stages, each optionally with a weight (its share of the
training steps)::

    SCHEDULE := STAGE ("," STAGE)*
    STAGE    := SHAPE [":" WEIGHT]
    SHAPE    := "full" | "d" PCT | "w" PCT | "d" PCT "w" PCT | PCT
    PCT      := a percentage in (0, 100], "%" optional

``d50`` keeps 50% of the layers (depth), ``w50`` 50% of the FFN neurons of every kept layer
(width), ``d50w50`` both, and a bare ``50`` (or ``50%``) means both ("compound"). The last stage
must be ``full`` (the untouched full model). Without weights, every partial stage gets the same
number of steps and the final full stage twice as many (``d25,d50,d75,full`` -> 20/20/20/40% of
the steps); a stage without an explicit weight counts 1 (the final full stage: 2). Examples::

    25,50,75,full            compound (the FPT paper's T5-Large schedule)
    w25,w50,w75,full         width only
    d33,d66,full:2           depth only, the full stage half of the steps
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from skillneurons.errors import ConfigError
from skillneurons.fpt.config import ProgressiveConfig
from skillneurons.fpt.partial import DepthRule

__all__ = ["ProgressiveSchedule", "Stage", "WidthBy", "parse_schedule"]

WidthBy = Literal["mean_abs", "skill"]
EvalPolicy = Literal["final", "all"]

_SHAPE = re.compile(r"^(?:d(?P<d>[0-9.]+)%?)?(?:w(?P<w>[0-9.]+)%?)?$")


@dataclass(frozen=True)
class Stage:
    """One stage: kept fractions of depth and width (1.0 = all) and its relative number of steps."""

    depth: float = 1.0
    width: float = 1.0
    weight: float = 1.0

    def __post_init__(self) -> None:
        for name, v in (("depth", self.depth), ("width", self.width)):
            if not 0 < v <= 1:
                raise ConfigError(f"stage {name} must be a fraction in (0, 1], got {v}")
        if not self.weight > 0:
            raise ConfigError(f"stage weight must be > 0, got {self.weight}")

    @property
    def is_full(self) -> bool:
        return self.depth == 1.0 and self.width == 1.0

    @property
    def name(self) -> str:
        if self.is_full:
            return "full"
        parts = []
        if self.depth < 1:
            parts.append(f"d{_pct(self.depth)}")
        if self.width < 1:
            parts.append(f"w{_pct(self.width)}")
        return "".join(parts)


def _pct(x: float) -> str:
    v = round(x * 100, 6)
    return str(int(v)) if v == int(v) else str(v)


@dataclass(frozen=True)
class ProgressiveSchedule:
    """A fast-prompt-tuning plan.

    Attributes:
        stages: the stages in order; the last is the full model.
        depth_rule: ``even`` (first and last kept, evenly spread) or ``first`` (the first k layers).
        width_by: how neurons are ranked for width reduction: ``mean_abs`` (mean |activation| over
            ``width_examples`` training examples, the FPT paper) or ``skill`` (skill-neuron
            predictivity from ``neurons``, a SkillNeurons artifact).
        neurons: path of the skill-neuron artifact for ``width_by="skill"``.
        width_examples: training examples used for the mean-|activation| ranking.
        fold_baseline: replace a removed neuron by its mean activation (folded into the bias; the
            partial model stays closer to the full one) instead of dropping it (zero).
        reset_optimizer: clear the optimizer state (Adam moments) at every expansion instead of
            carrying it over (the prompt and head values are always carried).
        rewarm: at every expansion, the learning rate warms up again, linearly from 0 to the value of
            the trainer's schedule, over this fraction of the new stage's steps (0: off).
        evaluate: ``final`` runs dev evaluations (and best-checkpoint selection) only in the final
            full stage; ``all`` also evaluates the full model during the partial stages.
    """

    stages: tuple[Stage, ...]
    depth_rule: DepthRule = "even"
    width_by: WidthBy = "mean_abs"
    neurons: str | None = None
    width_examples: int = 256
    fold_baseline: bool = True
    reset_optimizer: bool = False
    evaluate: EvalPolicy = "final"
    rewarm: float = 0.0
    text: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.stages:
            raise ConfigError("a progressive schedule needs at least one stage")
        if not self.stages[-1].is_full:
            raise ConfigError(
                f"the last stage of a progressive schedule must be 'full', not '{self.stages[-1].name}': "
                "append ',full'"
            )
        if self.depth_rule not in ("even", "first"):
            raise ConfigError(f"unknown depth rule '{self.depth_rule}': use even or first")
        if self.width_by not in ("mean_abs", "skill"):
            raise ConfigError(f"unknown width ranking '{self.width_by}': use mean_abs or skill")
        if self.width_by == "skill" and self.neurons is None and any(s.width < 1 for s in self.stages):
            raise ConfigError(
                "width ranking by skill neurons needs their artifact: pass --progressive-neurons "
                "NEURONS/skill_neurons.safetensors"
            )
        if self.width_examples < 1:
            raise ConfigError("width_examples must be >= 1")
        if not 0 <= self.rewarm <= 1:
            raise ConfigError(f"rewarm must be a fraction in [0, 1], got {self.rewarm}")
        if self.evaluate not in ("final", "all"):
            raise ConfigError(f"unknown evaluation policy '{self.evaluate}': use final or all")

    @property
    def spec(self) -> str:
        """Canonical schedule string (with explicit weights)."""
        return ",".join(f"{s.name}:{s.weight:g}" for s in self.stages)

    def boundaries(self, total_steps: int) -> list[int]:
        """Cumulative end step of each stage for ``total_steps`` (the last is ``total_steps``).

        Steps are split by weight (rounded at cumulative boundaries); a stage may get 0 steps
        when ``total_steps`` is smaller than the number of stages, but the full stage gets >= 1.
        """
        if total_steps < 1:
            raise ConfigError("training needs at least one step")
        tot = sum(s.weight for s in self.stages)
        acc, out = 0.0, []
        for s in self.stages:
            acc += s.weight
            out.append(min(total_steps - 1, int(acc / tot * total_steps + 0.5)))
        out[-1] = total_steps
        for i in range(1, len(out)):
            out[i] = max(out[i], out[i - 1])
        return out

    def stage_at(self, step: int, total_steps: int) -> int:
        """Index of the stage that runs training step ``step`` (0-based)."""
        for i, end in enumerate(self.boundaries(total_steps)):
            if step < end:
                return i
        return len(self.stages) - 1

    def rewarm_factor(self, step: int, total_steps: int) -> float:
        """The re-warm-up factor of training step ``step``: rising linearly to 1 over the first
        ``rewarm`` of each stage after the first, 1 elsewhere (and everywhere when ``rewarm`` is 0)."""
        i = self.stage_at(step, total_steps)
        if self.rewarm <= 0 or i == 0:
            return 1.0
        bounds = self.boundaries(total_steps)
        start = bounds[i - 1]
        width = max(1, round(self.rewarm * (bounds[i] - start)))
        return min(1.0, (step - start + 1) / width)

    def identity(self) -> dict[str, Any]:
        """The options that make a run different (``rewarm`` only when set: the run keys of the runs
        made before it existed stay valid)."""
        extra = {"rewarm": self.rewarm} if self.rewarm else {}
        return {
            "stages": self.spec,
            "depth_rule": self.depth_rule,
            "width_by": self.width_by,
            "neurons": self.neurons,
            "width_examples": self.width_examples,
            "fold_baseline": self.fold_baseline,
            "reset_optimizer": self.reset_optimizer,
            "evaluate": self.evaluate,
            **extra,
        }

    def with_options(self, **kw: Any) -> ProgressiveSchedule:
        return replace(self, **kw)

    @classmethod
    def from_config(cls, config: ProgressiveConfig) -> ProgressiveSchedule | None:
        """The schedule of ``config`` (:func:`parse_schedule` of its ``schedule`` with its other
        options); None when it gives no schedule."""
        if not config.enabled:
            return None
        assert config.schedule is not None
        return parse_schedule(config.schedule, **config.schedule_options())


def parse_schedule(text: str, **options: Any) -> ProgressiveSchedule:
    """Parse the schedule syntax of the module docstring; ``options`` are the other
    :class:`ProgressiveSchedule` fields (``depth_rule``, ``width_by``, ...)."""
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts):
        raise ConfigError(
            f"progressive schedule '{text}' has an empty stage: write e.g. '25,50,75,full' or "
            "'d25,d50,d75,full'"
        )
    weights: list[float | None] = []
    shapes: list[tuple[float, float]] = []
    for p in parts:
        shape, _, w = p.partition(":")
        shape = shape.strip().lower()
        weight: float | None = None
        if w:
            try:
                weight = float(w)
            except ValueError:
                raise ConfigError(f"stage '{p}': weight '{w}' is not a number") from None
        if shape == "full":
            d = wd = 1.0
        elif re.fullmatch(r"[0-9.]+%?", shape):
            d = wd = _frac(shape.rstrip("%"), p)
        else:
            m = _SHAPE.match(shape)
            if not m or (m.group("d") is None and m.group("w") is None):
                raise ConfigError(
                    f"cannot read stage '{p}' of progressive schedule '{text}': use full, dPCT (depth), "
                    "wPCT (width), dPCTwPCT or PCT (both), optionally ':WEIGHT', e.g. '25,50,75,full'"
                )
            d = _frac(m.group("d"), p) if m.group("d") is not None else 1.0
            wd = _frac(m.group("w"), p) if m.group("w") is not None else 1.0
        shapes.append((d, wd))
        weights.append(weight)
    n = len(shapes)
    default = [2.0 if i == n - 1 and n > 1 else 1.0 for i in range(n)]
    stages = tuple(
        Stage(d, wd, w if w is not None else default[i])
        for i, ((d, wd), w) in enumerate(zip(shapes, weights))
    )
    return ProgressiveSchedule(stages, text=str(text), **options)


def _frac(s: str, stage: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise ConfigError(f"stage '{stage}': '{s}' is not a percentage") from None
    if not 0 < v <= 100:
        raise ConfigError(f"stage '{stage}': percentages must be in (0, 100], got {s}")
    return v / 100.0
