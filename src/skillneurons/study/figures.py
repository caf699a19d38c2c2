"""The study's figures from its steps' results: every figure with its interval and n. No torch.

Pure functions over the results' JSON (``TuneResult``, ``SweepResult``, ``SimilarityResult``,
``CrossResult``, ``Transferability``), so the runner and its tests share them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from skillneurons.errors import ConfigError
from skillneurons.evidence import Estimate, mean_over_seeds, paired_difference, spearman, wilson
from skillneurons.study.results import GroupComparison, PromptFigures, SweepFigures

__all__ = [
    "RISING",
    "group_comparisons",
    "indicator_spearman",
    "prompt_figures",
    "sweep_figures",
]

#: a dev curve whose best of the last third beats the best before it by more than this is still rising
RISING = 0.01


def prompt_figures(tune: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> PromptFigures:
    """One prompt's test accuracy (Wilson), dev curve and whether it had flattened."""
    n = int(tune["sizes"]["test"])
    acc = float(tune["test_accuracy"])
    curve = [[float(h["step"]), float(h["dev_accuracy"])] for h in history if "dev_accuracy" in h]
    late_gain = None
    if len(curve) >= 3:
        cut = len(curve) - math.ceil(len(curve) / 3)
        late_gain = max(a for _, a in curve[cut:]) - max(a for _, a in curve[:cut])
    return PromptFigures(
        seed=int(tune["seed"]),
        prompt=str(tune.get("prompt")),
        test_accuracy=wilson(round(acc * n), n),
        best_dev_accuracy=float(tune["best_dev_accuracy"]),
        best_step=int(tune["best_step"]),
        steps=int(tune["steps"]),
        train_seconds=float(tune["train_seconds"]),
        dev_curve=curve,
        late_gain=late_gain,
        converged=None if late_gain is None else late_gain <= RISING,
    )


def _seeds(values: Sequence[float]) -> Estimate | None:
    return mean_over_seeds(values) if values else None


def _bits(text: str) -> list[float]:
    return [1.0 if c == "1" else 0.0 for c in text]


def _pooled(sweeps: Sequence[Mapping[str, Any]], i: int) -> tuple[Estimate | None, Estimate | None]:
    """Skill - random accuracy and unperturbed - skill, paired over the test examples (and the random
    draws), each example's correctness averaged over the prompts (seeds), when every sweep records
    its per-example correctness on the same examples (sweep results v2); else ``(None, None)``."""
    points = [s["points"][i] for s in sweeps]
    if not all(p.get("skill_correct") and p.get("random_correct") for p in points):
        return None, None
    if (
        not all(s.get("unperturbed_correct") for s in sweeps)
        or len({len(p["skill_correct"]) for p in points}) != 1
    ):
        return None, None
    k = min(len(p["random_correct"]) for p in points)
    n = len(points[0]["skill_correct"])
    skill = [sum(col) / len(points) for col in zip(*(_bits(p["skill_correct"]) for p in points))]
    clean = [sum(col) / len(sweeps) for col in zip(*(_bits(s["unperturbed_correct"]) for s in sweeps))]
    rand = [
        [sum(col) / len(points) for col in zip(*(_bits(p["random_correct"][d]) for p in points))]
        for d in range(k)
    ]
    if len(clean) != n or any(len(r) != n for r in rand):
        return None, None
    return paired_difference(skill, np.asarray(rand)), paired_difference(clean, skill)


def sweep_figures(mode: str, sweeps: Sequence[Mapping[str, Any]]) -> list[SweepFigures]:
    """Per fraction: skill drop, random drop and their difference, means over the prompts' sweeps,
    and (sweep results v2) the paired comparisons over the test examples, per prompt and pooled."""
    if not sweeps:
        return []
    out = []
    for i, point in enumerate(sweeps[0]["points"]):
        if float(point["rho"]) == 0:
            continue
        skill, rand, diff, paired = [], [], [], []
        for s in sweeps:
            p = s["points"][i]
            clean = float(s["unperturbed"])
            skill.append(clean - float(p["skill"]))
            mean = (p.get("random") or {}).get("mean")
            if mean is not None:
                rand.append(clean - float(mean))
                diff.append(float(mean) - float(p["skill"]))
            if p.get("paired") is not None:
                paired.append(Estimate.from_json(p["paired"]))
        pooled, drop = _pooled(sweeps, i)
        out.append(
            SweepFigures(
                mode=mode,
                rho=float(point["rho"]),
                neurons=int(point["neurons"]),
                skill_drop=mean_over_seeds(skill),
                random_drop=_seeds(rand),
                difference=_seeds(diff),
                paired=paired or None,
                paired_pooled=pooled,
                skill_drop_pooled=drop,
            )
        )
    return out


def group_comparisons(
    names: Sequence[str],
    matrices: Mapping[str, Sequence[Sequence[float | None]]],
    groups: Mapping[str, str],
    ordered: bool = False,
) -> list[GroupComparison]:
    """Each measure (a ``[T, T]`` matrix over ``names``) over pairs of tasks in one group vs pairs
    across groups: unordered pairs ``i < j`` for a symmetric measure, ordered ``i != j`` otherwise."""
    out = []
    for measure, m in matrices.items():
        within: list[tuple[str, float]] = []
        across: list[tuple[str, float]] = []
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if i == j or (not ordered and j < i) or a not in groups or b not in groups:
                    continue
                v = m[i][j]
                if v is None:
                    continue
                (within if groups[a] == groups[b] else across).append((f"{a}x{b}", float(v)))
        w = _seeds([v for _, v in within])
        x = _seeds([v for _, v in across])
        out.append(
            GroupComparison(
                measure=measure,
                within_pairs=[k for k, _ in within],
                within=w,
                across_pairs=[k for k, _ in across],
                across=x,
                difference=w.value - x.value if w is not None and x is not None else None,
            )
        )
    return out


def indicator_spearman(ind: Mapping[str, Any], include_same_task: bool = False) -> dict[str, Estimate | None]:
    """Every indicator's Spearman correlation with the measured relative transfer, over the pairs the
    indicators' own correlation uses (other tasks, learned prompts), with a bootstrap interval over
    the pairs and a permutation p (None where fewer than 3 pairs or a constant side)."""
    pairs = [
        p
        for p in ind.get("pairs") or []
        if (include_same_task or not p.get("same_task")) and p.get("learned", True)
    ]
    out: dict[str, Estimate | None] = {}
    names = [k for k in (pairs[0] if pairs else {}) if k not in _PAIR_KEYS]
    for k in names:
        xy = [(p[k], p["relative"]) for p in pairs if p.get(k) is not None and p.get("relative") is not None]
        try:
            out[k] = spearman([x for x, _ in xy], [y for _, y in xy]) if len(xy) >= 3 else None
        except ConfigError:
            out[k] = None
    return out


_PAIR_KEYS = {"source", "target", "same_task", "same_head", "accuracy", "relative", "learned"}
