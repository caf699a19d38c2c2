"""The result of ``skillneurons find``: ``summary.json`` as a typed :class:`FindSummary`. No torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from skillneurons.evidence import Estimate
from skillneurons.results import Result

__all__ = [
    "CHANCE_MARGIN",
    "MIN_RANKING_EXAMPLES",
    "ControlScore",
    "FindSummary",
    "LayerDistribution",
    "LegacyKeys",
    "NullFigures",
    "PromptInfo",
    "SeedStability",
    "SetEvidence",
    "StatFigures",
    "SubtaskFigures",
    "TopNeuron",
    "drop_none",
]


def drop_none(obj: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``obj`` without the ``keys`` whose value is None (optional parts a result did not compute)."""
    return {k: v for k, v in obj.items() if not (k in keys and v is None)}


class LegacyKeys:
    """Deprecated dict-style reads (``result["points"]``) of a result that used to be a dict: the value
    of :meth:`to_json` under that key. New code reads the attributes."""

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]  # type: ignore[attr-defined]

    def __contains__(self, key: object) -> bool:
        return key in self.to_json()  # type: ignore[attr-defined]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_json().get(key, default)  # type: ignore[attr-defined]


#: fewer dev examples than this are too few to rank neurons on (the top of L x T x N noisy scores)
MIN_RANKING_EXAMPLES = 200
#: a prompt whose balanced dev accuracy is within this of chance (1 / classes) is "at chance"
CHANCE_MARGIN = 0.05
#: a figure whose permutation p-value is at least this is "not above the null"
NULL_ALPHA = 0.05


@dataclass
class NullFigures:
    """A statistic under R label permutations of the ranking split: the null's mean and standard
    deviation, and the observed figure's one-sided permutation p-value and z-score against it."""

    permutations: int
    mean: float
    std: float
    p: float
    z: float | None = None

    def format(self) -> str:
        z = f" z={self.z:.1f}" if self.z is not None else ""
        return f"null {self.mean:.3f} ± {self.std:.3f} (R={self.permutations}) p={self.p:.4f}{z}"


@dataclass
class StatFigures:
    """One statistic (the top-1 predictivity, or the mean over the top ``rho``) of a set of prompts.

    ``heldout``: selected on the other folds and measured on each fold in the direction selected,
    with a Wilson 95% interval ``[lo, hi]`` over the ``n`` ranking examples (exact in kind for a
    binary top-1 figure, k correct of n; for a mean over neurons, a balanced accuracy or a mean over
    prompts an approximation: those average several 0/1 scores per example);
    ``in_sample``: selected and measured on the same examples; ``null`` / ``in_sample_null``: each
    compared with the same statistic under the permutations (None when not computed)."""

    heldout: float
    lo: float
    hi: float
    n: int
    in_sample: float
    null: NullFigures | None = None
    in_sample_null: NullFigures | None = None

    def interval(self) -> str:
        """``0.703 [0.680, 0.730]``."""
        return f"{self.heldout:.3f} [{self.lo:.3f}, {self.hi:.3f}]"

    def decisive_null(self) -> tuple[str, NullFigures] | None:
        """The null the figure is judged by: the held-out one, else the in-sample one."""
        if self.null is not None:
            return "held-out", self.null
        if self.in_sample_null is not None:
            return "in-sample", self.in_sample_null
        return None


@dataclass
class SetEvidence:
    """Held-out and in-sample figures, with their nulls, of the prompts or of one control."""

    folds: int
    top1: StatFigures
    top1pct: StatFigures


@dataclass
class PromptInfo:
    """One trained prompt that was scored; ``balanced_accuracy`` (the mean recall over the classes)
    and ``subtask_accuracy`` (``{subtask: accuracy}``, weighted as the subtask's predictivity is) are
    the prompt's own predictions on the ranking (dev) split; ``class_counts`` its examples per class."""

    prompt: str
    seed: int | None
    split_seed: int | None
    dev_accuracy: float | None
    dev_size: int
    num_classes: int | None = None
    balanced_accuracy: float | None = None
    subtask_accuracy: dict[str, float] | None = None
    #: examples of each class in the ranking split (summaries written before it: None)
    class_counts: list[int] | None = None


@dataclass
class SubtaskFigures:
    """One binary subtask: the best neurons' predictivity next to the comparable number, the trained
    prompts' own accuracy on the same subtask and dev examples (mean over prompts; ``balanced``: the
    mean of the two sides' accuracies, as the predictivity is)."""

    name: str
    balanced: bool
    prompt_accuracy: float | None
    top1: float
    top1pct_mean: float


@dataclass
class TopNeuron:
    """One of the best neurons of a subtask."""

    subtask: str
    layer: int
    index: int
    score: float
    position: str


@dataclass
class LayerDistribution:
    """How many of the global top-``rho`` neurons lie in each layer."""

    rho: float
    counts: list[int]


