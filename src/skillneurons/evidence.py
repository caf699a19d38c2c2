"""Intervals, paired comparisons and permutation p-values: the statistics that decide a claim.

REFERENCE.md section 10. Every figure the toolkit reports is an :class:`Estimate`: a value with its
95% interval, the number of units it rests on (examples, seeds, pairs) and the method that made the
interval, printed as ``0.680 [0.655, 0.704]``. The functions here take plain sequences or numpy
arrays (no torch), are deterministic given ``seed``, and refuse non-finite input.

- :func:`wilson`: a proportion (an accuracy, k correct of n), Wilson score interval;
  :func:`accuracy_ci` the same from a reported accuracy and its n.
- :func:`bootstrap_mean`: the mean of per-example scores, percentile bootstrap over examples.
- :func:`mean_over_seeds`: the mean of a few runs (prompts trained with different seeds), Student t.
- :func:`paired_difference`: ``mean(a) - mean(b)`` on the SAME examples, ``b`` optionally with k
  draws (random-neuron controls): paired bootstrap over examples and over draws, two-sided p.
- :func:`spearman`: Spearman's rho with a bootstrap interval over the items and a permutation p.
- :func:`permutation_p`, :func:`z_score`: an observed statistic against its permutation null,
  ``p = (1 + #{null >= observed}) / (1 + R)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _sps

from skillneurons.errors import ConfigError

__all__ = [
    "LEVEL",
    "Estimate",
    "accuracy_ci",
    "accuracy_estimate",
    "bootstrap_mean",
    "mean_over_seeds",
    "paired_difference",
    "permutation_p",
    "spearman",
    "wilson",
    "z_score",
]

#: The confidence level of every interval unless a caller asks for another.
LEVEL = 0.95

#: Bootstrap resamples unless a caller asks for another number.
DRAWS = 2000


def _round(x: float | None, digits: int = 6) -> float | None:
    if x is None:
        return None
    return float(f"{x:.{digits}g}")


@dataclass(frozen=True)
class Estimate:
    """A figure with its interval.

    Attributes:
        value: the point estimate.
        lo, hi: the interval's bounds; ``None`` where no interval exists (one seed, n = 0).
        n: the number of units the estimate rests on (examples, seeds, pairs).
        method: how the interval was made (``wilson``, ``bootstrap``, ``t``, ``paired-bootstrap``,
            ``spearman-bootstrap``).
        level: the interval's confidence level.
        p: a p-value where the estimate is a test (paired difference, correlation), else ``None``.
    """

    value: float
    lo: float | None
    hi: float | None
    n: int
    method: str
    level: float = LEVEL
    p: float | None = None

    def __post_init__(self) -> None:
        for name in ("value", "lo", "hi", "p"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ConfigError(f"estimate {name} is {v}: a non-finite figure is not a result")

    def format(self, digits: int = 3, *, n: bool = False, p: bool = False) -> str:
        """``0.680 [0.655, 0.704]`` (``0.680 [n/a]`` without an interval); ``n`` appends ``(n=400)``,
        ``p`` appends ``p=0.003`` when the estimate has a p-value."""
        v = f"{self.value:.{digits}f}"
        out = (
            f"{v} [n/a]"
            if self.lo is None or self.hi is None
            else (f"{v} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]")
        )
        extra = [f"n={self.n}"] if n else []
        if p and self.p is not None:
            extra.append(f"p={self.p:.2g}")
        return f"{out} ({', '.join(extra)})" if extra else out

    def __str__(self) -> str:
        return self.format()

    def excludes(self, x: float) -> bool:
        """True if the interval lies wholly above or wholly below ``x``."""
        return self.lo is not None and self.hi is not None and (self.lo > x or self.hi < x)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": _round(self.value),
            "lo": _round(self.lo),
            "hi": _round(self.hi),
            "n": int(self.n),
            "method": self.method,
            "level": self.level,
        }
        if self.p is not None:
            out["p"] = _round(self.p)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Estimate:
        return cls(
            value=float(data["value"]),
            lo=None if data.get("lo") is None else float(data["lo"]),
            hi=None if data.get("hi") is None else float(data["hi"]),
            n=int(data["n"]),
            method=str(data["method"]),
            level=float(data.get("level", LEVEL)),
            p=None if data.get("p") is None else float(data["p"]),
        )


def _array(values: Sequence[float] | np.ndarray, what: str, ndim: int | tuple[int, ...] = 1) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if a.ndim not in dims:
        raise ConfigError(f"{what} has shape {a.shape}: expected {' or '.join(f'{d}-D' for d in dims)}")
    if a.size and not np.isfinite(a).all():
        raise ConfigError(f"{what} holds non-finite values: refusing to compute an interval from them")
    return a


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ConfigError(f"confidence level {level} is outside (0, 1): use e.g. 0.95")


def wilson(k: int, n: int, level: float = LEVEL) -> Estimate:
    """Wilson score interval of the proportion ``k / n`` (an accuracy: k correct of n examples)."""
    _check_level(level)
    if n < 0 or k < 0 or k > n:
        raise ConfigError(f"wilson interval needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        raise ConfigError("an accuracy on 0 examples has no value: evaluate on at least one example")
    z = float(_sps.norm.ppf(0.5 + level / 2))
    phat = k / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return Estimate(phat, max(0.0, centre - half), min(1.0, centre + half), n, "wilson", level)


def accuracy_ci(accuracy: float, n: int, level: float = LEVEL) -> Estimate:
    """:func:`wilson` of an accuracy reported as a fraction of ``n`` examples (``k = round(acc * n)``;
    an accuracy that is no fraction of n, beyond the rounding of a reported figure, is refused)."""
    if n <= 0:
        raise ConfigError(f"an accuracy on {n} examples has no interval: evaluate on at least one example")
    k = round(float(accuracy) * n)
    if not 0 <= k <= n or abs(k / n - float(accuracy)) > 1e-5:
        raise ConfigError(f"accuracy {accuracy} is not a fraction of {n} examples: pass the evaluated count")
    return wilson(k, n, level)


def accuracy_estimate(accuracy: float | None, n: int | None, level: float = LEVEL) -> Estimate | None:
    """:func:`accuracy_ci`, or None where there is no interval to give: no figure, no examples, or an
    accuracy that is no fraction of n (a run that never evaluated). For readers of reported figures."""
    if accuracy is None or not n:
        return None
    try:
        return accuracy_ci(accuracy, n, level)
    except ConfigError:
        return None


def _percentile(boot: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    return float(lo), float(hi)


def bootstrap_mean(
    values: Sequence[float] | np.ndarray, *, draws: int = DRAWS, seed: int = 0, level: float = LEVEL
) -> Estimate:
    """Mean of per-example scores with a percentile bootstrap interval over the examples.

    ``values`` is ``[n]``, or ``[k, n]`` for k draws of a control on the same n examples (the mean
    over draws and examples; the bootstrap resamples the examples and the draws, as
    :func:`paired_difference` does)."""
    _check_level(level)
    a = _array(values, "values", ndim=(1, 2))
    if a.size == 0:
        raise ConfigError("a mean over 0 values has no value")
    rng = np.random.default_rng(seed)
    if a.ndim == 1:
        idx = rng.integers(0, a.size, size=(draws, a.size))
        lo, hi = _percentile(a[idx].mean(axis=1), level)
        return Estimate(float(a.mean()), lo, hi, int(a.size), "bootstrap", level)
    k, n = a.shape
    boot = np.empty(draws)
    for r in range(draws):
        ex = rng.integers(0, n, size=n)
        dr = rng.integers(0, k, size=k) if k > 1 else np.zeros(1, dtype=np.int64)
        boot[r] = a[np.ix_(dr, ex)].mean()
    lo, hi = _percentile(boot, level)
    return Estimate(float(a.mean()), lo, hi, int(n), "bootstrap", level)


def mean_over_seeds(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> Estimate:
    """Mean of a few runs (e.g. one accuracy per prompt seed) with a Student-t interval.

    With one run there is no interval (``lo = hi = None``): say so rather than invent one.
    """
    _check_level(level)
    a = _array(values, "values")
    if a.size == 0:
        raise ConfigError("a mean over 0 runs has no value")
    m = float(a.mean())
    if a.size == 1:
        return Estimate(m, None, None, 1, "t", level)
    se = float(a.std(ddof=1)) / math.sqrt(a.size)
    half = float(_sps.t.ppf(0.5 + level / 2, a.size - 1)) * se
    return Estimate(m, m - half, m + half, int(a.size), "t", level)


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    draws: int = DRAWS,
    seed: int = 0,
    level: float = LEVEL,
) -> Estimate:
    """``mean(a) - mean(b)`` on the same examples, with a paired bootstrap interval and p-value.

    Args:
        a: ``[n]`` per-example scores of the treatment (e.g. 1/0 correct with skill neurons perturbed).
        b: ``[n]`` per-example scores of the comparison on the SAME examples in the same order, or
            ``[k, n]`` for k control draws (random-neuron perturbations): the control's value on an
            example is then the mean over the draws, and the bootstrap resamples the draws too.

    The bootstrap resamples examples (the same indices for ``a`` and ``b``: that is the pairing) and,
    for ``[k, n]`` controls, the k draws. ``p`` is two-sided, ``2 * min(P*(d <= 0), P*(d >= 0))``
    over the bootstrap distribution of the difference, at least ``1 / draws``.
    """
    _check_level(level)
    x = _array(a, "a")
    y = _array(b, "b", ndim=(1, 2))
    y2 = y[None, :] if y.ndim == 1 else y
    if y2.shape[1] != x.size:
        raise ConfigError(
            f"paired comparison needs the same examples: a has {x.size}, b has {y2.shape[1]}; "
            "evaluate both on the same test split"
        )
    if x.size == 0 or y2.shape[0] == 0:
        raise ConfigError("a paired comparison over 0 examples has no value")
    n, k = x.size, y2.shape[0]
    rng = np.random.default_rng(seed)
    diffs = np.empty(draws)
    for r in range(draws):
        ex = rng.integers(0, n, size=n)
        dr = rng.integers(0, k, size=k) if k > 1 else np.zeros(1, dtype=np.int64)
        diffs[r] = x[ex].mean() - y2[np.ix_(dr, ex)].mean()
    lo, hi = _percentile(diffs, level)
    p = 2 * min(float((diffs <= 0).mean()), float((diffs >= 0).mean()))
    p = min(1.0, max(p, 1.0 / draws))
    return Estimate(float(x.mean() - y2.mean()), lo, hi, int(n), "paired-bootstrap", level, p)


def _rank(a: np.ndarray) -> np.ndarray:
    return np.asarray(_sps.rankdata(a, axis=-1), dtype=np.float64)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    y = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt((x * x).sum(axis=-1) * (y * y).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (x * y).sum(axis=-1) / np.where(den > 0, den, 1.0), np.nan)


def _resampled_ranks(inv: np.ndarray, u: int, counts: np.ndarray) -> np.ndarray:
    """Average ranks of every item within each resample (``counts[r, i]`` copies of item ``i``, whose
    value is the ``inv[i]``-th of ``u`` distinct values), as ``rankdata`` gives them on the resampled
    values: O(n) per resample, ties included."""
    rows = counts.shape[0]
    off = (np.arange(rows)[:, None] * u + inv[None, :]).ravel()
    per = np.bincount(off, weights=counts.ravel(), minlength=rows * u).reshape(rows, u)
    avg = np.cumsum(per, axis=1) - (per - 1) / 2
    return np.asarray(avg[:, inv])


def _resampled_spearman(x: np.ndarray, y: np.ndarray, idx: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Spearman's rho of each resample ``x[idx[r]], y[idx[r]]`` (equal to ranking the resampled
    values), from counts and weighted Pearson sums: no sort per resample."""
    n = x.size
    ux, ix = np.unique(x, return_inverse=True)
    uy, iy = np.unique(y, return_inverse=True)
    out = np.empty(idx.shape[0])
    for start in range(0, idx.shape[0], chunk):
        part = idx[start : start + chunk]
        rows = part.shape[0]
        off = (np.arange(rows)[:, None] * n + part).ravel()
        w = np.bincount(off, minlength=rows * n).reshape(rows, n).astype(np.float64)
        rx, ry = _resampled_ranks(ix, ux.size, w), _resampled_ranks(iy, uy.size, w)
        rx -= (w * rx).sum(1, keepdims=True) / n
        ry -= (w * ry).sum(1, keepdims=True) / n
        wx = w * rx
        den = np.sqrt((wx * rx).sum(1) * (w * ry * ry).sum(1))
        num = (wx * ry).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + rows] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out


