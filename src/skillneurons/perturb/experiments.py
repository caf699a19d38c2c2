"""Perturbation experiments (REFERENCE.md sections 3-4): do skill neurons matter, and are they task-specific?

* :func:`perturbation_sweep`: test accuracy of a prompt model while its top-``rho`` skill neurons are
  perturbed, for a range of ``rho``, against a control that perturbs the same number of RANDOM
  neurons in every layer, repeated ``draws`` times (mean and 95% confidence interval).
* :func:`cross_task_matrix`: perturb task A's skill neurons (fixed ``rho``) while evaluating task B's
  prompt on B's test split, for every pair; reports the accuracy drop relative to B unperturbed.
* :func:`run_sweep` / :func:`run_cross`: the same from artifact paths, writing JSON and PNG files.

Choices (documented here because the paper is silent on them):

* Evaluation uses the TEST split of the prompt's run (``split.json`` next to the prompt), which
  neither trained the prompt nor ranked the neurons.
* The random control of draw ``d`` is a fixed random permutation of every layer's neurons (seeded
  from ``(seed, d)``); the control at fraction ``rho`` takes its first ``count(layer, rho)`` neurons,
  where ``count`` is the number of skill neurons of that layer at ``rho``. Random sets are thus nested
  across ``rho`` like the skill sets, and may include skill neurons (as in the paper).
* Gaussian noise uses the same seed for the skill and the random condition (common random numbers).
* ``mean`` replaces a neuron by ``SkillNeurons.token_mean`` of the EVALUATED model's neurons (in the
  cross-task matrix: task B's), i.e. the constant the neuron takes on average under that prompt.
* The 95% interval of the control is the t-interval of the mean over the ``draws`` accuracies.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from skillneurons.artifacts import atomic_write_json, load_manifest
from skillneurons.backbones import Backbone, load_backbone
from skillneurons.data import Task, load_task
from skillneurons.errors import ConfigError, DataError
from skillneurons.neurons.find import SkillNeurons, prompt_splits
from skillneurons.perturb.interventions import (
    MODES,
    POSITIONS,
    Mode,
    Perturbation,
    PositionsChoice,
    perturbed,
)
from skillneurons.prompts import PromptModel, load_prompt
from skillneurons.training.trainer import evaluate

DEFAULT_RHOS: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.10, 0.15, 0.20)

__all__ = [
    "DEFAULT_RHOS",
    "PromptRun",
    "accuracy",
    "cross_task_matrix",
    "load_prompt_run",
    "mean_ci",
    "perturbation_sweep",
    "random_orders",
    "run_cross",
    "run_sweep",
]


# ----------------------------------------------------------------------------------------------------
# loading a prompt's run


@dataclass
class PromptRun:
    """A trained prompt, the split it is evaluated on, and (optionally) its task's skill neurons."""

    name: str
    model: PromptModel
    eval_task: Task
    prompt_path: Path | None = None
    neurons: SkillNeurons | None = None


def load_prompt_run(
    prompt: str | os.PathLike[str],
    backbone: Backbone,
    *,
    task: Task | str | None = None,
    neurons: SkillNeurons | str | os.PathLike[str] | None = None,
    split: str = "test",
) -> PromptRun:
    """Load ``prompt`` on ``backbone`` with the ``split`` part of its run's split (``split.json``).

    ``task`` defaults to the (built-in) task named in the prompt's manifest; ``neurons`` is a
    :class:`SkillNeurons` or the path of a ``skill_neurons`` artifact.
    """
    path = Path(prompt)
    model, man = load_prompt(path, backbone)
    if task is None:
        name = man.get("task", {}).get("name")
        if not name:
            raise DataError(f"{path} does not name its task: pass the task the prompt was trained on")
        task = name
    t = load_task(task) if isinstance(task, str) else task
    if split not in ("train", "dev", "test"):
        raise ConfigError(f"split {split!r} is unknown: use train, dev or test")
    part = prompt_splits(path, man, t).part(split)  # type: ignore[arg-type]
    sn = SkillNeurons.load(neurons) if isinstance(neurons, (str, os.PathLike)) else neurons
    return PromptRun(t.name, model, part, path, sn)


