"""The ``kpt-evaluate`` command: zero-shot accuracy of a single-word or knowledgeable verbalizer.

Wired into the main CLI by ``register(sub)`` inside ``skillneurons.cli.build_parser``::

    skillneurons kpt-evaluate --model smollm2 --task mr --verbalizer kpt --expand 30 --calibrate \\
        --template '{text} Overall, the movie was' --max-examples 400
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    """Add the ``kpt-evaluate`` subcommand to the ``skillneurons`` subparsers ``sub``."""
    from skillneurons.cli import _task_args  # the same task options as every other command

    p = sub.add_parser(
        "kpt-evaluate",
        help="zero-shot accuracy of a single-word or knowledgeable (KPT) verbalizer, no prompt",
        description="Zero-shot classification through the model's MLM/LM head with a hand-written template. "
        "The task is split (seeded, stratified) into unlabelled contexts (for the prior, refinement and "
        "calibration; their labels are never read) and test examples.",
    )
    p.add_argument(
        "--model", default="smollm2", help="masked or causal LM: Hub id, folder, .gguf, offline alias"
    )
    p.add_argument(
        "--verbalizer",
        default="kpt",
        choices=["single", "kpt"],
        help="single: each class's first label word; kpt: all words, refined",
    )
    p.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="contextual calibration: divide by the prior over the contexts (default on)",
    )
    p.add_argument(
        "--words", help="label-word file: 'class: w1, w2' per line, one line per class in order, or JSON"
    )
    p.add_argument(
        "--expand",
        type=int,
        default=0,
        help="add this many embedding neighbours (whole-word tokens) per class",
    )
    p.add_argument(
        "--template",
        help="with {text} (and {mask} for masked LMs), e.g. 'A {mask} news: {text}' or '{text} This "
        "topic is about'",
    )
    p.add_argument(
        "--multi-token",
        default="first",
        choices=["first", "mean", "max"],
        help="score a word of several tokens by its first piece (default), or mean/max over pieces",
    )
    p.add_argument(
        "--cutoff",
        type=float,
        default=0.5,
        help="frequency refinement: drop words whose tokens rank in this lowest fraction of the prior "
        "(0: off)",
    )
    p.add_argument(
        "--cutoff-scope",
        default="vocab",
        choices=["vocab", "words"],
        help="rank the prior over the whole vocabulary (original KPT) or over the label words",
    )
    p.add_argument("--keep-shared", action="store_true", help="keep words that occur in several classes")
    p.add_argument(
        "--relevance", action="store_true", help="relevance refinement against each class's anchor word"
    )
    p.add_argument("--max-examples", type=int, help="stratified subsample of the test part")
    p.add_argument("--prior-examples", type=int, default=200, help="unlabelled contexts for the prior")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of the task held out for testing")
    p.add_argument(
        "--contexts-split",
        help="take the contexts from this split of the same hf: dataset (e.g. train) and test on all of "
        "--hf-split",
    )
    p.add_argument("--split-seed", type=int, default=0, help="seed of the contexts/test split")
    p.add_argument("--max-length", type=int, default=128, help="tokens per example (the text is truncated)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", help="write the results JSON here")
    _task_args(p)
    p.set_defaults(fn=cmd_kpt_evaluate)


def cmd_kpt_evaluate(args: argparse.Namespace) -> int:
    from skillneurons.cli import _load_task_from
    from skillneurons.errors import ConfigError
    from skillneurons.verbalizers.config import KPTEvalConfig
    from skillneurons.verbalizers.zero_shot import zero_shot_evaluate

    contexts = None
    if args.contexts_split:
        if not args.task.startswith("hf:"):
            raise ConfigError(
                "--contexts-split needs an hf: task; for other tasks the contexts come from the task itself"
            )
        contexts = _load_task_from(argparse.Namespace(**{**vars(args), "hf_split": args.contexts_split}))
    config = KPTEvalConfig(
        verbalizer=args.verbalizer,
        calibrate=args.calibrate,
        words=args.words,
        expand=args.expand,
        template=args.template,
        multi_token=args.multi_token,
        cutoff=args.cutoff,
        cutoff_scope=args.cutoff_scope,
        keep_shared=args.keep_shared,
        relevance=args.relevance,
        max_examples=args.max_examples,
        prior_examples=args.prior_examples,
        test_fraction=args.test_fraction,
        contexts_split=args.contexts_split,
        split_seed=args.split_seed,
        max_length=args.max_length,
        batch_size=args.batch_size,
    )
    res = zero_shot_evaluate(
        args.model,
        _load_task_from(args),
        config,
        contexts_task=contexts,
        progress=not getattr(args, "quiet", False),
        out=args.out,
    )
    summary = {
        k: res[k]
        for k in (
            "task",
            "verbalizer",
            "calibrate",
            "accuracy",
            "n",
            "predicted_share",
            "words_per_class",
            "template",
        )
    }
    print(json.dumps(summary, indent=2))
    return 0
