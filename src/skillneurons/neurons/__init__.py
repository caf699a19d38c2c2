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

Held-out predictivity and the permutation null (REFERENCE.md section 10): give pass 2 a
``FoldPlan.make(dev_labels, C, folds, permutations, seed)`` (``PredictivityStats(base, C, plan=plan)``,
``update(acts, labels, index)``) and reduce its ``crossfit`` counts with
:func:`skillneurons.neurons.crossfit.prompt_folds` / :func:`~skillneurons.neurons.crossfit.set_figures`.

For C > 2 classes, build one ranking per ``Subtask`` of ``decompose(C, scheme)`` (scoring it with
``stats.predictivity(sub.positive, sub.negative, balanced=sub.balanced)``) and select with
``union_mask(rankings, rho)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.neurons.config import DECOMPOSITION_SCHEMES, FindConfig
    from skillneurons.neurons.find import (
        FindResult,
        SkillNeurons,
        check_find_memory,
        find_skill_neurons,
        format_summary,
        score_prompt,
    )
    from skillneurons.neurons.ranking import (
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
    from skillneurons.neurons.results import (
        ControlScore,
        FindSummary,
        LayerDistribution,
        PromptInfo,
        SeedStability,
        TopNeuron,
    )
    from skillneurons.neurons.stats import (
        MAX_CHUNK_ELEMENTS,
        POOLED_POSITIONS,
        BaselineStats,
        CrossFitCounts,
        FoldPlan,
        PredictivityStats,
        baseline_stats_bytes,
        histogram_bytes,
        null_counts_bytes,
        predictivity_stats_bytes,
    )

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DECOMPOSITION_SCHEMES": ".config",
        "FindConfig": ".config",
        "ControlScore": ".results",
        "FindSummary": ".results",
        "LayerDistribution": ".results",
        "PromptInfo": ".results",
        "SeedStability": ".results",
        "TopNeuron": ".results",
        "FindResult": ".find",
        "SkillNeurons": ".find",
        "check_find_memory": ".find",
        "find_skill_neurons": ".find",
        "format_summary": ".find",
        "score_prompt": ".find",
        "Overlap": ".ranking",
        "SkillRanking": ".ranking",
        "Subtask": ".ranking",
        "aggregate": ".ranking",
        "decompose": ".ranking",
        "overlap": ".ranking",
        "per_prompt": ".ranking",
        "quota_size": ".ranking",
        "spearman": ".ranking",
        "union_mask": ".ranking",
        "MAX_CHUNK_ELEMENTS": ".stats",
        "POOLED_POSITIONS": ".stats",
        "BaselineStats": ".stats",
        "CrossFitCounts": ".stats",
        "FoldPlan": ".stats",
        "null_counts_bytes": ".stats",
        "PredictivityStats": ".stats",
        "baseline_stats_bytes": ".stats",
        "histogram_bytes": ".stats",
        "predictivity_stats_bytes": ".stats",
    },
)

__all__ = [
    "DECOMPOSITION_SCHEMES",
    "MAX_CHUNK_ELEMENTS",
    "POOLED_POSITIONS",
    "BaselineStats",
    "ControlScore",
    "CrossFitCounts",
    "FindConfig",
    "FindResult",
    "FindSummary",
    "FoldPlan",
    "LayerDistribution",
    "Overlap",
    "PredictivityStats",
    "PromptInfo",
    "SeedStability",
    "SkillNeurons",
    "SkillRanking",
    "Subtask",
    "TopNeuron",
    "aggregate",
    "baseline_stats_bytes",
    "check_find_memory",
    "decompose",
    "find_skill_neurons",
    "format_summary",
    "histogram_bytes",
    "null_counts_bytes",
    "overlap",
    "per_prompt",
    "predictivity_stats_bytes",
    "quota_size",
    "score_prompt",
    "spearman",
    "union_mask",
]
