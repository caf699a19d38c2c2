"""Figures of the perturbation and similarity experiments (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skillneurons.perturb.results import SweepResult

__all__ = ["draw_heatmap", "plot_matrix", "plot_sweep"]


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Lay out, write (creating the folder) and close a figure; returns the file's path."""
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    _pyplot().close(fig)
    return out


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_sweep(
    results: Sequence[SweepResult | Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Accuracy vs perturbed fraction: one solid line per sweep (skill neurons, Wilson 95% error bars
    where recorded) and its random control (dashed, mean) with the control's 95% interval as a band
    (over examples and draws where recorded, else the t-interval over the draws). A sweep given as its JSON
    (a mapping) is read as a :class:`SweepResult`."""
    sweeps = [r if isinstance(r, SweepResult) else SweepResult.from_json(r, "sweep") for r in results]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, res in enumerate(sweeps):
        c = colors[i % len(colors)]
        x = [100 * p.rho for p in res.points]
        lab = labels[i] if labels else f"{res.mode}" + (f" (sigma {res.sigma})" if res.sigma else "")
        skill = [p.skill for p in res.points]
        ax.plot(x, skill, "o-", color=c, label=f"skill neurons, {lab}")
        cis = [p.skill_ci for p in res.points]
        bounds = [(e.lo, e.hi) for e in cis if e is not None and e.lo is not None and e.hi is not None]
        if len(bounds) == len(skill):
            err = [
                [max(0.0, s - lo) for s, (lo, _) in zip(skill, bounds)],
                [max(0.0, hi - s) for s, (_, hi) in zip(skill, bounds)],
            ]
            ax.errorbar(x, skill, yerr=err, fmt="none", ecolor=c, elinewidth=1, capsize=3)
        mean = [p.random.mean for p in res.points]
        ax.plot(x, mean, "s--", color=c, alpha=0.8, label=f"random neurons (k={res.draws}), {lab}")
        band = [
            (p.random_ci.lo, p.random_ci.hi) if p.random_ci is not None else tuple(p.random.ci95)
            for p in res.points
        ]
        lo = [b[0] if b[0] is not None else m for b, m in zip(band, mean)]
        hi = [b[1] if b[1] is not None else m for b, m in zip(band, mean)]
        ax.fill_between(x, lo, hi, color=c, alpha=0.18, linewidth=0)
    first = sweeps[0]
    ax.set_xlabel("perturbed neurons per layer (%)" if first.per_layer else "perturbed neurons (%)")
    ax.set_ylabel(f"test accuracy ({first.task}, n={first.n_eval})")
    ax.set_title(title or f"{first.model} on {first.task}: perturbing skill vs random neurons", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def draw_heatmap(ax: Any, m: Any, *, cmap: str, center: float | None, fmt: str, **imshow: Any) -> Any:
    """Draw the float array ``m`` on ``ax`` as a heatmap (symmetric around ``center`` when given) with
    every finite value written in its cell, in white on dark colours; returns the image."""
    import numpy as np

    finite = m[np.isfinite(m)]
    if center is not None and finite.size:
        span = float(np.max(np.abs(finite - center))) or 1.0
        imshow = dict(imshow, vmin=center - span, vmax=center + span)
    im = ax.imshow(m, cmap=cmap, **imshow)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if math.isfinite(m[i, j]):
                r, g, b, _ = im.cmap(im.norm(m[i, j]))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                ax.text(
                    j,
                    i,
                    fmt.format(m[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
    return im


def plot_matrix(
    matrix: Sequence[Sequence[float | None]],
    labels: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    cmap: str = "viridis",
    center: float | None = None,
    fmt: str = "{:.3f}",
    col_labels: Sequence[str] | None = None,
) -> Path:
    """A labelled heatmap with the value written in every cell (None/NaN cells left blank)."""
    plt = _pyplot()
    import numpy as np

    m = np.array([[math.nan if v is None else float(v) for v in row] for row in matrix], dtype=float)
    cols = list(col_labels) if col_labels is not None else list(labels)
    fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 2.4, 0.9 * len(labels) + 1.6), dpi=120)
    im = draw_heatmap(ax, m, cmap=cmap, center=center, fmt=fmt)
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), list(labels))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path)
