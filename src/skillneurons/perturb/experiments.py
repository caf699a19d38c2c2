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
* The 95% interval of the control is the t-interval of the mean over the ``draws`` accuracies
  (``random.ci95``). Every condition is evaluated on the same examples and its per-example correctness
  kept (O(n) per condition), so the skill-vs-random comparison is PAIRED (REFERENCE.md section 10):
  ``paired`` = skill - random accuracy with a bootstrap over the examples and the k draws
  (:func:`skillneurons.evidence.paired_difference`), its 95% interval and two-sided p; each accuracy
  has its Wilson interval. The bootstraps are seeded by ``seed``.
* ``sigma_scale="neuron_std"`` (the default) draws the gaussian noise of neuron ``i`` with standard
  deviation ``sigma * std_i``, ``std_i`` its activation std on the prompt's TRAIN split at the
  perturbed positions (:func:`~skillneurons.perturb.scale.neuron_std`, one streaming pass, or the
  ``scale`` passed in); ``absolute`` keeps ``sigma`` as it is.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from skillneurons.backbones import Backbone
from skillneurons.backbones.config import BackboneOptions
from skillneurons.backbones.masks import NeuronMask
from skillneurons.data import Task, load_task
from skillneurons.errors import ConfigError
from skillneurons.evidence import Estimate, bootstrap_mean, paired_difference, wilson
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
from skillneurons.perturb.scale import neuron_std
from skillneurons.prompts import PromptModel, load_prompt
from skillneurons.rundir import RunDir
from skillneurons.training.trainer import evaluate

