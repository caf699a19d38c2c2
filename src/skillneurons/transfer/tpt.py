"""Transferable prompt tuning (TPT, REFERENCE.md section 6): start prompt tuning on a target task
from another task's prompt, or from a prompt projected from another model, and measure the
speed-up against a random initialisation from the runs' saved ``history.json``.

The transfer itself is ``tune_prompt(..., init_prompt=PATH)`` / ``skillneurons tune --init-prompt``;
this module holds the initialisation (:func:`initial_prompt`) and the comparison of finished runs
(:func:`steps_to_reach`, :func:`compare_runs`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillneurons.backbones import Backbone
from skillneurons.errors import ArtifactError, ConfigError
from skillneurons.files import read_json
from skillneurons.prompts.io import check_backbone, read_prompt_tensors
from skillneurons.prompts.soft_prompt import SoftPrompt
from skillneurons.results import Result
from skillneurons.transfer.config import TPTCompareConfig
from skillneurons.transfer.sources import require_soft_prompt

__all__ = [
    "TPTComparison",
    "TPTRun",
    "compare_runs",
    "initial_prompt",
    "load_run",
    "prompt_digest",
    "steps_to_reach",
]


def prompt_digest(prompt: SoftPrompt) -> str:
    """sha256 of a prompt's vectors (float32, row-major): the identity of a transfer-initialised
    run's starting point (recorded as ``init_prompt.sha256``, part of the checkpoint's run key)."""
    w = prompt.weight.detach().float().cpu().contiguous()
    return hashlib.sha256(str(list(w.shape)).encode() + w.numpy().tobytes()).hexdigest()


def initial_prompt(
    backbone: Backbone, source: str | os.PathLike[str] | SoftPrompt, length: int
) -> SoftPrompt:
    """A fresh trainable copy of ``source``'s vectors, checked against ``backbone`` and ``length``.

    ``source`` is a prompt artifact (``RUN/prompt.safetensors``; only its vectors are used, not its
    head) or a :class:`SoftPrompt`. Raises a one-line error when it was made for another model
    (width, vocabulary or family) or has another length.
    """
    if isinstance(source, SoftPrompt):
        weight = source.weight.detach()
        where = "the initial prompt"
    else:
        require_soft_prompt(source)
        tensors, man = read_prompt_tensors(source)
        check_backbone(man.get("backbone", {}), backbone, what=f"initial prompt {source}")
        if "prompt" not in tensors:
            raise ArtifactError(f"{source} holds no 'prompt' tensor: pass a prompt artifact")
        weight = tensors["prompt"]
        where = f"initial prompt {source}"
    if weight.dim() != 2 or weight.shape[1] != backbone.hidden_size:
        raise ConfigError(
            f"{where} has shape {list(weight.shape)} but {backbone.name} needs [length, "
            f"{backbone.hidden_size}]: "
            "use a prompt of this model, or project it with `skillneurons project apply`"
        )
    if weight.shape[0] != length:
        raise ConfigError(
            f"{where} has {weight.shape[0]} vectors but the prompt length is {length}: pass "
            f"--prompt-length {weight.shape[0]}"
        )
    return SoftPrompt(weight.float().cpu())


def steps_to_reach(history: Sequence[Mapping[str, float]], threshold: float) -> int | None:
    """The first evaluated step whose dev accuracy is ``>= threshold`` (None if never reached)."""
    for h in history:
        if float(h["dev_accuracy"]) >= threshold:
            return int(h["step"])
    return None


def load_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``results.json`` of a finished tuning run with its ``history.json`` under ``"history"``."""
    d = Path(run_dir)
    res_file, hist_file = d / "results.json", d / "history.json"
    if not res_file.is_file() or not hist_file.is_file():
        raise ArtifactError(
            f"{d} is not a finished tuning run (needs results.json and history.json): pass the --out "
            "folder of `skillneurons tune`"
        )
    res = read_json(res_file, "tuning results")
    history = read_json(hist_file, "tuning history")
    if not isinstance(res, dict):
        raise ArtifactError(f"{res_file} is not a tuning result (a JSON object): re-run `skillneurons tune`")
    return {**res, "history": history}


