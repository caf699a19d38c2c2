"""SQuAD-style answer metrics (the official SQuAD v1.1 evaluation script's semantics), accuracy for
multiple choice, and their aggregation with a 95% confidence interval.

Normalisation (``normalize_answer``): lower-case, drop ASCII punctuation, drop the articles
``a``/``an``/``the`` (whole words), collapse whitespace. ``exact_match`` is 1.0 when the normalised
prediction equals a normalised gold answer; ``f1`` is the token-level F1 of the normalised bags of
words (a common-token multiset), both maximised over the gold answers, as in SQuAD v1.1. Two empty
normalised strings give 0 F1 there (no common token); so they do here, and EM of "" against "" is 1.

The interval of a mean of per-example scores is a seeded percentile bootstrap over examples
(``bootstrap_ci``): the project has no shared statistics helper for this yet.
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from skillneurons.errors import DataError

__all__ = [
    "Score",
    "accuracy",
    "bootstrap_ci",
    "exact_match",
    "f1",
    "normalize_answer",
    "normalize_token",
    "score_predictions",
]

_PUNCT_TABLE = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ARTICLE_WORDS = frozenset({"a", "an", "the"})


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 ``normalize_answer``: lower, remove punctuation, remove articles, fix whitespace."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT_TABLE))
    return " ".join(text.split())


def normalize_token(token: str) -> str:
    """One word under the same normalisation: "" for punctuation-only tokens and articles."""
    t = token.lower().translate(_PUNCT_TABLE)
    return "" if t in _ARTICLE_WORDS else " ".join(t.split())


def _em_one(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def _f1_one(prediction: str, gold: str) -> float:
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(gold).split()
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred)
    recall = same / len(ref)
    return 2 * precision * recall / (precision + recall)


def _golds(golds: str | Sequence[str]) -> Sequence[str]:
    if isinstance(golds, str):
        return (golds,)
    if not golds:
        raise DataError("an example has no gold answer to score against: every scored example needs one")
    return golds


def exact_match(prediction: str, golds: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals one of the normalised gold answers, else 0.0."""
    return max(_em_one(prediction, g) for g in _golds(golds))


def f1(prediction: str, golds: str | Sequence[str]) -> float:
    """Token-level F1 of the normalised prediction, the maximum over the gold answers."""
    return max(_f1_one(prediction, g) for g in _golds(golds))


def accuracy(predicted: Sequence[str], answers: Sequence[str]) -> list[float]:
    """Per-example multiple-choice correctness (the chosen candidate equals the answer, after
    normalisation, so the choice is compared as a string, not by index)."""
    if len(predicted) != len(answers):
        raise DataError(f"{len(predicted)} predictions for {len(answers)} examples: one prediction each")
    return [_em_one(p, a) for p, a in zip(predicted, answers)]


def bootstrap_ci(
    values: Sequence[float], *, seed: int = 0, resamples: int = 2000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling examples, seeded)."""
    n = len(values)
    if n == 0:
        raise DataError("no scored examples: a confidence interval needs at least one")
    if not 0 < level < 1 or resamples < 1:
        raise DataError(f"bootstrap needs 0 < level < 1 and resamples >= 1 (got {level}, {resamples})")
    rng = random.Random(seed)
    vals = list(values)
    means = sorted(sum(vals[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    lo = means[int((1 - level) / 2 * (resamples - 1))]
    hi = means[round((1 + level) / 2 * (resamples - 1))]
    return lo, hi


@dataclass(frozen=True)
class Score:
    """A mean score in [0, 1] over ``n`` examples, with its 95% bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def _score(values: Sequence[float], seed: int) -> Score:
    lo, hi = bootstrap_ci(values, seed=seed)
    return Score(sum(values) / len(values), lo, hi, len(values))


def score_predictions(
    predictions: Sequence[str], golds: Sequence[Sequence[str]], *, seed: int = 0
) -> dict[str, Score]:
    """``{"em": Score, "f1": Score}`` of extractive predictions against their gold answer lists."""
    if len(predictions) != len(golds):
        raise DataError(f"{len(predictions)} predictions for {len(golds)} examples: one prediction each")
    em = [exact_match(p, g) for p, g in zip(predictions, golds)]
    f = [f1(p, g) for p, g in zip(predictions, golds)]
    return {"em": _score(em, seed), "f1": _score(f, seed)}
