"""Load a :class:`Task` from a built-in name, a local file, or a Hugging Face dataset.

:func:`load_task` dispatches on the spec: built-in tasks (:mod:`.builtin`), local files
(:mod:`.files`), ``hf:`` datasets (:mod:`.hub`); every source reduces its table to columns and builds
the task with :func:`~skillneurons.data.columns.task_from_columns`. Every problem a user can cause
becomes a one-line :class:`DataError` that says how to fix it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skillneurons.data.builtin import BUILTINS, load_builtin
from skillneurons.data.columns import (
    LABEL_GUESSES,
    PAIR_GUESSES,
    TEXT_GUESSES,
    label_words_for,
    task_from_columns,
)
from skillneurons.data.files import FILE_SUFFIXES, load_file
from skillneurons.data.hub import load_hub
from skillneurons.data.task import Task, stratified_sample
from skillneurons.errors import DataError

__all__ = [
    "FILE_SUFFIXES",
    "LABEL_GUESSES",
    "PAIR_GUESSES",
    "TEXT_GUESSES",
    "load_task",
    "task_from_columns",
]

_SUBSAMPLE_SEED = 0  # load_task(max_examples=...) draws its stratified subsample with this seed


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
    text files (default UTF-8, a BOM is ignored). The task records these arguments as its
    :attr:`~skillneurons.data.Task.load_spec` (a file by its absolute path), which a run's manifest keeps
    so that later commands load the same data without ``--task``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DataError("no task given: pass a built-in name, a data file path, or hf:DATASET[/CONFIG]")
    spec = spec.strip()
    if max_examples is not None and (isinstance(max_examples, bool) or int(max_examples) < 1):
        raise DataError(
            f"max_examples={max_examples} is invalid: give a positive number of examples, or none for all"
        )

    key = spec.removeprefix("builtin:").lower()
    recorded = spec  # how the task's record names its source (a file: its absolute path)
    if key in BUILTINS:
        given = {
            "--text-column": text_column,
            "--text-b-column": text_b_column,
            "--label-column": label_column,
            "--label-names": label_names,
            "--split": split,
            "--encoding": encoding,
        }
        task = _builtin(key, given, label_words)
    elif spec.startswith(("hf:", "hf://")):
        if encoding is not None:
            raise DataError(f"--encoding applies to data files, not to the dataset {spec}: leave it out")
        task = load_hub(
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
        recorded = str(Path(spec).expanduser().resolve())
        task = load_file(
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
    options = {
        "text_column": text_column,
        "text_b_column": text_b_column,
        "label_column": label_column,
        "label_names": label_names,
        "label_words": label_words,
        "split": split,
        "name": name,
        "max_examples": max_examples,
        "encoding": encoding,
        "dedup": dedup,
    }
    return dataclasses.replace(task, load_spec=_load_spec(recorded, options))


def _load_spec(spec: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """What :attr:`Task.load_spec` records: ``spec`` and the options given (JSON-able, defaults left out)."""
    out: dict[str, Any] = {"spec": spec}
    for key, value in options.items():
        if value is None or (key == "dedup" and value is True):
            continue
        if key == "label_names":
            value = value.split(",") if isinstance(value, str) else [str(x) for x in value]
        elif key == "label_words":
            value = {str(k): [v] if isinstance(v, str) else list(v) for k, v in value.items()}
        elif key == "max_examples":
            value = int(value)
        out[key] = value
    return out


def _builtin(key: str, given: Mapping[str, object], label_words: Mapping[str, Sequence[str]] | None) -> Task:
    """The built-in task ``key``; column options (``given``, by flag) do not apply to it."""
    for opt, value in given.items():
        if value is not None:
            raise DataError(
                f"{opt} does not apply to the built-in task '{key}': leave it out, or load a file instead"
            )
    task = load_builtin(key)
    if label_words is None:
        return task
    return Task(
        name=task.name,
        texts=task.texts,
        labels=task.labels,
        label_names=task.label_names,
        label_words=label_words_for(task.label_names, label_words, f"built-in task '{key}'"),
        texts_b=task.texts_b,
        source=task.source,
    )
