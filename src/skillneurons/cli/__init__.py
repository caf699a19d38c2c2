"""The ``skillneurons`` command line (being ported to one module per command group)."""

from skillneurons.cli._legacy import (
    _backbone,
    _backbone_args,
    _load_task_from,
    _task_args,
    _train_config,
    build_parser,
    main,
)

__all__ = [
    "_backbone",
    "_backbone_args",
    "_load_task_from",
    "_task_args",
    "_train_config",
    "build_parser",
    "main",
]
