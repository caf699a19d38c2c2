"""Label-word lists: many words per class, read from a file or given as a mapping.

Accepted sources (the first word of a class is its *anchor*, used by relevance refinement):

* a text file, one class per line, words separated by commas: ``business: business, trade, market``
  (lines named by class, any order), or lines without a ``class:`` prefix, one per class in class
  order (the format of the original KPT ``knowledgeable_verbalizer.txt`` files). Blank lines and
  lines starting with ``#`` are skipped.
* a JSON file holding ``{"class": ["w1", "w2"], ...}`` or a list of word lists in class order;
* the same mapping / list given directly in Python.

Class names are matched case-insensitively against the task's label names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skillneurons.errors import ConfigError, DataError

WordSource = str | os.PathLike[str] | Mapping[str, Sequence[str]] | Sequence[Sequence[str]]


def _clean(words: Any, where: str) -> list[str]:
    if isinstance(words, str):
        words = words.split(",")
    if not isinstance(words, Sequence) or not all(isinstance(w, str) for w in words):
        raise DataError(f"{where}: label words must be a list of strings (or one comma-separated string)")
    out = list(dict.fromkeys(" ".join(w.split()) for w in words))
    return [w for w in out if w]


def _by_name(mapping: Mapping[str, Any], class_names: Sequence[str], where: str) -> list[list[str]]:
    index = {n.casefold().strip(): i for i, n in enumerate(class_names)}
    out: list[list[str] | None] = [None] * len(class_names)
    for key, words in mapping.items():
        i = index.get(str(key).casefold().strip())
        if i is None:
            raise DataError(
                f"{where} names class '{key}', which the task does not have: use the label names "
                f"{list(class_names)}"
            )
        out[i] = [*(out[i] or []), *_clean(words, f"{where}, class '{key}'")]
    return _complete(out, class_names, where)


def _complete(out: Sequence[list[str] | None], class_names: Sequence[str], where: str) -> list[list[str]]:
    missing = [class_names[i] for i, ws in enumerate(out) if not ws]
    if missing:
        raise DataError(f"{where} gives no label words for class(es) {missing}: add a line for each class")
    return [list(dict.fromkeys(ws or [])) for ws in out]


def _positional(lists: Sequence[Any], class_names: Sequence[str], where: str) -> list[list[str]]:
    if len(lists) != len(class_names):
        raise DataError(
            f"{where} has {len(lists)} word lists but the task has {len(class_names)} classes "
            f"{list(class_names)}: "
            "give one line per class, in class order, or name each line 'class: w1, w2'"
        )
    return _complete([_clean(ws, f"{where}, list {i + 1}") for i, ws in enumerate(lists)], class_names, where)


def parse_label_words(
    text: str, class_names: Sequence[str], where: str = "label-word text"
) -> list[list[str]]:
    """Parse the text-file format (see the module docstring) into one word list per class."""
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    named = [":" in ln and "," not in ln.split(":", 1)[0] for ln in lines]  # 'class: w1, w2'
    if any(named) and not all(named):
        bad = lines[named.index(False)]
        raise DataError(
            f"{where}: line {bad[:40]!r} does not start with a class name while others do: write every "
            "line as "
            f"'class: w1, w2' with a class from {list(class_names)}"
        )
    if lines and all(named):
        mapping: dict[str, list[str]] = {}
        for ln in lines:
            key, words = ln.split(":", 1)
            mapping.setdefault(key.strip(), []).extend(words.split(","))
        return _by_name(mapping, class_names, where)
    return _positional([ln.split(",") for ln in lines], class_names, where)


def load_label_words(source: WordSource, class_names: Sequence[str]) -> list[list[str]]:
    """One list of label words per class (in the order of ``class_names``) from a file path, a
    ``{class: words}`` mapping, or a list of word lists in class order."""
    if isinstance(source, Mapping):
        return _by_name(source, class_names, "the label-word mapping")
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"label-word file {path} not found: pass a text or JSON file of words per class")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise DataError(f"label-word file {path} is not UTF-8 text: save it as UTF-8") from None
        if path.suffix.lower() == ".json":
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"label-word file {path} is not valid JSON ({e.msg}, line {e.lineno})"
                ) from None
            if isinstance(obj, Mapping):
                return _by_name(obj, class_names, f"label-word file {path}")
            if isinstance(obj, list):
                return _positional(obj, class_names, f"label-word file {path}")
            raise DataError(
                f"label-word file {path} holds a JSON {type(obj).__name__}: write an object "
                f"{{class: [words]}}"
            )
        return parse_label_words(text, class_names, f"label-word file {path}")
    return _positional(list(source), class_names, "the label-word lists")


def base_label_words(
    source: WordSource | None, class_names: Sequence[str], task_words: Sequence[Sequence[str]]
) -> list[list[str]]:
    """The label words a verbalizer starts from: those of ``source`` (file, mapping, lists), else the
    task's own label words."""
    return load_label_words(source, class_names) if source is not None else [list(w) for w in task_words]


def check_kpt_words(words: Sequence[Sequence[str]], class_names: Sequence[str], expand: int) -> None:
    """A knowledgeable verbalizer needs several words per class: refuse one word per class with no
    ``expand`` (that is the single-word verbalizer, and its figures would be reported as KPT's)."""
    if expand > 0 or any(len(ws) > 1 for ws in words):
        return
    shown = ", ".join(f"{c}: {ws[0]}" for c, ws in zip(class_names, words))
    raise ConfigError(
        f"--verbalizer kpt has only one label word per class ({shown}), which is the single-word verbalizer: "
        "pass --words FILE (several words per class) or --expand N (embedding neighbours), "
        "or use --verbalizer single"
    )
