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

import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from skillneurons.artifacts import artifact_paths, load_manifest, sha256_file
from skillneurons.backbones import Backbone
from skillneurons.backbones.config import BackboneOptions
from skillneurons.data import Task, load_task
from skillneurons.delta.config import DeltaPerturbConfig
from skillneurons.errors import ArtifactError, ConfigError
from skillneurons.evidence import Estimate
from skillneurons.files import read_json
from skillneurons.neurons.find import SkillNeurons
from skillneurons.perturb.experiments import load_prompt_run, perturbation_sweep
from skillneurons.perturb.plots import plot_sweep
from skillneurons.results import Result
from skillneurons.rundir import RunDir

__all__ = [
    "DeltaDrop",
    "DeltaPerturbModel",
    "DeltaPerturbResult",
    "delta_perturbation",
    "run_delta_perturbation",
    "summarise",
]


@dataclass
class DeltaDrop(Result):
    """One ``rho`` of a tuned model: the skill-neuron drop, the random drop (mean, 95% interval) and
    their gap, all from the model's unperturbed accuracy. From a v2 sweep also ``skill_drop_ci``
    (unperturbed - skill, paired bootstrap) and ``paired`` (skill - random accuracy on the same
    examples, paired over examples and draws, with p: ``-gap`` with its interval)."""

    SCHEMA = "skillneurons.delta_drop"

    rho: float
    neurons: int
    skill_drop: float
    random_drop: float | None
    random_drop_ci95: list[float | None]
    gap: float | None
    skill_drop_ci: Estimate | None = None
    paired: Estimate | None = None


@dataclass
class DeltaPerturbModel(Result):
    """One tuned model's sweep (``sweep_<i>.json``): its artifact, method, the settings its stored
    sweep is keyed on, the sweep itself (:func:`~skillneurons.perturb.perturbation_sweep`'s JSON) and
    the per-``rho`` summary."""

    SCHEMA = "skillneurons.delta_perturb_model"

    artifact: str
    label: str
    method: str
    method_options: dict[str, Any]
    settings: dict[str, Any]
    sweep: dict[str, Any]
    summary: list[DeltaDrop] = field(default_factory=list)


@dataclass
class DeltaPerturbResult(Result):
    """``delta_perturb.json``: the neurons, their task, the settings and one row per tuned model."""

    SCHEMA = "skillneurons.delta_perturb"

    neurons: str | None
    task: str | None
    settings: dict[str, Any]
    models: list[DeltaPerturbModel] = field(default_factory=list)


def _label(manifest: dict[str, Any], path: Path) -> str:
    method = str(manifest.get("method", "prompt"))
    opts = manifest.get("method_options") or {}
    if method == "adapter":
        method = f"adapter-{opts.get('placement', 'pfeiffer')}"
    return f"{method} ({path.parent.name})"


def _sweep_json(sweep: Any) -> dict[str, Any]:
    """The sweep as plain JSON (a typed sweep result without its schema keys)."""
    if hasattr(sweep, "to_json"):
        return {k: v for k, v in sweep.to_json().items() if k not in ("schema", "schema_version")}
    return dict(sweep)


def summarise(sweep: dict[str, Any]) -> list[DeltaDrop]:
    """Per ``rho``: the skill-neuron drop, the random drop (mean, 95% interval) and their gap."""
    clean = float(sweep["unperturbed"])
    rows = []
    for p in sweep["points"]:
        r = p["random"]
        mean = r["mean"]
        ci = r["ci95"]
        rows.append(
            DeltaDrop(
                rho=p["rho"],
                neurons=p["neurons"],
                skill_drop=clean - p["skill"],
                random_drop=None if mean is None else clean - mean,
                random_drop_ci95=[
                    None if ci[1] is None else clean - ci[1],
                    None if ci[0] is None else clean - ci[0],
                ],
                gap=None if mean is None else mean - p["skill"],
                skill_drop_ci=_estimate(p.get("skill_drop")),
                paired=_estimate(p.get("paired")),
            )
        )
    return rows


def _estimate(obj: Any) -> Estimate | None:
    return Estimate.from_json(obj) if isinstance(obj, dict) else None


