"""Options of a run folder: which examples it uses and what happens to an existing one. No torch."""

from __future__ import annotations

from dataclasses import dataclass

from skillneurons.errors import ConfigError
from skillneurons.options import check_range, option

__all__ = ["RunOptions", "check_tuning"]


@dataclass
class RunOptions:
    """The data and folder options of a training run (part of its identity, but ``overwrite``)."""

    max_examples: int | None = option(None, "stratified subsample of the task before splitting")
    split_seed: int | None = option(None, "seed of the train/dev/test split (default: the training --seed)")
    overwrite: bool = option(False, "replace a run folder that holds a run with other options")

    def __post_init__(self) -> None:
        check_range("--max-examples", self.max_examples, low=1)


def check_tuning(
    method: str, *, tunes_prompt: bool, prompt_length: int, init_prompt: bool, progressive: bool
) -> None:
    """The checks of a tuning run that need neither data nor a model, one rule each: run by
    ``tune_prompt`` and by ``skillneurons tune`` before it loads anything (torch included)."""
    if tunes_prompt:
        check_range("--prompt-length", prompt_length, low=1)
    if not tunes_prompt and init_prompt:
        raise ConfigError(
            f"--init-prompt starts a soft prompt; --method {method} tunes no prompt: drop one of them"
        )
    if not tunes_prompt and progressive:
        raise ConfigError(f"progressive training tunes prompts: drop it for --method {method}")
