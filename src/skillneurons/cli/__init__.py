"""The ``skillneurons`` command line: one module per command group, flags generated from the configs.

``main`` and ``build_parser`` live in :mod:`skillneurons.cli.app`; each command module (``tune``,
``neurons``, ``perturb``, ``prune``, ``transfer``, ``kpt``, ``report``, ``data``) declares its
``COMMANDS``. Importing this package loads neither torch nor transformers.
"""

from skillneurons.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
