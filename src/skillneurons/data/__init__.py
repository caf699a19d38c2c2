"""Tasks: labelled text classification (single texts or pairs), seeded splits, built-in real data."""

from skillneurons.data.builtin import BUILTINS, builtin_tasks, data_dir, fetch_builtin_data, load_builtin
from skillneurons.data.loaders import load_task, task_from_columns
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
    "DedupStats",
    "Task",
    "TaskSplits",
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
