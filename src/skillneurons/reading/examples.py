"""The one multi-passage example type, its checks, its JSONL schema and answer-span search (torch-free).

JSONL schema (one object per line, UTF-8)::

    {"id": "q1", "question": "who ...", "passages": ["ranked best first", "..."],
     "answers": ["all", "aliases"], "candidates": [], "source": "article-42"}

``id``, ``question`` and ``passages`` are required; ``answers``, ``candidates`` and ``source`` default
to empty. An example with ``candidates`` is multiple choice (its ``answers[0]`` is one of them);
otherwise it is extractive (some answer occurs in some passage, after SQuAD normalisation).
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillneurons.errors import DataError
from skillneurons.files import atomic_write_bytes
from skillneurons.reading.metrics import normalize_token

__all__ = [
    "PROBLEMS",
    "SPLITS",
    "Passage",
    "ReadingExample",
    "ReadingSplits",
    "WordIndex",
    "answer_in_passages",
    "count_occurrences",
    "find_answer_spans",
    "normalized_words",
    "read_jsonl",
    "split_by_group",
    "tokenize",
    "write_jsonl",
]

_WORD = re.compile(r"\w+(?:[.-]\w+)*|['’]\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Words and punctuation marks: ``"well-known"`` and ``"U.S"`` stay one word, a possessive or
    contraction is split off (``"Blair's"`` -> ``"Blair"``, ``"'s"``), ``"(BBC)"`` is three tokens."""
    return _WORD.findall(text)


def normalized_words(text: str) -> str:
    """The text's tokens under SQuAD normalisation (:func:`normalize_token`), the empty ones (punctuation,
    articles) dropped, joined by single spaces: two texts match token-aligned when one of these strings
    occurs in the other between spaces."""
    return " ".join(w for w in (normalize_token(t) for t in tokenize(text)) if w)


def count_occurrences(passage_words: str, answer_words: str) -> int:
    """Occurrences (overlapping ones too) of ``answer_words`` in ``passage_words`` (both
    :func:`normalized_words` strings), on word boundaries: the number of :func:`find_answer_spans`."""
    if not answer_words:
        return 0
    hay, needle = f" {passage_words} ", f" {answer_words} "
    n, i = 0, hay.find(needle)
    while i >= 0:
        n += 1
        i = hay.find(needle, i + 1)
    return n


#: what :meth:`ReadingExample.problem` reports, with the end of its one-line message
PROBLEMS = {
    "empty_id": "has an empty id: give every example a unique id",
    "empty_question": "has an empty question: drop it or fill it in",
    "no_passages": "has no (non-empty) passages: a reading example needs at least one",
    "no_answer": "has no answer text: give its answer(s)",
    "answer_not_a_candidate": "has an answer that is not among its candidates: add it to the candidates",
    "answer_not_in_passages": "has no answer that occurs in its passages: an extractive example needs one",
}


@dataclass(frozen=True)
class Passage:
    text: str
    tokens: tuple[str, ...] | None = None  # optional pre-tokenised words


@dataclass(frozen=True)
class ReadingExample:
    id: str
    question: str
    passages: tuple[str, ...]  # ranked, best first
    answers: tuple[str, ...] = ()  # answer texts (extractive); all aliases
    candidates: tuple[str, ...] = ()  # multiple choice (WikiHop); answers[0] in candidates
    source: str = ""  # e.g. article id of the cloze question's source

    def kind(self) -> str:
        """``"choice"`` when the example has candidates, else ``"extractive"``."""
        return "choice" if self.candidates else "extractive"

    def problem(self) -> str | None:
        """Why the example cannot be read (one of :data:`PROBLEMS`), or None when it can."""
        if not self.id:
            return "empty_id"
        if not self.question.strip():
            return "empty_question"
        if not any(p.strip() for p in self.passages):
            return "no_passages"
        if not self.answers or not any(normalized_words(a) for a in self.answers):
            return "no_answer"
        if self.kind() == "choice":
            cands = {normalized_words(c) for c in self.candidates}
            return None if normalized_words(self.answers[0]) in cands else "answer_not_a_candidate"
        return None if answer_in_passages(self.answers, self.passages) else "answer_not_in_passages"

    def validate(self) -> ReadingExample:
        """Raise a one-line :class:`DataError` when the example cannot be read; return it otherwise."""
        problem = self.problem()
        if problem is not None:
            raise DataError(f"example '{self.id}' {PROBLEMS[problem]}")
        return self

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "question": self.question,
            "passages": list(self.passages),
            "answers": list(self.answers),
            "candidates": list(self.candidates),
            "source": self.source,
        }


class WordIndex:
    """A text's tokens under SQuAD normalisation (case, punctuation and articles ignored; a token that
    normalises to nothing, a comma or "the", is left out), indexed by word: built once per passage,
    searched for every answer alias or candidate (:func:`find_answer_spans` is one search)."""

    def __init__(self, tokens: Sequence[str]) -> None:
        kept = [(i, n) for i, n in ((i, normalize_token(t)) for i, t in enumerate(tokens)) if n]
        self.kept = [i for i, _ in kept]  # the token index of each normalised word
        self.norm = [n for _, n in kept]  # the normalised words
        self._first: dict[str, list[int]] = {}
        for k, n in enumerate(self.norm):
            self._first.setdefault(n, []).append(k)

    def positions(self, answer_tokens: Sequence[str]) -> tuple[list[int], int]:
        """``(starts, m)``: where the answer's ``m`` normalised words occur in :attr:`norm`, in order
        (none when the answer normalises to nothing)."""
        target = [t for t in (normalize_token(a) for a in answer_tokens) if t]
        if not target:
            return [], 0
        m = len(target)
        return [k for k in self._first.get(target[0], ()) if self.norm[k : k + m] == target], m

    def spans(self, answer_tokens: Sequence[str]) -> list[tuple[int, int]]:
        """Inclusive ``(start, end)`` token spans of every occurrence of the answer: they start and end
        on a content word."""
        starts, m = self.positions(answer_tokens)
        return [(self.kept[k], self.kept[k + m - 1]) for k in starts]


