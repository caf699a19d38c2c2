"""Registers pruned-model folders (``pruning.json``) with :func:`skillneurons.backbones.load_backbone`.

Imported through the ``skillneurons.plugins`` entry point; see :mod:`skillneurons.registry`.
"""

from __future__ import annotations

from skillneurons.backbones.loading import FOLDER_LOADERS
from skillneurons.pruning.io import load_pruned

FOLDER_LOADERS.register("pruning.json", lambda path, device: load_pruned(path, device=device))
