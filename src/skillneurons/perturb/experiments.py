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

from skillneurons.backbones import Backbone
from skillneurons.backbones.config import BackboneOptions
from skillneurons.backbones.masks import NeuronMask
from skillneurons.data import Task, load_task
from skillneurons.errors import ConfigError
from skillneurons.neurons.find import SkillNeurons
from skillneurons.options import configure
from skillneurons.perturb.config import (
    DEFAULT_RHOS,
    SPLITS,
    CrossPerturbConfig,
    PerturbConfig,
    SweepConfig,
)
from skillneurons.perturb.interventions import Mode, Perturbation, PositionsChoice, perturbed
from skillneurons.perturb.plots import plot_matrix, plot_sweep
from skillneurons.perturb.results import (
    CrossResult,
    RandomControl,
    RandomStats,
    SweepPoint,
    SweepResult,
)
from skillneurons.prompts import PromptModel, load_prompt
from skillneurons.rundir import RunDir
from skillneurons.training.trainer import evaluate

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

#: keyword spellings of the former signatures
_SWEEP_ALIASES = {"rhos": "rho"}
_CROSS_ALIASES = {"control_draws": "draws"}


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
    split_seed: int | None = None,
) -> PromptRun:
    """Load ``prompt`` on ``backbone`` with the ``split`` part of its run's split (:class:`RunDir`).

    ``task`` defaults to the task recorded in the prompt's manifest; ``neurons`` is a
    :class:`SkillNeurons` or the path of a ``skill_neurons`` artifact.
    """
    path = Path(prompt)
    model, _ = load_prompt(path, backbone)
    run = RunDir.of(path)
    t = run.task(load_task(task) if isinstance(task, str) else task)
    if split not in SPLITS:
        raise ConfigError(f"split {split!r} is unknown: use train, dev or test")
    part = run.part(split, t, split_seed)  # type: ignore[arg-type]
    sn = SkillNeurons.load(neurons) if isinstance(neurons, str | os.PathLike) else neurons
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
    return list(NeuronMask.from_orders(orders, counts).rows)


def mean_ci(values: Sequence[float], level: float = 0.95) -> RandomStats:
    """Mean, sample standard deviation and the t-interval of the mean (None when undefined)."""
    from scipy.stats import t as student_t

    n = len(values)
    if n == 0:
        return RandomStats(None, None, [None, None], 0, [])
    mean = sum(values) / n
    if n == 1:
        return RandomStats(mean, None, [None, None], 1, list(values))
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return RandomStats(mean, std, [mean - half, mean + half], n, list(values))


def _check_neurons(neurons: SkillNeurons, backbone: Backbone, what: str) -> None:
    widths = list(backbone.d_ff)
    if neurons.n_layers != len(widths) or any(w != neurons.d_ff for w in widths):
        raise ConfigError(
            f"the skill neurons of {what} are [{neurons.n_layers}, {neurons.d_ff}] but {backbone.name} has "
            f"{len(widths)} layers of {widths[0]} neurons: use skill neurons found on this model"
        )


def _layer_filter(mask: Tensor, layers: Sequence[int] | None) -> Tensor:
    return NeuronMask(tuple(mask)).restrict(layers).tensor() if layers is not None else mask


def _make(cfg: PerturbConfig, mask: Any, baseline: Any) -> Perturbation:
    return Perturbation(
        cast(Mode, cfg.mode),
        mask,
        sigma=cfg.sigma,
        seed=cfg.seed,
        positions=cast(PositionsChoice, cfg.positions),
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
    config: SweepConfig | None = None,
    *,
    baseline: Tensor | None = None,
    progress: bool | Callable[[str], None] = False,
    **options: Any,
) -> SweepResult:
    """Accuracy on ``task`` vs the fraction ``rho`` of perturbed skill neurons, with a random control.

    Args:
        model: the prompt model evaluated (its backbone is perturbed).
        task: the evaluation data (the test split of the prompt's run).
        neurons: the task's skill neurons; the perturbed set at ``rho`` is ``neurons.mask(rho, per_layer)``.
        config: the :class:`SweepConfig` (fractions ``rho``, ``draws``, mode, sigma, seed, positions,
            layers, ...); ``options`` replace its fields by name (``rhos`` is accepted for ``rho``).
        baseline: [L, N] means for ``mode="mean"`` (default ``neurons.token_mean``).

    Returns:
        A :class:`SweepResult`: settings, ``unperturbed`` accuracy and one :class:`SweepPoint` per ``rho``
        with ``neurons_per_layer``, ``skill`` accuracy and ``random`` (mean, std, ci95, values).
    """
    cfg = configure(SweepConfig, config, options, _SWEEP_ALIASES)
    bb = model.backbone
    _check_neurons(neurons, bb, task.name)
    say = _progress(progress)
    base = baseline if baseline is not None else (neurons.token_mean if cfg.mode == "mean" else None)
    kw: dict[str, Any] = dict(batch_size=cfg.batch_size, precision=cfg.precision)
    draws = cfg.draws
    clean = accuracy(model, task, **kw)
    say(f"perturb: {task.name} unperturbed accuracy {clean:.4f}")
    orders = random_orders(list(bb.d_ff), draws, cfg.seed)
    points = []
    for rho in cfg.rho:
        mask = _layer_filter(neurons.mask(rho, per_layer=cfg.per_layer), cfg.layers)
        counts = [int(c) for c in mask.sum(1)]
        if sum(counts) == 0:
            skill, rand = clean, [clean] * draws
        else:
            skill = accuracy(model, task, _make(cfg, mask, base), **kw)
            rand = [
                accuracy(model, task, _make(cfg, mask_from_orders(o, counts), base), **kw) for o in orders
            ]
        stats = mean_ci(rand)
        points.append(SweepPoint(rho, counts, sum(counts), skill, stats))
        rnd = f"{stats.mean:.4f}" if stats.mean is not None else "-"
        say(f"perturb: rho {rho:.3f} ({sum(counts)} neurons): skill {skill:.4f}, random {rnd}")
    return SweepResult(
        task=task.name,
        n_eval=len(task),
        model=bb.name,
        **cfg.settings(),
        draws=draws,
        unperturbed=clean,
        points=points,
    )


