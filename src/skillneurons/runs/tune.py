"""High-level runs: what the CLI commands do, as importable functions.

A run folder holds everything needed to reproduce and to check a result::

    RUN/split.json        the seeded train/dev/test split (indices + per-example hashes)
    RUN/prompt.*          best prompt (.safetensors + manifest)
    RUN/checkpoint.*      resumable training state
    RUN/history.json      dev accuracy during training
    RUN/results.json      final metrics
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from skillneurons.artifacts import atomic_write_json
from skillneurons.backbones import Backbone, load_backbone
from skillneurons.data import Task, load_task
from skillneurons.distributed import is_main
from skillneurons.errors import ConfigError
from skillneurons.fpt.schedule import ProgressiveSchedule
from skillneurons.prompts import Head, PromptModel, SoftPrompt, build_head
from skillneurons.rundir import make_splits, run_manifest
from skillneurons.training import TrainConfig, Trainer, fit_and_test

log = logging.getLogger(__name__)

__all__ = [
    "tune_prompt",
]


def tune_prompt(
    model: str | Backbone,
    task: str | Task,
    out_dir: str | Path | None,
    *,
    prompt_length: int = 20,
    init: str = "normal",
    init_text: str | None = None,
    init_prompt: str | Path | SoftPrompt | None = None,
    head: str = "auto",
    layout: str = "auto",
    template: str | None = None,
    max_length: int = 128,
    max_examples: int | None = None,
    split_seed: int | None = None,
    config: TrainConfig | None = None,
    method: str = "prompt",
    method_options: Mapping[str, Any] | None = None,
    verbalizer: str = "single",
    words: Any = None,
    expand: int = 0,
    calibrate: bool = False,
    relevance: bool = False,
    progressive: ProgressiveSchedule | str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Prompt-tune ``model`` on ``task``; returns the results dict also written to ``out_dir/results.json``.

    ``split_seed`` fixes the data split independently of the training seed (default: the training
    seed), so several prompts (seeds) can share one split, as skill-neuron aggregation needs.
    ``verbalizer="kpt"`` reads the label through a knowledgeable verbalizer (many words per class:
    ``words`` file/mapping or the task's label words, plus ``expand`` embedding neighbours), refined on
    200 unlabelled training texts before tuning, with learned per-word weights; ``calibrate`` divides
    by the contextual prior read at the initial prompt (off by default: it goes stale as the prompt
    trains), ``relevance`` adds the relevance refinement. ``init_prompt`` (a prompt artifact of this
    backbone, e.g. another task's or a projected one, or a :class:`SoftPrompt`) starts tuning from
    that prompt's vectors instead of ``init`` (transferable prompt tuning); its length must be
    ``prompt_length``. ``progressive`` (a :class:`~skillneurons.fpt.ProgressiveSchedule` or its string,
    e.g. ``"25,50,75,full"``) trains with fast prompt tuning: the early steps on partial models,
    the prompt and optimizer state carried over (``results["progressive"]`` describes the stages).
    ``method`` (``prompt``, ``bitfit``, ``adapter``, ``lora``; :mod:`skillneurons.delta`) tunes the
    method's tensors with ``config.lr`` instead of a soft prompt (no prompt then: ``prompt_length``
    and the init options are unused), with ``method_options`` its keyword arguments; the artifact is
    still ``prompt.safetensors`` and loads through :func:`~skillneurons.prompts.load_prompt`.
    """
    config = config or TrainConfig()
    if method != "prompt" and init_prompt is not None:
        raise ConfigError(
            f"--init-prompt starts a soft prompt; --method {method} tunes no prompt: drop one of them"
        )
    bb = load_backbone(model) if isinstance(model, str) else model
    t = load_task(task) if isinstance(task, str) else task
    out = Path(out_dir) if out_dir is not None else None
    splits = make_splits(t, config.seed if split_seed is None else split_seed, out, max_examples)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    prompt = SoftPrompt.create(bb, prompt_length, init, text=init_text, generator=gen)  # type: ignore[arg-type]
    if init_prompt is not None:  # transfer as initialisation (TPT): start from a trained prompt
        from skillneurons.transfer.tpt import initial_prompt

        prompt = initial_prompt(bb, init_prompt, prompt_length)
    train, dev, test = splits.part("train"), splits.part("dev"), splits.part("test")
    h: Head
    if verbalizer == "kpt":
        from skillneurons.verbalizers.kpt import KnowledgeableHead
        from skillneurons.verbalizers.zero_shot import (
            refine_in_prompt_model,
            unlabelled_contexts,
            verbalizer_words,
        )

        h = KnowledgeableHead(
            bb, verbalizer_words(bb, t, words=words, expand=expand), aggregate="learned", calibrate=calibrate
        )
    elif verbalizer == "single":
        h = build_head(head, bb, t.label_words)
    else:
        raise ConfigError(f"unknown verbalizer '{verbalizer}': use single or kpt")
    pm = PromptModel(bb, prompt, h, layout=layout, max_length=max_length, template=template)
    if method != "prompt":  # BitFit / adapter / LoRA: the same head and layout, no soft prompt (P=0)
        from skillneurons.delta.model import delta_model

        if progressive is not None:
            raise ConfigError(f"progressive training tunes prompts: drop it for --method {method}")
        pm = delta_model(pm, method, method_options)
    try:  # a LoRA is taken back out of the caller's backbone even when training fails
        if verbalizer == "kpt":
            refine_in_prompt_model(pm, unlabelled_contexts(train, 200, config.seed), relevance=relevance)
        manifest = run_manifest(t, splits)
        if init_prompt is not None:  # the start is part of the run: a checkpoint resumes only the same init
            from skillneurons.transfer.tpt import prompt_digest

            manifest["init_prompt"] = {
                "path": None if isinstance(init_prompt, SoftPrompt) else str(init_prompt),
                "sha256": prompt_digest(prompt),
            }
        hooks = None
        if progressive is not None:  # fast prompt tuning: progressive partial models (skillneurons.fpt)
            from skillneurons.fpt import ProgressiveTraining

            hooks = ProgressiveTraining(pm, train, progressive, precision=config.precision, progress=progress)
        trainer = Trainer(pm, train, dev, config, out, manifest=manifest, progress=progress, hooks=hooks)
        result, metrics = fit_and_test(trainer, test)
        results = {
            "model": bb.identity(),
            "task": t.name,
            "seed": config.seed,
            "split_seed": splits.seed,
            "sizes": {"train": len(train), "dev": len(dev), "test": len(test)},
            "prompt_length": prompt_length,
            "head": h.kind,
            "layout": pm.layout,
            **metrics,
            "resumed_from_step": result.resumed_from,
            "prompt": str(result.prompt_path) if result.prompt_path else None,
        }
        if hooks is not None:
            results["progressive"] = hooks.summary(result.steps).to_json()
        if method != "prompt":
            results.update(prompt_length=0, **pm.artifact_manifest())  # type: ignore[operator]
    finally:
        if method != "prompt":
            pm.release()  # type: ignore[operator]  # the backbone is the caller's: take a LoRA back out of it
    if out is not None and is_main():
        atomic_write_json(out / "results.json", results)
    return results
