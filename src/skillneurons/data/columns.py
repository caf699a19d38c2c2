"""Turning a table (``{column: values}``) into a :class:`Task`: the column guesses, text cells,
label values and label words every loader shares.

Every problem a user can cause (unknown column, missing or fractional label, unknown label, ...)
becomes a one-line :class:`DataError` that says how to fix it. Data with one class only is a valid
test set: training and ranking refuse it (:meth:`Task.require_classes`), loading does not.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from skillneurons.data.task import Task, deduplicate
from skillneurons.errors import DataError

__all__ = [
    "LABEL_GUESSES",
    "PAIR_GUESSES",
    "TEXT_GUESSES",
    "default_name",
    "label_words_for",
    "list_columns",
    "resolve_columns",
    "task_from_columns",
]

log = logging.getLogger("skillneurons.data")

TEXT_GUESSES = ("text", "sentence", "review", "content", "document")
LABEL_GUESSES = ("label", "labels", "class", "sentiment", "category", "target")
# (first, second) column names of common pair datasets (NLI, paraphrase, QA entailment).
PAIR_GUESSES = (
    ("premise", "hypothesis"),
    ("sentence1", "sentence2"),
    ("question1", "question2"),
    ("question", "sentence"),
    ("question", "passage"),
    ("text_a", "text_b"),
    ("text1", "text2"),
)
_MISSING_LABEL_STRINGS = {"", "nan", "na", "n/a", "null"}
_INT_RE = re.compile(r"[+-]?\d+")


def task_from_columns(
    columns: Mapping[str, Sequence[Any]],
    *,
    name: str,
    source: str,
    what: str,
    text_column: str | None = None,
    text_b_column: str | None = None,
    label_column: str | None = None,
    label_names: Sequence[str] | None = None,
    label_words: Mapping[str, Sequence[str]] | None = None,
    class_label_names: Sequence[str] | None = None,
    row_name: str = "row",
    row_offset: int = 1,
    dedup: bool = True,
) -> Task:
    """Build a :class:`Task` from a table given as ``{column: values}`` (what every loader reduces to).

    ``what`` names the data in messages; ``class_label_names`` are the names of an integer label
    feature (Hugging Face ``ClassLabel``); rows are reported as ``f"{row_name} {i + row_offset}"``.
    """
    cols = list(columns)
    if not cols:
        raise DataError(f"{what} has no columns: give a table with a text and a label column")
    n = len(columns[cols[0]])
    if n == 0:
        raise DataError(f"{what} has no data rows: give a file with a header and at least two labelled rows")
    tcol, bcol, lcol = resolve_columns(cols, text_column, text_b_column, label_column, what)

    texts_raw = [_as_text(v, tcol, i, what, row_name, row_offset) for i, v in enumerate(columns[tcol])]
    texts_b_raw = (
        None
        if bcol is None
        else [_as_text(v, bcol, i, what, row_name, row_offset) for i, v in enumerate(columns[bcol])]
    )
    keep = [i for i in range(n) if texts_raw[i] and (texts_b_raw is None or texts_b_raw[i])]
    if not keep:
        raise DataError(
            f"every text in column '{tcol}'{'' if bcol is None else f' / {bcol!r}'} of {what} is empty: pick "
            "the text column with --text-column"
        )
    if len(keep) < n:
        log.warning("%s: dropped %d of %d rows with an empty text", what, n - len(keep), n)
    raw_labels = columns[lcol]
    labels, names = _resolve_labels(
        [raw_labels[i] for i in keep],
        keep,
        lcol,
        label_names,
        class_label_names,
        what,
        row_name,
        row_offset,
    )
    texts = [texts_raw[i] for i in keep]
    texts_b = None if texts_b_raw is None else [texts_b_raw[i] for i in keep]
    if dedup:
        kept, stats = deduplicate(texts, texts_b, labels)
        if stats.kept < stats.total:
            log.warning(
                "%s: removed %d duplicate and %d label-conflicting examples (%d kept)",
                what,
                stats.duplicates,
                stats.conflicting,
                stats.kept,
            )
            texts = [texts[i] for i in kept]
            texts_b = None if texts_b is None else [texts_b[i] for i in kept]
            labels = [labels[i] for i in kept]
    present = sorted(set(labels))
    if len(present) < 2:  # a valid test set; training and ranking refuse it (Task.require_classes)
        log.info("%s: one class only in label column '%s': usable to evaluate, not to train", what, lcol)
    missing = [names[c] for c in range(len(names)) if c not in set(present)]
    if missing:
        log.warning("%s: classes without examples: %s", what, ", ".join(missing))
    return Task(
        name=name,
        texts=tuple(texts),
        labels=tuple(labels),
        label_names=tuple(names),
        label_words=label_words_for(tuple(names), label_words, what),
        texts_b=None if texts_b is None else tuple(texts_b),
        source=source,
    )


def list_columns(cols: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(str(c) for c in cols[:limit])
    return shown + (f", ... ({len(cols)} in all)" if len(cols) > limit else "")


def resolve_columns(
    cols: list[str],
    text_column: str | None,
    text_b_column: str | None,
    label_column: str | None,
    what: str,
) -> tuple[str, str | None, str]:
    """``(text, text_b or None, label)`` column names: the given ones (checked) or guessed ones."""
    lower: dict[str, str] = {}
    for c in cols:
        lower.setdefault(str(c).casefold(), c)

    def given(col: str, option: str) -> str:
        if col in cols:
            return col
        if col.casefold() in lower:
            return lower[col.casefold()]
        close = difflib.get_close_matches(col, [str(c) for c in cols], n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DataError(
            f"column '{col}' not found in {what} (columns: {list_columns(cols)}): pass {option} with one of "
            f"them{hint}"
        )

    def guess(guesses: Sequence[str], role: str, option: str) -> str:
        for g in guesses:
            if g in lower:
                return lower[g]
        raise DataError(
            f"no {role} column found in {what} (looked for {', '.join(guesses)}; columns: "
            f"{list_columns(cols)}): "
            f"pass {option} with one of them"
        )

    tcol = given(text_column, "--text-column") if text_column is not None else None
    bcol = given(text_b_column, "--text-b-column") if text_b_column is not None else None
    if tcol is None and bcol is None:
        for a, b in PAIR_GUESSES:
            if a in lower and b in lower:
                tcol, bcol = lower[a], lower[b]
                log.info("%s: pair task, text columns '%s' and '%s'", what, tcol, bcol)
                break
    if tcol is None:
        firsts = tuple(dict.fromkeys(a for a, _ in PAIR_GUESSES)) if bcol is not None else ()
        tcol = guess(TEXT_GUESSES + firsts, "text", "--text-column")
    lcol = (
        given(label_column, "--label-column")
        if label_column is not None
        else guess(LABEL_GUESSES, "label", "--label-column")
    )
    if len({tcol, lcol} | ({bcol} if bcol else set())) < (3 if bcol else 2):
        raise DataError(
            f"{what}: the text and label columns must differ (text '{tcol}', label '{lcol}'): pass "
            "--text-column and --label-column"
        )
    return tcol, bcol, lcol


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    try:
        import pandas as pd

        return v is pd.NA or v is pd.NaT
    except ImportError:  # pragma: no cover - pandas is a dependency
        return False


def _as_text(v: Any, col: str, i: int, what: str, row_name: str, row_offset: int) -> str:
    """A cell of a text column as a stripped string ('' for a missing cell)."""
    if _is_missing(v):
        return ""
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, (bool, int, float, np.integer, np.floating)):
        return str(v)
    raise DataError(
        f"column '{col}' of {what} holds a {type(v).__name__} in {row_name} {i + row_offset}, not a text: "
        "pick a column of strings with --text-column"
    )


def _label_value(v: Any, col: str, i: int, what: str, row_name: str, row_offset: int) -> int | str:
    """One raw label as an int or a stripped string; missing or fractional labels are errors."""
    where = f"{row_name} {i + row_offset} of {what}"
    if isinstance(v, str):
        s = v.strip()
        if s.casefold() in _MISSING_LABEL_STRINGS:
            raise DataError(f"label missing in {where} (column '{col}'): fill it in or remove the row")
        return s
    if _is_missing(v):
        raise DataError(f"label missing in {where} (column '{col}'): fill it in or remove the row")
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        if math.isfinite(v) and float(v).is_integer():
            return int(v)
        raise DataError(
            f"label {v} in {where} is not a class (column '{col}' looks like a regression target): "
            "give class labels, or pick another column with --label-column"
        )
    raise DataError(
        f"label in {where} is a {type(v).__name__}, not a class name or number: pick the label column with "
        "--label-column"
    )


def _resolve_labels(
    raw: Sequence[Any],
    rows: Sequence[int],
    col: str,
    label_names: Sequence[str] | None,
    class_label_names: Sequence[str] | None,
    what: str,
    row_name: str,
    row_offset: int,
) -> tuple[list[int], list[str]]:
    """Class indices and class names for raw labels (see :func:`load_task` for the rules)."""
    values = [_label_value(v, col, r, what, row_name, row_offset) for v, r in zip(raw, rows)]
    if values and all(isinstance(v, str) for v in values) and all(_INT_RE.fullmatch(str(v)) for v in values):
        values = [int(v) for v in values]  # "-1"/"1" read from a text file are numbers
    if label_names is None and class_label_names is not None:
        label_names = [str(x) for x in class_label_names]
        k = len(label_names)
        for v, r in zip(values, rows):
            if not (isinstance(v, int) and 0 <= v < k):
                hint = (
                    " (a Hub test split often has no labels, marked -1: use another --split)"
                    if v == -1
                    else ""
                )
                raise DataError(
                    f"label {v!r} in {row_name} {r + row_offset} of {what} is not a class index 0..{k - 1} "
                    f"of {label_names}{hint}: "
                    "fix the data or choose another split"
                )
        return [int(v) for v in values], label_names
    if label_names is not None:
        names, data_labels = _label_names(label_names)
        index = {nm: j for j, nm in enumerate(data_labels)}
        if all(str(v) in index for v in values):
            return [index[str(v)] for v in values], names
        if all(isinstance(v, int) and 0 <= v < len(names) for v in values):
            log.info("%s: integer labels taken as indices into label names %s", what, names)
            return [int(v) for v in values], names
        j = next(j for j, v in enumerate(values) if str(v) not in index)
        raise DataError(
            f"label {values[j]!r} in {row_name} {rows[j] + row_offset} of {what} is not one of the label "
            "names "
            f"({', '.join(data_labels)}): add it to --label-names or fix the data"
        )
    if all(isinstance(v, int) for v in values):
        uniq: list[Any] = sorted(set(values))
    else:
        values = [str(v) for v in values]
        uniq = sorted(set(values))
    index2 = {v: j for j, v in enumerate(uniq)}
    return [index2[v] for v in values], [str(v) for v in uniq]


def _label_names(label_names: Sequence[str] | str) -> tuple[list[str], list[str]]:
    """``(class names, the data label of each)`` from ``--label-names``: ``NAME`` is a class whose data
    label is its name, ``NAME=LABEL`` reads the data label ``LABEL`` as class ``NAME``."""
    if isinstance(label_names, str):
        label_names = label_names.split(",")
    pairs = [str(x).partition("=") for x in label_names]
    names = [name.strip() for name, _, _ in pairs]
    data_labels = [(label if sep else name).strip() for name, sep, label in pairs]
    for what in (names, data_labels):
        if len(set(what)) != len(what) or not all(what):
            raise DataError(
                f"--label-names {','.join(map(str, label_names))} repeats a name or has an empty one: give "
                "each class once (NAME, or NAME=DATA_LABEL)"
            )
    return names, data_labels


def label_words_for(
    names: Sequence[str], words: Mapping[str, Sequence[str]] | None, what: str
) -> tuple[tuple[str, ...], ...]:
    """Per-class verbalizer words: ``words[name]`` where given (a single string is one word), else the
    name."""
    if words is None:
        return tuple((n,) for n in names)
    unknown = [k for k in words if k not in names]
    if unknown:
        raise DataError(
            f"label words given for unknown class {unknown[0]!r} of {what} (classes: {', '.join(names)}): "
            "use the class names as keys"
        )
    out = []
    for n in names:
        w = words.get(n, (n,))
        ws = (w,) if isinstance(w, str) else tuple(w)
        ws = tuple(str(x).strip() for x in ws)
        if not ws or not all(ws):
            raise DataError(
                f"label words of class {n!r} of {what} are empty: give at least one non-empty word"
            )
        out.append(ws)
    return tuple(out)


def default_name(raw: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-.")
    return name or "task"
