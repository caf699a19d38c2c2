"""The result of ``skillneurons prune``: ``OUT/results.json`` as a typed :class:`PruneResult`. No torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skillneurons.evidence import Estimate, accuracy_estimate
from skillneurons.neurons.results import LegacyKeys, drop_none
from skillneurons.results import Result

__all__ = ["ParameterCount", "PruneResult"]


@dataclass
class ParameterCount:
    """Parameters of the source and of the pruned model (``fraction``: pruned / source, when given)."""

    source: int
    pruned: int
    fraction: float | None = None


@dataclass
class PruneResult(LegacyKeys, Result):
    """What :func:`~skillneurons.pruning.run.prune_model` measured; the evaluation (``--prompt``) and
    re-tuning (``--retune``) parts are absent from the JSON when not run."""

    SCHEMA = "skillneurons.prune"
    VERSION = 1
    OPTIONAL = (
        "prompt",
        "task",
        "split",
        "accuracy_unpruned",
        "accuracy_pruned",
        "n",
        "accuracy_retuned",
        "retuned_prompt",
        "retune_best_dev_accuracy",
        "retune_steps",
        "retune_seconds",
        "retune_config",
    )

    pruned_model: str
    source_model: str
    rho: float
    per_layer: bool
    pruned_layers: list[int]
    d_ff_source: list[int]
    prune_seconds: float
    d_ff: list[int]
    parameters: ParameterCount
    ffn_parameters: ParameterCount
    prompt: str | None = None
    task: str | None = None
    split: str | None = None
    accuracy_unpruned: float | None = None
    accuracy_pruned: float | None = None
    n: int | None = None
    accuracy_retuned: float | None = None
    retuned_prompt: str | None = None
    retune_best_dev_accuracy: float | None = None
    retune_steps: int | None = None
    retune_seconds: float | None = None
    retune_config: dict[str, Any] | None = None

    def accuracy_ci(self) -> dict[str, Estimate]:
        """Wilson 95% intervals of the measured accuracies on the ``n`` evaluated examples, keyed
        ``accuracy_unpruned`` / ``accuracy_pruned`` / ``accuracy_retuned`` (written as ``<key>_ci``)."""
        keys = ("accuracy_unpruned", "accuracy_pruned", "accuracy_retuned")
        out = {k: accuracy_estimate(getattr(self, k), self.n) for k in keys}
        return {k: e for k, e in out.items() if e is not None}

    def _acc(self, key: str) -> str:
        e = self.accuracy_ci().get(key)
        return e.format(4) if e is not None else f"{getattr(self, key):.4f}"

    def to_json(self) -> dict[str, Any]:
        out = drop_none(super().to_json(), self.OPTIONAL)
        for key in ("parameters", "ffn_parameters"):  # no "fraction" key in the FFN counts
            out[key] = {k: v for k, v in out[key].items() if not (k == "fraction" and v is None)}
        out.update({f"{k}_ci": e.to_json() for k, e in self.accuracy_ci().items()})
        return out

    @property
    def text(self) -> str:
        """The readable summary ``skillneurons prune`` prints."""
        p = self.parameters
        lines = [
            f"pruned {self.source_model} to rho={self.rho} in layers {self.pruned_layers}: widths "
            f"{self.d_ff} "
            f"(from {self.d_ff_source})",
            f"parameters {p.pruned:,} of {p.source:,} ({100 * (p.fraction or 0.0):.1f}%); "
            f"FFN {self.ffn_parameters.pruned:,} of {self.ffn_parameters.source:,}",
        ]
        if self.accuracy_pruned is not None:
            lines.append(
                f"{self.split} accuracy [95% CI] ({self.n} examples): unpruned "
                f"{self._acc('accuracy_unpruned')}, pruned {self._acc('accuracy_pruned')}"
                + (f", re-tuned {self._acc('accuracy_retuned')}" if self.accuracy_retuned is not None else "")
            )
        lines.append(
            f"pruned model saved to {self.pruned_model} (load it with skillneurons.pruning.load_pruned)"
        )
        return "\n".join(lines)
