"""Task options: which data a command reads (a built-in name, a file, or an ``hf:`` dataset) and how
its columns are read. No torch, numpy or pandas here."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from skillneurons.options import option

if TYPE_CHECKING:
    from skillneurons.data.task import Task

__all__ = ["SPLIT_SEED_HELP", "TaskOptions"]

#: the help of ``--split-seed`` on the commands that read an artifact's split (RunDir's rule)
SPLIT_SEED_HELP = (
    "seed of the train/dev/test split of an artifact that records none, e.g. an imported PEFT prompt "
    "(pass --task too); default: the artifact's own split"
)


@dataclass
class TaskOptions:
    """A task spec and its column options, as :func:`~skillneurons.data.load_task` takes them."""

    task: str | None = option(
        None,
        "built-in task (mr, pang_lee, fine_food, bbc_news, tweets), a CSV/TSV/JSONL/Parquet file, "
        "or hf:NAME[/CONFIG]",
    )
    text_column: str | None = option(None, "column holding the text (files / hf datasets)")
    text_b_column: str | None = option(None, "column holding the second text of a pair task")
    label_column: str | None = option(None, "column holding the label")
    label_names: str | tuple[str, ...] | None = option(
        None,
        "comma-separated label set, in class order; NAME=LABEL reads the data's label LABEL as class NAME "
        "(to evaluate a prompt on data that names its classes otherwise)",
    )
    hf_split: str | None = option(None, "split of an hf: dataset to read (default: train)")
    encoding: str | None = option(None, "text encoding of a data file, e.g. latin-1 (default: UTF-8)")

    def label_name_list(self) -> list[str] | None:
        """The label names as a list (a comma-separated string is split), or ``None``."""
        if not self.label_names:
            return None
        if isinstance(self.label_names, str):
            return self.label_names.split(",")
        return list(self.label_names)

    def load(self) -> Task:
        """The task these options name (:func:`~skillneurons.data.load_task`); every data problem is
        a one-line :class:`~skillneurons.errors.DataError`."""
        from skillneurons.data.loaders import load_task  # the loaders import numpy/pandas: on use only

        return load_task(
            self.task,  # type: ignore[arg-type]  # None is refused by load_task with a one-line error
            text_column=self.text_column,
            text_b_column=self.text_b_column,
            label_column=self.label_column,
            label_names=self.label_name_list(),
            split=self.hf_split,
            encoding=self.encoding,
        )

    @classmethod
    def from_load_spec(cls, spec: Mapping[str, Any]) -> TaskOptions:
        """The options a recorded :attr:`~skillneurons.data.Task.load_spec` was loaded with (the ones
        that have a flag)."""
        names = spec.get("label_names")
        return cls(
            task=spec.get("spec"),
            text_column=spec.get("text_column"),
            text_b_column=spec.get("text_b_column"),
            label_column=spec.get("label_column"),
            label_names=None if names is None else tuple(str(n) for n in names),
            hf_split=spec.get("split"),
            encoding=spec.get("encoding"),
        )

    def flags(self) -> str:
        """These options as command-line flags (``--task data.csv --text-column review``)."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                text = ",".join(value) if isinstance(value, tuple) else str(value)
                out.append(f"--{f.name.replace('_', '-')} {shlex.quote(text)}")
        return " ".join(out)
