"""Options: every method and command option is a dataclass field, declared once.

A field carries its help text in ``metadata["help"]`` (PEFT's convention); :func:`option` is the short
spelling. A config validates its combinations in ``__post_init__`` and raises
:class:`~skillneurons.errors.ConfigError` with a one-line message. The command line builds its flags
from these dataclasses (:mod:`skillneurons.cli.options`), so a default is written in one place and
every ``--help`` shows it. This module imports neither torch nor transformers: a config module may
import only it, ``errors`` and the standard library, so that building the parser stays fast.

Metadata keys understood by the CLI generator:

``help``       the help text (required);
``choices``    allowed values (also checked by :func:`check_choice`);
``flag``       the flag's name when it differs from ``--field-name``;
``aliases``    older spellings still accepted for one release, each printing a deprecation line;
``metavar``    the placeholder shown in ``--help``;
``cli``        ``False`` to keep an API-only field off the command line;
``positional`` ``True`` for a positional argument (lists: one or more values).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from skillneurons.errors import ConfigError

__all__ = [
    "check_choice",
    "check_range",
    "configure",
    "option",
    "option_fields",
    "parse_floats",
    "require",
]

_MISSING: Any = dataclasses.MISSING
C = TypeVar("C")


def option(
    default: Any = _MISSING,
    help: str = "",
    *,
    default_factory: Any = _MISSING,
    choices: Sequence[Any] | None = None,
    flag: str | None = None,
    aliases: Sequence[str] = (),
    metavar: str | None = None,
    cli: bool = True,
    positional: bool = False,
) -> Any:
    """A dataclass field with its help text and CLI hints (see the module docstring)."""
    if not help:
        raise TypeError("every option needs a help text")
    meta: dict[str, Any] = {"help": help, "cli": cli, "positional": positional, "aliases": tuple(aliases)}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if flag is not None:
        meta["flag"] = flag
    if metavar is not None:
        meta["metavar"] = metavar
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def option_fields(cls: Any) -> tuple[dataclasses.Field[Any], ...]:
    """The fields of config class ``cls`` (a dataclass), each checked to carry a help text."""
    fields = dataclasses.fields(cls)
    for f in fields:
        if not f.metadata.get("help"):
            raise TypeError(
                f"{cls.__name__}.{f.name} has no help text: declare it with option(..., help=...)"
            )
    return fields


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """ConfigError unless ``value`` is one of ``choices``; ``name`` is the option as the user spells it."""
    allowed = list(choices)
    if value not in allowed:
        raise ConfigError(f"{name} {value!r} is not known: use one of {', '.join(map(str, allowed))}")


def check_range(
    name: str,
    value: float | int | None,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """ConfigError unless ``low <= value <= high`` (``<`` where open); ``None`` passes."""
    if value is None:
        return
    bad = (
        (low is not None and (value < low or (low_open and value == low)))
        or (high is not None and (value > high or (high_open and value == high)))
        or value != value  # NaN
    )
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        raise ConfigError(
            f"{name} {value} is out of range: it must be {' and '.join(x for x in (lo, hi) if x)}"
        )


def parse_floats(value: str | Sequence[float] | float, name: str) -> list[float]:
    """``"0,0.01,0.02"`` (or a sequence) as floats; a one-line ConfigError naming ``name`` otherwise."""
    if isinstance(value, int | float):
        return [float(value)]
    if not isinstance(value, str):
        return [float(v) for v in value]
    try:
        out = [float(v) for v in value.split(",") if v.strip()]
    except ValueError as e:
        raise ConfigError(
            f"{name} {value!r} is not a comma-separated list of numbers (e.g. 0.01,0.02)"
        ) from e
    if not out:
        raise ConfigError(f"{name} is empty: give at least one number")
    return out


def configure(
    cls: type[C], config: C | None, options: Mapping[str, Any], aliases: Mapping[str, str] | None = None
) -> C:
    """``config`` (default ``cls()``) with the fields named in ``options`` replaced (validated again by
    ``__post_init__``): the keyword form of a function that takes a config object. ``aliases`` maps
    older keyword spellings to field names; an unknown name is a TypeError, as for any call."""
    if config is not None and not isinstance(config, cls):
        raise TypeError(f"config is a {type(config).__name__}, not a {cls.__name__}")
    base: Any = config if config is not None else cls()
    if not options:
        return base  # type: ignore[no-any-return]
    names = {f.name for f in dataclasses.fields(base)}
    changes = {}
    for key, value in options.items():
        name = (aliases or {}).get(key, key)
        if name not in names:
            raise TypeError(f"{cls.__name__} has no option {key!r}")
        changes[name] = value
    return dataclasses.replace(base, **changes)  # type: ignore[no-any-return]
