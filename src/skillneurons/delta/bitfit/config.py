"""Options of BitFit (none: every bias of the transformer body is tuned). No torch here."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BitFitConfig"]


@dataclass
class BitFitConfig:
    """BitFit has no options (``method_options`` is ``{}``)."""
