"""Skill-neuron discovery: streaming statistics (:mod:`.stats`) and ranking/selection (:mod:`.ranking`).

Typical use, for a binary task and several trained prompts (seeds)::

    scores = []
    for prompt in prompts:
        base = BaselineStats(L, T, N)                      # pass 1, train split
        for acts in train_activations(prompt):             # acts: [batch, L, T, N]
            base.update(acts)
        stats = PredictivityStats(base, num_classes=2)     # pass 2, dev split
        for acts, labels in dev_activations(prompt):
            stats.update(acts, labels)
        score, best_position = per_prompt(stats.predictivity())   # [L, N] each
        scores.append(score)
    ranking = SkillRanking(aggregate(scores, how="mean"))
    mask = ranking.mask(0.02)                              # [L, N] bool, 2% of every layer

For C > 2 classes, build one ranking per ``Subtask`` of ``decompose(C, scheme)`` (scoring it with
``stats.predictivity(sub.positive, sub.negative, balanced=sub.balanced)``) and select with
``union_mask(rankings, rho)``.
"""

from __future__ import annotations

from skillneurons.neurons.ranking import (
    DECOMPOSITION_SCHEMES,
    Overlap,
    SkillRanking,
    Subtask,
    aggregate,
    decompose,
    overlap,
    per_prompt,
    quota_size,
    spearman,
    union_mask,
)
from skillneurons.neurons.stats import (
    MAX_CHUNK_ELEMENTS,
    POOLED_POSITIONS,
    BaselineStats,
    PredictivityStats,
    baseline_stats_bytes,
    histogram_bytes,
    predictivity_stats_bytes,
)

__all__ = [
    "DECOMPOSITION_SCHEMES",
    "MAX_CHUNK_ELEMENTS",
    "POOLED_POSITIONS",
    "BaselineStats",
    "Overlap",
    "PredictivityStats",
    "SkillRanking",
    "Subtask",
    "aggregate",
    "baseline_stats_bytes",
    "decompose",
    "histogram_bytes",
    "overlap",
    "per_prompt",
    "predictivity_stats_bytes",
    "quota_size",
    "spearman",
    "union_mask",
]