# ----------------------------------------------------------------------------------------------------
# helpers


def accuracy(
    model: PromptModel,
    task: Task,
    perturbation: Perturbation | None = None,
    *,
    batch_size: int = 64,
    precision: str = "auto",
) -> float:
    """Accuracy of ``model`` on ``task``, under ``perturbation`` when given."""
    if perturbation is None:
        return float(evaluate(model, task, batch_size, precision=precision)["accuracy"])
    with perturbed(model, perturbation):
        return float(evaluate(model, task, batch_size, precision=precision)["accuracy"])


def random_orders(widths: Sequence[int], draws: int, seed: int) -> list[list[Tensor]]:
    """``draws`` x L random permutations of each layer's neurons (draw ``d`` seeded by ``(seed, d)``)."""
    out = []
    for d in range(draws):
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + 7919 * d + 17)
        out.append([torch.randperm(int(n), generator=g) for n in widths])
    return out


def mask_from_orders(orders: Sequence[Tensor], counts: Sequence[int]) -> list[Tensor]:
    """Per-layer bool masks holding the first ``counts[l]`` neurons of ``orders[l]``."""
    rows = []
    for order, k in zip(orders, counts, strict=True):
        m = torch.zeros(order.numel(), dtype=torch.bool)
        m[order[: int(k)]] = True
        rows.append(m)
    return rows


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """Mean, sample standard deviation and the t-interval of the mean (None when undefined)."""
    from scipy.stats import t as student_t

    n = len(values)
    if n == 0:
        return {"mean": None, "std": None, "ci95": [None, None], "n": 0, "values": []}
    mean = sum(values) / n
    if n == 1:
        return {"mean": mean, "std": None, "ci95": [None, None], "n": 1, "values": list(values)}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": n, "values": list(values)}


def _check_options(mode: str, positions: str, rhos: Sequence[float], draws: int) -> None:
    if mode not in MODES:
        raise ConfigError(f"perturbation mode {mode!r} is unknown: use one of {', '.join(MODES)}")
    if positions not in POSITIONS:
        raise ConfigError(f"positions {positions!r} are unknown: use 'all' or 'prompt'")
    if not rhos:
        raise ConfigError("no fractions given: pass at least one rho, e.g. 0,0.01,0.05")
    for r in rhos:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r <= 1:
            raise ConfigError(f"rho={r!r} is invalid: pass fractions between 0 and 1 (e.g. 0.02 for 2%)")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 0:
        raise ConfigError(f"draws={draws!r} is invalid: pass a non-negative number of random draws")


def _check_neurons(neurons: SkillNeurons, backbone: Backbone, what: str) -> None:
    widths = list(backbone.d_ff)
    if neurons.n_layers != len(widths) or any(w != neurons.d_ff for w in widths):
        raise ConfigError(
            f"the skill neurons of {what} are [{neurons.n_layers}, {neurons.d_ff}] but {backbone.name} has "
            f"{len(widths)} layers of {widths[0]} neurons: use skill neurons found on this model"
        )


def _layer_filter(mask: Tensor, layers: Sequence[int] | None) -> Tensor:
    if layers is None:
        return mask
    L = mask.shape[0]
    keep = torch.zeros(L, dtype=torch.bool)
    for layer in layers:
        if not -L <= layer < L:
            raise ConfigError(f"layer {layer} does not exist: the model has layers 0..{L - 1}")
        keep[layer % L] = True
    return mask & keep.unsqueeze(1)


def _settings(
    mode: str, sigma: float, positions: str, layers: Sequence[int] | None, per_layer: bool, seed: int
) -> dict[str, Any]:
    """How the neurons were perturbed, as recorded in every experiment's result."""
    return {
        "mode": mode,
        "sigma": sigma if mode == "gaussian" else None,
        "positions": positions,
        "layers": list(layers) if layers is not None else None,
        "per_layer": per_layer,
        "seed": seed,
    }