__all__ = [
    "DEFAULT_RHOS",
    "PromptRun",
    "accuracy",
    "bits",
    "correctness",
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
    train_task: Task | None = None


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
    train = run.part("train", t, split_seed)
    sn = SkillNeurons.load(neurons) if isinstance(neurons, str | os.PathLike) else neurons
    return PromptRun(t.name, model, part, path, sn, train)


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


def correctness(
    model: PromptModel,
    task: Task,
    perturbation: Perturbation | None = None,
    *,
    batch_size: int = 64,
    precision: str = "auto",
) -> Tensor:
    """``[len(task)]`` bool: whether ``model`` gets each example of ``task`` right (under a perturbation)."""
    out = torch.zeros(len(task), dtype=torch.bool)
    ctx = perturbed(model, perturbation) if perturbation is not None else contextlib.nullcontext()
    with ctx:
        evaluate(model, task, batch_size, precision=precision, correct=out)
    return out


def bits(correct: Tensor) -> str:
    """Per-example correctness as a ``0``/``1`` string (the evaluation order): compact JSON."""
    return (correct.to(torch.uint8).numpy() + ord("0")).tobytes().decode("ascii")


def _rate(correct: Tensor) -> float:
    return int(correct.sum()) / max(1, int(correct.numel()))


def _np(vectors: Sequence[Tensor]) -> np.ndarray:
    return torch.stack(list(vectors)).double().numpy()


def paired_estimates(clean: Tensor, skill: Tensor, rand: Sequence[Tensor], seed: int) -> dict[str, Any]:
    """The paired figures of one sweep point (:class:`SweepPoint` fields): Wilson of the skill
    condition, the random mean (bootstrap over examples and draws), skill - random and unperturbed -
    skill (paired bootstraps), and the per-example strings."""
    sk = skill.double().numpy()
    out: dict[str, Any] = {
        "skill_ci": wilson(int(skill.sum()), int(skill.numel())),
        "skill_drop": paired_difference(clean.double().numpy(), sk, seed=seed),
        "skill_correct": bits(skill),
        "random_ci": None,
        "paired": None,
        "random_correct": [bits(r) for r in rand],
    }
    if rand:
        out["random_ci"] = bootstrap_mean(_np(rand), seed=seed)
        out["paired"] = paired_difference(sk, _np(rand), seed=seed)
    return out


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


def _make(cfg: PerturbConfig, mask: Any, baseline: Any, scale: Tensor | None = None) -> Perturbation:
    return Perturbation(
        cast(Mode, cfg.mode),
        mask,
        sigma=cfg.sigma,
        seed=cfg.seed,
        positions=cast(PositionsChoice, cfg.positions),
        baseline=baseline,
        scale=scale if cfg.scaled else None,
    )


def noise_scale(
    cfg: PerturbConfig,
    model: PromptModel,
    train: Task | None,
    scale: Tensor | None = None,
    say: Callable[[str], None] | None = None,
) -> Tensor | None:
    """The per-neuron unit of the gaussian noise under ``cfg`` (None unless ``cfg.scaled``): ``scale``
    when given, else the std of each neuron on ``train`` (:func:`~skillneurons.perturb.scale.neuron_std`)."""
    if not cfg.scaled:
        return None
    if scale is not None:
        return scale
    if train is None:
        raise ConfigError(
            "sigma_scale='neuron_std' needs each neuron's std on the train split: pass train= (or scale=), "
            "or use sigma_scale='absolute'"
        )
    std = neuron_std(
        model,
        train,
        positions=cfg.positions,
        max_examples=cfg.std_examples or None,
        batch_size=cfg.batch_size,
        precision=cfg.precision,
    )
    if say is not None:
        say(f"perturb: per-neuron std on {train.name} train (median {float(std.median()):.3f})")
    return std


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
    train: Task | None = None,
    scale: Tensor | None = None,
    progress: bool | Callable[[str], None] = False,
    **options: Any,
) -> SweepResult:
    """Accuracy on ``task`` vs the fraction ``rho`` of perturbed skill neurons, with a random control.

    Args:
        model: the prompt model evaluated (its backbone is perturbed).
        task: the evaluation data (the test split of the prompt's run).
        neurons: the task's skill neurons; the perturbed set at ``rho`` is ``neurons.mask(rho, per_layer)``.
        config: the :class:`SweepConfig` (fractions ``rho``, ``draws``, mode, sigma, sigma_scale, seed,
            positions, layers, ...); ``options`` replace its fields by name (``rhos`` for ``rho``).
        baseline: [L, N] means for ``mode="mean"`` (default ``neurons.token_mean``).
        train: the prompt's train split, for the per-neuron std of the scaled gaussian noise.
        scale: [L, N] per-neuron std to use instead of computing it from ``train``.

    Returns:
        A :class:`SweepResult`: settings, ``unperturbed`` accuracy (and its Wilson interval) and one
        :class:`SweepPoint` per ``rho`` with ``neurons_per_layer``, ``skill`` accuracy, ``random``
        (mean, std, ci95, values) and the paired estimates on the same examples (``paired``,
        ``skill_drop``, ``skill_ci``, ``random_ci``, per-example strings).
    """
    cfg = configure(SweepConfig, config, options, _SWEEP_ALIASES)
    bb = model.backbone
    _check_neurons(neurons, bb, task.name)
    say = _progress(progress)
    base = baseline if baseline is not None else (neurons.token_mean if cfg.mode == "mean" else None)
    kw: dict[str, Any] = dict(batch_size=cfg.batch_size, precision=cfg.precision)
    unit = noise_scale(cfg, model, train, scale, say)
    draws = cfg.draws
    clean_c = correctness(model, task, **kw)
    clean = _rate(clean_c)
    say(
        f"perturb: {task.name} unperturbed accuracy {wilson(int(clean_c.sum()), len(task)).format(4, n=True)}"
    )
    orders = random_orders(list(bb.d_ff), draws, cfg.seed)
    points = []
    for rho in cfg.rho:
        mask = _layer_filter(neurons.mask(rho, per_layer=cfg.per_layer), cfg.layers)
        counts = [int(c) for c in mask.sum(1)]
        if sum(counts) == 0:
            skill_c, rand_c = clean_c, [clean_c] * draws
        else:
            skill_c = correctness(model, task, _make(cfg, mask, base, unit), **kw)
            rand_c = [
                correctness(model, task, _make(cfg, mask_from_orders(o, counts), base, unit), **kw)
                for o in orders
            ]
        stats = mean_ci([_rate(r) for r in rand_c])
        point = SweepPoint(
            rho,
            counts,
            sum(counts),
            _rate(skill_c),
            stats,
            **paired_estimates(clean_c, skill_c, rand_c, cfg.seed),
        )
        points.append(point)
        say(f"perturb: rho {rho:.3f} ({sum(counts)} neurons): {_point_text(point)}")
    return SweepResult(
        task=task.name,
        n_eval=len(task),
        model=bb.name,
        **cfg.settings(),
        draws=draws,
        unperturbed=clean,
        points=points,
        unperturbed_ci=wilson(int(clean_c.sum()), len(task)),
        unperturbed_correct=bits(clean_c),
    )


