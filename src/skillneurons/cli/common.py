"""What every command shares: the command record, the shared option groups, and their loaders.

A command module declares ``COMMANDS``, a tuple of :class:`Command`; its ``add_arguments`` builds flags
from config dataclasses (:func:`~skillneurons.cli.options.add_config`) and its ``run`` imports the
library lazily, inside the function, so that ``--help`` loads neither torch nor transformers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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
    "check_inputs",
    "check_out",
    "file_out",
    "folder_out",
    "load_backbone_from",
    "progress",
]


#: what a command writes, from its parsed flags: ``(path, is_folder)``, or None when it writes nothing
OutSpec = Callable[[argparse.Namespace], "tuple[str | None, bool] | None"]


@dataclass(frozen=True)
class Command:
    """One ``skillneurons`` sub-command. ``out`` says where it writes (:func:`folder_out`,
    :func:`file_out` or a function of the flags): the entry point checks it with :func:`check_out`
    before ``run`` starts, so no command loads a model or computes anything for an unwritable output."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    out: OutSpec | None = None


def folder_out(dest: str = "out") -> OutSpec:
    """The command writes into the folder given by flag ``dest`` (``args.<dest>``)."""
    return lambda args: (getattr(args, dest, None), True)


def file_out(dest: str = "out") -> OutSpec:
    """The command writes the file given by flag ``dest``."""
    return lambda args: (getattr(args, dest, None), False)


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
    """The output path, checked before any work: a folder ``--out`` must not be a file (nor lie under
    one), a file ``--out`` must not be a folder, and the folder it goes into (or its nearest existing
    parent) must really be writable, tried with a probe file that is removed at once (``os.access``
    says yes to root in a read-only folder, and to anyone on a read-only mount). One-line ConfigError
    otherwise; nothing is left behind."""
    if path is None:
        return None
    p = Path(path)
    if p.exists():
        if folder and not p.is_dir():
            raise ConfigError(f"--out {p} is a file, not a folder: pass a folder path")
        if not folder and p.is_dir():
            raise ConfigError(f"--out {p} is a folder: pass a file path")
    existing = next((q for q in (p, *p.parents) if q.exists()), Path("."))
    if existing != p and not existing.is_dir():
        raise ConfigError(f"--out {p}: {existing} is a file, not a folder: pass a path under a folder")
    probe_dir = existing if existing.is_dir() else existing.parent
    try:
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".skillneurons-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(
            f"--out {p}: {probe_dir} is not writable ({e.strerror or e}): pick another --out"
        ) from None
    return p


def comma_list(text: str | None) -> list[str] | None:
    """``"a,b"`` as ``["a", "b"]`` (None stays None)."""
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


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
            f"skillneurons: warning: passing {name} paths without --{name} is deprecated and will be "
            "removed in "
            f"the next release: use --{name} {' '.join(old)}",
            file=sys.stderr,
        )
        values = old + values
    if not values and getattr(args, f"required__{name}", False):
        raise ConfigError(f"no --{name} given: pass --{name} PATH")
    return values


def check_inputs(paths: list[str]) -> None:
    """A one-line error for an input artifact that is not there (its manifest missing or not one), read
    without torch: a command checks its inputs before it imports the model libraries. Folders (run
    folders) are left to the command."""
    from skillneurons.artifacts import load_manifest

    for p in paths:
        if not Path(p).is_dir():
            load_manifest(p)


def backbone_of(args: argparse.Namespace, run: RunDir) -> Backbone:
    """``--model`` when given, else the backbone recorded in ``run`` (:attr:`RunDir.backbone_name`),
    loaded with the command's model-loading options."""
    return load_backbone_from(args, getattr(args, "model", None) or run.backbone_name)