def _make(mode: str, mask: Any, sigma: float, seed: int, positions: str, baseline: Any) -> Perturbation:
    return Perturbation(
        cast(Mode, mode),
        mask,
        sigma=sigma,
        seed=seed,
        positions=cast(PositionsChoice, positions),
        baseline=baseline,
    )


def _progress(progress: bool | Callable[[str], None]) -> Callable[[str], None]:
    if callable(progress):
        return progress
    return print if progress else (lambda _msg: None)


# ----------------------------------------------------------------------------------------------------
# the sweep


def perturbation_sweep(
    model: PromptModel,
    task: Task,
    neurons: SkillNeurons,
    *,
    rhos: Sequence[float] = DEFAULT_RHOS,
    mode: str = "gaussian",
    draws: int = 5,
    seed: int = 0,
    sigma: float = 0.1,
    positions: str = "all",
    layers: Sequence[int] | None = None,
    per_layer: bool = True,
    baseline: Tensor | None = None,
    batch_size: int = 64,
    precision: str = "auto",
    progress: bool | Callable[[str], None] = False,
) -> dict[str, Any]:
    """Accuracy on ``task`` vs the fraction ``rho`` of perturbed skill neurons, with a random control.

    Args:
        model: the prompt model evaluated (its backbone is perturbed).
        task: the evaluation data (the test split of the prompt's run).
        neurons: the task's skill neurons; the perturbed set at ``rho`` is ``neurons.mask(rho, per_layer)``.
        rhos: fractions of neurons to perturb.
        mode, sigma, seed, positions, layers: see :class:`Perturbation`.
        draws: random-control repetitions per ``rho`` (k).
        baseline: [L, N] means for ``mode="mean"`` (default ``neurons.token_mean``).

    Returns:
        A JSON-able dict: settings, ``unperturbed`` accuracy and one entry per ``rho`` in ``points``
        with ``neurons_per_layer``, ``skill`` accuracy and ``random`` (``mean``, ``std``, ``ci95``,
        ``values``).
    """
    _check_options(mode, positions, rhos, draws)
    bb = model.backbone
    _check_neurons(neurons, bb, task.name)
    say = _progress(progress)
    base = baseline if baseline is not None else (neurons.token_mean if mode == "mean" else None)
    kw: dict[str, Any] = dict(batch_size=batch_size, precision=precision)

    def pert(mask: Tensor | list[Tensor]) -> Perturbation:
        return _make(mode, mask, sigma, seed, positions, base)

    clean = accuracy(model, task, **kw)
    say(f"perturb: {task.name} unperturbed accuracy {clean:.4f}")
    orders = random_orders(list(bb.d_ff), draws, seed)
    points = []
    for rho in rhos:
        mask = _layer_filter(neurons.mask(rho, per_layer=per_layer), layers)
        counts = [int(c) for c in mask.sum(1)]
        if sum(counts) == 0:
            skill, rand = clean, [clean] * draws
        else:
            skill = accuracy(model, task, pert(mask), **kw)
            rand = [accuracy(model, task, pert(mask_from_orders(o, counts)), **kw) for o in orders]
        stats = mean_ci(rand)
        points.append(
            {"rho": rho, "neurons_per_layer": counts, "neurons": sum(counts), "skill": skill, "random": stats}
        )
        rnd = f"{stats['mean']:.4f}" if stats["mean"] is not None else "-"
        say(f"perturb: rho {rho:.3f} ({sum(counts)} neurons): skill {skill:.4f}, random {rnd}")
    return {
        "task": task.name,
        "n_eval": len(task),
        "model": bb.name,
        **_settings(mode, sigma, positions, layers, per_layer, seed),
        "draws": draws,
        "unperturbed": clean,
        "points": points,
    }


