"""``prune``: a physically smaller model keeping only the skill neurons of its later layers."""

from __future__ import annotations

import argparse

from skillneurons.cli.common import (
    Command,
    add_artifacts,
    add_backbone_options,
    add_out,
    artifacts,
    backbone_options,
    check_inputs,
    folder_out,
    progress,
)
from skillneurons.cli.options import add_config, build_config
from skillneurons.data.config import TaskOptions
from skillneurons.pruning.config import PruneConfig

__all__ = ["COMMANDS"]


def _add_prune(p: argparse.ArgumentParser) -> None:
    add_artifacts(
        p,
        "neurons",
        "skill-neuron artifact (NEURONS/skill_neurons.safetensors)",
        several=False,
        old_positional=True,
    )
    add_out(p, "folder for the pruned model (replaced if it holds an earlier one)")
    add_artifacts(
        p,
        "prompt",
        "a prompt trained on the unpruned model: evaluated before and after pruning",
        several=False,
        required=False,
    )
    add_config(p, PruneConfig)
    add_config(p.add_argument_group("task (default: the prompt's own)"), TaskOptions)
    add_backbone_options(p, "the unpruned model (default: the one recorded in the skill-neuron artifact)")


def _run_prune(args: argparse.Namespace) -> int:
    [neurons] = artifacts(args, "neurons")
    prompts = artifacts(args, "prompt")
    config: PruneConfig = build_config(args, PruneConfig)
    task_options: TaskOptions = build_config(args, TaskOptions)
    task = task_options.load() if task_options.task else None
    check_inputs([neurons, *prompts[:1]])  # a missing input fails before the model libraries load
    from skillneurons.pruning.run import prune_model  # lazy: --help stays fast

    res = prune_model(
        neurons,
        args.out,
        config,
        model=args.model,
        backbone_options=backbone_options(args),
        prompt=prompts[0] if prompts else None,
        task=task,
        progress=progress(args),
    )
    print(res.text)
    return 0


COMMANDS = (
    Command(
        "prune",
        "prune a model to its skill neurons: a smaller, faster model, saved",
        _add_prune,
        _run_prune,
        folder_out(),
    ),
)
