"""Registries: how a higher floor plugs into a lower one without the lower one importing it.

A lower floor owns a :class:`Registry` (backbone folder loaders in ``backbones``, artifact methods and
heads in ``prompts``, tuning methods in ``training``...); a higher floor registers into it when it is
imported. So that a registered thing is found even when its package was never imported, a lookup
that misses imports the plugin modules named by the ``skillneurons.plugins`` entry points (the
project's own in ``pyproject.toml``; a third-party package adds its own the same way) and tries again.
Floor 0: no torch.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterator
from typing import Generic, TypeVar

from skillneurons.errors import ConfigError

__all__ = ["Registry", "load_plugins"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_LOADED = False


def load_plugins() -> None:
    """Import every module named by a ``skillneurons.plugins`` entry point (once per process)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for ep in importlib.metadata.entry_points(group="skillneurons.plugins"):
        try:
            ep.load()
        except Exception:  # a broken third-party plugin must not break the built-in methods
            log.warning("skillneurons plugin %s (%s) failed to load", ep.name, ep.value, exc_info=True)


class Registry(Generic[T]):
    """Named entries of one kind (``what``, e.g. ``"tuning method"``), registered by plugins."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T, *, overwrite: bool = False) -> T:
        """Add ``entry`` under ``name``; a second registration of a name needs ``overwrite``."""
        if name in self._entries and not overwrite and self._entries[name] is not entry:
            raise ConfigError(
                f"{self.what} '{name}' is already registered: pass overwrite=True to replace it"
            )
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry ``name``; unknown names are a one-line error listing the known ones."""
        if name not in self._entries:
            load_plugins()
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.what} '{name}': use one of {', '.join(self.names()) or '(none)'}"
            )
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        if name not in self._entries:
            load_plugins()
        return name in self._entries

    def names(self) -> list[str]:
        """Registered names, in registration order (plugins loaded first)."""
        load_plugins()
        return list(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        load_plugins()
        yield from self._entries.items()
