"""skillneurons: find, test and use skill neurons in pre-trained transformers."""

from __future__ import annotations

__version__ = "0.1.0"

from skillneurons.errors import ArtifactError, ConfigError, DataError, ModelError, SkillNeuronsError

__all__ = [
    "ArtifactError",
    "ConfigError",
    "DataError",
    "ModelError",
    "SkillNeuronsError",
    "__version__",
]
