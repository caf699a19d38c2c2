"""Evaluating a saved prompt (or delta-tuned model) on a part of its run's split or of another task."""

from __future__ import annotations

import os

from skillneurons.backbones import Backbone
from skillneurons.data import Task, load_task
from skillneurons.prompts import load_prompt
from skillneurons.rundir import RunDir
from skillneurons.runs.results import EvalResult
from skillneurons.training import evaluate

__all__ = ["evaluate_prompt"]


def evaluate_prompt(
    prompt_path: str | os.PathLike[str],
    task: str | Task | None = None,
    *,
    model: str | Backbone | None = None,
    split: str = "test",
    batch_size: int = 64,
    progress: bool = True,
    split_seed: int | None = None,
) -> EvalResult:
    """Evaluate a saved prompt on part ``split`` (train/dev/test, or ``all``) of ``task``.

    ``task`` defaults to the run's own; its split is the run's (``split.json`` or the recorded seed,
    never a default seed: :class:`~skillneurons.rundir.RunDir`). Another task is split with the run's
    recorded split seed. ``split_seed`` splits the task for an artifact that records no split (an
    imported prompt).
    """
    run = RunDir.of(prompt_path).require_kind("prompt", "delta")
    bb = model if isinstance(model, Backbone) else run.backbone(model)
    pm, _ = load_prompt(prompt_path, bb)
    t = run.task(load_task(task) if isinstance(task, str) else task)
    part = t if split == "all" else run.split_of(t, split_seed).part(split)  # type: ignore[arg-type]
    metrics = evaluate(pm, part, batch_size, progress=progress)
    return EvalResult(
        prompt=str(prompt_path),
        task=t.name,
        split=split,
        accuracy=float(metrics["accuracy"]),
        loss=float(metrics["loss"]),
        n=int(metrics["n"]),
    )
