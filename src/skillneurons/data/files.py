"""Local data files: CSV, TSV, JSONL, JSON and Parquet, optionally ``.gz``-compressed.

Every problem a user can cause (missing file, bad encoding, malformed CSV/JSON, ...) becomes a
one-line :class:`DataError` that says how to fix it.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skillneurons.data.builtin import BUILTINS
from skillneurons.data.columns import default_name, list_columns, task_from_columns
from skillneurons.data.task import Task
from skillneurons.errors import DataError

__all__ = ["FILE_SUFFIXES", "load_file"]

log = logging.getLogger("skillneurons.data")

FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


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
            f"{path} is not valid {enc.removesuffix('-sig').upper()} (byte 0x{data[e.start]:02x} at line "
            f"{line}): "
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
            f"{path} is not a well-formed {'TSV' if sep == chr(9) else 'CSV'} file ({first}): fix the "
            "quoting/field count, "
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
                f"{row_name} {r} of {path} is a JSON {type(rec).__name__}, not an object: give one object "
                "per example"
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
                f"{path} holds a JSON object without a list of examples (keys: {list_columns(list(obj))}): "
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


def load_file(
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
    path = Path(spec).expanduser()
    if not path.exists():
        if path.suffix.lower() not in (*FILE_SUFFIXES, ".gz") and len(path.parts) == 1:
            close = difflib.get_close_matches(spec.lower(), list(BUILTINS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise DataError(
                f"unknown task '{spec}'{hint}: use a built-in ({', '.join(BUILTINS)}), a data file "
                f"({' '.join(FILE_SUFFIXES)}), or hf:DATASET[/CONFIG]"
            )
        raise DataError(f"data file {path} not found: check the path (built-in tasks: {', '.join(BUILTINS)})")
    if not path.is_file():
        raise DataError(f"{path} is not a file: pass a data file ({' '.join(FILE_SUFFIXES)})")
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    fmt = (suffixes[-2] if compressed and len(suffixes) > 1 else suffixes[-1]) if suffixes else ""
    if fmt not in FILE_SUFFIXES:
        raise DataError(
            f"{path} has an unsupported type '{fmt or '(none)'}': use one of {' '.join(FILE_SUFFIXES)} "
            "(optionally .gz)"
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
        name=default_name(path.name.split(".")[0]),
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
        name=default_name(path.name.split(".")[0]),
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
