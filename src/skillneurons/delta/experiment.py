"""Are skill neurons found with prompt tuning crucial for models tuned by other methods?

REFERENCE.md section 3 (last paragraph): the paper perturbs the skill neurons of a task, found with
prompt tuning, inside models of the same task tuned with adapters and BitFit (methods that keep the
neuron weights frozen), and finds the accuracy drops far more than for random neurons: evidence that
skill neurons come from pre-training, not from the prompt.

:func:`delta_perturbation` runs the existing sweep (:func:`skillneurons.perturb.perturbation_sweep`:
skill neurons at each ``rho`` against ``draws`` random draws of the same number of neurons per layer)
on each tuned model, and summarises the drop from its unperturbed accuracy with the random control's
mean and 95% interval. Positions default to ``all``: a delta model has no soft prompt, so the only
"prompt position" would be its read slot. Any artifact that :func:`~skillneurons.prompts.load_prompt`
reads works, so the prompt the neurons came from can be passed as a reference.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from skillneurons.artifacts import artifact_paths, atomic_write_json, load_manifest, sha256_file
from skillneurons.backbones import Backbone, load_backbone
from skillneurons.data import Task, load_task
from skillneurons.errors import ConfigError
from skillneurons.neurons.find import SkillNeurons
from skillneurons.perturb.experiments import DEFAULT_RHOS, load_prompt_run, perturbation_sweep

__all__ = ["delta_perturbation", "run_delta_perturbation", "summarise"]


def _label(manifest: dict[str, Any], path: Path) -> str:
    method = str(manifest.get("method", "prompt"))
    opts = manifest.get("method_options") or {}
    if method == "adapter":
        method = f"adapter-{opts.get('placement', 'pfeiffer')}"
    return f"{method} ({path.parent.name})"


def summarise(sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """Per ``rho``: the skill-neuron drop, the random drop (mean, 95% interval) and their gap."""
    clean = float(sweep["unperturbed"])
    rows = []
    for p in sweep["points"]:
        r = p["random"]
        mean = r["mean"]
        ci = r["ci95"]
        rows.append(
            {
                "rho": p["rho"],
                "neurons": p["neurons"],
                "skill_drop": clean - p["skill"],
                "random_drop": None if mean is None else clean - mean,
                "random_drop_ci95": [
                    None if ci[1] is None else clean - ci[1],
                    None if ci[0] is None else clean - ci[0],
                ],
                "gap": None if mean is None else mean - p["skill"],
            }
        )
    return rows


def delta_perturbation(
    neurons: SkillNeurons | str | os.PathLike[str],
    models: Sequence[str | os.PathLike[str]],
    backbone: Backbone,
    *,
    task: Task | str | None = None,
    split: str = "test",
    rhos: Sequence[float] = DEFAULT_RHOS,
    mode: str = "zero",
    draws: int = 5,
    positions: str = "all",
    out_dir: str | os.PathLike[str] | None = None,
    progress: bool | Callable[[str], None] = False,
    **options: Any,
) -> dict[str, Any]:
    """Skill-vs-random perturbation sweeps of ``neurons`` (found with prompt tuning) on each tuned model.

    Args:
        neurons: the task's skill neurons (a :class:`SkillNeurons` or its artifact path).
        models: artifacts of models tuned on the same task (``bitfit``/``adapter``/``lora``, or prompts),
            each with the ``split.json`` of its run; evaluated on that run's ``split``.
        backbone: the frozen backbone all of them were tuned on.
        rhos, mode, draws, positions, options: passed to :func:`perturbation_sweep` (``sigma``,
            ``seed``, ``layers``, ``per_layer``, ``batch_size``, ``precision``).
        out_dir: when given, each model's sweep is written to ``out_dir/sweep_<i>.json`` as soon as it
            is done, and reused by a rerun with the same settings, the same neurons (path and
            content), the same task (fingerprint) and the same model artifact (content): resume.

    Returns:
        ``{"neurons", "settings", "models": [{"artifact", "label", "method", "method_options",
        "sweep", "summary"}]}``.
    """
    if not models:
        raise ConfigError("no tuned models given: pass at least one artifact (RUN/prompt.safetensors)")
    sn = SkillNeurons.load(neurons) if isinstance(neurons, (str, os.PathLike)) else neurons
    found_on = sn.meta.get("task") if isinstance(sn.meta, dict) else None
    if isinstance(task, str):
        task = load_task(task)
    settings = {
        "split": split,
        "rhos": list(rhos),
        "mode": mode,
        "draws": draws,
        "positions": positions,
        **{k: v for k, v in options.items() if k not in ("batch_size",)},
        **_neurons_identity(neurons, sn),
        "task_fingerprint": task.fingerprint() if task is not None else None,
    }
    out = Path(out_dir) if out_dir is not None else None
    rows = []
    for i, path in enumerate(map(Path, models)):
        man = load_manifest(path, "prompt")
        label = _label(man, path)
        # what a stored sweep must match to be reused: the settings, the neurons, the task, this artifact
        key = {**settings, "artifact_sha256": [sha256_file(f) for f in artifact_paths(path)]}
        if task is None:  # evaluated on the task the model was tuned on
            key["task_fingerprint"] = (man.get("task") or {}).get("fingerprint")
        done = out / f"sweep_{i}.json" if out is not None else None
        if done is not None and done.is_file():
            import json

            prev = json.loads(done.read_text())
            if prev.get("artifact") == str(path) and prev.get("settings") == key:
                rows.append(prev)
                continue
        run = load_prompt_run(path, backbone, task=task, neurons=sn, split=split)
        if found_on and run.name != found_on:
            _release(run.model)
            raise ConfigError(
                f"the skill neurons were found on task '{found_on}' but {path} is tuned on '{run.name}': "
                "pass models of the neurons' task (skillneurons cross-perturb compares tasks)"
            )
        try:
            sweep = perturbation_sweep(
                run.model,
                run.eval_task,
                sn,
                rhos=rhos,
                mode=mode,
                draws=draws,
                positions=positions,
                progress=progress,
                **options,
            ).to_json()
        finally:
            _release(run.model)
        row = {
            "artifact": str(path),
            "label": label,
            "method": man.get("method", "prompt"),
            "method_options": man.get("method_options") or {},
            "settings": key,
            "sweep": sweep,
            "summary": summarise(sweep),
        }
        if done is not None:
            atomic_write_json(done, row)
        rows.append(row)
    return {
        "neurons": str(neurons) if not isinstance(neurons, SkillNeurons) else None,
        "task": found_on,
        "settings": settings,
        "models": rows,
    }


def _neurons_identity(neurons: SkillNeurons | str | os.PathLike[str], sn: SkillNeurons) -> dict[str, Any]:
    """The neurons' artifact path and a sha256 of their tensors (of the ``.safetensors`` file for
    an artifact, of the scores/positions/token means in memory otherwise)."""
    if isinstance(neurons, (str, os.PathLike)):
        return {"neurons": str(neurons), "neurons_sha256": sha256_file(artifact_paths(neurons)[0])}
    h = hashlib.sha256()
    tensors = {"token_mean": sn.token_mean}
    for s in sn.subtasks:
        tensors[f"scores.{s.name}"] = sn.rankings[s.name].scores
        tensors[f"best_position.{s.name}"] = sn.best_position[s.name]
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return {"neurons": None, "neurons_sha256": h.hexdigest()}


def _release(model: Any) -> None:
    release = getattr(model, "release", None)
    if callable(release):
        release()


def run_delta_perturbation(
    neurons: str | os.PathLike[str],
    models: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str] | None,
    *,
    model: str | Backbone | None = None,
    plot: bool = True,
    name: str = "delta_perturb",
    **options: Any,
) -> dict[str, Any]:
    """:func:`delta_perturbation` from artifact paths; writes ``out_dir/NAME.json`` and ``NAME.png``
    (accuracy vs rho per tuned model, random control dashed with its 95% band)."""
    if not models:
        raise ConfigError("no tuned models given: pass at least one artifact (RUN/prompt.safetensors)")
    bb = (
        model
        if isinstance(model, Backbone)
        else load_backbone(model or load_manifest(models[0], "prompt")["backbone"]["name"])
    )
    res = delta_perturbation(neurons, models, bb, out_dir=out_dir, **options)
    if out_dir is not None:
        out = Path(out_dir)
        atomic_write_json(out / f"{name}.json", res)
        if plot:
            from skillneurons.perturb.plots import plot_sweep

            plot_sweep(
                [m["sweep"] for m in res["models"]],
                out / f"{name}.png",
                labels=[m["label"] for m in res["models"]],
                title="prompt-found skill neurons perturbed in tuned models",
            )
    return res
