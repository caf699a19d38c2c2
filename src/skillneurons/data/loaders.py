"""Load a :class:`Task` from a built-in name, a local file, or a Hugging Face dataset.

Every problem a user can cause (missing file, bad encoding, malformed CSV/JSON, unknown column,
unknown label, one class only, ...) becomes a one-line :class:`DataError` that says how to fix it.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import io
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skillneurons.data.task import Task, deduplicate, stratified_sample
from skillneurons.errors import DataError

log = logging.getLogger("skillneurons.data")

FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
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
_SUBSAMPLE_SEED = 0  # load_task(max_examples=...) draws its stratified subsample with this seed


# ----------------------------------------------------------------------------------------------
# public entry point
# ----------------------------------------------------------------------------------------------
def load_task(
    spec: str,
    *,
    text_column: str | None = None,
    text_b_column: str | None = None,
    label_column: str | None = None,
    label_names: Sequence[str] | None = None,
    label_words: Mapping[str, Sequence[str]] | None = None,
    split: str | None = None,
    name: str | None = None,
    max_examples: int | None = None,
    encoding: str | None = None,
    dedup: bool = True,
) -> Task:
    """Load a task.

    ``spec`` is a built-in name (see :func:`skillneurons.data.builtin_tasks`), a local file
    (``.csv .tsv .jsonl .json .parquet``, optionally ``.gz``-compressed), or ``hf:DATASET[/CONFIG]``
    (also ``hf:DATASET:CONFIG``) for a Hugging Face dataset; ``split`` picks the Hub split (default
    ``train``). Columns are guessed when not given. Labels may be strings or integers; with
    ``label_names`` every label must be one of them (or an index into them), otherwise the classes
    are the sorted distinct labels. ``label_words`` maps a label name to its verbalizer words
    (default: the name itself). Rows with an empty text are dropped (logged); duplicate examples are
    removed unless ``dedup=False`` (see :func:`skillneurons.data.task.deduplicate`). ``max_examples``
    keeps a stratified subsample drawn with a fixed seed (order preserved). ``encoding`` applies to
    text files (default UTF-8, a BOM is ignored).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DataError("no task given: pass a built-in name, a data file path, or hf:DATASET[/CONFIG]")
    spec = spec.strip()
    if max_examples is not None and (isinstance(max_examples, bool) or int(max_examples) < 1):
        raise DataError(
            f"max_examples={max_examples} is invalid: give a positive number of examples, or none for all"
        )

    from skillneurons.data import builtin

    key = spec.removeprefix("builtin:").lower()
    if key in builtin.BUILTINS:
        given = {
            "--text-column": text_column,
            "--text-b-column": text_b_column,
            "--label-column": label_column,
            "--label-names": label_names,
            "--split": split,
            "--encoding": encoding,
        }
        for opt, value in given.items():
            if value is not None:
                raise DataError(
                    f"{opt} does not apply to the built-in task '{key}': leave it out, or load a file instead"
                )
        task = builtin.load_builtin(key)
        if label_words is not None:
            task = Task(
                name=task.name,
                texts=task.texts,
                labels=task.labels,
                label_names=task.label_names,
                label_words=_label_words(task.label_names, label_words, f"built-in task '{key}'"),
                texts_b=task.texts_b,
                source=task.source,
            )
    elif spec.startswith(("hf:", "hf://")):
        task = _load_hub(
            spec.removeprefix("hf://").removeprefix("hf:"),
            split=split,
            text_column=text_column,
            text_b_column=text_b_column,
            label_column=label_column,
            label_names=label_names,
            label_words=label_words,
            dedup=dedup,
        )
    else:
        if split is not None:
            raise DataError(f"--split applies to hf: datasets, not to the file {spec}: leave it out")
        task = _load_file(
            spec,
            text_column=text_column,
            text_b_column=text_b_column,
            label_column=label_column,
            label_names=label_names,
            label_words=label_words,
            encoding=encoding,
            dedup=dedup,
        )
    if max_examples is not None and int(max_examples) < len(task):
        keep = stratified_sample(task.labels, int(max_examples), np.random.default_rng(_SUBSAMPLE_SEED))
        task = task.subset(keep.tolist())
    if name and name != task.name:
        task = Task(
            name, task.texts, task.labels, task.label_names, task.label_words, task.texts_b, task.source
        )
    return task


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
    tcol, bcol, lcol = _resolve_columns(cols, text_column, text_b_column, label_column, what)

    texts_raw = [_as_text(v, tcol, i, what, row_name, row_offset) for i, v in enumerate(columns[tcol])]
    texts_b_raw = (
        None
        if bcol is None
        else [_as_text(v, bcol, i, what, row_name, row_offset) for i, v in enumerate(columns[bcol])]
    )
    keep = [i for i in range(n) if texts_raw[i] and (texts_b_raw is None or texts_b_raw[i])]
    if not keep:
        raise DataError(
            f"every text in column '{tcol}'{'' if bcol is None else f' / {bcol!r}'} of {what} is empty: pick the text column with --text-column"
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
    if len(present) < 2:
        only = names[present[0]] if present else "none"
        raise DataError(
            f"{what} has only one class ({only!r}) in label column '{lcol}': a classifier needs at least two; "
            "check --label-column and the data"
        )
    missing = [names[c] for c in range(len(names)) if c not in set(present)]
    if missing:
        log.warning("%s: classes without examples: %s", what, ", ".join(missing))
    return Task(
        name=name,
        texts=tuple(texts),
        labels=tuple(labels),
        label_names=tuple(names),
        label_words=_label_words(tuple(names), label_words, what),
        texts_b=None if texts_b is None else tuple(texts_b),
        source=source,
    )


# ----------------------------------------------------------------------------------------------
# columns, texts, labels
# ----------------------------------------------------------------------------------------------
def _list_columns(cols: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(str(c) for c in cols[:limit])
    return shown + (f", ... ({len(cols)} in all)" if len(cols) > limit else "")


def _resolve_columns(
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
            f"column '{col}' not found in {what} (columns: {_list_columns(cols)}): pass {option} with one of them{hint}"
        )

    def guess(guesses: Sequence[str], role: str, option: str) -> str:
        for g in guesses:
            if g in lower:
                return lower[g]
        raise DataError(
            f"no {role} column found in {what} (looked for {', '.join(guesses)}; columns: {_list_columns(cols)}): "
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
            f"{what}: the text and label columns must differ (text '{tcol}', label '{lcol}'): pass --text-column and --label-column"
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
        f"label in {where} is a {type(v).__name__}, not a class name or number: pick the label column with --label-column"
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
                    f"label {v!r} in {row_name} {r + row_offset} of {what} is not a class index 0..{k - 1} of {label_names}{hint}: "
                    "fix the data or choose another split"
                )
        return [int(v) for v in values], label_names
    if label_names is not None:
        if isinstance(label_names, str):
            label_names = [x.strip() for x in label_names.split(",")]
        names = [str(x).strip() for x in label_names]
        if len(set(names)) != len(names) or not all(names):
            raise DataError(
                f"--label-names {names} repeats a name or has an empty one: give each class name once"
            )
        index = {nm: j for j, nm in enumerate(names)}
        if all(str(v) in index for v in values):
            return [index[str(v)] for v in values], names
        if all(isinstance(v, int) and 0 <= v < len(names) for v in values):
            log.info("%s: integer labels taken as indices into label names %s", what, names)
            return [int(v) for v in values], names
        j = next(j for j, v in enumerate(values) if str(v) not in index)
        raise DataError(
            f"label {values[j]!r} in {row_name} {rows[j] + row_offset} of {what} is not one of the label names "
            f"({', '.join(names)}): add it to --label-names or fix the data"
        )
    if all(isinstance(v, int) for v in values):
        uniq: list[Any] = sorted(set(values))
    else:
        values = [str(v) for v in values]
        uniq = sorted(set(values))
    index2 = {v: j for j, v in enumerate(uniq)}
    return [index2[v] for v in values], [str(v) for v in uniq]


def _label_words(
    names: Sequence[str], words: Mapping[str, Sequence[str]] | None, what: str
) -> tuple[tuple[str, ...], ...]:
    """Per-class verbalizer words: ``words[name]`` where given (a single string is one word), else the name."""
    if words is None:
        return tuple((n,) for n in names)
    unknown = [k for k in words if k not in names]
    if unknown:
        raise DataError(
            f"label words given for unknown class {unknown[0]!r} of {what} (classes: {', '.join(names)}): use the class names as keys"
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


def _default_name(raw: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-.")
    return name or "task"


# ----------------------------------------------------------------------------------------------
# local files
# ----------------------------------------------------------------------------------------------
def _decode(data: bytes, path: Path, encoding: str | None) -> str:
    enc = encoding or "utf-8-sig"
    try:
        return data.decode(enc)
    except LookupError as e:
        raise DataError(
            f"unknown encoding {encoding!r}: give a Python codec name such as utf-8 or latin-1"
        ) from e
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path} is not valid {enc.removesuffix('-sig').upper()} (byte 0x{data[e.start]:02x} at line {line}): "
            "re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8), or give its encoding (--encoding latin-1)"
        ) from e


def _read_delimited(text: str, path: Path, sep: str) -> dict[str, list[Any]]:
    import pandas as pd

    def parse(quoting: int) -> pd.DataFrame:
        return pd.read_csv(
            io.StringIO(text),
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            quoting=quoting,
            skip_blank_lines=True,
            engine="c",
        )

    try:
        df = parse(csv.QUOTE_MINIMAL)
        if sep == "\t" and any(df[c].str.contains("\t", regex=False).any() for c in df.columns):
            # An unbalanced quote swallowed lines: GLUE-style TSV files do not use quoting at all.
            log.info("%s: quotes in this TSV are literal text (no CSV quoting)", path)
            df = parse(csv.QUOTE_NONE)
    except pd.errors.EmptyDataError as e:
        raise DataError(
            f"{path} has no header or rows: give a file with a header line and labelled rows"
        ) from e
    except Exception as e:  # the parser's own error: the file is malformed
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(
            f"{path} is not a well-formed {'TSV' if sep == chr(9) else 'CSV'} file ({first}): fix the quoting/field count, "
            "or check the delimiter (.csv = comma, .tsv = tab)"
        ) from e
    return {str(c): df[c].tolist() for c in df.columns}


def _records_to_columns(
    records: Sequence[Any], path: Path, row_name: str, rows: Sequence[int]
) -> dict[str, list[Any]]:
    cols: dict[str, None] = {}
    for rec, r in zip(records, rows):
        if not isinstance(rec, dict):
            raise DataError(
                f"{row_name} {r} of {path} is a JSON {type(rec).__name__}, not an object: give one object per example"
            )
        cols.update(dict.fromkeys(str(k) for k in rec))
    return {c: [rec.get(c) for rec in records] for c in cols}


def _read_jsonl(text: str, path: Path) -> tuple[dict[str, list[Any]], list[int]]:
    records: list[Any] = []
    lines: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError) as e:
            msg = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            raise DataError(
                f"line {lineno} of {path} is not valid JSON ({msg}): write one JSON object per line"
            ) from e
        lines.append(lineno)
    return _records_to_columns(records, path, "line", lines), lines


def _read_json(text: str, path: Path) -> dict[str, list[Any]]:
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        where = (
            f"line {e.lineno} column {e.colno}: {e.msg}"
            if isinstance(e, json.JSONDecodeError)
            else "nested too deeply"
        )
        raise DataError(
            f"{path} is not valid JSON ({where}): fix the file (for one object per line, name it .jsonl)"
        ) from e
    if isinstance(obj, dict):
        lists = {k: v for k, v in obj.items() if isinstance(v, list)}
        if (
            lists
            and len(lists) == len(obj)
            and len({len(v) for v in lists.values()}) == 1
            and not all(v and isinstance(v[0], dict) for v in lists.values())
        ):
            return {str(k): list(v) for k, v in lists.items()}  # columnar: {"text": [...], "label": [...]}
        for key in ("data", "examples", "rows", "records", "instances", "train"):
            if isinstance(obj.get(key), list):
                obj = obj[key]
                break
        else:
            raise DataError(
                f"{path} holds a JSON object without a list of examples (keys: {_list_columns(list(obj))}): "
                'give a list of objects, {column: [values]}, or {"data": [objects]}'
            )
    if not isinstance(obj, list):
        raise DataError(
            f"{path} holds a JSON {type(obj).__name__}: give a list of objects with a text and a label each"
        )
    return _records_to_columns(obj, path, "item", range(1, len(obj) + 1))


def _read_parquet(data: bytes, path: Path) -> dict[str, list[Any]]:
    import pandas as pd

    try:
        df = pd.read_parquet(io.BytesIO(data))
    except Exception as e:  # pyarrow's own error: the file is not a readable Parquet file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(
            f"{path} is not a readable Parquet file ({first}): re-write it (e.g. pandas.DataFrame.to_parquet)"
        ) from e
    return {str(c): df[c].tolist() for c in df.columns}


