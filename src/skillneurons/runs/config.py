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
    dev_size: int | None = option(
        None, "examples in the dev part (default: a tenth of the examples); the rest trains"
    )
    test_size: int | None = option(None, "examples in the test part (default: a tenth of the examples)")
    overwrite: bool = option(False, "replace a run folder that holds a run with other options")

    def __post_init__(self) -> None:
        check_range("--max-examples", self.max_examples, low=1)
        check_range("--dev-size", self.dev_size, low=1)
        check_range("--test-size", self.test_size, low=1)

    def split_seed_for(self, train_seed: int) -> int:
        """The seed of the train/dev/test split of a run trained with ``train_seed``: the one rule."""
        return train_seed if self.split_seed is None else self.split_seed

    def fractions(self, n: int) -> tuple[float, float, float] | None:
        """The train/dev/test fractions of ``n`` examples that give the requested part sizes (None: the
        default 80/10/10); a request that leaves fewer than one training example is a one-line error."""
        if self.dev_size is None and self.test_size is None:
            return None
        pool = min(n, self.max_examples) if self.max_examples is not None else n
        dev = self.dev_size if self.dev_size is not None else round(0.1 * pool)
        test = self.test_size if self.test_size is not None else round(0.1 * pool)
        if dev + test >= pool:
            raise ConfigError(
                f"--dev-size {dev} and --test-size {test} leave no training examples of {pool}: ask for "
                "smaller parts (or more --max-examples)"
            )
        return ((pool - dev - test) / pool, dev / pool, test / pool)


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
