"""The ``prune`` run: skill neurons -> a smaller saved model, with the prompt's accuracy before and after
and, optionally, the prompt re-tuned on the pruned model.

Output folder::

    OUT/model.safetensors, config.json, tokenizer*, pruning.json   the pruned model (load_pruned)
    OUT/results.json                                               parameters, accuracy before/after
    OUT/retuned/prompt.*, split.json, history.json                 the re-tuned prompt (--retune)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from skillneurons.artifacts import artifact_paths, atomic_write_json, load_manifest, sha256_file
from skillneurons.backbones import Backbone, load_backbone
from skillneurons.data import Task, load_task
from skillneurons.errors import ConfigError
from skillneurons.neurons.find import SkillNeurons, prompt_splits
from skillneurons.prompts import check_backbone, load_prompt
from skillneurons.pruning.io import load_pruned, save_pruned
from skillneurons.pruning.prune import (
    count_parameters,
    default_first_layer,
    ffn_parameters,
    prune_backbone,
    skill_keep_mask,
)
from skillneurons.training import TrainConfig, Trainer, evaluate

log = logging.getLogger(__name__)

__all__ = ["prune_model"]


def _task_of(prompt: Path, task: str | Task | None) -> Task:
    if isinstance(task, Task):
        return task
    if task is not None:
        return load_task(task)
    name = load_manifest(prompt).get("task", {}).get("name")
    if not name:
        raise ConfigError(f"{prompt} records no task: pass --task")
    return load_task(str(name))


def prune_model(
    neurons: str | os.PathLike[str] | SkillNeurons,
    out_dir: str | os.PathLike[str],
    *,
    rho: float = 0.02,
    model: str | Backbone | None = None,
    first_layer: int | None = None,
    layers: Sequence[int] | None = None,
    per_layer: bool = True,
    prompt: str | os.PathLike[str] | None = None,
    task: str | Task | None = None,
    split: str = "test",
    retune: bool = False,
    config: TrainConfig | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Prune ``model`` to the skill neurons of ``neurons`` and save it to ``out_dir``.

    Args:
        neurons: a skill-neuron artifact (``NEURONS/skill_neurons.safetensors``) or a loaded one.
        out_dir: the pruned-model folder (replaced if it holds an earlier pruned model).
        rho: fraction of skill neurons kept in every pruned layer (per layer) or overall.
        model: the unpruned backbone (default: the one recorded in the artifact).
        first_layer: prune layers ``[first_layer, L)``; default ``L // 4`` (the original: 3 of 12 kept whole).
        layers: prune exactly these layers instead.
        per_layer: the original's equal quota per layer; False selects the top ``rho`` globally.
        prompt: a prompt trained on the unpruned model: evaluated before and after pruning.
        task: the prompt's task (default: the one recorded in the prompt).
        split: which part of the prompt's split to evaluate on.
        retune: re-tune the prompt on the pruned model (needs ``prompt``), starting from it.
        config: training settings for ``retune``.

    Returns:
        The results also written to ``out_dir/results.json``.
    """
    if retune and prompt is None:
        raise ConfigError("--retune re-tunes a prompt on the pruned model: pass --prompt too")
    digest = None
    path = None
    if isinstance(neurons, SkillNeurons):
        sn = neurons
    else:
        path = artifact_paths(neurons)[0]
        sn = SkillNeurons.load(path)
        digest = sha256_file(path)
    saved_bb = dict(sn.meta.get("backbone", {}))
    if model is None and not saved_bb.get("name"):
        raise ConfigError("the skill-neuron artifact does not name its model: pass --model")
    bb = model if isinstance(model, Backbone) else load_backbone(model or str(saved_bb["name"]))
    check_backbone(saved_bb, bb, "skill-neuron artifact")
    l0 = default_first_layer(bb.num_layers) if first_layer is None and layers is None else first_layer
    keep = skill_keep_mask(sn.mask(rho, per_layer=per_layer), first_layer=l0, layers=layers)
    t0 = time.perf_counter()
    small = prune_backbone(bb, keep, sn.token_mean)
    prune_seconds = time.perf_counter() - t0
    pruned_layers = [i for i in range(bb.num_layers) if not bool(keep[i].all())]
    out = save_pruned(
        small,
        out_dir,
        keep,
        source=bb,
        rho=rho,
        per_layer=per_layer,
        first_layer=l0,
        layers=list(layers) if layers is not None else None,
        skill_neurons={
            "path": str(path) if path else None,
            "sha256": digest,
            "task": sn.meta.get("task"),
            "task_fingerprint": sn.meta.get("task_fingerprint"),
            "baseline": "token_mean (mean activation over all real tokens of the train split)",
        },
    )
    del small
    n_src, n_small = count_parameters(bb), None
    results: dict[str, Any] = {
        "pruned_model": str(out),
        "source_model": bb.name,
        "rho": rho,
        "per_layer": per_layer,
        "pruned_layers": pruned_layers,
        "d_ff_source": bb.d_ff,
        "prune_seconds": prune_seconds,
    }
    loaded = load_pruned(out, device=bb.device)  # the saved folder, checked by loading it back
    n_small = count_parameters(loaded)
    results.update(
        d_ff=loaded.d_ff,
        parameters={"source": n_src, "pruned": n_small, "fraction": n_small / n_src},
        ffn_parameters={"source": ffn_parameters(bb), "pruned": ffn_parameters(loaded)},
    )
    if prompt is not None:
        ppath = artifact_paths(prompt)[0]
        t = _task_of(ppath, task)
        pm_full, man = load_prompt(ppath, bb)
        splits = prompt_splits(ppath, man, t)
        part = splits.part(split)  # type: ignore[arg-type]
        before = evaluate(pm_full, part, batch_size, progress=progress, desc="eval (unpruned)")
        pm_small, _ = load_prompt(ppath, loaded)
        after = evaluate(pm_small, part, batch_size, progress=progress, desc="eval (pruned)")
        results.update(
            prompt=str(ppath),
            task=t.name,
            split=split,
            accuracy_unpruned=before["accuracy"],
            accuracy_pruned=after["accuracy"],
            n=int(before["n"]),
        )
        if retune:
            cfg = config or TrainConfig()
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
                cfg,
                rdir,
                manifest=manifest,
                progress=progress,
            )
            fit = trainer.fit()
            again = evaluate(pm_small, part, batch_size, progress=progress, desc="eval (re-tuned)")
            results.update(
                accuracy_retuned=again["accuracy"],
                retuned_prompt=str(fit.prompt_path),
                retune_best_dev_accuracy=fit.best_dev_accuracy,
                retune_steps=fit.steps,
                retune_seconds=fit.seconds,
                retune_config=asdict(cfg),
            )
    atomic_write_json(out / "results.json", results)
    results["text"] = _text(results)
    return results


def _text(r: dict[str, Any]) -> str:
    p = r["parameters"]
    lines = [
        f"pruned {r['source_model']} to rho={r['rho']} in layers {r['pruned_layers']}: widths {r['d_ff']} "
        f"(from {r['d_ff_source']})",
        f"parameters {p['pruned']:,} of {p['source']:,} ({100 * p['fraction']:.1f}%); "
        f"FFN {r['ffn_parameters']['pruned']:,} of {r['ffn_parameters']['source']:,}",
    ]
    if "accuracy_pruned" in r:
        lines.append(
            f"{r['split']} accuracy ({r['n']} examples): unpruned {r['accuracy_unpruned']:.4f}, "
            f"pruned {r['accuracy_pruned']:.4f}"
            + (f", re-tuned {r['accuracy_retuned']:.4f}" if "accuracy_retuned" in r else "")
        )
    lines.append(f"pruned model saved to {r['pruned_model']} (load it with skillneurons.pruning.load_pruned)")
    return "\n".join(lines)
