"""Command-line options of fast prompt tuning, added to ``skillneurons tune`` (no command of its own)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from skillneurons.fpt.config import ProgressiveConfig

if TYPE_CHECKING:
    from skillneurons.fpt.schedule import ProgressiveSchedule

__all__ = ["add_arguments", "config_from_args", "schedule_from_args"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--progressive`` and its options to a tune parser."""
    g = p.add_argument_group("fast prompt tuning (progressive partial models)")
    g.add_argument(
        "--progressive",
        metavar="SCHEDULE",
        help="train first on partial models, then the full one: comma-separated stages, each 'full', "
        "'dPCT' (keep PCT%% of the layers), 'wPCT' (keep PCT%% of the FFN neurons per layer), 'dPCTwPCT' or "
        "'PCT' (both), optionally ':WEIGHT' (share of the steps; default 1 each, 2 for the final full "
        "stage). "
        "The last stage must be 'full'. E.g. '25,50,75,full' (compound), 'w25,w50,w75,full', 'd50,full:3'",
    )
    g.add_argument(
        "--progressive-depth",
        default="even",
        choices=["even", "first"],
        help="which layers a depth stage keeps: even (first and last, evenly spread) or first (the first k)",
    )
    g.add_argument(
        "--progressive-width-by",
        default="mean_abs",
        choices=["mean_abs", "skill"],
        help="which neurons a width stage keeps: the top by mean |activation| over a seeded sample of the "
        "TRAINING split (unsupervised; the dev split is kept for model selection only), "
        "or by skill-neuron predictivity (--progressive-neurons)",
    )
    g.add_argument(
        "--progressive-neurons",
        metavar="PATH",
        help="skill-neuron artifact (NEURONS/skill_neurons.safetensors) for --progressive-width-by skill",
    )
    g.add_argument(
        "--progressive-eval",
        default="final",
        choices=["final", "all"],
        help="dev evaluation (and best checkpoint) only in the final full stage, or at every evaluation "
        "(always on the full model)",
    )
    g.add_argument(
        "--reset-optimizer",
        action="store_true",
        help="clear the optimizer moments at every expansion (default: carried over with the prompt)",
    )


def config_from_args(args: argparse.Namespace) -> ProgressiveConfig:
    """The :class:`ProgressiveConfig` of the parsed ``tune`` options."""
    return ProgressiveConfig(
        schedule=getattr(args, "progressive", None) or None,
        depth_rule=args.progressive_depth,
        width_by=args.progressive_width_by,
        neurons=args.progressive_neurons,
        evaluate=args.progressive_eval,
        reset_optimizer=args.reset_optimizer,
    )


def schedule_from_args(args: argparse.Namespace) -> ProgressiveSchedule | None:
    """The schedule given by the options, or None without ``--progressive``."""
    if not getattr(args, "progressive", None):
        return None
    from skillneurons.fpt.schedule import ProgressiveSchedule  # lazy: building the parser stays torch-free

    return ProgressiveSchedule.from_config(config_from_args(args))
