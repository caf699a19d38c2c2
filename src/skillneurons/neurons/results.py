"""The result of ``skillneurons find``: ``summary.json`` as a typed :class:`FindSummary`. No torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from skillneurons.results import Result

__all__ = [
    "ControlScore",
    "FindSummary",
    "LayerDistribution",
    "LegacyKeys",
    "PromptInfo",
    "SeedStability",
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


@dataclass
class PromptInfo:
    """One trained prompt that was scored."""

    prompt: str
    seed: int | None
    split_seed: int | None
    dev_accuracy: float | None
    dev_size: int


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
    """Top-1 and mean of the top 1% of a control's [L, N] score."""

    top1: float
    top1pct_mean: float


@dataclass
class FindSummary(LegacyKeys, Result):
    """``summary.json`` of :func:`~skillneurons.neurons.find.find_skill_neurons`; the optional parts
    (AUROC, seed stability, controls) are absent from the JSON when not computed."""

    SCHEMA = "skillneurons.find_summary"
    VERSION = 1
    OPTIONAL = ("auroc_top1", "auroc_top1pct_mean", "seed_stability", "first_prompt", "controls")

    task: str
    model: str
    num_prompts: int
    aggregation: str
    scheme: str
    prompts: list[PromptInfo]
    top1_predictivity: float
    top1pct_mean_predictivity: float
    top: list[TopNeuron] = field(default_factory=list)
    layer_distribution: LayerDistribution | None = None
    auroc_top1: float | None = None
    auroc_top1pct_mean: float | None = None
    seed_stability: SeedStability | None = None
    first_prompt: ControlScore | None = None
    controls: dict[str, ControlScore] | None = None

    def to_json(self) -> dict[str, Any]:
        return drop_none(super().to_json(), self.OPTIONAL)
