"""Tasks: labelled text classification (single texts or pairs), seeded splits, built-in real data.

Exports are lazy (:mod:`skillneurons._lazy`): ``import skillneurons.data.config`` imports neither
numpy nor pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.data.builtin import (
        Article,
        bbc_articles,
        data_dir,
        fetch_builtin_data,
        load_builtin,
    )
    from skillneurons.data.catalog import BUILTINS, builtin_tasks
    from skillneurons.data.columns import task_from_columns
    from skillneurons.data.config import TaskOptions
    from skillneurons.data.loaders import load_task
    from skillneurons.data.task import (
        SPLIT_NAMES,
        DedupStats,
        Task,
        TaskSplits,
        check_disjoint,
        deduplicate,
        example_hash,
        normalize_text,
        stratified_sample,
    )

__all__ = [
    "BUILTINS",
    "SPLIT_NAMES",
    "Article",
    "DedupStats",
    "Task",
    "TaskOptions",
    "TaskSplits",
    "bbc_articles",
    "builtin_tasks",
    "check_disjoint",
    "data_dir",
    "deduplicate",
    "example_hash",
    "fetch_builtin_data",
    "load_builtin",
    "load_task",
    "normalize_text",
    "stratified_sample",
    "task_from_columns",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "BUILTINS": ".catalog",
        "Article": ".builtin",
        "bbc_articles": ".builtin",
        "SPLIT_NAMES": ".task",
        "DedupStats": ".task",
        "Task": ".task",
        "TaskOptions": ".config",
        "TaskSplits": ".task",
        "builtin_tasks": ".catalog",
        "check_disjoint": ".task",
        "data_dir": ".builtin",
        "deduplicate": ".task",
        "example_hash": ".task",
        "fetch_builtin_data": ".builtin",
        "load_builtin": ".builtin",
        "load_task": ".loaders",
        "normalize_text": ".task",
        "stratified_sample": ".task",
        "task_from_columns": ".columns",
    },
)
