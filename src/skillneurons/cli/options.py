"""Command-line flags generated from config dataclasses (:mod:`skillneurons.options`).

Every field of a config becomes one flag (``batch_size`` -> ``--batch-size``; ``metadata["flag"]``
renames it, ``metadata["aliases"]`` keeps older spellings working with a deprecation line), its help
text is the field's and shows the default. Types follow the annotations: ``bool`` fields are switches
(``--x`` for a False default, ``--x/--no-x`` for a True one), ``int``/``float``/``str`` (optionally
``| None``) take one value, ``tuple[...]``/``list[...]`` fields take one or more, and ``choices`` or a
``Literal`` limit the values. :func:`build_config` turns the parsed flags back into the dataclass, so
its ``__post_init__`` checks every option before any model is loaded.

Why not ``transformers.HfArgumentParser``: it imports transformers (seconds, hundreds of MB), and
``--help`` must not load a model library; this module needs the standard library only.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal

from skillneurons.errors import ConfigError
from skillneurons.options import option_fields

__all__ = ["DeprecatedAlias", "add_config", "build_config", "config_dest"]

_SEP = "__"


def config_dest(cls: type, name: str, prefix: str = "") -> str:
    """The argparse ``dest`` of field ``name`` of ``cls`` (unique per config, so two configs may share
    a field name)."""
    return f"{prefix or cls.__name__}{_SEP}{name}"


class DeprecatedAlias(argparse.Action):
    """An older spelling of a flag: stores like it (a switch stores ``const``) and prints one
    deprecation line naming the new spelling."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new: str, **kw: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        print(
            f"skillneurons: warning: {option_string} is deprecated and will be removed in the next release: "
            f"use {self.new}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """``(inner type, optional)`` of ``X | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return tp, False


def _fmt_default(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple | list):
        return ",".join(map(str, value)) if value else "none"
    return str(value)


def _kwargs(field: dataclasses.Field[Any], tp: Any) -> dict[str, Any]:
    """argparse keyword arguments (without the option strings) for one field."""
    meta = field.metadata
    inner, _optional = _unwrap(tp)
    default = field.default if field.default is not dataclasses.MISSING else None
    if field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    kw: dict[str, Any] = {"default": default}
    choices = meta.get("choices")
    origin = typing.get_origin(inner)
    if origin is Literal:
        choices = choices or typing.get_args(inner)
        inner = type(typing.get_args(inner)[0])
    if inner is bool:  # a switch; a renamed switch of a True field turns it off (--global, --no-controls)
        kw["action"] = (
            ("store_false" if meta.get("flag") else argparse.BooleanOptionalAction)
            if default
            else "store_true"
        )
    elif origin in (tuple, list) or inner in (tuple, list):
        kw["nargs"] = "+"  # values may also be comma-separated (--rho 0,0.01 or --rho 0 0.01)
        kw["type"] = str
    else:
        kw["type"] = inner if inner in (int, float, str) else str
    if choices is not None:
        kw["choices"] = list(choices)
    if meta.get("metavar"):
        kw["metavar"] = meta["metavar"]
    elif "type" in kw and "choices" not in kw:
        kw["metavar"] = field.name.upper()
    # a help text that already says what its default means ("(default: all)") keeps its own words
    if kw.get("action") == "store_false":  # --no-X: the help says what X does, which is on by default
        kw["help"] = f"{meta['help']} (default: on; this flag turns it off)"
    elif "(default" in meta["help"]:
        kw["help"] = meta["help"]
    else:
        kw["help"] = f"{meta['help']} (default: {_fmt_default(default)})"
    return kw