@dataclass
class TPTRun(Result):
    """One run of a TPT comparison: when it reached the target dev accuracy, and its curve."""

    SCHEMA = "skillneurons.tpt_run"

    steps_to_threshold: int | None
    seconds_to_threshold: float | None
    first_eval: dict[str, Any]
    best_dev_accuracy: float
    best_step: int
    test_accuracy: float
    steps: int
    train_seconds: float
    speedup: float | None
    curve: list[list[Any]] = field(default_factory=list)


@dataclass
class TPTComparison(Result):
    """``tpt-compare``'s result: the target dev accuracy, whether the runs share their split sizes,
    and every run (the baseline first) by name."""

    SCHEMA = "skillneurons.tpt_comparison"

    threshold: float
    same_sizes: bool
    runs: dict[str, TPTRun] = field(default_factory=dict)


def compare_runs(
    baseline: str | os.PathLike[str] | Mapping[str, Any],
    others: Mapping[str, str | os.PathLike[str] | Mapping[str, Any]],
    config: TPTCompareConfig | None = None,
    **options: Any,
) -> TPTComparison:
    """Speed-up of transfer-initialised runs over a baseline run (same task, split and budget).

    The target dev accuracy is ``config.threshold``, or else ``config.fraction`` of the baseline's
    best dev accuracy (``options`` override the config's fields by name). For every run: the first
    evaluated step reaching it, the seconds to get there (``step * train_seconds / (steps -
    resumed_from_step)``: training time per step of this process, evaluation included, assumed
    uniform), its accuracy at the first evaluation, best dev and test accuracy, and the speed-up
    ``baseline steps / run steps`` (None where a run never reaches the target).

    Runs are run folders or dicts like :func:`load_run`'s.
    """
    c = dataclasses.replace(config or TPTCompareConfig(), **options)
    runs: dict[str, dict[str, Any]] = {}
    for name, r in {"baseline": baseline, **others}.items():
        runs[name] = dict(r) if isinstance(r, Mapping) else load_run(r)
        if not runs[name].get("history"):
            raise ArtifactError(f"run '{name}' has no dev evaluations in its history: nothing to compare")
    threshold = c.threshold
    if threshold is None:
        threshold = c.fraction * float(runs["baseline"]["best_dev_accuracy"])
    sizes = {json.dumps(r.get("sizes"), sort_keys=True) for r in runs.values()}
    out = TPTComparison(threshold=threshold, same_sizes=len(sizes) == 1)
    base_steps = steps_to_reach(runs["baseline"]["history"], threshold)
    for name, r in runs.items():
        out.runs[name] = _run_row(r, threshold, base_steps)
    return out


def _run_row(r: Mapping[str, Any], threshold: float, base_steps: int | None) -> TPTRun:
    step = steps_to_reach(r["history"], threshold)
    # train_seconds of a resumed run covers only the steps after the resume
    timed = int(r.get("steps", 0)) - int(r.get("resumed_from_step") or 0)
    per_step = float(r.get("train_seconds", 0.0)) / max(1, timed)
    first = r["history"][0]
    return TPTRun(
        steps_to_threshold=step,
        seconds_to_threshold=step * per_step if step is not None else None,
        first_eval={"step": int(first["step"]), "dev_accuracy": float(first["dev_accuracy"])},
        best_dev_accuracy=float(r["best_dev_accuracy"]),
        best_step=int(r["best_step"]),
        test_accuracy=float(r["test_accuracy"]),
        steps=int(r["steps"]),
        train_seconds=float(r.get("train_seconds", 0.0)),
        speedup=(base_steps / step) if (base_steps is not None and step) else None,
        curve=[[int(h["step"]), float(h["dev_accuracy"])] for h in r["history"]],
    )