def delta_perturbation(
    neurons: SkillNeurons | str | os.PathLike[str],
    models: Sequence[str | os.PathLike[str]],
    backbone: Backbone,
    config: DeltaPerturbConfig | None = None,
    *,
    task: Task | str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    progress: bool | Callable[[str], None] = False,
    **options: Any,
) -> DeltaPerturbResult:
    """Skill-vs-random perturbation sweeps of ``neurons`` (found with prompt tuning) on each tuned model.

    Args:
        neurons: the task's skill neurons (a :class:`SkillNeurons` or its artifact path).
        models: artifacts of models tuned on the same task (``bitfit``/``adapter``/``lora``, or prompts),
            each with the ``split.json`` of its run; evaluated on that run's ``config.split``.
        backbone: the frozen backbone all of them were tuned on.
        config: the sweep's options (:class:`DeltaPerturbConfig`); ``options`` override its fields by
            name (``rhos=[0, 0.1]``, ``draws=3``...).
        out_dir: when given, each model's sweep is written to ``out_dir/sweep_<i>.json`` as soon as it
            is done, and reused by a rerun with the same settings, the same neurons (path and
            content), the same task (fingerprint) and the same model artifact (content): resume.
    """
    config = dataclasses.replace(config or DeltaPerturbConfig(), **options)
    if not models:
        raise ConfigError("no tuned models given: pass at least one artifact (RUN/prompt.safetensors)")
    sn = SkillNeurons.load(neurons) if isinstance(neurons, (str, os.PathLike)) else neurons
    found_on = sn.meta.get("task") if isinstance(sn.meta, dict) else None
    if isinstance(task, str):
        task = load_task(task)
    settings = {
        "split": config.split,
        "rhos": list(config.rhos),
        "mode": config.mode,
        "draws": config.draws,
        "positions": config.positions,
        **{k: v for k, v in config.sweep_options().items() if k != "batch_size"},
        **_neurons_identity(neurons, sn),
        "task_fingerprint": task.fingerprint() if task is not None else None,
    }
    out = Path(out_dir) if out_dir is not None else None
    rows = []
    for i, path in enumerate(map(Path, models)):
        done = out / f"sweep_{i}.json" if out is not None else None
        rows.append(_model_sweep(path, backbone, sn, task, config, settings, done, progress))
    return DeltaPerturbResult(
        neurons=str(neurons) if not isinstance(neurons, SkillNeurons) else None,
        task=found_on,
        settings=settings,
        models=rows,
    )


def _stored(done: Path | None, path: Path, key: dict[str, Any]) -> DeltaPerturbModel | None:
    """The sweep stored in ``done`` when it was made with ``key`` on ``path``, else None."""
    if done is None or not done.is_file():
        return None
    try:
        prev = DeltaPerturbModel.from_json(read_json(done, "stored sweep"), where=str(done))
    except ArtifactError:
        return None
    return prev if prev.artifact == str(path) and prev.settings == key else None


def _model_sweep(
    path: Path,
    backbone: Backbone,
    sn: SkillNeurons,
    task: Task | None,
    config: DeltaPerturbConfig,
    settings: dict[str, Any],
    done: Path | None,
    progress: bool | Callable[[str], None],
) -> DeltaPerturbModel:
    """One tuned model's sweep: reused from ``done`` when it matches, else run (and stored there)."""
    man = load_manifest(path, "prompt")
    # what a stored sweep must match to be reused: the settings, the neurons, the task, this artifact
    key = {**settings, "artifact_sha256": [sha256_file(f) for f in artifact_paths(path)]}
    if task is None:  # evaluated on the task the model was tuned on
        key["task_fingerprint"] = RunDir.of(path).task_record.get("fingerprint")
    prev = _stored(done, path, key)
    if prev is not None:
        return prev
    run = load_prompt_run(
        path, backbone, task=task, neurons=sn, split=config.split, split_seed=config.split_seed
    )
    found_on = sn.meta.get("task") if isinstance(sn.meta, dict) else None
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
            rhos=config.rhos,
            mode=config.mode,
            draws=config.draws,
            positions=config.positions,
            train=run.train_task,
            progress=progress,
            **config.sweep_options(),  # type: ignore[arg-type]
        )
    finally:
        _release(run.model)
    plain = _sweep_json(sweep)
    row = DeltaPerturbModel(
        artifact=str(path),
        label=_label(man, path),
        method=man.get("method", "prompt"),
        method_options=man.get("method_options") or {},
        settings=key,
        sweep=plain,
        summary=summarise(plain),
    )
    if done is not None:
        row.save(done)
    return row


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
    config: DeltaPerturbConfig | None = None,
    *,
    model: str | Backbone | None = None,
    backbone_options: BackboneOptions | None = None,
    plot: bool = True,
    name: str = "delta_perturb",
    **options: Any,
) -> DeltaPerturbResult:
    """:func:`delta_perturbation` from artifact paths; the backbone is ``model`` (a name is loaded
    with ``backbone_options``), else the one the first tuned model records. Writes
    ``out_dir/NAME.json`` and ``NAME.png`` (accuracy vs rho per tuned model, random control dashed
    with its 95% band)."""
    if not models:
        raise ConfigError("no tuned models given: pass at least one artifact (RUN/prompt.safetensors)")
    bb = model if isinstance(model, Backbone) else RunDir.of(models[0]).backbone(model, backbone_options)
    res = delta_perturbation(neurons, models, bb, config, out_dir=out_dir, **options)
    if out_dir is not None:
        out = Path(out_dir)
        res.save(out / f"{name}.json")
        if plot:
            plot_sweep(
                [m.sweep for m in res.models],
                out / f"{name}.png",
                labels=[m.label for m in res.models],
                title="prompt-found skill neurons perturbed in tuned models",
            )
    return res
