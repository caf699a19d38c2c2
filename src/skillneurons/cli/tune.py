"""``tune`` and ``evaluate``: train a prompt (or a delta-tuned model) on a task; evaluate a saved one."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from dataclasses import dataclass
from functools import cache

from skillneurons.cli.common import (
    Command,
    add_artifacts,
    add_backbone_options,
    add_out,
    artifacts,
    backbone_of,
    folder_out,
    load_backbone_from,
    progress,
)
from skillneurons.cli.options import add_config, build_config
from skillneurons.data.config import SPLIT_SEED_HELP, TaskOptions
from skillneurons.errors import ConfigError
from skillneurons.fpt.config import ProgressiveConfig
from skillneurons.options import option
from skillneurons.prompts.config import PromptConfig
from skillneurons.runs.config import RunOptions
from skillneurons.training.config import TrainConfig
from skillneurons.verbalizers.config import VerbalizerConfig

__all__ = ["COMMANDS", "method_configs"]


@cache
def method_configs() -> dict[str, type]:
    """The tuning methods' option classes, by method name, from the ``skillneurons.method_configs``
    entry points (config modules only: no model library is imported to build ``--help``)."""
    return {ep.name: ep.load() for ep in importlib.metadata.entry_points(group="skillneurons.method_configs")}


def _add_task(p: argparse.ArgumentParser, required: bool) -> None:
    g = p.add_argument_group("task (data)")
    add_config(g, TaskOptions, required=("task",) if required else ())


@dataclass
class TuneOptions:
    """The command's own options (the others are the configs of the floors that use them)."""

    model: str = option(
        "minilm", "Hub id, local folder, .gguf file, or offline alias (see `skillneurons models`)"
    )
    init_prompt: str | None = option(
        None, "start from this prompt of the model (another task's, projected): transfer as initialisation"
    )
    method: str = option(
        "prompt",
        "what is tuned: a soft prompt, or a registered method (bitfit: biases, adapter: bottleneck adapters, "
        "lora: LoRA); non-prompt methods use no soft prompt and want a smaller --lr (e.g. 1e-3 to 5e-3)",
    )


def _add_tune(p: argparse.ArgumentParser) -> None:
    add_config(p, TuneOptions)
    add_out(p, "run folder (resumes if it holds a checkpoint of the same run)")
    _add_task(p, required=True)
    add_config(p.add_argument_group("prompt model"), PromptConfig)
    add_config(p.add_argument_group("run"), RunOptions)
    add_config(p.add_argument_group("training"), TrainConfig)
    g = p.add_argument_group("tuning methods (--method)")
    for name, cls in method_configs().items():
        add_config(g, cls, prefix=name)
    add_config(p.add_argument_group("verbalizer"), VerbalizerConfig)
    add_config(p.add_argument_group("fast prompt tuning (progressive partial models)"), ProgressiveConfig)
    add_backbone_options(p)


def _run_tune(args: argparse.Namespace) -> int:
    o: TuneOptions = build_config(args, TuneOptions)
    methods = method_configs()
    if o.method != "prompt" and o.method not in methods:
        raise ConfigError(f"--method {o.method} is not known: use one of prompt, {', '.join(methods)}")
    method_config = build_config(args, methods[o.method], prefix=o.method) if o.method in methods else None
    prompt: PromptConfig = build_config(args, PromptConfig)
    run: RunOptions = build_config(args, RunOptions)
    train: TrainConfig = build_config(args, TrainConfig)
    verbalizer: VerbalizerConfig = build_config(args, VerbalizerConfig)
    progressive: ProgressiveConfig = build_config(args, ProgressiveConfig)
    # data errors first, before the (slow) model load
    task = build_config(args, TaskOptions).load().require_classes("training")
    from skillneurons.runs import tune_prompt

    res = tune_prompt(
        load_backbone_from(args, o.model),
        task,
        args.out,
        prompt=prompt,
        config=train,
        run=run,
        method=o.method,
        method_options=method_config,
        verbalizer=verbalizer,
        progressive=progressive,
        init_prompt=o.init_prompt,
        progress=progress(args),
    )
    print(f"{res.accuracy_text()}; prompt saved to {res.prompt}")
    return 0


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    add_artifacts(p, "prompt", "prompt artifact (RUN/prompt.safetensors)", several=False)
    p.add_argument(
        "--split",
        default="test",
        choices=["train", "dev", "test", "all"],
        help="part of the task's split (all: every example) (default: test)",
    )
    p.add_argument("--split-seed", type=int, metavar="SEED", help=f"{SPLIT_SEED_HELP} (default: none)")
    _add_task(p, required=False)
    add_backbone_options(p, "backbone (default: the one recorded in the prompt)")


def _run_evaluate(args: argparse.Namespace) -> int:
    [prompt] = artifacts(args, "prompt")
    options: TaskOptions = build_config(args, TaskOptions)
    given = options.load() if options.task else None
    from skillneurons.rundir import RunDir
    from skillneurons.runs import evaluate_prompt

    run = RunDir.of(prompt).require_kind("prompt", "delta")
    task = run.task(given)  # the task and its split (an imported prompt: --task, --split-seed) first
    if args.split != "all":
        run.split_of(task, args.split_seed)
    model = backbone_of(args, run)
    res = evaluate_prompt(
        prompt, task, model=model, split=args.split, progress=progress(args), split_seed=args.split_seed
    )
    print(json.dumps({k: v for k, v in res.to_json().items() if not k.startswith("schema")}, indent=2))
    return 0


COMMANDS = (
    Command(
        "tune",
        "prompt-tune a frozen model on a task (or tune it with --method bitfit|adapter|lora)",
        _add_tune,
        _run_tune,
        folder_out(),
    ),
    Command("evaluate", "evaluate a saved prompt", _add_evaluate, _run_evaluate),
)