def add_config(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    prefix: str = "",
    flag_prefix: str = "",
    defaults: dict[str, Any] | None = None,
    exclude: Sequence[str] = (),
    required: Sequence[str] = (),
) -> None:
    """Add one flag per field of config class ``cls`` to ``parser``.

    Args:
        prefix: dest namespace (default: the class name); give one to add the same class twice.
        flag_prefix: prepended to generated flag names (``"lora-"`` -> ``--lora-r``).
        defaults: per-command defaults that differ from the dataclass's (shown in ``--help``).
        exclude: fields left off this command (they keep the dataclass default).
        required: fields that must be given on this command.
    """
    hints = typing.get_type_hints(cls)
    for f in option_fields(cls):
        if not f.metadata.get("cli", True) or f.name in exclude:
            continue
        kw = _kwargs(f, hints[f.name])
        if defaults and f.name in defaults:
            kw["default"] = defaults[f.name]
            kw["help"] = (
                kw["help"].rsplit(" (default: ", 1)[0] + f" (default: {_fmt_default(defaults[f.name])})"
            )
        dest = config_dest(cls, f.name, prefix)
        if f.metadata.get("positional"):
            kw.pop("default")
            kw["help"] = f.metadata["help"]
            if kw.get("nargs") == "+" and f.name not in required:
                kw["nargs"] = "*"  # a list with a default may be empty
            kw["metavar"] = kw.get("metavar") or f.name.upper()
            parser.add_argument(dest, **kw)
            continue
        flag = f.metadata.get("flag") or f"--{flag_prefix}{f.name.replace('_', '-')}"
        if f.name in required:
            kw["required"] = True
            kw["help"] = kw["help"].rsplit(" (default: ", 1)[0] + " (required)"
        parser.add_argument(flag, dest=dest, **kw)
        for alias in f.metadata.get("aliases", ()):
            _add_alias(parser, alias, dest, flag, kw)


def _add_alias(parser: Any, alias: str, dest: str, flag: str, kw: dict[str, Any]) -> None:
    """``alias`` stores into ``dest`` like ``flag``; ``"--old=VALUE"`` is a switch storing VALUE."""
    name, _, const = alias.partition("=")
    if const or kw.get("action") in ("store_true", "store_false", argparse.BooleanOptionalAction):
        value: Any = {"true": True, "false": False}.get(const.lower(), const) if const else True
        if not const and kw.get("action") == "store_false":
            value = False
        parser.add_argument(
            name,
            dest=dest,
            action=DeprecatedAlias,
            new=flag,
            nargs=0,
            const=value,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )
        return
    extra = {k: kw[k] for k in ("type", "nargs", "choices", "metavar") if k in kw}
    parser.add_argument(
        name,
        dest=dest,
        action=DeprecatedAlias,
        new=flag,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
        **extra,
    )


def build_config(args: argparse.Namespace, cls: type, *, prefix: str = "", **override: Any) -> Any:
    """The ``cls`` instance the parsed ``args`` describe (fields not on the command keep their
    defaults; ``override`` sets fields directly). Its ``__post_init__`` validates the options."""
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        dest = config_dest(cls, f.name, prefix)
        if hasattr(args, dest):
            value = getattr(args, dest)
            if isinstance(value, list):
                value = _items(
                    value, hints[f.name], f.metadata.get("flag") or f"--{f.name.replace('_', '-')}"
                )
            values[f.name] = value
    values.update(override)
    return cls(**values)


def _items(values: list[str], tp: Any, flag: str) -> tuple[Any, ...]:
    """The values of a list flag, comma-separated ones split, converted to the field's item type."""
    inner, _ = _unwrap(tp)
    args = [a for a in typing.get_args(inner) if a is not Ellipsis]
    item = args[0] if args and args[0] in (int, float, str) else str
    out = []
    for v in values:
        for part in str(v).split(",") if item is not str or "," in str(v) else [v]:
            part = part.strip()
            if not part:
                continue
            try:
                out.append(item(part))
            except ValueError:
                what = "integers" if item is int else "numbers"
                raise ConfigError(
                    f"{flag} {v!r} is not a comma-separated list of {what} ({part!r})"
                ) from None
    return tuple(out)
