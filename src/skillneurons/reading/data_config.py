"""Options of the reading-comprehension data: which task, how many passages, and how the built-in BBC
News cloze task is constructed. No torch, numpy or bm25s here (the CLI builds its flags from these)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from skillneurons.options import check_choice, check_range, option, require

__all__ = ["CANDIDATES", "CLOZE_TASK", "ReadDataConfig"]

#: the name of the built-in offline task
CLOZE_TASK = "bbc_cloze"
#: what ``--candidates`` can give the cloze questions
CANDIDATES = ("none", "entities")


@dataclass
class ReadDataConfig:
    """A reading task spec and the options of its construction (``load_reading_task`` takes them)."""

    task: str = option(
        CLOZE_TASK,
        "reading task: bbc_cloze (built-in, offline), hf:kyunghyuncho/search_qa, hf:sagnikrayc/quasar, "
        "hf:community-datasets/qangaroo, or jsonl:PATH (a JSONL file or a folder of train/dev/test.jsonl)",
    )
    passages: int = option(10, "passages per question: the top-k retrieved (bbc_cloze), else the first k")
    seed: int = option(0, "seed of the cloze construction and of every split made here (by source article)")
    dev_fraction: float = option(0.1, "share of source articles (cloze) or examples in the dev split")
    test_fraction: float = option(0.1, "share of source articles (cloze) or examples in the test split")
    leak_ngram: int = option(
        8, "cloze: drop a retrieved paragraph sharing a run of this many words with the question sentence"
    )
    min_words: int = option(8, "cloze: shortest question sentence, in words")
    max_words: int = option(60, "cloze: longest question sentence, in words")
    candidates: str = option(
        "none",
        "bbc_cloze: none (extractive: the answer span anywhere in the passages), or entities (multiple "
        "choice over the passages' entities by the construction's rule, minus the question's words: the "
        "CNN/Daily Mail reader setting; a question whose answer the rule misses scores 0)",
        choices=CANDIDATES,
    )
    limit: int = option(0, "read at most this many examples per split (0: all)")
    encoding: str = option("utf-8", "text encoding of a jsonl: file")

    def __post_init__(self) -> None:
        require(bool(self.task.strip()), "--task is empty: pass bbc_cloze, hf:NAME or jsonl:PATH")
        check_range("--passages", self.passages, low=1, high=1000)
        check_range("--dev-fraction", self.dev_fraction, low=0, high=1, high_open=True)
        check_range("--test-fraction", self.test_fraction, low=0, high=1, high_open=True)
        require(
            self.dev_fraction + self.test_fraction < 1,
            f"--dev-fraction {self.dev_fraction} + --test-fraction {self.test_fraction} leave no training "
            "data: keep their sum below 1",
        )
        check_range("--leak-ngram", self.leak_ngram, low=2, high=100)
        check_range("--min-words", self.min_words, low=2)
        require(
            self.max_words >= self.min_words,
            f"--max-words {self.max_words} is below --min-words {self.min_words}: raise it",
        )
        check_range("--limit", self.limit, low=0)
        check_choice("--candidates", self.candidates, CANDIDATES)
        require(
            self.candidates == "none" or self.task.strip() == CLOZE_TASK,
            f"--candidates {self.candidates} is the cloze task's entity rule: use it with --task "
            f"{CLOZE_TASK}, or give a jsonl: task its own candidates",
        )

    def cloze_options(self) -> dict[str, Any]:
        """The options that decide the built cloze task (recorded in its manifest)."""
        d = asdict(self)
        return {
            k: d[k]
            for k in (
                "passages",
                "seed",
                "dev_fraction",
                "test_fraction",
                "leak_ngram",
                "min_words",
                "max_words",
            )
        }
