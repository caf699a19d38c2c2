"""The ``skillneurons`` entry point: one parser over the command modules' ``COMMANDS``.

Errors caused by input print one line and exit 2, and so does a file that cannot be read or written
(``OSError``), is not valid JSON or not a safetensors file: the line names the file. Anything else is
a bug: one line says so and where its traceback was written, exit 1. Ctrl-C keeps the last checkpoint
and exits 130.
Building the parser imports only the command modules and the config dataclasses (no torch, no
transformers): ``skillneurons --help`` and ``skillneurons <command> --help`` answer at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from skillneurons import __version__
from skillneurons.cli import data, kpt, neurons, perturb, prune, read, report, study, transfer, tune
from skillneurons.cli.common import Command, check_out
from skillneurons.errors import SkillNeuronsError

__all__ = ["build_parser", "commands", "main"]

#: the command modules, in the order ``--help`` lists them
MODULES = (
    tune,
    neurons,
    perturb,
    prune,
    transfer,
    kpt,
    report,
    read,
    study,
    data,
)


def commands() -> Iterator[Command]:
    for module in MODULES:
        yield from module.COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skillneurons",
        description="Find, test and use skill neurons in pre-trained transformers.",
    )
    parser.add_argument("--version", action="version", version=f"skillneurons {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (INFO)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    # the same two flags are accepted after the command too (`skillneurons data fetch --quiet`)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log more (INFO)"
    )
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in commands():
        p = sub.add_parser(cmd.name, parents=[common], help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run, _out=cmd.out)
    return parser


def _quiet_libraries(args: argparse.Namespace) -> None:
    """Library logging and progress bars, set through the environment so nothing is imported here."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not args.verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        if args.quiet:
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries(args)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun
        from skillneurons.distributed import init_from_env, is_main  # lazy: torch only when distributed

        if init_from_env() and not is_main():
            args.quiet = True  # only rank 0 shows progress
    try:
        spec = args._out(args) if args._out is not None else None
        if spec is not None:
            check_out(spec[0], folder=spec[1])  # before the command reads, loads or computes anything
        return int(args._run(args))
    except SkillNeuronsError as e:
        print(f"skillneurons: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "skillneurons: interrupted; the last checkpoint is kept: rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    except Exception as e:  # not a SkillNeuronsError: a file problem (one line), else a bug
        line = _file_error(e)
        if line is not None:
            print(f"skillneurons: error: {line}", file=sys.stderr)
            return 2
        print(_bug_report(e, verbose=args.verbose), file=sys.stderr)
        return 1


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _file_in_traceback(tb: TracebackType | None) -> str | None:
    """The file the failing code was reading: the innermost frame's local naming an existing file."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            if isinstance(value, str | os.PathLike) and len(str(value)) < 4096:
                try:
                    if Path(value).is_file():
                        return str(value)
                except (OSError, ValueError):
                    continue
    return None


def _file_error(e: Exception) -> str | None:
    """One line naming the file for an OSError, a JSON decode error or a safetensors error; else None."""
    safetensors = sys.modules.get("safetensors")
    if isinstance(e, OSError):
        name = e.filename or _file_in_traceback(e.__traceback__)
        what = f"{name}: " if name else ""
        other = f" (and {e.filename2})" if e.filename2 else ""
        return f"{what}{_one_line(e.strerror or e)}{other}: check the path, its permissions and free space"
    if isinstance(e, json.JSONDecodeError):
        name = _file_in_traceback(e.__traceback__) or "a JSON file"
        return f"{name} is not valid JSON ({_one_line(e)}): the file is corrupted; re-create it"
    if safetensors is not None and isinstance(e, safetensors.SafetensorError):
        name = _file_in_traceback(e.__traceback__) or "a tensor file"
        return f"{name} is not a readable safetensors file ({_one_line(e)}): re-create it"
    return None


def _bug_report(e: Exception, verbose: bool) -> str:
    """The one line printed for an unexpected exception; its traceback goes to a file (and to stderr
    with ``-v``)."""
    text = "".join(traceback.format_exception(e))
    try:
        fd, path = tempfile.mkstemp(prefix="skillneurons-bug-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        where = f"the traceback is in {path}"
    except OSError:
        where = "rerun with -v for the traceback"
    if verbose:
        print(text, file=sys.stderr, end="")
    return (
        f"skillneurons: internal error (a bug, not your input): {type(e).__name__}: {_one_line(e)[:300]}; "
        f"please report it with the command line; {where}"
    )