def _load_file(
    spec: str,
    *,
    text_column: str | None,
    text_b_column: str | None,
    label_column: str | None,
    label_names: Sequence[str] | None,
    label_words: Mapping[str, Sequence[str]] | None,
    encoding: str | None,
    dedup: bool,
) -> Task:
    from skillneurons.data import builtin

    path = Path(spec).expanduser()
    if not path.exists():
        if path.suffix.lower() not in (*FILE_SUFFIXES, ".gz") and len(path.parts) == 1:
            close = difflib.get_close_matches(spec.lower(), list(builtin.BUILTINS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise DataError(
                f"unknown task '{spec}'{hint}: use a built-in ({', '.join(builtin.BUILTINS)}), a data file "
                f"({' '.join(FILE_SUFFIXES)}), or hf:DATASET[/CONFIG]"
            )
        raise DataError(
            f"data file {path} not found: check the path (built-in tasks: {', '.join(builtin.BUILTINS)})"
        )
    if not path.is_file():
        raise DataError(f"{path} is not a file: pass a data file ({' '.join(FILE_SUFFIXES)})")
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    fmt = (suffixes[-2] if compressed and len(suffixes) > 1 else suffixes[-1]) if suffixes else ""
    if fmt not in FILE_SUFFIXES:
        raise DataError(
            f"{path} has an unsupported type '{fmt or '(none)'}': use one of {' '.join(FILE_SUFFIXES)} (optionally .gz)"
        )
    try:
        data = path.read_bytes()
        if compressed:
            data = gzip.decompress(data)
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path} ({e}): check the file and its permissions") from e
    if not data.strip():
        raise DataError(f"{path} is empty: give a file with a header and labelled rows")
    row_name, row_offset = "row", 1
    if fmt == ".parquet":
        columns = _read_parquet(data, path)
    else:
        text = _decode(data, path, encoding)
        if not text.strip():
            raise DataError(f"{path} is empty: give a file with a header and labelled rows")
        if fmt in (".csv", ".tsv"):
            columns = _read_delimited(text, path, "," if fmt == ".csv" else "\t")
        elif fmt == ".jsonl":
            columns, lines = _read_jsonl(text, path)
            if not columns:
                raise DataError(f"{path} holds no JSON objects: write one object per line")
            # report rows by line number: a line table maps row i -> line lines[i]
            return _finish_jsonl(
                columns,
                lines,
                path,
                text_column,
                text_b_column,
                label_column,
                label_names,
                label_words,
                dedup,
            )
        else:
            columns = _read_json(text, path)
            row_name = "item"
    return task_from_columns(
        columns,
        name=_default_name(path.name.split(".")[0]),
        source=str(path.resolve()),
        what=path.name,
        text_column=text_column,
        text_b_column=text_b_column,
        label_column=label_column,
        label_names=label_names,
        label_words=label_words,
        row_name=row_name,
        row_offset=row_offset,
        dedup=dedup,
    )


def _finish_jsonl(
    columns: dict[str, list[Any]],
    lines: list[int],
    path: Path,
    text_column: str | None,
    text_b_column: str | None,
    label_column: str | None,
    label_names: Sequence[str] | None,
    label_words: Mapping[str, Sequence[str]] | None,
    dedup: bool,
) -> Task:
    """JSONL rows are reported by line; blank lines make line numbers differ from row numbers."""
    contiguous = lines == list(range(lines[0], lines[0] + len(lines)))
    return task_from_columns(
        columns,
        name=_default_name(path.name.split(".")[0]),
        source=str(path.resolve()),
        what=path.name,
        text_column=text_column,
        text_b_column=text_b_column,
        label_column=label_column,
        label_names=label_names,
        label_words=label_words,
        row_name="line" if contiguous else "record",
        row_offset=lines[0] if contiguous else 1,
        dedup=dedup,
    )


# ----------------------------------------------------------------------------------------------
# Hugging Face Hub
# ----------------------------------------------------------------------------------------------
def _hub_candidates(rest: str) -> list[tuple[str, str | None]]:
    """``(dataset, config)`` readings of ``DATASET[/CONFIG]`` / ``DATASET:CONFIG``, most likely first."""
    if ":" in rest:
        ds, _, cfg = rest.partition(":")
        return [(ds, cfg or None)]
    parts = [p for p in rest.split("/") if p]
    if len(parts) == 1:
        return [(parts[0], None)]
    if len(parts) == 2:  # "owner/name" or "name/config": try both
        return [("/".join(parts), None), (parts[0], parts[1])]
    return [("/".join(parts[:2]), "/".join(parts[2:]))]


def _hub_error(e: BaseException, ds: str, cfg: str | None, split: str | None) -> DataError:
    from skillneurons.data import builtin

    msg = " ".join(str(e).split())[:200] or type(e).__name__
    names = f"{type(e).__name__} {msg}"
    offline_markers = (
        "Couldn't reach",
        "OfflineModeIsEnabled",
        "LocalEntryNotFound",
        "Name or service",
        "Connection",
    )
    if isinstance(e, ConnectionError) or any(m in names for m in offline_markers):
        return DataError(
            f"cannot reach the Hugging Face Hub to load '{ds}' ({msg}): connect to the internet (or use a cached copy), "
            f"or use an offline built-in task ({', '.join(builtin.BUILTINS)}) or a local data file"
        )
    if "Config name is missing" in msg or "BuilderConfig" in msg:
        return DataError(f"dataset '{ds}' needs a configuration ({msg}): pass hf:{ds}/CONFIG")
    if "Unknown split" in msg or (split is not None and "split" in msg.lower()):
        return DataError(
            f"split '{split}' of hf:{ds} is not available ({msg}): pass --split with an existing split"
        )
    return DataError(
        f"cannot load hf:{ds}{'' if cfg is None else '/' + cfg} ({type(e).__name__}: {msg}): check the dataset name and configuration"
    )


def _load_hub(
    rest: str,
    *,
    split: str | None,
    text_column: str | None,
    text_b_column: str | None,
    label_column: str | None,
    label_names: Sequence[str] | None,
    label_words: Mapping[str, Sequence[str]] | None,
    dedup: bool,
) -> Task:
    if not rest.strip("/: "):
        raise DataError("no dataset named after hf: : pass hf:DATASET[/CONFIG], e.g. hf:glue/sst2")
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a dependency
        raise DataError("the 'datasets' package is needed for hf: tasks: pip install datasets") from e

    candidates = _hub_candidates(rest)
    loaded: Any = None
    chosen: tuple[str, str | None] | None = None
    errors: list[tuple[BaseException, str, str | None]] = []
    for ds, cfg in candidates:
        try:
            loaded = datasets.load_dataset(ds, cfg, split=split) if split else datasets.load_dataset(ds, cfg)
            chosen = (ds, cfg)
            break
        except Exception as e:  # datasets/huggingface_hub raise many types; all mean "cannot load this"
            errors.append((e, ds, cfg))
            if not _is_not_found(e):
                break  # offline, bad config, bad split: another reading of the name will not help
    if chosen is None:
        err, ds, cfg = errors[-1] if not _is_not_found(errors[-1][0]) else errors[0]
        raise _hub_error(err, ds, cfg, split) from err
    ds_name, cfg = chosen
    if split is None:
        if isinstance(loaded, Mapping) or hasattr(loaded, "keys"):
            splits = list(loaded.keys())
            split = "train" if "train" in splits else (splits[0] if len(splits) == 1 else None)
            if split is None:
                raise DataError(
                    f"hf:{ds_name} has no 'train' split (splits: {', '.join(splits)}): pass --split with one of them"
                )
            loaded = loaded[split]
    features = getattr(loaded, "features", None) or {}
    columns = list(loaded.column_names)
    tcol, bcol, lcol = _resolve_columns(columns, text_column, text_b_column, label_column, f"hf:{ds_name}")
    class_names = None
    feat = features.get(lcol) if hasattr(features, "get") else None
    if feat is not None and type(feat).__name__ == "ClassLabel":
        class_names = list(feat.names)
    table = loaded.select_columns([c for c in (tcol, bcol, lcol) if c is not None]).to_dict()
    label = ds_name + ("" if cfg is None else "/" + cfg)
    return task_from_columns(
        table,
        name=_default_name(label.replace("/", "-")),
        source=f"hf:{label} split={split}",
        what=f"hf:{label} ({split})",
        text_column=tcol,
        text_b_column=bcol,
        label_column=lcol,
        label_names=label_names,
        label_words=label_words,
        class_label_names=class_names,
        dedup=dedup,
    )


def _is_not_found(e: BaseException) -> bool:
    """True for 'no such dataset' errors, which let the next reading of ``DATASET/CONFIG`` be tried."""
    return type(e).__name__ in (
        "DatasetNotFoundError",
        "FileNotFoundError",
        "FileNotFoundDatasetsError",
        "RepositoryNotFoundError",
    )
