"""The ``skillneurons`` entry point: one parser over the command modules' ``COMMANDS``.

Errors caused by input print one line and exit 2; Ctrl-C keeps the last checkpoint and exits 130.
Building the parser imports only the command modules and the config dataclasses (no torch, no
transformers): ``skillneurons --help`` and ``skillneurons <command> --help`` answer at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from skillneurons import __version__
from skillneurons.cli import data, kpt, neurons, perturb, prune, report, transfer, tune
from skillneurons.cli.common import Command
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
        p.set_defaults(_run=cmd.run)
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
