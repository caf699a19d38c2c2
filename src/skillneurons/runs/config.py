"""Options of a run folder: which examples it uses and what happens to an existing one. No torch."""

from __future__ import annotations

from dataclasses import dataclass

from skillneurons.options import check_range, option

__all__ = ["RunOptions"]


@dataclass
class RunOptions:
    """The data and folder options of a training run (part of its identity, but ``overwrite``)."""

    max_examples: int | None = option(None, "stratified subsample of the task before splitting")
    split_seed: int | None = option(None, "seed of the train/dev/test split (default: the training --seed)")
    overwrite: bool = option(False, "replace a run folder that holds a run with other options")

    def __post_init__(self) -> None:
        check_range("--max-examples", self.max_examples, low=1)