@dataclass
class SeedStability:
    """Mean pairwise overlap of the prompts' own top-``rho`` sets."""

    rho: float
    jaccard_mean: float
    overlap_mean: float


@dataclass
class ControlScore:
    """Top-1 and mean of the top 1% of a control's [L, N] score: held-out figures when ``evidence``
    is present (version 2), in-sample ones in files of version 1. ``versus_top1`` /
    ``versus_top1pct``: the first trained prompt's held-out figure minus the control's, paired over
    the ranking examples (:mod:`~skillneurons.neurons.paired`; a bootstrap interval and p), where
    both were measured example by example."""

    top1: float
    top1pct_mean: float
    evidence: SetEvidence | None = None
    versus_top1: Estimate | None = None
    versus_top1pct: Estimate | None = None


@dataclass
class FindSummary(LegacyKeys, Result):
    """``summary.json`` of :func:`~skillneurons.neurons.find.find_skill_neurons`; the optional parts
    (AUROC, seed stability, controls) are absent from the JSON when not computed."""

    SCHEMA = "skillneurons.find_summary"
    #: 2: ``top1_predictivity`` / ``top1pct_mean_predictivity`` (and the controls' figures) are the
    #: HELD-OUT figures, with ``evidence`` (intervals, in-sample figures, permutation nulls); version 1
    #: files (in-sample figures, no evidence) are still read
    VERSION = 2
    OPTIONAL = (
        "evidence",
        "auroc_top1",
        "auroc_top1pct_mean",
        "seed_stability",
        "first_prompt",
        "controls",
        "subtasks",
        "flags",
        "text_blind_positions",
    )

    task: str
    model: str
    num_prompts: int
    aggregation: str
    scheme: str
    prompts: list[PromptInfo]
    top1_predictivity: float
    top1pct_mean_predictivity: float
    #: ``accuracy`` or ``balanced`` (``FindConfig.score``); summaries written before it: accuracy
    score: str = "accuracy"
    top: list[TopNeuron] = field(default_factory=list)
    layer_distribution: LayerDistribution | None = None
    auroc_top1: float | None = None
    auroc_top1pct_mean: float | None = None
    seed_stability: SeedStability | None = None
    first_prompt: ControlScore | None = None
    controls: dict[str, ControlScore] | None = None
    subtasks: list[SubtaskFigures] | None = None
    flags: list[str] | None = None
    evidence: SetEvidence | None = None
    #: prompt positions that precede the text in a causal LM (the soft prompt first): they cannot
    #: see the input, so their activations are the same for every example (None: not recorded)
    text_blind_positions: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = drop_none(super().to_json(), self.OPTIONAL)
        for c in [out.get("first_prompt"), *(out.get("controls") or {}).values()]:
            if isinstance(c, dict) and c.get("evidence") is None:
                c.pop("evidence", None)
        return out

    def check(self) -> list[str]:
        """What makes these figures untrustworthy, one line each: a prompt at chance, a control that
        beats the trained prompt, too few dev examples to rank on."""
        out = []
        for i, p in enumerate(self.prompts, 1):
            if p.balanced_accuracy is not None and p.num_classes:
                chance = 1 / p.num_classes
                if p.balanced_accuracy <= chance + CHANCE_MARGIN:
                    out.append(
                        f"prompt {i} is at chance (balanced dev accuracy {p.balanced_accuracy:.4f}, chance "
                        f"{chance:.4f}): it has learnt nothing, its neurons rank noise; train it longer"
                    )
        small = sorted({p.dev_size for p in self.prompts if p.dev_size < MIN_RANKING_EXAMPLES})
        if small:
            out.append(
                f"too few to rank: {', '.join(map(str, small))} dev examples (< {MIN_RANKING_EXAMPLES}); the "
                "best of many neurons scores high by chance on so few; use more data (--max-examples)"
            )
        ev = self.evidence
        judged = ev.top1.decisive_null() if ev is not None else None
        if judged is not None and judged[1].p >= NULL_ALPHA:
            kind, null = judged
            out.append(
                f"top-1 not above the null (p >= {NULL_ALPHA}): {kind} p={null.p:.4f} over "
                f"{null.permutations} label permutations; the best neuron is no better than the best "
                "neuron under shuffled labels"
            )
        if self.text_blind_positions:
            out.append(
                f"{self.text_blind_positions} prompt positions precede the text in this causal LM and cannot "
                "see it (their activations are the same for every example): only the read position can "
                "hold skill neurons, unlike the paper's encoders; tune with --layout prompt_last to put the "
                "prompt after the text"
            )
        first = self.first_prompt
        for name, c in (self.controls or {}).items() if first is not None else ():
            if c.top1pct_mean > first.top1pct_mean:  # type: ignore[union-attr]
                out.append(
                    f"control {name.replace('_', ' ')} beats the trained prompt (mean of the top 1% "
                    f"{c.top1pct_mean:.4f} > {first.top1pct_mean:.4f}): "  # type: ignore[union-attr]
                    "these neurons are not specific to the trained prompt"
                )
        return out
