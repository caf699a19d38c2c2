"""The ``prune`` run: skill neurons -> a smaller saved model, with the prompt's accuracy before and after
and, optionally, the prompt re-tuned on the pruned model.

Output folder::

    OUT/model.safetensors, config.json, tokenizer*, pruning.json   the pruned model (load_pruned)
    OUT/results.json                                               parameters, accuracy before/after
                                                                   (head_anchors: where the anchors
                                                                   of a similarity head came from)
    OUT/retuned/prompt.*, split.json, history.json                 the re-tuned prompt (--retune)
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from skillneurons.artifacts import artifact_paths, sha256_file
from skillneurons.backbones import Backbone
from skillneurons.backbones.config import BackboneOptions
from skillneurons.data import Task, TaskSplits, load_task
from skillneurons.errors import ConfigError
from skillneurons.neurons.find import SkillNeurons
from skillneurons.options import configure
from skillneurons.prompts import PromptModel, check_backbone, load_prompt
from skillneurons.prompts.heads import SimilarityHead
from skillneurons.pruning.config import PruneConfig
from skillneurons.pruning.io import load_pruned, save_pruned
from skillneurons.pruning.prune import (
    count_parameters,
    default_first_layer,
    ffn_parameters,
    prune_backbone,
    skill_keep_mask,
)
from skillneurons.pruning.results import ParameterCount, PruneResult
from skillneurons.rundir import RunDir, run_manifest
from skillneurons.training import TrainConfig, Trainer, evaluate

log = logging.getLogger(__name__)

__all__ = ["prune_model", "retune_config"]


def retune_config(cfg: PruneConfig) -> TrainConfig:
    """The training settings of ``--retune`` (the other TrainConfig fields keep their defaults)."""
    return TrainConfig(
        epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=cfg.seed,
        precision=cfg.precision,  # type: ignore[arg-type]
    )


def _options(options: dict[str, Any]) -> dict[str, Any]:
    """The former keyword spelling ``per_layer`` as the field ``global_selection``."""
    if "per_layer" in options:
        options = dict(options)
        options["global_selection"] = not options.pop("per_layer")
    return options


def _load_neurons(
    neurons: str | os.PathLike[str] | SkillNeurons,
) -> tuple[SkillNeurons, Path | None, str | None]:
    if isinstance(neurons, SkillNeurons):
        return neurons, None, None
    path = artifact_paths(neurons)[0]
    return SkillNeurons.load(path), path, sha256_file(path)


def _source_backbone(
    sn: SkillNeurons, model: str | Backbone | None, options: BackboneOptions | None
) -> Backbone:
    saved_bb = dict(sn.meta.get("backbone", {}))
    if model is None and not saved_bb.get("name"):
        raise ConfigError("the skill-neuron artifact does not name its model: pass --model")
    if isinstance(model, Backbone):
        bb = model
    else:
        bb = (options or BackboneOptions()).load(model or str(saved_bb["name"]))
    check_backbone(saved_bb, bb, "skill-neuron artifact")
    return bb


def prune_model(
    neurons: str | os.PathLike[str] | SkillNeurons,
    out_dir: str | os.PathLike[str],
    config: PruneConfig | None = None,
    *,
    model: str | Backbone | None = None,
    backbone_options: BackboneOptions | None = None,
    prompt: str | os.PathLike[str] | None = None,
    task: str | Task | None = None,
    train_config: TrainConfig | None = None,
    progress: bool = True,
    **options: Any,
) -> PruneResult:
    """Prune ``model`` to the skill neurons of ``neurons`` and save it to ``out_dir``.

    Args:
        neurons: a skill-neuron artifact (``NEURONS/skill_neurons.safetensors``) or a loaded one.
        out_dir: the pruned-model folder (replaced if it holds an earlier pruned model).
        config: the :class:`PruneConfig` (rho, first_layer, layers, global_selection, split, retune and
            its training options); ``options`` replace its fields by name (``per_layer`` is accepted
            for ``not global_selection``).
        model: the unpruned backbone (default: the one recorded in the artifact), loaded with
            ``backbone_options`` when given by name.
        prompt: a prompt trained on the unpruned model: evaluated before and after pruning.
        task: the prompt's task (default: the one recorded in the prompt's run).
        train_config: the re-tuning settings, instead of those built from ``config``
            (:func:`retune_config`).

    Returns:
        The :class:`PruneResult` also written to ``out_dir/results.json``.
    """
    cfg = configure(PruneConfig, config, _options(options))
    if cfg.retune and prompt is None:
        raise ConfigError("--retune re-tunes a prompt on the pruned model: pass --prompt too")
    sn, path, digest = _load_neurons(neurons)
    # the prompt's task and split (an imported prompt: task, split_seed) before the (slow) model load
    evaluation = _prompt_split(prompt, task, cfg) if prompt is not None else None
    bb = _source_backbone(sn, model, backbone_options)
    layers = list(cfg.layers) if cfg.layers is not None else None
    l0 = default_first_layer(bb.num_layers) if cfg.first_layer is None and layers is None else cfg.first_layer
    keep = skill_keep_mask(sn.mask(cfg.rho, per_layer=cfg.per_layer), first_layer=l0, layers=layers)
    t0 = time.perf_counter()
    small = prune_backbone(bb, keep, sn.token_mean)
    prune_seconds = time.perf_counter() - t0
    pruned_layers = [i for i in range(bb.num_layers) if not bool(keep[i].all())]
    out = save_pruned(
        small,
        out_dir,
        keep,
        source=bb,
        rho=cfg.rho,
        per_layer=cfg.per_layer,
        first_layer=l0,
        layers=layers,
        skill_neurons={
            "path": str(path) if path else None,
            "sha256": digest,
            "task": sn.meta.get("task"),
            "task_fingerprint": sn.meta.get("task_fingerprint"),
            "baseline": "token_mean (mean activation over all real tokens of the train split)",
        },
    )
    del small
    n_src = count_parameters(bb)
    loaded = load_pruned(out, device=bb.device)  # the saved folder, checked by loading it back
    n_small = count_parameters(loaded)
    result = PruneResult(
        pruned_model=str(out),
        source_model=bb.name,
        rho=cfg.rho,
        per_layer=cfg.per_layer,
        pruned_layers=pruned_layers,
        d_ff_source=bb.d_ff,
        prune_seconds=prune_seconds,
        d_ff=loaded.d_ff,
        parameters=ParameterCount(n_src, n_small, n_small / n_src),
        ffn_parameters=ParameterCount(ffn_parameters(bb), ffn_parameters(loaded)),
    )
    if evaluation is not None:
        _evaluate(result, bb, loaded, *evaluation, cfg, train_config, progress)
    result.save(out / "results.json")
    return result


def _prompt_split(
    prompt: str | os.PathLike[str], task: str | Task | None, cfg: PruneConfig
) -> tuple[Path, Task, TaskSplits]:
    """The prompt's file, task and split (one-line errors for an imported prompt without them)."""
    ppath = artifact_paths(prompt)[0]
    run = RunDir.of(ppath).require_kind("prompt", "delta")
    t = run.task(load_task(task) if isinstance(task, str) else task)
    return ppath, t, run.splits(t, cfg.split_seed)


