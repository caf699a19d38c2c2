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
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from skillneurons.errors import DataError
from skillneurons.files import atomic_write_bytes
from skillneurons.reading.metrics import normalize_answer, normalize_token

__all__ = [
    "Passage",
    "ReadingExample",
    "answer_in_passages",
    "find_answer_spans",
    "read_jsonl",
    "tokenize",
    "write_jsonl",
]

_WORD = re.compile(r"\w+(?:[.-]\w+)*|['’]\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Words and punctuation marks: ``"well-known"`` and ``"U.S"`` stay one word, a possessive or
    contraction is split off (``"Blair's"`` -> ``"Blair"``, ``"'s"``), ``"(BBC)"`` is three tokens."""
    return _WORD.findall(text)


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

    def validate(self) -> ReadingExample:
        """Raise a one-line :class:`DataError` when the example cannot be read; return it otherwise."""
        where = f"example '{self.id}'"
        if not self.id:
            raise DataError("an example has an empty id: give every example a unique id")
        if not self.question.strip():
            raise DataError(f"{where} has an empty question: drop it or fill it in")
        if not self.passages:
            raise DataError(f"{where} has no passages: a reading example needs at least one")
        if not any(p.strip() for p in self.passages):
            raise DataError(f"{where} has only empty passages: a reading example needs some text")
        if not self.answers:
            raise DataError(f"{where} has no answer: give its answer text(s)")
        if self.kind() == "choice":
            cands = {normalize_answer(c) for c in self.candidates}
            if normalize_answer(self.answers[0]) not in cands:
                raise DataError(
                    f"{where}: the answer '{self.answers[0][:60]}' is not among its {len(self.candidates)} "
                    "candidates: add it to the candidates"
                )
        elif not answer_in_passages(self.answers, self.passages):
            raise DataError(
                f"{where}: no answer ('{self.answers[0][:60]}'...) occurs in its {len(self.passages)} "
                "passages: an extractive example needs its answer in the text"
            )
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


def find_answer_spans(passage_tokens: Sequence[str], answer_tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Inclusive ``(start, end)`` token spans of every occurrence of the answer in the passage, compared
    after SQuAD normalisation (case, punctuation and articles ignored): a passage token that normalises
    to nothing (a comma, "the") is skipped, so the span starts and ends on a content word."""
    target = [t for t in (normalize_token(a) for a in answer_tokens) if t]
    if not target:
        return []
    kept = [(i, n) for i, n in ((i, normalize_token(t)) for i, t in enumerate(passage_tokens)) if n]
    words = [n for _, n in kept]
    m = len(target)
    spans = []
    for j in range(len(words) - m + 1):
        if words[j : j + m] == target:
            spans.append((kept[j][0], kept[j + m - 1][0]))
    return spans


def answer_in_passages(answers: Iterable[str], passages: Iterable[str]) -> bool:
    """Whether any answer alias occurs (token-aligned, normalised) in any passage."""
    targets = [tokenize(a) for a in answers]
    for p in passages:
        toks = tokenize(p)
        if any(find_answer_spans(toks, t) for t in targets):
            return True
    return False


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