def _point_text(point: SweepPoint) -> str:
    """``skill 0.712 [0.68, 0.74], random 0.760 [...], skill - random -0.048 [...] (p=0.002)``."""
    sk = point.skill_ci.format(4) if point.skill_ci is not None else f"{point.skill:.4f}"
    if point.random_ci is None or point.paired is None:
        return f"skill {sk}, random -"
    return f"skill {sk}, random {point.random_ci.format(4)}, skill - random {point.paired.format(4, p=True)}"


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
    scales: Sequence[Tensor | None] | None = None,
    **options: Any,
) -> CrossResult:
    """Row A, column B: accuracy of B's prompt on B's evaluation data with A's top-``rho`` skill neurons
    perturbed. Also B unperturbed, the drops (absolute and relative to B unperturbed), and a random
    control row (the same number of random neurons per layer, ``draws`` draws, mean). Every cell of
    column B is evaluated on B's same examples, so its intervals are paired (``drop_ci``,
    ``versus_random``: the cell against B's random control). ``options`` replace fields of ``config``
    by name (``control_draws`` is accepted for ``draws``); ``scales`` (one [L, N] per run) replace the
    per-neuron stds that the scaled gaussian noise computes from each run's ``train_task``."""
    cfg = configure(CrossPerturbConfig, config, options, _CROSS_ALIASES)
    neurons = _check_runs(runs)
    if scales is not None and len(scales) != len(runs):
        raise ConfigError(f"{len(scales)} noise scales for {len(runs)} runs: pass one per run (or none)")
    names = [r.name for r in runs]
    say = _progress(progress)
    kw: dict[str, Any] = dict(batch_size=cfg.batch_size, precision=cfg.precision)
    masks = [_layer_filter(n.mask(cfg.rho, per_layer=cfg.per_layer), cfg.layers) for n in neurons]
    units = [
        noise_scale(cfg, r.model, r.train_task, scales[i] if scales else None, say)
        for i, r in enumerate(runs)
    ]
    bases = [n.token_mean if cfg.mode == "mean" else None for n in neurons]
    clean = [correctness(r.model, r.eval_task, **kw) for r in runs]
    say("cross-perturb: unperturbed " + ", ".join(f"{n} {_rate(c):.4f}" for n, c in zip(names, clean)))
    cells: list[list[Tensor]] = []
    for a, src in enumerate(runs):
        row = [
            correctness(dst.model, dst.eval_task, _make(cfg, masks[a], bases[b], units[b]), **kw)
            for b, dst in enumerate(runs)
        ]
        cells.append(row)
        say(
            f"cross-perturb: {src.name}'s neurons -> "
            + ", ".join(f"{n} {_rate(v):.4f}" for n, v in zip(names, row))
        )
    # random control: per evaluated task, the size of that task's own skill set (per layer)
    control: list[list[Tensor]] = []
    for b, dst in enumerate(runs):
        counts = [int(c) for c in masks[b].sum(1)]
        control.append(
            [
                correctness(
                    dst.model,
                    dst.eval_task,
                    _make(cfg, mask_from_orders(o, counts), bases[b], units[b]),
                    **kw,
                )
                for o in random_orders(list(dst.model.backbone.d_ff), cfg.draws, cfg.seed)
            ]
        )
    res = _cross_result(cfg, names, clean, cells, control, masks)
    res.n_eval = [len(r.eval_task) for r in runs]
    return res


def _cross_result(
    cfg: CrossPerturbConfig,
    names: list[str],
    clean_c: list[Tensor],
    cells: list[list[Tensor]],
    control_c: list[list[Tensor]],
    masks: list[Tensor],
) -> CrossResult:
    """The :class:`CrossResult` from the per-example correctness of every condition."""
    n = len(names)
    clean = [_rate(c) for c in clean_c]
    acc = [[_rate(c) for c in row] for row in cells]
    control = [mean_ci([_rate(r) for r in rs]) for rs in control_c]
    drop = [[clean[b] - acc[a][b] for b in range(n)] for a in range(n)]
    rel: list[list[float | None]] = [
        [drop[a][b] / clean[b] if clean[b] > 0 else None for b in range(n)] for a in range(n)
    ]
    seed = cfg.seed
    rand = [_np(rs) if rs else None for rs in control_c]

    def versus(cell: Tensor, b: int) -> Estimate | None:
        r = rand[b]
        return None if r is None else paired_difference(cell.double().numpy(), r, seed=seed)

    return CrossResult(
        tasks=names,
        n_eval=[int(c.numel()) for c in clean_c],
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
            accuracy_ci=[None if r is None else bootstrap_mean(r, seed=seed) for r in rand],
            drop_ci=[
                None if r is None else paired_difference(clean_c[b].double().numpy(), r, seed=seed)
                for b, r in enumerate(rand)
            ],
        ),
        unperturbed_ci=[wilson(int(c.sum()), int(c.numel())) for c in clean_c],
        accuracy_ci=[[wilson(int(c.sum()), int(c.numel())) for c in row] for row in cells],
        drop_ci=[
            [
                paired_difference(clean_c[b].double().numpy(), c.double().numpy(), seed=seed)
                for b, c in enumerate(row)
            ]
            for row in cells
        ],
        versus_random=[[versus(c, b) for b, c in enumerate(row)] for row in cells],
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
    res = perturbation_sweep(
        run.model, run.eval_task, run.neurons, cfg, train=run.train_task, progress=progress
    )
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
