"""Fast prompt tuning (FPT): prompt tuning that starts on partial models and grows them
(REFERENCE.md section 7), as :class:`~skillneurons.training.trainer.TrainHooks` of the ordinary
:class:`~skillneurons.training.Trainer`.

One trainer, one optimizer, one learning-rate schedule over all steps: training step ``s`` runs
inside the partial model of the stage that ``s`` belongs to (:meth:`ProgressiveSchedule.stage_at`),
everything else (dev evaluation, checkpoints, the saved prompt) sees the full model. Hence

* the prompt tensor and the head are the same ``Parameter`` objects in every stage and the AdamW
  moments carry over at an expansion (``reset_optimizer`` clears them instead);
* dev evaluation and best-checkpoint selection happen on the full model, by default only in the
  final (full) stage (``evaluate="all"`` also evaluates during partial stages);
* the stage is a pure function of the step, and the neuron ranking is computed from the initial
  prompt when the trainer is built (before a checkpoint is loaded), so an interrupted run resumes
  exactly, at any step, also across stage boundaries.

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` on one representative
batch (the first ``batch_size`` examples of the epoch-0 random permutation, also under bucketed
batching, whose first batch holds one length only) per stage, forward + backward,
and multiplied by the stage's steps; dev evaluation is not counted.

Two deliberate choices:

* the width ranking (``width_by="mean_abs"``) reads mean |activation| on a seeded sample of the
  TRAINING split (``width_examples`` examples), not on a validation sample as REFERENCE.md
  section 7 describes: the ranking is unsupervised (no labels are read), and keeping the dev
  split untouched by anything but model selection leaves it an unbiased selector;
* seconds (``stage_seconds``, the history's ``train_seconds``, the summary's ``seconds``) are not
  checkpointed: after a resume they count the training steps run by THIS process only (FLOPs, a
  pure function of the step, are exact across resumes).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from skillneurons.data import Task
from skillneurons.errors import ConfigError
from skillneurons.fpt.config import ProgressiveConfig
from skillneurons.fpt.partial import (
    PartialModel,
    activation_magnitudes,
    count_for_fraction,
    select_layers,
    top_fraction_mask,
)
from skillneurons.fpt.schedule import ProgressiveSchedule, Stage, parse_schedule
from skillneurons.neurons.find import SkillNeurons
from skillneurons.prompts.model import Batch, PromptModel
from skillneurons.results import Result
from skillneurons.training.trainer import Trainer, TrainHooks, autocast_context, encode_examples

log = logging.getLogger(__name__)

__all__ = [
    "ProgressiveSummary",
    "ProgressiveTraining",
    "StageSummary",
    "count_step_flops",
    "progressive_hooks",
]


@dataclass
class StageSummary(Result):
    """One stage of a progressive run: its shape, kept layers and FFN widths, steps, FLOPs per step
    and seconds (this process's)."""

    SCHEMA = "skillneurons.fpt_stage"

    name: str
    depth: float
    width: float
    weight: float
    layers: list[int]
    widths: list[int] | None
    steps: int
    flops_per_step: int | None
    seconds: float


@dataclass
class ProgressiveSummary(Result):
    """``results["progressive"]`` of a fast-prompt-tuning run: the schedule and its options, the
    stages, and the training FLOPs against the same steps on the full model."""

    SCHEMA = "skillneurons.fpt_summary"

    schedule: str
    depth_rule: str
    width_by: str
    neurons: str | None
    width_examples: int
    fold_baseline: bool
    reset_optimizer: bool
    evaluate: str
    stages: list[StageSummary] = field(default_factory=list)
    steps: int = 0
    flops: int = 0
    flops_full_model: int = 0
    flops_ratio: float | None = None
    train_step_seconds: float = 0.0
    prepare_seconds: float = 0.0
    rewarm: float = 0.0


def count_step_flops(model: PromptModel, batch: Batch, precision: str = "auto") -> int:
    """FLOPs of one training step's forward + backward on ``batch`` (matrix products and attention,
    as counted by ``FlopCounterMode``); the gradients of the trainable parameters are left as they were."""
    from torch.utils.flop_counter import FlopCounterMode

    device = model.backbone.device
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        with torch.enable_grad(), FlopCounterMode(display=False) as counter:
            with autocast_context(device, precision):
                logits = model(batch).float()
            assert batch.labels is not None
            F.cross_entropy(logits, batch.labels).backward()
        return int(counter.get_total_flops())
    finally:
        for p, g in zip(params, saved):
            p.grad = g


class ProgressiveTraining(TrainHooks):
    """Trainer hooks that run each training step on its stage's partial model.

    Args:
        model: the prompt model being trained (its backbone is the full model).
        train: the training split (the width ranking samples it; FLOPs are counted on its first batch).
        schedule: a :class:`ProgressiveSchedule`, its string form (:func:`parse_schedule`) or a
            :class:`~skillneurons.fpt.config.ProgressiveConfig` with a schedule.
        precision: as in ``TrainConfig`` (used for the ranking pass and the FLOP count).
        progress: show progress bars.

    Pass it as ``Trainer(..., hooks=ProgressiveTraining(...))``; the preparation (neuron ranking,
    FLOP counts) runs when the trainer is built. :meth:`summary` describes the stages.
    """

    def __init__(
        self,
        model: PromptModel,
        train: Task,
        schedule: ProgressiveSchedule | ProgressiveConfig | str,
        *,
        precision: str = "auto",
        progress: bool = False,
    ) -> None:
        self.model = model
        self.train = train
        self.schedule = _schedule(schedule)
        self.precision = precision
        self.progress = progress
        self.trainer: Trainer | None = None
        self.total_steps = 0
        self.bounds: list[int] = []
        self.stage_layers: list[list[int]] = []
        self.flops_per_step: list[int] = []
        self.stage_seconds = [0.0] * len(self.schedule.stages)
        self.prepare_seconds = 0.0
        self._scores: tuple[list[Tensor], list[Tensor]] | None = None
        self._skill_keep: dict[float, list[Tensor]] = {}
        self._current: tuple[int, PartialModel] | None = None
        self._widths: list[list[int]] = []

    # ---- TrainHooks ---------------------------------------------------------------------------
    def attach(self, trainer: Trainer) -> None:
        t0 = time.perf_counter()
        self.trainer = trainer
        self.total_steps = trainer.total_steps
        self.bounds = self.schedule.boundaries(self.total_steps)
        L = self.model.backbone.num_layers
        self.stage_layers = [
            select_layers(
                L,
                count_for_fraction(s.depth, L, 2 if self.schedule.depth_rule == "even" else 1),
                self.schedule.depth_rule,
            )
            for s in self.schedule.stages
        ]
        if any(s.width < 1 for s in self.schedule.stages):
            self._rank_neurons(trainer)
        first = trainer.permutation(0)[: trainer.config.batch_size]  # random: not one length bucket
        batch = encode_examples(self.model, self.train, first).to(self.model.backbone.device)
        self.flops_per_step, self._widths = [], []
        for i in range(len(self.schedule.stages)):
            with self.stage_model(i) as pm:
                self.flops_per_step.append(count_step_flops(self.model, batch, self.precision))
                self._widths.append(pm.widths if pm is not None else list(self.model.backbone.d_ff))
        self._current = None  # the stages are rebuilt when training enters them (one held at a time)
        self.prepare_seconds = time.perf_counter() - t0
        log.info("fast prompt tuning: %s", self.describe_stages())

    def step_context(self, step: int) -> contextlib.AbstractContextManager[Any]:
        i = self.schedule.stage_at(step, self.total_steps)
        if (
            self.schedule.reset_optimizer
            and i > 0
            and step == self.bounds[i - 1]
            and self.trainer is not None
        ):
            self.trainer.optimizer.state.clear()  # an expansion: fresh Adam moments
        return self._timed(i)

    def lr_factor(self, step: int, factor: float) -> float:
        return factor * self.schedule.rewarm_factor(step, self.total_steps)

    def evaluate_at(self, step: int) -> bool:
        if self.schedule.evaluate == "all" or len(self.bounds) < 2:
            return True
        return step > self.bounds[-2]  # the step just done was in the final (full) stage

    def history_fields(self, step: int) -> dict[str, float]:
        return {
            "stage": float(self.schedule.stage_at(max(step - 1, 0), self.total_steps)),
            "flops": float(self.flops_until(step)),
            "train_seconds": float(sum(self.stage_seconds)),
        }

    def identity(self) -> dict[str, Any]:
        return self.schedule.identity()

    # ---- stages -------------------------------------------------------------------------------
    def steps_per_stage(self, steps: int | None = None) -> list[int]:
        """Steps of each stage within the first ``steps`` steps (default: all)."""
        n = self.total_steps if steps is None else steps
        out, start = [], 0
        for end in self.bounds:
            out.append(max(0, min(end, n) - start))
            start = end
        return out

    def flops_until(self, steps: int) -> int:
        """Training FLOPs of the first ``steps`` steps."""
        return sum(n * f for n, f in zip(self.steps_per_stage(steps), self.flops_per_step))

    def describe_stages(self) -> str:
        return ", ".join(
            f"{s.name}: {n} steps, layers {len(ls)}/{self.model.backbone.num_layers}"
            for s, n, ls in zip(self.schedule.stages, self.steps_per_stage(), self.stage_layers)
        )

    def summary(self, steps_done: int | None = None) -> ProgressiveSummary:
        """The stages (layers, widths, steps, FLOPs per step), FLOPs against the same steps on the full
        model, seconds per stage (seconds since this process started: not carried over a resume)."""
        done = self.total_steps if steps_done is None else steps_done
        full = self.flops_per_step[-1] if self.flops_per_step else 0
        flops = self.flops_until(done)
        stages = [
            StageSummary(
                name=s.name,
                depth=s.depth,
                width=s.width,
                weight=s.weight,
                layers=self.stage_layers[i],
                widths=self._widths[i] if i < len(self._widths) else None,
                steps=n,
                flops_per_step=self.flops_per_step[i] if i < len(self.flops_per_step) else None,
                seconds=self.stage_seconds[i],
            )
            for i, (s, n) in enumerate(zip(self.schedule.stages, self.steps_per_stage(done)))
        ]
        ident = {k: v for k, v in self.schedule.identity().items() if k != "stages"}
        return ProgressiveSummary(
            schedule=self.schedule.spec,
            **ident,
            stages=stages,
            steps=done,
            flops=flops,
            flops_full_model=done * full,
            flops_ratio=flops / (done * full) if done and full else None,
            train_step_seconds=sum(self.stage_seconds),
            prepare_seconds=self.prepare_seconds,
        )

    # ---- internals ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _timed(self, i: int) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            with self.stage_model(i):
                yield
        finally:
            self.stage_seconds[i] += time.perf_counter() - t0

    @contextlib.contextmanager
    def stage_model(self, i: int) -> Iterator[PartialModel | None]:
        """Context in which the backbone is stage ``i``'s partial model (yields it; None for the full
        stage). Only the current stage's sliced weights are held."""
        stage = self.schedule.stages[i]
        if stage.is_full:
            yield None
            return
        if self._current is None or self._current[0] != i:
            self._current = None  # drop the previous stage's sliced weights first
            self._current = (i, self._build(i, stage))
        with self._current[1] as pm:
            yield pm

    def _build(self, i: int, stage: Stage) -> PartialModel:
        bb = self.model.backbone
        if stage.width >= 1:
            return PartialModel(bb, self.stage_layers[i])
        keep, baseline = self._width_masks(stage.width)
        if not self.schedule.fold_baseline:
            baseline = [torch.zeros_like(b) for b in baseline]
        return PartialModel(bb, self.stage_layers[i], keep, baseline)

    def _width_masks(self, fraction: float) -> tuple[list[Tensor], list[Tensor]]:
        assert self._scores is not None
        scores, baseline = self._scores
        if self.schedule.width_by == "skill":
            if fraction not in self._skill_keep:
                self._skill_keep[fraction] = list(self._skill.mask(fraction, per_layer=True).unbind(0))
            return self._skill_keep[fraction], baseline
        return top_fraction_mask(scores, fraction), baseline

    def _rank_neurons(self, trainer: Trainer) -> None:
        bb = self.model.backbone
        if self.schedule.width_by == "skill":
            assert self.schedule.neurons is not None
            path = Path(self.schedule.neurons)
            self._skill = SkillNeurons.load(path)
            if self._skill.n_layers != bb.num_layers or [self._skill.d_ff] * bb.num_layers != bb.d_ff:
                raise ConfigError(
                    f"the skill neurons in {path} were found on a model with {self._skill.n_layers} layers "
                    f"of {self._skill.d_ff} neurons, but {bb.name} has {bb.num_layers} layers of widths "
                    f"{sorted(set(bb.d_ff))}: use skill neurons found on this model"
                )
            scores = list(self._skill.scores().unbind(0))
            self._scores = (scores, list(self._skill.token_mean.unbind(0)))
            return
        g = torch.Generator().manual_seed(trainer.config.seed * 7919 + 17)
        n = min(self.schedule.width_examples, len(self.train))
        sample = self.train.subset(torch.randperm(len(self.train), generator=g)[:n].tolist())
        mean_abs, mean = activation_magnitudes(
            self.model,
            sample,
            batch_size=trainer.config.eval_batch_size,
            precision=self.precision,
            progress=self.progress,
        )
        self._scores = (mean_abs, mean)


def _schedule(schedule: ProgressiveSchedule | ProgressiveConfig | str) -> ProgressiveSchedule:
    if isinstance(schedule, str):
        return parse_schedule(schedule)
    if isinstance(schedule, ProgressiveConfig):
        built = ProgressiveSchedule.from_config(schedule)
        if built is None:
            raise ConfigError("fast prompt tuning needs a schedule: pass --progressive SCHEDULE")
        return built
    return schedule


def progressive_hooks(
    config: ProgressiveConfig | ProgressiveSchedule | str | None,
    model: PromptModel,
    train: Task,
    *,
    precision: str = "auto",
    progress: bool = False,
) -> ProgressiveTraining | None:
    """The trainer hooks of fast prompt tuning for ``config`` (None when it gives no schedule)."""
    if config is None or (isinstance(config, ProgressiveConfig) and not config.enabled):
        return None
    return ProgressiveTraining(model, train, config, precision=precision, progress=progress)
