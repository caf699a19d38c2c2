"""Options of skill-neuron discovery (``skillneurons find``). No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skillneurons.data.config import SPLIT_SEED_HELP
from skillneurons.errors import ConfigError
from skillneurons.options import option

__all__ = ["DECOMPOSITION_SCHEMES", "SCORES", "FindConfig", "check_fraction"]

DECOMPOSITION_SCHEMES = ("one_vs_rest", "pairwise", "paper")
AGGREGATIONS = ("mean", "min")
PRECISIONS = ("auto", "fp32", "bf16")
#: how one neuron's thresholded activation is scored on a binary subtask (``FindConfig.score``)
SCORES = ("accuracy", "balanced")
STATS_DEVICES = ("auto", "cpu", "model")


def check_fraction(rho: Any, plural: bool = False) -> None:
    """ConfigError unless ``rho`` is a number in [0, 1] (a fraction of neurons)."""
    if isinstance(rho, bool) or not isinstance(rho, int | float) or not 0.0 <= float(rho) <= 1.0:
        what = "pass fractions between 0 and 1" if plural else "pass a fraction between 0 and 1"
        raise ConfigError(f"rho={rho!r} is invalid: {what} (e.g. 0.02 for 2%)")


@dataclass
class FindConfig:
    """How skill neurons are ranked from trained prompts, and what the summary reports."""

    scheme: str = option(
        "one_vs_rest",
        "binary subtasks of a multi-class task (paper: 0 vs 2 and 1 vs rest, 3 classes)",
        choices=DECOMPOSITION_SCHEMES,
    )
    aggregate: str = option("mean", "aggregation over prompts (seeds)", choices=AGGREGATIONS)
    score: str = option(
        "accuracy",
        "how a neuron's activation, thresholded at its train mean, is scored on a binary subtask: "
        "accuracy = mean 1[1[a > a_bar] == y] (the paper's; on imbalanced labels its chance level is "
        "the majority rate), balanced = 0.5 * (P[a > a_bar | y=1] + P[a <= a_bar | y=0]) (chance 0.5 "
        "whatever the balance); predictivity max(score, 1 - score) either way, for the ranking, the "
        "held-out and in-sample figures, the null and the controls. Subtasks of a task with 3+ "
        "classes are always balanced",
        choices=SCORES,
    )
    auroc_bins: int | None = option(
        None, "also compute the threshold-free AUROC score with this many bins", metavar="BINS"
    )
    controls: bool = option(
        True,
        "also score the paper's controls on the first prompt (pooled text, random and hand-written prompts), "
        "each compared with that prompt paired over the ranking examples (one more pass over them)",
        flag="--no-controls",
    )
    hand_written: str | None = option(None, "text of the hand-written control prompt")
    batch_size: int = option(64, "batch size of the forward passes")
    precision: str = option(
        "auto", "autocast precision (auto: bf16 on CUDA, fp32 elsewhere)", choices=PRECISIONS
    )
    stats_device: str = option(
        "auto",
        "where the running statistics live: model (the model's device), cpu (the activations are "
        "copied there per batch, so a large model keeps its GPU memory), auto (model; cpu on MPS)",
        choices=STATS_DEVICES,
    )
    position_chunk: int | None = option(
        None,
        "compare at most this many prompt positions at a time (bounds the per-batch comparison "
        "tensors; the same results; default: all)",
        metavar="POSITIONS",
    )
    stats_memory_gb: float = option(
        16.0,
        "refuse a find whose statistics (baseline, counts, folds, null, AUROC bins, a batch's "
        "activations and temporaries, one prompt's reductions) would need more memory than this (GB)",
    )
    top: int = option(10, "neurons listed in the summary")
    rho: float = option(0.01, "fraction for the per-layer distribution and seed stability")
    split_seed: int | None = option(None, SPLIT_SEED_HELP)
    folds: int = option(
        5,
        "cross-fitting folds of the ranking examples (held-out predictivity: select on F-1, measure on 1)",
    )
    permutations: int = option(
        100, "label permutations of the ranking split for the null, in the same passes (0: no null)"
    )
    heldout_null: bool = option(
        True,
        "also the null of the held-out figures (per-fold null counts: x folds memory)",
        flag="--no-heldout-null",
    )
    null_memory_gb: float = option(
        4.0, "refuse a permutation null whose counts would need more memory than this (GB)"
    )
    seed: int = option(0, "seed of the folds, the label permutations and the pass-1 sample or order")
    baseline_examples: int | None = option(
        None,
        "pass 1 (the baseline) on a seeded stratified sample of at most this many train examples "
        "(default: all)",
        metavar="N",
    )
    baseline_stop: float | None = option(
        None,
        "adaptive baseline: stop pass 1 (train examples in a seeded random order) once at most this "
        "fraction of a batch's activations lie within one standard error of their running mean "
        "(e.g. 0.02; default: off)",
        metavar="FRACTION",
    )

    def __post_init__(self) -> None:
        check_fraction(self.rho)
        bins = self.auroc_bins
        if bins is not None and (isinstance(bins, bool) or bins < 1):
            raise ConfigError(f"--auroc-bins {bins} is invalid: give a positive number of bins (e.g. 64)")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise ConfigError(
                f"--folds {self.folds} is invalid: cross-fitting needs at least 2 folds (e.g. 5)"
            )
        if (
            isinstance(self.permutations, bool)
            or not isinstance(self.permutations, int)
            or self.permutations < 0
        ):
            raise ConfigError(
                f"--permutations {self.permutations} is invalid: pass 0 (no null) or more (e.g. 100)"
            )
        be = self.baseline_examples
        if be is not None and (isinstance(be, bool) or not isinstance(be, int) or be < 2):
            raise ConfigError(f"--baseline-examples {be} is invalid: pass at least 2 examples (or omit it)")
        bs = self.baseline_stop
        if bs is not None and not 0.0 < bs < 1.0:
            raise ConfigError(f"--baseline-stop {bs} is invalid: pass a fraction in (0, 1), e.g. 0.02")
        pc = self.position_chunk
        if pc is not None and (isinstance(pc, bool) or not isinstance(pc, int) or pc < 1):
            raise ConfigError(f"--position-chunk {pc} is invalid: pass a positive number of positions")
        if self.stats_device not in STATS_DEVICES:
            raise ConfigError(
                f"--stats-device {self.stats_device!r} is unknown: use one of {', '.join(STATS_DEVICES)}"
            )
        if not self.stats_memory_gb > 0:
            raise ConfigError(f"--stats-memory-gb {self.stats_memory_gb} is invalid: pass a positive size")
        if not self.null_memory_gb > 0:
            raise ConfigError(f"--null-memory-gb {self.null_memory_gb} is invalid: pass a positive size")
        if self.top < 0 or self.batch_size < 1:
            raise ConfigError("--top must be >= 0 and --batch-size >= 1")
        if self.scheme not in DECOMPOSITION_SCHEMES:
            raise ConfigError(
                f"decomposition scheme {self.scheme!r} is unknown: use one of "
                f"{', '.join(DECOMPOSITION_SCHEMES)}"
            )
        if self.score not in SCORES:
            raise ConfigError(f"score {self.score!r} is unknown: use 'accuracy' or 'balanced'")
        if self.aggregate not in AGGREGATIONS:
            raise ConfigError(f"aggregation {self.aggregate!r} is unknown: use 'mean' or 'min'")