# ----------------------------------------------------------------------------------------------------
# the cross-task matrix


def _check_runs(runs: Sequence[PromptRun]) -> list[SkillNeurons]:
    if len(runs) < 1:
        raise ConfigError("no runs given: pass at least one (prompt, skill neurons) pair")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"task names {names} repeat: give each task once (or name the runs apart)")
    out = []
    for r in runs:
        if r.neurons is None:
            raise ConfigError(
                f"run '{r.name}' has no skill neurons: pass the skill_neurons artifact of every task"
            )
        _check_neurons(r.neurons, r.model.backbone, r.name)
        out.append(r.neurons)
    return out


def cross_task_matrix(
    runs: Sequence[PromptRun],
    config: CrossPerturbConfig | None = None,
    *,
    progress: bool | Callable[[str], None] = False,
    **options: Any,
) -> CrossResult:
    """Row A, column B: accuracy of B's prompt on B's evaluation data with A's top-``rho`` skill neurons
    perturbed. Also B unperturbed, the drops (absolute and relative to B unperturbed), and a random
    control row (the same number of random neurons per layer, ``draws`` draws, mean). ``options``
    replace fields of ``config`` by name (``control_draws`` is accepted for ``draws``)."""
    cfg = configure(CrossPerturbConfig, config, options, _CROSS_ALIASES)
    neurons = _check_runs(runs)
    names = [r.name for r in runs]
    say = _progress(progress)
    kw: dict[str, Any] = dict(batch_size=cfg.batch_size, precision=cfg.precision)
    masks = [_layer_filter(n.mask(cfg.rho, per_layer=cfg.per_layer), cfg.layers) for n in neurons]
    clean = [accuracy(r.model, r.eval_task, **kw) for r in runs]
    say("cross-perturb: unperturbed " + ", ".join(f"{n} {a:.4f}" for n, a in zip(names, clean)))
    acc: list[list[float]] = []
    for a, src in enumerate(runs):
        row = []
        for b, dst in enumerate(runs):
            base = neurons[b].token_mean if cfg.mode == "mean" else None
            row.append(accuracy(dst.model, dst.eval_task, _make(cfg, masks[a], base), **kw))
        acc.append(row)
        say(
            f"cross-perturb: {src.name}'s neurons -> " + ", ".join(f"{n} {v:.4f}" for n, v in zip(names, row))
        )
    # random control: per evaluated task, the size of that task's own skill set (per layer)
    control = []
    for b, dst in enumerate(runs):
        counts = [int(c) for c in masks[b].sum(1)]
        base = neurons[b].token_mean if cfg.mode == "mean" else None
        vals = [
            accuracy(dst.model, dst.eval_task, _make(cfg, mask_from_orders(o, counts), base), **kw)
            for o in random_orders(list(dst.model.backbone.d_ff), cfg.draws, cfg.seed)
        ]
        control.append(mean_ci(vals))
    n = len(runs)
    drop = [[clean[b] - acc[a][b] for b in range(n)] for a in range(n)]
    rel: list[list[float | None]] = [
        [drop[a][b] / clean[b] if clean[b] > 0 else None for b in range(n)] for a in range(n)
    ]
    return CrossResult(
        tasks=names,
        n_eval=[len(r.eval_task) for r in runs],
        rows="perturbed neurons of this task",
        columns="prompt and test data of this task",
        rho=cfg.rho,
        **cfg.settings(),
        neurons_per_task=[int(m.sum()) for m in masks],
        unperturbed=clean,
        accuracy=acc,
        drop=drop,
        relative_drop=rel,
        random_control=RandomControl(
            draws=cfg.draws,
            accuracy=[c.mean for c in control],
            drop=[clean[b] - c.mean if c.mean is not None else None for b, c in enumerate(control)],
            ci95=[c.ci95 for c in control],
        ),
    )


