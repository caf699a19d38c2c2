"""``find``: rank the skill neurons of trained prompts (one per seed) with the paper's controls."""

from __future__ import annotations

import argparse
from pathlib import Path

from skillneurons.cli.common import (
    Command,
    add_artifacts,
    add_backbone_options,
    add_out,
    artifacts,
    backbone_of,
    folder_out,
    progress,
)
from skillneurons.cli.options import add_config, build_config
from skillneurons.data.config import TaskOptions
from skillneurons.neurons.config import FindConfig

__all__ = ["COMMANDS"]


def _add_find(p: argparse.ArgumentParser) -> None:
    add_artifacts(
        p,
        "prompt",
        "prompt artifacts (RUN/prompt.safetensors), each with its split.json",
        old_positional=True,
    )
    add_out(p, "output folder (skill_neurons.*, summary.json); resumes")
    add_config(p, FindConfig)
    add_config(p.add_argument_group("task (default: the prompts' own)"), TaskOptions)
    add_backbone_options(p, "backbone (default: the one recorded in the prompt)")


def _run_find(args: argparse.Namespace) -> int:
    prompts = artifacts(args, "prompt")
    config: FindConfig = build_config(args, FindConfig)
    task_options: TaskOptions = build_config(args, TaskOptions)
    from skillneurons.rundir import open_together  # lazy: --help stays fast

    # a mixed list and every prompt's split are refused before the (slow) model load
    runs = open_together(prompts, "prompt")
    run = runs[0]
    task = run.task(task_options.load() if task_options.task else None).require_classes("ranking")
    for r in runs:
        r.splits(task, config.split_seed)
    from skillneurons.runs import find_skill_neurons  # the model libraries: after the input checks

    bb = backbone_of(args, run)
    res = find_skill_neurons(bb, prompts, task, args.out, config, progress=progress(args))
    print(res.text)
    print(f"skill neurons saved to {Path(args.out) / 'skill_neurons.safetensors'}")
    return 0


COMMANDS = (
    Command(
        "find", "find the skill neurons of trained prompts (one per seed)", _add_find, _run_find, folder_out()
    ),
)