# ----------------------------------------------------------------------------------------------------
# the cross-task matrix


def cross_task_matrix(
    runs: Sequence[PromptRun],
    *,
    rho: float = 0.05,
    mode: str = "gaussian",
    sigma: float = 0.1,
    seed: int = 0,
    positions: str = "all",
    layers: Sequence[int] | None = None,
    per_layer: bool = True,
    control_draws: int = 3,
    batch_size: int = 64,
    precision: str = "auto",
    progress: bool | Callable[[str], None] = False,
) -> dict[str, Any]:
    """Row A, column B: accuracy of B's prompt on B's evaluation data with A's top-``rho`` skill neurons
    perturbed. Also B unperturbed, the drops (absolute and relative to B unperturbed), and a random
    control row (the same number of random neurons per layer, ``control_draws`` draws, mean)."""
    _check_options(mode, positions, [rho], control_draws)
    if len(runs) < 1:
        raise ConfigError("no runs given: pass at least one (prompt, skill neurons) pair")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"task names {names} repeat: give each task once (or name the runs apart)")
    say = _progress(progress)
    for r in runs:
        if r.neurons is None:
            raise ConfigError(
                f"run '{r.name}' has no skill neurons: pass the skill_neurons artifact of every task"
            )
        _check_neurons(r.neurons, r.model.backbone, r.name)
    kw: dict[str, Any] = dict(batch_size=batch_size, precision=precision)
    masks = [_layer_filter(r.neurons.mask(rho, per_layer=per_layer), layers) for r in runs]  # type: ignore[union-attr]
    clean = [accuracy(r.model, r.eval_task, **kw) for r in runs]
    say("cross-perturb: unperturbed " + ", ".join(f"{n} {a:.4f}" for n, a in zip(names, clean)))
    acc: list[list[float]] = []
    for a, src in enumerate(runs):
        row = []
        for dst in runs:
            base = dst.neurons.token_mean if mode == "mean" else None  # type: ignore[union-attr]
            p = _make(mode, masks[a], sigma, seed, positions, base)
            row.append(accuracy(dst.model, dst.eval_task, p, **kw))
        acc.append(row)
        say(
            f"cross-perturb: {src.name}'s neurons -> " + ", ".join(f"{n} {v:.4f}" for n, v in zip(names, row))
        )
    # random control: per evaluated task, the size of that task's own skill set (per layer)
    control = []
    for b, dst in enumerate(runs):
        counts = [int(c) for c in masks[b].sum(1)]
        base = dst.neurons.token_mean if mode == "mean" else None  # type: ignore[union-attr]
        vals = [
            accuracy(
                dst.model,
                dst.eval_task,
                _make(mode, mask_from_orders(o, counts), sigma, seed, positions, base),
                **kw,
            )
            for o in random_orders(list(dst.model.backbone.d_ff), control_draws, seed)
        ]
        control.append(mean_ci(vals))
    drop = [[clean[b] - acc[a][b] for b in range(len(runs))] for a in range(len(runs))]
    rel = [
        [drop[a][b] / clean[b] if clean[b] > 0 else None for b in range(len(runs))] for a in range(len(runs))
    ]
    return {
        "tasks": names,
        "n_eval": [len(r.eval_task) for r in runs],
        "rows": "perturbed neurons of this task",
        "columns": "prompt and test data of this task",
        "rho": rho,
        **_settings(mode, sigma, positions, layers, per_layer, seed),
        "neurons_per_task": [int(m.sum()) for m in masks],
        "unperturbed": clean,
        "accuracy": acc,
        "drop": drop,
        "relative_drop": rel,
        "random_control": {
            "draws": control_draws,
            "accuracy": [c["mean"] for c in control],
            "drop": [clean[b] - c["mean"] if c["mean"] is not None else None for b, c in enumerate(control)],
            "ci95": [c["ci95"] for c in control],
        },
    }


# ----------------------------------------------------------------------------------------------------
# from artifacts, to files


