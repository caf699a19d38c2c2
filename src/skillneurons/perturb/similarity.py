"""Task similarity from skill neurons (REFERENCE.md section 4).

For every pair of tasks (their :class:`SkillNeurons` found on the same backbone):

* **Spearman** rank correlation of the neuron predictivity vectors, over all L*N neurons and per
  layer (:func:`~skillneurons.neurons.ranking.spearman`); the overall one also with a 95% bootstrap
  interval over the neurons and a permutation p (:func:`skillneurons.evidence.spearman`,
  ``spearman_ci``; neurons are not independent, so the interval is a lower bound on the uncertainty,
  which the spread over prompt seeds measures better). A task's score vector is
  ``SkillNeurons.scores()``: the predictivity, or for a multi-class task the maximum over its binary
  subtasks (a neuron counts as skilled for the task if it predicts any of its subtasks);
* **overlap** of the skill sets ``mask(rho)`` (:func:`~skillneurons.neurons.ranking.overlap`): Jaccard,
  cosine ``|A n B| / sqrt(|A||B|)`` and the intersection size, next to the Jaccard expected for two
  random sets of the same per-layer sizes (chance level).

The cross-task perturbation matrix is in :mod:`skillneurons.perturb.experiments`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skillneurons.errors import ConfigError
from skillneurons.evidence import Estimate
from skillneurons.evidence import spearman as spearman_ci
from skillneurons.neurons.find import SkillNeurons
from skillneurons.neurons.ranking import overlap, spearman
from skillneurons.options import configure
from skillneurons.perturb.config import SimilarityConfig
from skillneurons.perturb.plots import _pyplot, plot_matrix
from skillneurons.perturb.results import SimilarityResult

__all__ = ["chance_jaccard", "run_similarity", "task_similarity"]


def chance_jaccard(sizes_a: Sequence[int], sizes_b: Sequence[int], widths: Sequence[int]) -> float:
    """Expected Jaccard of two independent uniformly random sets with these per-layer sizes
    (ratio of expectations: E|A n B| / (|A| + |B| - E|A n B|), E|A n B| = sum_l a_l b_l / N_l)."""
    inter = sum(a * b / n for a, b, n in zip(sizes_a, sizes_b, widths, strict=True) if n)
    union = sum(sizes_a) + sum(sizes_b) - inter
    return inter / union if union > 0 else float("nan")


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _none_if_nan(x: float) -> float | None:
    return None if x != x else float(x)


def task_similarity(
    neurons: Mapping[str, SkillNeurons], config: SimilarityConfig | None = None, **options: Any
) -> SimilarityResult:
    """Similarity matrices between tasks (rows and columns in ``neurons``' order).

    The overall correlation also counts differences BETWEEN layers (two tasks whose skill neurons
    both sit in the upper layers correlate even if they share no neuron); ``spearman_layer_mean``,
    the mean of the per-layer correlations, compares neurons within a layer only.

    ``config`` (:class:`SimilarityConfig`: ``rho``, ``per_layer``) or its fields by name in ``options``.
    Returns a :class:`SimilarityResult` with ``tasks``, ``spearman`` [T, T], ``spearman_per_layer`` [T, T, L],
    ``spearman_layer_mean`` [T, T],
    ``jaccard``, ``cosine``, ``intersection`` [T, T] of the top-``rho`` skill sets, ``set_size`` [T] and
    ``chance_jaccard`` [T, T]. NaN (a constant score vector) is written as None.
    """
    cfg = configure(SimilarityConfig, config, options)
    rho, per_layer = cfg.rho, cfg.per_layer
    names = list(neurons)
    if len(names) < 1:
        raise ConfigError("no skill neurons given: pass the skill_neurons artifacts of at least one task")
    shapes = {tuple(n.token_mean.shape) for n in neurons.values()}
    if len(shapes) != 1:
        raise ConfigError(
            f"skill neurons of shapes {sorted(shapes)} cannot be compared: pass skill neurons found on one "
            "model"
        )
    scores = {k: v.scores() for k, v in neurons.items()}
    masks = {k: v.mask(rho, per_layer=per_layer) for k, v in neurons.items()}
    L, N = next(iter(shapes))
    T = len(names)
    sp: list[list[float | None]] = [[None] * T for _ in range(T)]
    sp_layer: list[list[list[float | None]]] = [[[] for _ in range(T)] for _ in range(T)]
    jac: list[list[float | None]] = [[None] * T for _ in range(T)]
    cos: list[list[float | None]] = [[None] * T for _ in range(T)]
    inter: list[list[float | None]] = [[None] * T for _ in range(T)]
    chance: list[list[float | None]] = [[None] * T for _ in range(T)]
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if j < i:
                sp[i][j], sp_layer[i][j] = sp[j][i], sp_layer[j][i]
                jac[i][j], cos[i][j], inter[i][j], chance[i][j] = (
                    jac[j][i],
                    cos[j][i],
                    inter[j][i],
                    chance[j][i],
                )
                continue
            sp[i][j] = _none_if_nan(float(spearman(scores[a], scores[b])))
            per = spearman(scores[a], scores[b], per_layer=True)
            assert isinstance(per, torch.Tensor)
            sp_layer[i][j] = [_none_if_nan(float(x)) for x in per]
            o = overlap(masks[a], masks[b])
            jac[i][j], cos[i][j], inter[i][j] = (
                _none_if_nan(o.jaccard),
                _none_if_nan(o.cosine),
                o.intersection,
            )
            chance[i][j] = _none_if_nan(
                chance_jaccard(masks[a].sum(1).tolist(), masks[b].sum(1).tolist(), [N] * L)
            )
    boot = _spearman_intervals(names, scores, cfg.draws, cfg.seed)
    return SimilarityResult(
        tasks=names,
        n_layers=L,
        d_ff=N,
        score="predictivity (max over binary subtasks for multi-class tasks)",
        rho=rho,
        per_layer=per_layer,
        set_size=[int(masks[k].sum()) for k in names],
        spearman=sp,
        spearman_per_layer=sp_layer,
        spearman_layer_mean=[[_mean([v for v in cell if v is not None]) for cell in row] for row in sp_layer],
        jaccard=jac,
        cosine=cos,
        intersection=inter,
        chance_jaccard=chance,
        spearman_ci=boot,
    )


def _spearman_intervals(
    names: Sequence[str], scores: Mapping[str, torch.Tensor], draws: int, seed: int
) -> list[list[Estimate | None]] | None:
    """``[T, T]`` :func:`skillneurons.evidence.spearman` of each pair of score vectors (None on the
    diagonal and where a vector is constant); None when ``draws`` is 0."""
    if draws == 0:
        return None
    T = len(names)
    out: list[list[Estimate | None]] = [[None] * T for _ in range(T)]
    flat = {k: v.reshape(-1).double().numpy() for k, v in scores.items()}
    for i in range(T):
        for j in range(i + 1, T):
            try:
                e = spearman_ci(flat[names[i]], flat[names[j]], draws=draws, permutations=draws, seed=seed)
            except ConfigError:  # a constant score vector: no correlation
                e = None
            out[i][j] = out[j][i] = e
    return out


def run_similarity(
    neurons: Sequence[str | os.PathLike[str] | SkillNeurons],
    out_dir: str | os.PathLike[str] | None,
    config: SimilarityConfig | None = None,
    **options: Any,
) -> SimilarityResult:
    """:func:`task_similarity` from ``skill_neurons`` artifacts; writes ``NAME.json`` and the heatmaps
    ``NAME_spearman.png``, ``NAME_spearman_within.png``, ``NAME_spearman_layers.png`` and
    ``NAME_jaccard.png`` to ``out_dir`` (``config.name``, ``config.plot``).
    Names default to the task recorded in each artifact."""
    cfg = configure(SimilarityConfig, config, options)
    loaded = [n if isinstance(n, SkillNeurons) else SkillNeurons.load(n) for n in neurons]
    if cfg.names is not None:
        names = list(cfg.names)
    else:
        names = [str(n.meta.get("task", f"task{i}")) for i, n in enumerate(loaded)]
    if len(names) != len(loaded):
        raise ConfigError(
            f"{len(names)} names for {len(loaded)} skill-neuron artifacts: give one name per artifact"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"task names {list(names)} repeat: pass --names to tell the artifacts apart")
    res = task_similarity(dict(zip(names, loaded)), cfg)
    res.sources = [str(n) if not isinstance(n, SkillNeurons) else None for n in neurons]
    if out_dir is not None:
        out = Path(out_dir)
        res.save(out / f"{cfg.name}.json")
        if cfg.plot:
            plot_similarity(res, out, cfg.name)
    return res


def plot_similarity(
    res: SimilarityResult, out_dir: str | os.PathLike[str], name: str = "similarity"
) -> list[Path]:
    """The heatmaps of :func:`run_similarity`."""
    out = Path(out_dir)
    tasks = res.tasks
    paths = [
        plot_matrix(
            res.spearman,
            tasks,
            out / f"{name}_spearman.png",
            cmap="RdBu_r",
            center=0.0,
            title="Spearman correlation of neuron predictivity (all layers)",
        ),
        plot_matrix(
            res.spearman_layer_mean,
            tasks,
            out / f"{name}_spearman_within.png",
            cmap="RdBu_r",
            center=0.0,
            title="Spearman correlation within layers (mean over layers)",
        ),
        plot_matrix(
            res.jaccard,
            tasks,
            out / f"{name}_jaccard.png",
            cmap="Blues",
            title=f"Jaccard overlap of the top {res.rho:.0%} skill neurons "
            f"(chance ~{_mean_off_diag(res.chance_jaccard):.3f})",
        ),
    ]
    plt = _pyplot()
    L = int(res.n_layers)
    cols = min(L, 4)
    rows = (L + cols - 1) // cols
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(2.9 * cols + 1, 2.9 * rows + 0.6),
        dpi=120,
        squeeze=False,
        constrained_layout=True,
    )
    per = np.array(
        [[[np.nan if v is None else v for v in cell] for cell in row] for row in res.spearman_per_layer],
        dtype=float,
    )
    for i in range(per.shape[0]):  # the diagonal (1 by definition) would flatten the colour scale
        per[i, i, :] = np.nan
    finite = per[np.isfinite(per)]
    span = float(np.max(np.abs(finite))) if finite.size else 1.0
    im = None
    for layer in range(rows * cols):
        ax = axes[layer // cols][layer % cols]
        if layer >= L:
            ax.axis("off")
            continue
        im = ax.imshow(per[:, :, layer], cmap="RdBu_r", vmin=-span, vmax=span)
        for i in range(per.shape[0]):
            for j in range(per.shape[1]):
                if np.isfinite(per[i, j, layer]):
                    ax.text(j, i, f"{per[i, j, layer]:.2f}", ha="center", va="center", fontsize=5)
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_xticks(range(len(tasks)), tasks, rotation=60, ha="right", fontsize=6)
        ax.set_yticks(range(len(tasks)), tasks, fontsize=6)
    fig.suptitle("Spearman correlation of neuron predictivity, per layer (diagonal omitted)", fontsize=10)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, pad=0.02)
    p = out / f"{name}_spearman_layers.png"
    fig.savefig(p)
    plt.close(fig)
    return [*paths, p]


def _mean_off_diag(m: Sequence[Sequence[float | None]]) -> float:
    vals = [v for i, row in enumerate(m) for j, v in enumerate(row) if i != j and v is not None]
    return sum(vals) / len(vals) if vals else float("nan")