def spearman(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    draws: int = DRAWS,
    permutations: int = DRAWS,
    seed: int = 0,
    level: float = LEVEL,
) -> Estimate:
    """Spearman's rho of paired items, bootstrap interval over the items, permutation p (two-sided).

    Resamples in which either side is constant have no correlation and are dropped from the
    interval; ``p = (1 + #{|rho*| >= |rho|}) / (1 + permutations)`` over permutations of ``y``.
    """
    _check_level(level)
    xa, ya = _array(x, "x"), _array(y, "y")
    if xa.size != ya.size:
        raise ConfigError(f"spearman needs paired items: x has {xa.size}, y has {ya.size}")
    if xa.size < 3:
        raise ConfigError(f"spearman over {xa.size} items has no meaning: give at least 3 pairs")
    rho = float(_pearson_rows(_rank(xa), _rank(ya)))
    if not math.isfinite(rho):
        raise ConfigError("spearman is undefined: one side is constant over all items")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, xa.size, size=(draws, xa.size))
    boot = _resampled_spearman(xa, ya, idx)
    boot = boot[np.isfinite(boot)]
    lo, hi = _percentile(boot, level) if boot.size else (None, None)
    rx = _rank(xa)
    perm = np.argsort(rng.random((permutations, ya.size)), axis=1)
    null = _pearson_rows(np.broadcast_to(rx, perm.shape), _rank(ya)[perm])
    p = (1 + int((np.abs(null) >= abs(rho) - 1e-12).sum())) / (1 + permutations)
    return Estimate(rho, lo, hi, int(xa.size), "spearman-bootstrap", level, p)


def permutation_p(observed: float, null: Sequence[float] | np.ndarray) -> float:
    """One-sided permutation p-value ``(1 + #{null >= observed}) / (1 + R)`` (R null draws)."""
    nu = _array(null, "null")
    if nu.size == 0:
        raise ConfigError("a permutation p-value needs at least one null draw")
    return (1 + int((nu >= observed).sum())) / (1 + nu.size)


def z_score(observed: float, null: Sequence[float] | np.ndarray) -> float | None:
    """``(observed - mean(null)) / std(null)``; ``None`` if the null has no spread."""
    nu = _array(null, "null")
    if nu.size < 2:
        return None
    sd = float(nu.std(ddof=1))
    return None if sd == 0 else (observed - float(nu.mean())) / sd