def _backbone_for(prompt: str | os.PathLike[str], model: str | Backbone | None) -> Backbone:
    if isinstance(model, Backbone):
        return model
    man = load_manifest(prompt)
    return load_backbone(model or man["backbone"]["name"])


def run_sweep(
    prompt: str | os.PathLike[str],
    neurons: str | os.PathLike[str] | SkillNeurons,
    out_dir: str | os.PathLike[str] | None,
    *,
    model: str | Backbone | None = None,
    task: Task | str | None = None,
    split: str = "test",
    plot: bool = True,
    name: str = "perturb_sweep",
    **options: Any,
) -> dict[str, Any]:
    """:func:`perturbation_sweep` from a prompt artifact and a skill-neuron artifact; writes
    ``out_dir/NAME.json`` and ``out_dir/NAME.png`` (accuracy vs rho, random control's 95% band)."""
    bb = _backbone_for(prompt, model)
    run = load_prompt_run(prompt, bb, task=task, neurons=neurons, split=split)
    assert run.neurons is not None
    res = perturbation_sweep(run.model, run.eval_task, run.neurons, **options)
    res.update(
        prompt=str(prompt),
        neurons=str(neurons) if not isinstance(neurons, SkillNeurons) else None,
        split=split,
    )
    if out_dir is not None:
        out = Path(out_dir)
        atomic_write_json(out / f"{name}.json", res)
        if plot:
            from skillneurons.perturb.plots import plot_sweep

            plot_sweep([res], out / f"{name}.png")
    return res


def run_cross(
    prompts: Sequence[str | os.PathLike[str]],
    neurons: Sequence[str | os.PathLike[str] | SkillNeurons],
    out_dir: str | os.PathLike[str] | None,
    *,
    model: str | Backbone | None = None,
    tasks: Sequence[Task | str | None] | None = None,
    split: str = "test",
    plot: bool = True,
    name: str = "perturb_cross",
    **options: Any,
) -> dict[str, Any]:
    """:func:`cross_task_matrix` from pairs (prompt of task T, skill neurons of task T); writes
    ``out_dir/NAME.json`` and ``out_dir/NAME.png`` (heatmap of the accuracy drop)."""
    if len(prompts) != len(neurons) or not prompts:
        raise ConfigError(
            f"{len(prompts)} prompts and {len(neurons)} skill-neuron artifacts: pass one of each per task, in the same order"
        )
    if tasks is not None and len(tasks) != len(prompts):
        raise ConfigError(
            f"{len(tasks)} tasks for {len(prompts)} prompts: pass one task per prompt (or none)"
        )
    bb = _backbone_for(prompts[0], model)
    runs = [
        load_prompt_run(p, bb, task=tasks[i] if tasks else None, neurons=neurons[i], split=split)
        for i, p in enumerate(prompts)
    ]
    names = [r.name for r in runs]
    for r in runs:  # the same task twice (e.g. two seeds): tell them apart by their run folder
        if names.count(r.name) > 1 and r.prompt_path is not None:
            r.name = f"{r.name}:{r.prompt_path.parent.name}"
    res = cross_task_matrix(runs, **options)
    res.update(prompts=[str(p) for p in prompts], split=split)
    if out_dir is not None:
        out = Path(out_dir)
        atomic_write_json(out / f"{name}.json", res)
        if plot:
            from skillneurons.perturb.plots import plot_matrix

            title = f"accuracy drop: {res['mode']} on top {res['rho']:.0%} skill neurons"
            ctrl = res["random_control"]
            plot_matrix(
                [*res["drop"], ctrl["drop"]],
                [*res["tasks"], f"random (k={ctrl['draws']})"],
                out / f"{name}.png",
                title=title,
                xlabel="evaluated task (prompt + test data)",
                ylabel="perturbed neurons of",
                cmap="RdBu_r",
                center=0.0,
                col_labels=res["tasks"],
            )
    return res
