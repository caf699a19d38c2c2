"""User-facing errors.

Every error a user can cause (bad data, unknown model, mismatched artifact, ...) is raised as a
:class:`SkillNeuronsError` subclass whose message is ONE line saying what is wrong and how to fix it.
The CLI prints such errors without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SkillNeuronsError(Exception):
    """Base class of errors caused by user input; the message is one actionable line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class DataError(SkillNeuronsError):
    """A data file, column, label or split is unusable."""


class ModelError(SkillNeuronsError):
    """A model cannot be loaded, or its architecture is not known."""


class ArtifactError(SkillNeuronsError):
    """An artifact is missing, corrupted, or belongs to another model/geometry/version."""


class ConfigError(SkillNeuronsError):
    """An option or a combination of options is invalid."""


class NonFiniteError(SkillNeuronsError):
    """A parameter, a loss or an activation is NaN or infinite (a diverged run, a corrupted prompt)."""
