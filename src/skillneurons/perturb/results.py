"""Typed results of the perturbation experiments: ``perturb_sweep.json``, ``perturb_cross.json`` and
``similarity.json``. No torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from skillneurons.evidence import Estimate
from skillneurons.neurons.results import LegacyKeys
from skillneurons.results import Result

__all__ = ["CrossResult", "RandomControl", "RandomStats", "SimilarityResult", "SweepPoint", "SweepResult"]

Matrix = list[list[float | None]]


@dataclass
class RandomStats(LegacyKeys):
    """Mean, sample standard deviation and 95% t-interval of the random control's accuracies."""

    mean: float | None
    std: float | None
    ci95: list[float | None]
    n: int
    values: list[float]

    def to_json(self) -> dict[str, object]:
        return {"mean": self.mean, "std": self.std, "ci95": self.ci95, "n": self.n, "values": self.values}


@dataclass
class SweepPoint:
    """One fraction of the sweep: the skill neurons perturbed, and the random control.

    Since v2 (all on the same test examples): ``skill_ci`` (Wilson), ``random_ci`` (the mean over the
    draws, bootstrap over examples and draws), ``paired`` = skill - random accuracy (paired bootstrap
    over examples and draws, with p: negative = skill neurons matter more), ``skill_drop`` =
    unperturbed - skill (paired bootstrap), and the per-example correctness as ``0``/``1`` strings in
    the evaluation order (``skill_correct``, ``random_correct`` one per draw)."""

    rho: float
    neurons_per_layer: list[int]
    neurons: int
    skill: float
    random: RandomStats
    skill_ci: Estimate | None = None
    random_ci: Estimate | None = None
    paired: Estimate | None = None
    skill_drop: Estimate | None = None
    skill_correct: str | None = None
    random_correct: list[str] | None = None


@dataclass
class SweepResult(LegacyKeys, Result):
    """``perturb_sweep.json``: accuracy vs the fraction of perturbed skill neurons, with a random control.
    ``prompt``, ``neurons`` and ``split`` are filled in by :func:`~skillneurons.perturb.run_sweep`."""

    SCHEMA = "skillneurons.perturb_sweep"
    VERSION = 2

    task: str
    n_eval: int
    model: str
    mode: str
    sigma: float | None
    positions: str
    layers: list[int] | None
    per_layer: bool
    seed: int
    draws: int
    unperturbed: float
    points: list[SweepPoint] = field(default_factory=list)
    prompt: str | None = None
    neurons: str | None = None
    split: str | None = None
    sigma_scale: str | None = None
    unperturbed_ci: Estimate | None = None
    unperturbed_correct: str | None = None

    def describe(self) -> str:
        """``zero``, or ``gaussian (sigma 0.5 x neuron std)``: how the neurons were perturbed."""
        if self.mode != "gaussian":
            return self.mode
        unit = " x neuron std" if self.sigma_scale == "neuron_std" else ""
        return f"gaussian (sigma {self.sigma}{unit})"

    def table(self) -> str:
        """The sweep as text: per rho the skill accuracy, the random mean, and the PAIRED difference
        skill - random with its 95% interval and p (intervals where the file has them: v2)."""
        clean = self.unperturbed_ci.format(4, n=True) if self.unperturbed_ci else f"{self.unperturbed:.4f}"
        lines = [
            f"{self.task} ({self.split or 'test'}, n={self.n_eval}), {self.describe()} perturbation, "
            f"unperturbed accuracy {clean}",
            f"   rho  neurons  skill [95% CI]            random (k={self.draws}) [95% CI]   "
            "skill - random, paired [95% CI] (p)",
        ]
        for pt in self.points:
            skill = pt.skill_ci.format(4) if pt.skill_ci else f"{pt.skill:.4f}"
            if pt.random_ci is not None:
                rand = pt.random_ci.format(4)
            else:
                rand = f"{pt.random.mean:.4f}" if pt.random.mean is not None else "-"
            paired = pt.paired.format(4, p=True) if pt.paired is not None else "-"
            lines.append(f"  {pt.rho:.3f} {pt.neurons:8d}  {skill:25s} {rand:25s} {paired}")
        return "\n".join(lines)


