"""The report's figures: matplotlib's object API on the Agg canvas (no pyplot, no global backend
switch, no display), each returned as an inline ``data:image/png;base64`` URI."""

from __future__ import annotations

import base64
import io
import math
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from skillneurons.perturb.plots import draw_heatmap
from skillneurons.report.views import (
    DynsanCostView,
    HistoryPoint,
    PerturbSweepView,
    PruneEntry,
    ReadPoint,
    as_number,
)

__all__ = [
    "Curve",
    "dynsan_cost",
    "layer_distribution",
    "matrix",
    "perturb_sweep",
    "position_layer",
    "predictivity_map",
    "prune_bench",
    "reading_curves",
    "training_curves",
]

WIDTH = 10.5  # inches: about the page's content width at the PNG resolution below
DPI = 110
COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"]
_RC: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
}


@contextmanager
def _figure(width: float, height: float, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with rc_context(_RC):  # type: ignore[arg-type]
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(**subplots) if subplots else fig.subplots()
        yield fig, axes


def _uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _grid(ax: Any) -> None:
    ax.grid(alpha=0.25, linewidth=0.6)
    ax.set_axisbelow(True)


# ----------------------------------------------------------------------------------------------------
# prompt tuning


@dataclass
class Curve:
    """One tuning run's history: its legend ``label``, evaluations, and the step kept as the prompt."""

    label: str
    history: list[HistoryPoint]
    best_step: Any = None


def training_curves(runs: Sequence[Curve]) -> str:
    """Dev accuracy and train loss vs step, one colour per run."""
    with _figure(WIDTH, 3.3, ncols=2) as (fig, (acc, loss)):
        for i, r in enumerate(runs):
            c = COLORS[i % len(COLORS)]
            steps = [x.step for x in r.history]
            da = [x.dev_accuracy for x in r.history]
            if any(v is not None for v in da):
                acc.plot(steps, _gaps(da), "o-", color=c, ms=3, lw=1.4, label=r.label)
            best = r.best_step
            if best is not None and best in steps and da[steps.index(best)] is not None:
                acc.plot([best], [da[steps.index(best)]], "*", color=c, ms=11, mec="white", mew=0.8)
            tl = [x.train_loss for x in r.history]
            if any(v is not None for v in tl):
                loss.plot(steps, _gaps(tl), "-", color=c, lw=1.4, label=f"{r.label} train")
            dl = [x.dev_loss for x in r.history]
            if any(v is not None for v in dl):
                loss.plot(steps, _gaps(dl), "--", color=c, lw=1.0, alpha=0.7, label=f"{r.label} dev")
        acc.set(xlabel="step", ylabel="dev accuracy", title="Dev accuracy (★ best checkpoint)")
        loss.set(xlabel="step", ylabel="loss", title="Loss (solid: train, dashed: dev)")
        for ax in (acc, loss):
            _grid(ax)
        acc.legend(loc="lower right")
        return _uri(fig)


def _gaps(values: Sequence[Any]) -> list[Any]:
    """None as NaN (a gap in the line)."""
    return [math.nan if v is None else v for v in values]


# ----------------------------------------------------------------------------------------------------
# skill neurons


def layer_distribution(counts: Mapping[float, Sequence[int]], scores: np.ndarray) -> str:
    """Left: skill neurons per layer for several global fractions rho; right: per-layer quantiles of
    the predictivity of all neurons of the layer. ``scores``: [L, N]."""
    L = scores.shape[0]
    with _figure(WIDTH, 3.2, ncols=2) as (fig, (bars, qs)):
        x = np.arange(L)
        w = 0.8 / max(len(counts), 1)
        for j, (rho, cnt) in enumerate(counts.items()):
            bars.bar(
                x + (j - (len(counts) - 1) / 2) * w,
                cnt,
                width=w,
                color=COLORS[j % len(COLORS)],
                label=f"top {rho:.0%}",
            )
        bars.set(
            xticks=x,
            xlabel="layer",
            ylabel="skill neurons in the layer",
            title="Where the top neurons are (global top fraction of all neurons)",
        )
        bars.legend()
        _grid(bars)
        for q, style, lab in (
            (100, "o-", "max"),
            (99, "s-", "99th percentile"),
            (90, "^-", "90th percentile"),
            (50, "v--", "median"),
        ):
            qs.plot(x, np.percentile(scores, q, axis=1), style, ms=4, lw=1.3, label=lab)
        qs.set(xticks=x, xlabel="layer", ylabel="predictivity", title="Predictivity of the layer's neurons")
        qs.legend(ncols=2)
        _grid(qs)
        return _uri(fig)


def _pool_max(row: np.ndarray, bins: int) -> np.ndarray:
    n = row.shape[-1]
    if n <= bins:
        return row
    width = math.ceil(n / bins)
    pad = width * math.ceil(n / width) - n
    padded = np.concatenate([row, np.full((*row.shape[:-1], pad), -np.inf)], -1) if pad else row
    return padded.reshape(*row.shape[:-1], -1, width).max(-1)


def predictivity_map(scores: np.ndarray, marks: Sequence[tuple[int, int]] = ()) -> str:
    """Layer x neuron map of predictivity [L, N]: in neuron order (max over blocks of neighbouring
    neurons when N is wide; ``marks`` circled) and with each layer sorted (the layer's profile)."""
    L, N = scores.shape
    bins = 768
    pooled = _pool_max(scores, bins)
    width = math.ceil(N / pooled.shape[1])
    vmin = 0.5
    vmax = max(float(scores.max()), vmin + 1e-3)
    h = 0.9 + 0.28 * L
    with _figure(WIDTH, 2 * h + 0.2, nrows=2) as (fig, (raw, srt)):
        kw = dict(aspect="auto", interpolation="nearest", cmap="magma", vmin=vmin, vmax=vmax, origin="lower")
        im = raw.imshow(pooled, extent=(0, N, -0.5, L - 0.5), **kw)
        if marks:
            from matplotlib import patheffects

            raw.scatter(
                [i + 0.5 for _, i in marks],
                [layer for layer, _ in marks],
                s=60,
                facecolors="none",
                edgecolors="white",
                linewidths=1.4,
                path_effects=[patheffects.withStroke(linewidth=3.2, foreground="black")],
            )
        block = f" (max over blocks of {width} neurons)" if width > 1 else ""
        raw.set(
            ylabel="layer",
            xlabel="neuron index",
            yticks=range(L),
            title=f"Predictivity of every neuron{block}",
        )
        srt.imshow(-np.sort(-scores, axis=1), extent=(0, N, -0.5, L - 0.5), **kw)
        srt.set(
            ylabel="layer",
            xlabel="neuron rank within the layer",
            yticks=range(L),
            title="Each layer sorted by predictivity",
        )
        if N >= 64:
            srt.set_xscale("symlog", linthresh=10)
            srt.set_xlim(0, N)
        fig.colorbar(im, ax=[raw, srt], label="predictivity", shrink=0.9, pad=0.01)
        return _uri(fig)


def position_layer(
    top_mean: np.ndarray | None, best_counts: np.ndarray, names: Sequence[str], k_label: str
) -> str:
    """Prompt position x layer: mean predictivity of the layer's top neurons at each position
    (``top_mean`` [L, T], None without per-position scores) and where the top skill neurons are
    most predictive (``best_counts`` [L, T])."""
    L, T = best_counts.shape
    panels = 2 if top_mean is not None else 1
    h = 0.9 + 0.3 * L
    step = max(1, math.ceil(T / 40))
    with _figure(WIDTH, panels * h + 0.3, nrows=panels, squeeze=False) as (fig, axes):
        axs = list(axes[:, 0])
        kw = dict(aspect="auto", interpolation="nearest", origin="lower")
        if top_mean is not None:
            ax = axs.pop(0)
            im = ax.imshow(top_mean, cmap="viridis", **kw)
            ax.set(
                title=f"Mean predictivity of the {k_label} most predictive neurons of the layer "
                "at each position",
                ylabel="layer",
            )
            fig.colorbar(im, ax=ax, pad=0.01, label="predictivity")
            _ticks(ax, names, step, L)
        ax = axs.pop(0)
        im = ax.imshow(best_counts, cmap="Blues", **kw)
        ax.set(title="Best position of the top skill neurons (count per layer and position)", ylabel="layer")
        fig.colorbar(im, ax=ax, pad=0.01, label="neurons")
        _ticks(ax, names, step, L)
        ax.set_xlabel("prompt position")
        return _uri(fig)


def _ticks(ax: Any, names: Sequence[str], step: int, L: int) -> None:
    ax.set_xticks(
        range(0, len(names), step),
        [names[i] for i in range(0, len(names), step)],
        rotation=90 if step > 1 or len(names) > 24 else 0,
    )
    ax.set_yticks(range(L))


# ----------------------------------------------------------------------------------------------------
# other experiments


_num = as_number


def perturb_sweep(res: PerturbSweepView) -> str:
    """Accuracy vs perturbed fraction: skill neurons (solid, with their Wilson 95% intervals as error
    bars where the file has them) and the random control's mean (dashed) with its 95% interval as a
    band (over examples and draws where recorded, else over the draws)."""
    pts = res.sorted_points()
    x = [100 * _num(p.rho) for p in pts]
    with _figure(6.4, 3.6) as (fig, ax):
        skill = [_num(p.skill) for p in pts]
        ax.plot(x, skill, "o-", color=COLORS[1], lw=1.8, label="skill neurons")
        if all(p.skill_ci is not None and p.skill_ci.lo is not None for p in pts):
            err = [
                [max(0.0, s - _num(p.skill_ci.lo)) for s, p in zip(skill, pts) if p.skill_ci],
                [max(0.0, _num(p.skill_ci.hi) - s) for s, p in zip(skill, pts) if p.skill_ci],
            ]
            ax.errorbar(x, skill, yerr=err, fmt="none", ecolor=COLORS[1], elinewidth=1, capsize=3)
        mean = [_num(p.random.mean) for p in pts]
        if any(not math.isnan(m) for m in mean):
            ci = [(p.random_ci.lo, p.random_ci.hi) if p.random_ci else p.random.ci95 for p in pts]
            lo = [_num(c[0]) if c[0] is not None else m for c, m in zip(ci, mean)]
            hi = [_num(c[1]) if c[1] is not None else m for c, m in zip(ci, mean)]
            draws = res.draws
            ax.fill_between(x, lo, hi, color=COLORS[0], alpha=0.18, lw=0, label="random: 95% interval")
            ax.plot(
                x,
                mean,
                "s--",
                color=COLORS[0],
                lw=1.4,
                ms=4,
                label=f"random neurons (mean of {draws} draws)" if draws else "random neurons",
            )
        if isinstance(res.unperturbed, (int, float)):
            ax.axhline(res.unperturbed, color="#6b7280", lw=0.8, ls=":", label="unperturbed")
        per_layer = "perturbed neurons per layer (%)" if res.per_layer else "perturbed neurons (%)"
        ax.set(xlabel=per_layer, ylabel="accuracy")
        _grid(ax)
        ax.legend(loc="lower left")
        return _uri(fig)


def matrix(
    m: Sequence[Sequence[Any]],
    rows: Sequence[str],
    cols: Sequence[str],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    cmap: str = "viridis",
    center: float | None = None,
    fmt: str = "{:.2f}",
) -> str:
    """A labelled heatmap with every value written in its cell (None left blank)."""
    a = np.array([[_num(v) for v in row] for row in m], dtype=float)
    R, C = a.shape
    longest = max((len(str(x)) for x in [*rows, *cols]), default=1)
    w = min(WIDTH, max(5.0, 2.4 + 0.8 * C + 0.055 * longest))
    tilt = C > 3 or max((len(str(x)) for x in cols), default=1) > 8
    with _figure(w, 1.4 + 0.45 * R + (0.05 * longest if tilt else 0)) as (fig, ax):
        im = draw_heatmap(ax, a, cmap=cmap, center=center, fmt=fmt, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(C), list(cols), rotation=30 if tilt else 0, ha="right" if tilt else "center")
        ax.set_yticks(range(R), list(rows))
        ax.set(title=textwrap.fill(title, 60), xlabel=xlabel, ylabel=ylabel)
        ax.spines[:].set_visible(False)
        fig.colorbar(im, ax=ax, pad=0.02, shrink=0.9)
        return _uri(fig)


def _pct_ticks(ax: Any, x: Sequence[float]) -> None:
    ticks = sorted({v for v in x if v > 0})
    ax.set_xticks(ticks, [f"{v:g}%" for v in ticks])
    ax.minorticks_off()


def prune_bench(entry: PruneEntry) -> str:
    """Pruning: speedup (median, quartiles) and accuracy vs kept fraction."""
    rows = entry.timed_rows()
    x = [100 * r.rho for r in rows]
    with _figure(WIDTH, 3.2, ncols=2) as (fig, (spd, acc)):
        med = [_num(r.speedup_median) for r in rows]
        q1 = [_num(r.speedup_q1) for r in rows]
        q3 = [_num(r.speedup_q3) for r in rows]
        err = np.array([[max(m - a, 0) for m, a in zip(med, q1)], [max(b - m, 0) for m, b in zip(med, q3)]])
        spd.errorbar(x, med, yerr=np.nan_to_num(err), fmt="o-", color=COLORS[0], capsize=3, lw=1.5)
        spd.axhline(1.0, color="#6b7280", lw=0.8, ls=":")
        spd.set(
            xscale="log",
            xlabel="kept neurons per pruned layer (%)",
            ylabel="speedup (x)",
            title="Inference speedup (median, quartiles)",
        )
        _pct_ticks(spd, x)
        _grid(spd)
        plotted = False
        for attr, style, lab, c in (
            ("accuracy", "o-", "skill neurons kept", COLORS[1]),
            ("accuracy_random_neurons", "s--", "random neurons kept", COLORS[0]),
            ("accuracy_retuned", "^-", "skill neurons, prompt re-tuned", COLORS[2]),
        ):
            ys = [_num(getattr(r, attr)) for r in rows]
            if any(not math.isnan(y) for y in ys):
                acc.plot(x, ys, style, color=c, lw=1.5, ms=4, label=lab)
                plotted = True
        if plotted:
            acc.set(
                xscale="log",
                xlabel="kept neurons per pruned layer (%)",
                ylabel="accuracy",
                title="Accuracy after pruning",
            )
            _pct_ticks(acc, x)
            acc.legend()
            _grid(acc)
        else:
            acc.axis("off")
            acc.text(0.5, 0.5, "speed only: no accuracy measured", ha="center", va="center", color="#6b7280")
        return _uri(fig)


# ----------------------------------------------------------------------------------------------------
# reading (DynSAN)


def _null_locator() -> Any:
    from matplotlib.ticker import NullLocator

    return NullLocator()


def reading_curves(history: Sequence[ReadPoint], best_step: Any = None) -> str:
    """A reader's training: dev EM and F1 vs step (the kept step starred), and the losses."""
    steps = [x.step for x in history]
    with _figure(WIDTH, 3.3, ncols=2) as (fig, (score, loss)):
        for attr, style, lab, c in (
            ("dev_em", "o-", "dev EM", COLORS[0]),
            ("dev_f1", "s--", "dev F1", COLORS[2]),
        ):
            ys = [_num(getattr(x, attr)) for x in history]
            if any(not math.isnan(y) for y in ys):
                score.plot(steps, ys, style, color=c, ms=3, lw=1.4, label=lab)
        if best_step in steps:
            em = _num(history[steps.index(best_step)].dev_em)
            score.plot([best_step], [em], "*", color=COLORS[0], ms=11, mec="white", mew=0.8)
        for attr, style, lab in (("train_loss", "-", "train"), ("dev_loss", "--", "dev")):
            ys = [_num(getattr(x, attr)) for x in history]
            if any(not math.isnan(y) for y in ys):
                loss.plot(steps, ys, style, color=COLORS[1], lw=1.4, label=lab)
        score.set(xlabel="step", ylabel="dev score", title="Dev EM and F1 (EMA weights; ★ the kept reader)")
        loss.set(xlabel="step", ylabel="loss", title="Loss (solid: train, dashed: dev)")
        for ax in (score, loss):
            _grid(ax)
            ax.legend()
        return _uri(fig)


def dynsan_cost(view: DynsanCostView, level: str) -> str:
    """Cost vs total length L (log-log), one line per variant: seconds per training step (the
    break-even length of each DynSA variant marked), counted FLOPs per step (the analytic reference
    forward FLOPs dotted where recorded), and the bytes saved for backward (peak CUDA bytes dashed
    where recorded)."""
    series = view.series(level)
    with _figure(WIDTH, 3.4, ncols=3) as (fig, (secs, flops, mem)):
        for i, (variant, rows) in enumerate(series.items()):
            c = COLORS[i % len(COLORS)]
            x = [r.L for r in rows]
            secs.plot(x, [_num(r.seconds_step) for r in rows], "o-", color=c, ms=3, lw=1.4, label=variant)
            flops.plot(
                x, [_num(r.counted_flops_step) for r in rows], "o-", color=c, ms=3, lw=1.4, label=variant
            )
            ref = [_num(r.analytic_reference_flops) for r in rows]
            if any(not math.isnan(v) for v in ref):
                flops.plot(x, ref, ":", color=c, lw=1.0, label=f"{variant}, reference (fwd)")
            mem.plot(
                x, [_num(r.saved_bytes) / 2**20 for r in rows], "o-", color=c, ms=3, lw=1.4, label=variant
            )
            peak = [_num(r.peak_bytes) / 2**20 for r in rows]
            if any(not math.isnan(v) for v in peak):
                mem.plot(x, peak, "--", color=c, lw=1.0, label=f"{variant}, peak")
            even = view.break_even.get((level, rows[0].K)) if rows[0].K is not None else None
            if even is not None:
                secs.axvline(even, color=c, lw=0.9, ls=":")
                secs.annotate(
                    f"L={even:.0f}",
                    (even, 0.03 + 0.08 * i),
                    xycoords=("data", "axes fraction"),
                    color=c,
                    fontsize=7,
                    ha="left",
                    va="bottom",
                    xytext=(2, 0),
                    textcoords="offset points",
                )
        secs.set(title="Seconds per training step (dotted: break-even L)", ylabel="s / step")
        flops.set(title="FLOPs per training step (counted)", ylabel="FLOPs")
        mem.set(title="Memory: bytes saved for backward", ylabel="MiB")
        lengths = sorted({r.L for rows in series.values() for r in rows})
        for ax in (secs, flops, mem):
            ax.set(xscale="log", yscale="log", xlabel="total length L (tokens)")
            ax.set_xticks(lengths, [f"{v:g}" for v in lengths])
            ax.xaxis.set_minor_locator(_null_locator())
            _grid(ax)
        secs.legend(loc="upper left", fontsize=7)
        flops.legend(loc="upper left", fontsize=6)
        return _uri(fig)