def find_answer_spans(passage_tokens: Sequence[str], answer_tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Inclusive ``(start, end)`` token spans of every occurrence of the answer in the passage, compared
    after SQuAD normalisation (case, punctuation and articles ignored): a passage token that normalises
    to nothing (a comma, "the") is skipped, so the span starts and ends on a content word."""
    return WordIndex(passage_tokens).spans(answer_tokens)


def answer_in_passages(answers: Iterable[str], passages: Iterable[str]) -> bool:
    """Whether any answer alias occurs (token-aligned, normalised) in any passage."""
    targets = [w for w in (normalized_words(a) for a in answers) if w]
    words = [normalized_words(p) for p in passages]
    return any(count_occurrences(p, t) for p in words for t in targets)


def _strings(rec: dict[str, object], key: str, where: str, required: bool = False) -> tuple[str, ...]:
    value = rec.get(key)
    if value is None and not required:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{where}: '{key}' must be a list of strings: see docs/reading.md for the schema")
    return tuple(value)


def example_from_json(rec: object, where: str) -> ReadingExample:
    """One JSONL object as a :class:`ReadingExample` (not yet validated)."""
    if not isinstance(rec, dict):
        raise DataError(f"{where} is not a JSON object: one example object per line (docs/reading.md)")
    for key in ("id", "question"):
        if not isinstance(rec.get(key), str | int) or isinstance(rec.get(key), bool):
            raise DataError(f"{where}: '{key}' is missing or not a string: see docs/reading.md")
    source = rec.get("source", "")
    return ReadingExample(
        id=str(rec["id"]),
        question=str(rec["question"]),
        passages=_strings(rec, "passages", where, required=True),
        answers=_strings(rec, "answers", where),
        candidates=_strings(rec, "candidates", where),
        source=source if isinstance(source, str) else str(source),
    )


def read_jsonl(path: str | os.PathLike[str], encoding: str = "utf-8") -> list[ReadingExample]:
    """The examples of a JSONL file in the schema above (parsed and type-checked, not validated)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p} is not a file: pass a JSONL file of reading examples")
    out = []
    with open(p, encoding=encoding) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{p} line {line_no}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where} is not valid JSON ({e.msg}): one object per line") from None
            out.append(example_from_json(rec, where))
    if not out:
        raise DataError(f"{p} holds no examples: one JSON object per line (docs/reading.md)")
    return out


def write_jsonl(path: str | os.PathLike[str], examples: Iterable[ReadingExample]) -> Path:
    """Write ``examples`` as JSONL (atomically); returns the path."""
    body = "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in examples)
    p = Path(path)
    atomic_write_bytes(p, body.encode("utf-8"))
    return p


SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class ReadingSplits:
    """A reading task's train/dev/test examples, where they came from and what was skipped."""

    name: str
    source: str
    train: tuple[ReadingExample, ...]
    dev: tuple[ReadingExample, ...]
    test: tuple[ReadingExample, ...]
    skipped: Mapping[str, int] = field(default_factory=dict)  # problem -> examples skipped
    info: Mapping[str, Any] = field(default_factory=dict)  # e.g. the cloze task's manifest

    def split(self, name: str) -> tuple[ReadingExample, ...]:
        if name not in SPLITS:
            raise DataError(f"unknown split '{name}': choose from {', '.join(SPLITS)}")
        return tuple(getattr(self, name))

    def sizes(self) -> dict[str, int]:
        return {s: len(self.split(s)) for s in SPLITS}

    def kind(self) -> str:
        """``"extractive"`` or ``"choice"`` (every example of a task has the same kind)."""
        return self.train[0].kind()


def split_by_group(
    examples: Sequence[ReadingExample],
    *,
    seed: int,
    dev_fraction: float,
    test_fraction: float,
    key: Callable[[ReadingExample], str] | None = None,
) -> tuple[list[ReadingExample], list[ReadingExample], list[ReadingExample]]:
    """``(train, dev, test)`` with every group (default: the example's ``source``, else its id) in one
    split only: the sorted group keys are shuffled with ``seed`` and cut test | dev | train."""
    group = key or (lambda e: e.source or e.id)
    keys = sorted({group(e) for e in examples})
    random.Random(seed).shuffle(keys)
    n_test = round(test_fraction * len(keys))
    n_dev = round(dev_fraction * len(keys))
    where = {
        k: ("test" if i < n_test else "dev" if i < n_test + n_dev else "train") for i, k in enumerate(keys)
    }
    parts: dict[str, list[ReadingExample]] = {s: [] for s in SPLITS}
    for e in examples:
        parts[where[group(e)]].append(e)
    return parts["train"], parts["dev"], parts["test"]