@dataclass
class RandomControl:
    """The cross-task matrix's random row: per evaluated task, random neurons of its skill-set size.
    Since v2: ``accuracy_ci`` (bootstrap over examples and draws) and ``drop_ci`` (unperturbed -
    random, paired bootstrap over examples and draws)."""

    draws: int
    accuracy: list[float | None]
    drop: list[float | None]
    ci95: list[list[float | None]]
    accuracy_ci: list[Estimate | None] | None = None
    drop_ci: list[Estimate | None] | None = None


@dataclass
class CrossResult(LegacyKeys, Result):
    """``perturb_cross.json``: row A, column B is B's accuracy with A's skill neurons perturbed.
    ``prompts`` and ``split`` are filled in by :func:`~skillneurons.perturb.run_cross`. Since v2, on
    the same examples of each column: ``accuracy_ci`` (Wilson), ``drop_ci`` (B unperturbed - cell,
    paired bootstrap), ``versus_random`` (cell - B's random control, paired over examples and draws,
    with p; None without draws) and ``unperturbed_ci``."""

    SCHEMA = "skillneurons.perturb_cross"
    VERSION = 2

    tasks: list[str]
    n_eval: list[int]
    rows: str
    columns: str
    rho: float
    mode: str
    sigma: float | None
    positions: str
    layers: list[int] | None
    per_layer: bool
    seed: int
    neurons_per_task: list[int]
    unperturbed: list[float]
    accuracy: list[list[float]]
    drop: list[list[float]]
    relative_drop: Matrix
    random_control: RandomControl
    prompts: list[str] | None = None
    split: str | None = None
    sigma_scale: str | None = None
    unperturbed_ci: list[Estimate] | None = None
    accuracy_ci: list[list[Estimate]] | None = None
    drop_ci: list[list[Estimate]] | None = None
    versus_random: list[list[Estimate | None]] | None = None

    def table(self) -> str:
        """The accuracy drops as text (rows: perturbed neurons of; columns: evaluated task), each cell
        with its paired 95% interval where the file has them (v2), and the random control's row."""
        names = self.tasks
        cells = [
            [
                self.drop_ci[a][b].format(3) if self.drop_ci is not None else f"{self.drop[a][b]:.4f}"
                for b in range(len(names))
            ]
            for a in range(len(names))
        ]
        rc = self.random_control
        rand = [
            (rc.drop_ci[b].format(3) if rc.drop_ci is not None and rc.drop_ci[b] is not None else None)
            or (f"{v:.4f}" if v is not None else "-")
            for b, v in enumerate(rc.drop)
        ]
        rows = [*zip(names, cells, strict=True), (f"random (k={rc.draws})", rand)]
        width = max(len(n) for n, _ in rows) + 2
        col = max([len(c) for _, r in rows for c in r] + [len(n) for n in names]) + 2
        lines = [
            f"accuracy drop ({self.mode}, top {self.rho:.1%} skill neurons) [paired 95% CI]; rows: perturbed "
            "neurons of, columns: evaluated task",
            " " * width + "".join(f"{n:>{col}s}" for n in names),
        ]
        lines += [f"{n:{width}s}" + "".join(f"{c:>{col}s}" for c in r) for n, r in rows]
        return "\n".join(lines)


@dataclass
class SimilarityResult(LegacyKeys, Result):
    """``similarity.json``: task similarity from skill neurons (NaN written as None). ``sources`` (the
    artifact paths) is filled in by :func:`~skillneurons.perturb.run_similarity`."""

    SCHEMA = "skillneurons.similarity"
    VERSION = 2

    tasks: list[str]
    n_layers: int
    d_ff: int
    score: str
    rho: float
    per_layer: bool
    set_size: list[int]
    spearman: Matrix
    spearman_per_layer: list[list[list[float | None]]]
    spearman_layer_mean: Matrix
    jaccard: Matrix
    cosine: Matrix
    intersection: Matrix
    chance_jaccard: Matrix
    sources: list[str | None] | None = None
    spearman_ci: list[list[Estimate | None]] | None = None
