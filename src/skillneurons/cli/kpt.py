"""``kpt-evaluate``: zero-shot accuracy of a single-word or knowledgeable (KPT) verbalizer, no prompt::

    skillneurons kpt-evaluate --model smollm2 --task mr --verbalizer kpt --expand 30 --calibrate \\
        --template '{text} Overall, the movie was' --max-examples 400
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass

from skillneurons.cli.common import Command, add_backbone_options, file_out, load_backbone_from, progress
from skillneurons.cli.options import add_config, build_config
from skillneurons.data.config import TaskOptions
from skillneurons.errors import ConfigError
from skillneurons.options import option
from skillneurons.verbalizers.config import KPTEvalConfig

__all__ = ["COMMANDS"]

_DESCRIPTION = (
    "Zero-shot classification through the model's MLM/LM head with a hand-written template. The task is "
    "split (seeded, stratified) into unlabelled contexts (for the prior, refinement and calibration; their "
    "labels are never read) and test examples."
)

#: what the command prints of the results (all of them go to --out)
_SUMMARY = (
    "task",
    "verbalizer",
    "calibrate",
    "accuracy",
    "n",
    "predicted_share",
    "words_per_class",
    "template",
)


@dataclass
class KPTOptions:
    """The command's own options (the evaluation's are :class:`KPTEvalConfig`)."""

    model: str = option("smollm2", "masked or causal LM: Hub id, folder, .gguf, offline alias")
    out: str | None = option(None, "write the results JSON here")


def _add_kpt(p: argparse.ArgumentParser) -> None:
    p.description = _DESCRIPTION  # longer than the one-line help of the command list
    add_config(p, KPTOptions)
    add_config(p.add_argument_group("zero-shot evaluation"), KPTEvalConfig)
    add_config(p.add_argument_group("task (data)"), TaskOptions, required=("task",))
    add_backbone_options(p)


def _run_kpt(args: argparse.Namespace) -> int:
    o: KPTOptions = build_config(args, KPTOptions)
    config: KPTEvalConfig = build_config(args, KPTEvalConfig)
    task_options: TaskOptions = build_config(args, TaskOptions)
    if config.contexts_split and not str(task_options.task).startswith("hf:"):
        raise ConfigError(
            "--contexts-split needs an hf: task; for other tasks the contexts come from the task itself"
        )
    # data errors first, before the (slow) model load
    task = task_options.load()
    contexts = None
    if config.contexts_split:
        contexts = dataclasses.replace(task_options, hf_split=config.contexts_split).load()
    from skillneurons.verbalizers.zero_shot import check_eval_words, zero_shot_evaluate  # lazy: fast --help

    check_eval_words(config, task)  # a one-word "kpt" verbalizer is refused before the model loads

    res = zero_shot_evaluate(
        load_backbone_from(args, o.model),
        task,
        config,
        contexts_task=contexts,
        progress=progress(args),
        out=o.out,
    )
    print(json.dumps({k: res[k] for k in _SUMMARY}, indent=2))
    return 0


COMMANDS = (
    Command(
        "kpt-evaluate",
        "zero-shot accuracy of a single-word or knowledgeable (KPT) verbalizer, no prompt",
        _add_kpt,
        _run_kpt,
        file_out("KPTOptions__out"),
    ),
)
