"""What every command shares: the command record, the shared option groups, and their loaders.

A command module declares ``COMMANDS``, a tuple of :class:`Command`; its ``add_arguments`` builds flags
from config dataclasses (:func:`~skillneurons.cli.options.add_config`) and its ``run`` imports the
library lazily, inside the function, so that ``--help`` loads neither torch nor transformers.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skillneurons.backbones.config import BackboneOptions
from skillneurons.cli.options import add_config, build_config
from skillneurons.errors import ConfigError

if TYPE_CHECKING:
    from skillneurons.backbones import Backbone
    from skillneurons.rundir import RunDir

__all__ = [
    "Command",
    "add_backbone_options",
    "add_out",
    "backbone_of",
    "backbone_options",
    "check_out",
    "load_backbone_from",
    "progress",
]


@dataclass(frozen=True)
class Command:
    """One ``skillneurons`` sub-command."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def progress(args: argparse.Namespace) -> bool:
    """Whether to show progress bars (``-q`` hides them)."""
    return not getattr(args, "quiet", False)


def add_backbone_options(p: argparse.ArgumentParser, model_help: str | None = None) -> None:
    """``--model`` (when ``model_help`` is given) and the :class:`BackboneOptions` flags."""
    g = p.add_argument_group("model loading")
    if model_help is not None:
        g.add_argument("--model", help=model_help)
    add_config(g, BackboneOptions)


def backbone_options(args: argparse.Namespace) -> BackboneOptions:
    return build_config(args, BackboneOptions)  # type: ignore[no-any-return]


def load_backbone_from(args: argparse.Namespace, name: str) -> Backbone:
    """Load ``name`` with the command's model-loading options."""
    return backbone_options(args).load(name)


def add_out(p: argparse.ArgumentParser, help: str, required: bool = True) -> None:
    """The ``--out`` folder (or file) of a command."""
    p.add_argument(
        "--out", required=required, help=help + (" (required)" if required else " (default: none)")
    )


def check_out(path: str | os.PathLike[str] | None, *, folder: bool = True) -> Path | None:
    """The output path, checked before any work: a folder ``--out`` must not be a file, and it (or its
    nearest existing parent) must be writable. One-line ConfigError otherwise."""
    if path is None:
        return None
    p = Path(path)
    if folder and p.exists() and not p.is_dir():
        raise ConfigError(f"--out {p} is a file, not a folder: pass a folder path")
    probe = p if p.exists() else next((q for q in p.parents if q.exists()), Path("."))
    if not folder and p.exists() and p.is_dir():
        raise ConfigError(f"--out {p} is a folder: pass a file path")
    if not os.access(probe if probe.is_dir() else probe.parent, os.W_OK):
        raise ConfigError(f"--out {p}: {probe} is not writable; pick another --out")
    return p


def comma_list(text: str | None) -> list[str] | None:
    """``"a,b"`` as ``["a", "b"]`` (None stays None)."""
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def any_value(args: argparse.Namespace, *names: str) -> Any:
    """The first of ``names`` set on ``args`` (for options kept under two spellings)."""
    for n in names:
        v = getattr(args, n, None)
        if v is not None:
            return v
    return None


def add_artifacts(
    p: argparse.ArgumentParser,
    name: str,
    help: str,
    *,
    several: bool = True,
    required: bool = True,
    old_positional: bool = False,
    aliases: tuple[str, ...] = (),
) -> None:
    """``--NAME PATH [PATH ...]`` (``--prompt``, ``--neurons``), the one spelling of artifact inputs.

    ``old_positional`` keeps the 0.1 positional spelling working for one release; ``aliases`` keeps
    older flag names (``--prompts``, ``--models``); both print a deprecation line when used.
    """
    from skillneurons.cli.options import DeprecatedAlias

    dest = f"artifacts__{name}"
    nargs = "+" if several else None
    shown = f"--{name}"
    p.add_argument(
        shown,
        dest=dest,
        nargs=nargs,
        metavar="PATH",
        help=help + (" (required)" if required else " (default: none)"),
    )
    for alias in aliases:
        p.add_argument(
            alias, dest=dest, nargs=nargs, action=DeprecatedAlias, new=shown, help=argparse.SUPPRESS
        )
    if old_positional:
        p.add_argument(f"old__{name}", nargs="*", metavar="PATH", help=argparse.SUPPRESS)
    p.set_defaults(**{f"required__{name}": required})


def artifacts(args: argparse.Namespace, name: str) -> list[str]:
    """The paths given for ``--NAME`` (or its old spellings); a one-line error when required and none."""
    import sys

    given = getattr(args, f"artifacts__{name}", None)
    values = [given] if isinstance(given, str) else list(given or [])
    old = list(getattr(args, f"old__{name}", None) or [])
    if old:
        print(
            f"skillneurons: warning: passing {name} paths without --{name} is deprecated and will be removed in "
            f"the next release: use --{name} {' '.join(old)}",
            file=sys.stderr,
        )
        values = old + values
    if not values and getattr(args, f"required__{name}", False):
        raise ConfigError(f"no --{name} given: pass --{name} PATH")
    return values


def backbone_of(args: argparse.Namespace, run: RunDir) -> Backbone:
    """``--model`` when given, else the backbone recorded in ``run`` (:attr:`RunDir.backbone_name`),
    loaded with the command's model-loading options."""
    return load_backbone_from(args, getattr(args, "model", None) or run.backbone_name)
