"""SQuAD v1.1 EM/F1 on hand-worked cases, multiple-choice accuracy, and the bootstrap interval."""

from __future__ import annotations

import pytest

from skillneurons.errors import DataError
from skillneurons.reading.metrics import (
    accuracy,
    bootstrap_ci,
    exact_match,
    f1,
    normalize_answer,
    normalize_token,
    score_predictions,
)


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("  Hello,   World!! ", "hello world"),  # case, punctuation, whitespace
        ("The Beatles", "beatles"),  # a leading article
        ("a man, an apple and THE end", "man apple and end"),  # every article, as whole words
        ("Anand ate the banana", "anand ate banana"),  # "an" inside a word stays
        ("U.S.-led", "usled"),  # punctuation inside a token is removed, not spaced
        ("", ""),
    ],
)
def test_normalize_answer(text: str, normal: str) -> None:
    assert normalize_answer(text) == normal


def test_normalize_token_drops_articles_and_punctuation() -> None:
    assert [normalize_token(t) for t in ("The", ",", "Blair", "'s", "an")] == ["", "", "blair", "s", ""]


@pytest.mark.parametrize(
    ("prediction", "golds", "em", "f"),
    [
        # 1. case and a leading article are ignored
        ("the Beatles", ["Beatles"], 1.0, 1.0),
        # 2. punctuation is ignored
        ("Beatles!", ["the beatles."], 1.0, 1.0),
        # 3. two empty strings: EM 1 (equal), F1 0 (no common token: SQuAD v1.1 semantics)
        ("", [""], 1.0, 0.0),
        # 4. an empty prediction scores nothing
        ("", ["Paris"], 0.0, 0.0),
        # 5. partial overlap: pred {cat, sat}, gold {cat, sat, down}: P = 1, R = 2/3, F1 = 0.8
        ("the cat sat", ["a cat sat down"], 0.0, 0.8),
        # 6. multiple golds: the maximum; vs "york" P 1/3 R 1 -> 0.5, vs "new york" P 2/3 R 1 -> 0.8
        ("New York City", ["York", "New York"], 0.0, 0.8),
        # 7. multiset overlap: {x, x, y} vs {x, y, y} share one x and one y: P = R = 2/3
        ("x x y", ["x y y"], 0.0, 2 / 3),
        # 8. EM from a second gold answer (an alias)
        ("Bill Clinton", ["William Jefferson Clinton", "Bill Clinton"], 1.0, 1.0),
        # 9. nothing in common
        ("London", ["Paris"], 0.0, 0.0),
        # 10. a prediction that is only an article normalises to empty
        ("The", ["the"], 1.0, 0.0),
    ],
)
def test_em_f1_hand_worked(prediction: str, golds: list[str], em: float, f: float) -> None:
    assert exact_match(prediction, golds) == em
    assert f1(prediction, golds) == pytest.approx(f)


def test_a_single_gold_string_is_one_answer_and_no_gold_is_an_error() -> None:
    assert exact_match("Paris", "paris") == 1.0
    with pytest.raises(DataError, match="no gold answer"):
        f1("Paris", [])


def test_accuracy_compares_normalised_choices() -> None:
    assert accuracy(["Paris", "london"], ["paris", "Berlin"]) == [1.0, 0.0]
    with pytest.raises(DataError, match="2 predictions for 1 examples"):
        accuracy(["a", "b"], ["a"])


def test_bootstrap_interval_is_seeded_and_brackets_the_mean() -> None:
    values = [1.0] * 30 + [0.0] * 70
    lo, hi = bootstrap_ci(values, seed=3)
    assert (lo, hi) == bootstrap_ci(values, seed=3)
    assert lo < 0.3 < hi and 0.15 < lo and hi < 0.45
    assert bootstrap_ci([1.0] * 5) == (1.0, 1.0)
    with pytest.raises(DataError, match="at least one"):
        bootstrap_ci([])


def test_score_predictions() -> None:
    s = score_predictions(["the cat sat", "Paris"], [["a cat sat down"], ["paris"]], seed=0)
    assert s["em"].mean == 0.5 and s["em"].n == 2
    assert s["f1"].mean == pytest.approx(0.9)
    assert s["f1"].low <= s["f1"].mean <= s["f1"].high
    assert set(s["em"].as_dict()) == {"mean", "low", "high", "n"}
