"""Tuning a frozen model on a task: a short composition of the floors below.

``tune_prompt`` = the options, checked -> the run folder (one writer, one identity) -> the seeded
split -> the prompt model (:mod:`skillneurons.prompts`) -> the tuning method's wrapper
(``TUNING_METHODS``: prompt, BitFit, adapters, LoRA...) -> the verbalizer's preparation and the trainer
hooks (KPT refinement, progressive partial models) -> fit with the best dev checkpoint -> test.
Adding a method, a head or a verbalizer registers a plugin; this file is not edited for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from skillneurons.backbones import Backbone, load_backbone
from skillneurons.data import Task, TaskSplits, load_task
from skillneurons.distributed import is_main
from skillneurons.files import atomic_write_json
from skillneurons.fpt.config import ProgressiveConfig
from skillneurons.fpt.progressive import progressive_hooks
from skillneurons.fpt.schedule import ProgressiveSchedule
from skillneurons.prompts import PromptModel, SoftPrompt
from skillneurons.prompts.build import build_prompt_model, new_prompt
from skillneurons.prompts.config import PromptConfig
from skillneurons.prompts.methods import TUNING_METHODS, TuningMethod
from skillneurons.rundir import RunDir, make_splits, run_manifest
from skillneurons.runs.config import RunOptions, check_tuning
from skillneurons.runs.results import TuneResult, accuracy_estimate
from skillneurons.training import TrainConfig, Trainer, fit_and_test
from skillneurons.transfer.tpt import initial_prompt, prompt_digest
from skillneurons.verbalizers.config import VerbalizerConfig
from skillneurons.verbalizers.tuning import prepare_head, tuning_head

__all__ = ["TuneSpec", "tune_prompt"]


@dataclass
class TuneSpec:
    """Everything that defines a tuning run, checked (its :meth:`identity` is the run's identity)."""

    prompt: PromptConfig
    train: TrainConfig
    run: RunOptions
    method: TuningMethod
    method_config: Any
    verbalizer: VerbalizerConfig
    progressive: ProgressiveConfig | ProgressiveSchedule | None
    init_prompt: str | os.PathLike[str] | SoftPrompt | None

    @property
    def split_seed(self) -> int:
        return self.run.split_seed_for(self.train.seed)

    def identity(self, backbone: Backbone, task: Task) -> dict[str, Any]:
        """Every option that changes the run's result (``overwrite`` and progress bars do not)."""

        def plain(obj: Any) -> Any:
            return (
                dataclasses.asdict(obj)
                if dataclasses.is_dataclass(obj) and not isinstance(obj, type)
                else obj
            )

        init = self.init_prompt
        return {
            "model": backbone.name,
            "task": {"name": task.name, "fingerprint": task.fingerprint(), "source": task.source},
            "split_seed": self.split_seed,
            "max_examples": self.run.max_examples,
            **(
                {"split_sizes": {"dev": self.run.dev_size, "test": self.run.test_size}}
                if self.run.dev_size is not None or self.run.test_size is not None
                else {}
            ),
            "prompt": plain(self.prompt),
            "train": plain(self.train),
            "method": self.method.name,
            "method_config": plain(self.method_config),
            "verbalizer": plain(self.verbalizer) if self.verbalizer.is_kpt else None,
            "progressive": plain(self.progressive),
            "init_prompt": prompt_digest(init) if isinstance(init, SoftPrompt) else init and str(init),
        }


def tune_prompt(
    model: str | Backbone,
    task: str | Task,
    out_dir: str | os.PathLike[str] | None,
    *,
    prompt: PromptConfig | None = None,
    config: TrainConfig | None = None,
    run: RunOptions | None = None,
    method: str = "prompt",
    method_options: Any = None,
    verbalizer: VerbalizerConfig | None = None,
    progressive: ProgressiveConfig | ProgressiveSchedule | str | None = None,
    init_prompt: str | os.PathLike[str] | SoftPrompt | None = None,
    progress: bool = True,
    **options: Any,
) -> TuneResult:
    """Tune ``model`` on ``task``; returns the result also written to ``out_dir/results.json``.

    ``prompt`` (:class:`PromptConfig`), ``config`` (:class:`TrainConfig`, its seed the training seed) and
    ``run`` (:class:`RunOptions`) may be overridden by keyword ``options`` named like their fields
    (``prompt_length=4``, ``split_seed=0``). ``method`` is ``prompt`` or a registered method (``bitfit``,
    ``adapter``, ``lora``) with ``method_options`` (a dict or its config); ``verbalizer`` a knowledgeable
    verbalizer; ``progressive`` a fast-prompt-tuning schedule; ``init_prompt`` a prompt to start from.
    The folder is locked while the run writes it and tied to the run's identity (its options).
    """
    spec = _spec(prompt, config, run, method, method_options, verbalizer, progressive, init_prompt, options)
    bb = load_backbone(model) if isinstance(model, str) else model
    t = load_task(task) if isinstance(task, str) else task
    out = Path(out_dir) if out_dir is not None else None
    with _open_run(out, spec, bb, t):
        fractions = spec.run.fractions(len(t))
        splits = make_splits(t, spec.split_seed, out, spec.run.max_examples, fractions)
        with _tuned_model(bb, t, spec) as pm:
            result = _fit(pm, bb, t, splits, spec, out, progress)
        if out is not None and is_main():
            atomic_write_json(out / "results.json", result.to_json())
    return result


def _spec(
    prompt: PromptConfig | None,
    config: TrainConfig | None,
    run: RunOptions | None,
    method: str,
    method_options: Any,
    verbalizer: VerbalizerConfig | None,
    progressive: ProgressiveConfig | ProgressiveSchedule | str | None,
    init_prompt: str | os.PathLike[str] | SoftPrompt | None,
    options: dict[str, Any],
) -> TuneSpec:
    """The run's options, merged and checked before anything is loaded or written."""
    prompt_keys = {f.name for f in dataclasses.fields(PromptConfig)}
    run_keys = {f.name for f in dataclasses.fields(RunOptions)}
    unknown = sorted(set(options) - prompt_keys - run_keys)
    if unknown:
        raise TypeError(f"tune_prompt() got unexpected keyword arguments {', '.join(unknown)}")
    prompt = dataclasses.replace(
        prompt or PromptConfig(), **{k: v for k, v in options.items() if k in prompt_keys}
    )
    run = dataclasses.replace(run or RunOptions(), **{k: v for k, v in options.items() if k in run_keys})
    tuning = TUNING_METHODS.get(method)
    if isinstance(progressive, str):
        progressive = ProgressiveConfig(schedule=progressive)
    if isinstance(progressive, ProgressiveConfig) and not progressive.enabled:
        progressive = None
    check_tuning(
        method,
        tunes_prompt=tuning.tunes_prompt,
        prompt_length=prompt.prompt_length,
        init_prompt=init_prompt is not None,
        progressive=progressive is not None,
    )
    method_config = tuning.config_from_options(method_options)
    verbalizer = verbalizer or VerbalizerConfig()
    return TuneSpec(
        prompt, config or TrainConfig(), run, tuning, method_config, verbalizer, progressive, init_prompt
    )


@contextlib.contextmanager
def _open_run(out: Path | None, spec: TuneSpec, backbone: Backbone, task: Task) -> Iterator[None]:
    """Hold the run folder's lock and check its identity (the main process only; none without a folder)."""
    if out is None or not is_main():
        yield
        return
    with RunDir(out).lock() as rundir:
        rundir.check_identity(spec.identity(backbone, task), overwrite=spec.run.overwrite)
        yield


@contextlib.contextmanager
def _tuned_model(bb: Backbone, task: Task, spec: TuneSpec) -> Iterator[PromptModel]:
    """The model the method trains; the backbone is the caller's, so a method's edits (LoRA) are taken
    back out of it afterwards, even when training fails."""
    pm = spec.method.wrap(_prompt_model(bb, task, spec), spec.method_config)
    try:
        yield pm
    finally:
        release = getattr(pm, "release", None)
        if callable(release):
            release()


def _prompt_model(bb: Backbone, task: Task, spec: TuneSpec) -> PromptModel:
    """The prompt model to tune: a fresh (or transferred) prompt and the head or verbalizer."""
    seed = spec.train.seed
    torch.manual_seed(seed)
    soft = new_prompt(bb, spec.prompt, torch.Generator().manual_seed(seed))
    if spec.init_prompt is not None:  # transfer as initialisation (TPT): start from a trained prompt
        soft = initial_prompt(bb, spec.init_prompt, spec.prompt.prompt_length)
    head = tuning_head(spec.verbalizer, bb, task, spec.prompt.head)
    return build_prompt_model(bb, task.label_words, spec.prompt, prompt=soft, head=head)


def _fit(
    pm: PromptModel,
    bb: Backbone,
    task: Task,
    splits: TaskSplits,
    spec: TuneSpec,
    out: Path | None,
    progress: bool,
) -> TuneResult:
    train, dev, test = splits.part("train"), splits.part("dev"), splits.part("test")
    prepare_head(spec.verbalizer, pm, train, spec.train.seed)  # KPT: refine the words on unlabelled texts
    manifest = run_manifest(task, splits)
    if spec.init_prompt is not None:  # the start is part of the run: a checkpoint resumes only the same init
        manifest["init_prompt"] = {
            "path": None if isinstance(spec.init_prompt, SoftPrompt) else str(spec.init_prompt),
            "sha256": prompt_digest(pm.prompt),
        }
    hooks = progressive_hooks(spec.progressive, pm, train, precision=spec.train.precision, progress=progress)
    trainer = Trainer(pm, train, dev, spec.train, out, manifest=manifest, progress=progress, hooks=hooks)
    result, metrics = fit_and_test(trainer, test)
    delta: Any = pm
    extra = delta.artifact_manifest() if not spec.method.tunes_prompt else {}
    return TuneResult(
        model=bb.identity(),
        task=task.name,
        seed=spec.train.seed,
        split_seed=splits.seed,
        sizes={"train": len(train), "dev": len(dev), "test": len(test)},
        prompt_length=spec.prompt.prompt_length if spec.method.tunes_prompt else 0,
        head=pm.head.kind,
        layout=pm.layout,
        **metrics,
        dev_ci=accuracy_estimate(metrics["best_dev_accuracy"], len(dev)),
        test_ci=accuracy_estimate(metrics["test_accuracy"], len(test)),
        resumed_from_step=result.resumed_from,
        prompt=str(result.prompt_path) if result.prompt_path else None,
        progressive=hooks.summary(result.steps) if hooks is not None else None,
        **extra,
    )
