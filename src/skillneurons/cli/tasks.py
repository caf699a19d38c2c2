"""``--task`` for commands that take prompts of several tasks (``cross-perturb``, ``transfer-matrix``):
one task per prompt, in order, for prompts that record none (imported PEFT prompts); ``-`` keeps a
prompt's own. The column options apply to every data file given. Torch-free (used by ``--help``)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from skillneurons.cli.options import add_config, build_config
from skillneurons.data.config import TaskOptions
from skillneurons.errors import ConfigError

if TYPE_CHECKING:
    from skillneurons.data import Task

__all__ = ["KEEP", "add_prompt_tasks", "prompt_tasks"]

#: ``--task`` entry that keeps a prompt's own recorded task
KEEP = "-"
_DEST = "prompt_tasks__task"


def add_prompt_tasks(p: argparse.ArgumentParser, what: str) -> None:
    """``--task TASK [TASK ...]`` (one per ``what``) and the column options, in one group."""
    g = p.add_argument_group(f"tasks (default: each {what}'s own, as recorded)")
    g.add_argument(
        "--task",
        dest=_DEST,
        nargs="+",
        metavar="TASK",
        default=None,
        help=f"one task per {what}, in order ('{KEEP}': that {what}'s own): built-in, a data file or "
        f"hf:NAME; needed for a {what} that records none (an imported PEFT prompt) (default: none)",
    )
    add_config(g, TaskOptions, exclude=("task",))


def prompt_tasks(args: argparse.Namespace, paths: Sequence[str], what: str) -> list[Task | None]:
    """The task given for each of ``paths`` (None: its own), loaded; one-line errors for a count
    that does not match."""
    names: list[str] | None = getattr(args, _DEST, None)
    if not names:
        return [None] * len(paths)
    if len(names) != len(paths):
        raise ConfigError(
            f"--task names {len(names)} task(s) for {len(paths)} {what}(s): give one per {what}, in "
            f"order ('{KEEP}' keeps a {what}'s own task)"
        )
    base: TaskOptions = build_config(args, TaskOptions)
    loaded: dict[str, Task] = {}
    out: list[Task | None] = []
    for name in names:
        if name == KEEP:
            out.append(None)
            continue
        if name not in loaded:
            loaded[name] = dataclasses.replace(base, task=name).load()
        out.append(loaded[name])
    return out