# ----------------------------------------------------------------------------------------------------
# from artifacts, to files


def _backbone_for(
    prompt: str | os.PathLike[str], model: str | Backbone | None, options: BackboneOptions | None
) -> Backbone:
    if isinstance(model, Backbone):
        return model
    return RunDir.of(prompt).backbone(model, options)


def run_sweep(
    prompt: str | os.PathLike[str],
    neurons: str | os.PathLike[str] | SkillNeurons,
    out_dir: str | os.PathLike[str] | None,
    config: SweepConfig | None = None,
    *,
    model: str | Backbone | None = None,
    backbone_options: BackboneOptions | None = None,
    task: Task | str | None = None,
    plot: bool = True,
    name: str = "perturb_sweep",
    progress: bool | Callable[[str], None] = False,
    **options: Any,
) -> SweepResult:
    """:func:`perturbation_sweep` from a prompt artifact and a skill-neuron artifact; writes
    ``out_dir/NAME.json`` and ``out_dir/NAME.png`` (accuracy vs rho, random control's 95% band).
    The backbone is ``model`` (a loaded one, or a name loaded with ``backbone_options``), else the
    prompt's recorded one."""
    cfg = configure(SweepConfig, config, options, _SWEEP_ALIASES)
    bb = _backbone_for(prompt, model, backbone_options)
    run = load_prompt_run(prompt, bb, task=task, neurons=neurons, split=cfg.split, split_seed=cfg.split_seed)
    assert run.neurons is not None
    res = perturbation_sweep(run.model, run.eval_task, run.neurons, cfg, progress=progress)
    res.prompt = str(prompt)
    res.neurons = str(neurons) if not isinstance(neurons, SkillNeurons) else None
    res.split = cfg.split
    if out_dir is not None:
        out = Path(out_dir)
        res.save(out / f"{name}.json")
        if plot:
            plot_sweep([res], out / f"{name}.png")
    return res


def run_cross(
    prompts: Sequence[str | os.PathLike[str]],
    neurons: Sequence[str | os.PathLike[str] | SkillNeurons],
    out_dir: str | os.PathLike[str] | None,
    config: CrossPerturbConfig | None = None,
    *,
    model: str | Backbone | None = None,
    backbone_options: BackboneOptions | None = None,
    tasks: Sequence[Task | str | None] | None = None,
    plot: bool = True,
    name: str = "perturb_cross",
    progress: bool | Callable[[str], None] = False,
    **options: Any,
) -> CrossResult:
    """:func:`cross_task_matrix` from pairs (prompt of task T, skill neurons of task T); writes
    ``out_dir/NAME.json`` and ``out_dir/NAME.png`` (heatmap of the accuracy drop)."""
    cfg = configure(CrossPerturbConfig, config, options, _CROSS_ALIASES)
    if len(prompts) != len(neurons) or not prompts:
        raise ConfigError(
            f"{len(prompts)} prompts and {len(neurons)} skill-neuron artifacts: pass one of each per task, "
            "in the same order"
        )
    if tasks is not None and len(tasks) != len(prompts):
        raise ConfigError(
            f"{len(tasks)} tasks for {len(prompts)} prompts: pass one task per prompt (or none)"
        )
    bb = _backbone_for(prompts[0], model, backbone_options)
    runs = [
        load_prompt_run(
            p,
            bb,
            task=tasks[i] if tasks else None,
            neurons=neurons[i],
            split=cfg.split,
            split_seed=cfg.split_seed,
        )
        for i, p in enumerate(prompts)
    ]
    names = [r.name for r in runs]
    for r in runs:  # the same task twice (e.g. two seeds): tell them apart by their run folder
        if names.count(r.name) > 1 and r.prompt_path is not None:
            r.name = f"{r.name}:{r.prompt_path.parent.name}"
    res = cross_task_matrix(runs, cfg, progress=progress)
    res.prompts = [str(p) for p in prompts]
    res.split = cfg.split
    if out_dir is not None:
        out = Path(out_dir)
        res.save(out / f"{name}.json")
        if plot:
            ctrl = res.random_control
            plot_matrix(
                [*res.drop, ctrl.drop],
                [*res.tasks, f"random (k={ctrl.draws})"],
                out / f"{name}.png",
                title=f"accuracy drop: {res.mode} on top {res.rho:.0%} skill neurons",
                xlabel="evaluated task (prompt + test data)",
                ylabel="perturbed neurons of",
                cmap="RdBu_r",
                center=0.0,
                col_labels=res.tasks,
            )
    return res