def _evaluate(
    result: PruneResult,
    bb: Backbone,
    loaded: Backbone,
    ppath: Path,
    t: Task,
    splits: TaskSplits,
    cfg: PruneConfig,
    train_config: TrainConfig | None,
    progress: bool,
) -> None:
    """The prompt's accuracy before and after pruning (and after re-tuning), into ``result``."""
    pm_full, man = load_prompt(ppath, bb)
    part = splits.part(cfg.split)  # type: ignore[arg-type]
    bs = cfg.eval_batch_size
    before = evaluate(pm_full, part, bs, progress=progress, desc="eval (unpruned)")
    pm_small, man_small = load_prompt(ppath, loaded)
    result.head_anchors = _keep_anchors(pm_full, pm_small, man_small)
    after = evaluate(pm_small, part, bs, progress=progress, desc="eval (pruned)")
    result.prompt = str(ppath)
    result.task = t.name
    result.split = cfg.split
    result.accuracy_unpruned = before["accuracy"]
    result.accuracy_pruned = after["accuracy"]
    result.n = int(before["n"])
    if cfg.retune:
        if not man.get("task"):  # an imported prompt: the re-tuned one records the task and split it used
            man = {**man, **run_manifest(t, splits)}
        _retune(
            result, pm_small, part, splits, man, ppath, Path(result.pruned_model), cfg, train_config, progress
        )


def _keep_anchors(pm_full: PromptModel, pm_small: PromptModel, man_small: dict[str, Any]) -> str | None:
    """The pruned prompt reads with the prompt's own head: a similarity head keeps the anchors saved in
    the prompt or, for a prompt saved without them, those the unpruned model encodes (never the pruned
    model's encodings). Returns where the anchors came from (None: no similarity head)."""
    full, small = pm_full.head, pm_small.head
    if not isinstance(small, SimilarityHead) or not isinstance(full, SimilarityHead):
        return None
    if man_small.get("head_anchors") == "saved":
        return "saved"
    small.set_anchors(full.anchors)
    return "unpruned"


def _retune(
    result: PruneResult,
    pm_small: PromptModel,
    part: Task,
    splits: TaskSplits,
    man: dict[str, Any],
    ppath: Path,
    out: Path,
    cfg: PruneConfig,
    train_config: TrainConfig | None,
    progress: bool,
) -> None:
    """Re-tune the prompt on the pruned model (``OUT/retuned/``) and evaluate it again."""
    tcfg = train_config or retune_config(cfg)
    rdir = out / "retuned"
    splits.save(rdir / "split.json")
    manifest = {
        "task": man.get("task", {}),
        "split": {**man.get("split", {}), "file": "split.json"},
        "retuned_from": str(ppath),
        "pruned_model": str(out),
    }
    trainer = Trainer(
        pm_small,
        splits.part("train"),
        splits.part("dev"),
        tcfg,
        rdir,
        manifest=manifest,
        progress=progress,
    )
    fit = trainer.fit()
    again = evaluate(pm_small, part, cfg.eval_batch_size, progress=progress, desc="eval (re-tuned)")
    result.accuracy_retuned = again["accuracy"]
    result.retuned_prompt = str(fit.prompt_path)
    result.retune_best_dev_accuracy = fit.best_dev_accuracy
    result.retune_steps = fit.steps
    result.retune_seconds = fit.seconds
    result.retune_config = asdict(tcfg)
