"""The ``skillneurons`` command line: a thin layer over the public API.

Errors caused by input (bad data, unknown model, mismatched artifact...) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skillneurons.errors import SkillNeuronsError


def _task_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--task",
        required=required,
        help="built-in task (mr, pang_lee, fine_food, bbc_news, tweets), a CSV/TSV/JSONL/Parquet file, or hf:NAME[/CONFIG]",
    )
    p.add_argument("--text-column", help="column holding the text (files / hf datasets)")
    p.add_argument("--text-b-column", help="column holding the second text of a pair task")
    p.add_argument("--label-column", help="column holding the label")
    p.add_argument("--label-names", help="comma-separated label set, in class order")
    p.add_argument("--hf-split", help="split of an hf: dataset to read (default: train)")


def _load_task_from(args: argparse.Namespace) -> Any:
    from skillneurons.data import load_task

    return load_task(
        args.task,
        text_column=args.text_column,
        text_b_column=args.text_b_column,
        label_column=args.label_column,
        label_names=args.label_names.split(",") if args.label_names else None,
        split=args.hf_split,
    )


def _train_config(args: argparse.Namespace) -> Any:
    from skillneurons.training import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_every=args.eval_every,
        patience=args.patience,
        seed=args.seed,
        precision=args.precision,
    )


def _tune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="minilm",
        help="Hub id, local folder, .gguf file, or offline alias (see `skillneurons models`)",
    )
    p.add_argument("--prompt-length", type=int, default=20, help="number of soft prompt tokens P")
    p.add_argument(
        "--init", default="normal", choices=["normal", "vocab", "text"], help="prompt initialisation"
    )
    p.add_argument("--init-text", help="text for --init text")
    p.add_argument("--init-prompt", help="start from this prompt of the model (another task's, projected)")
    p.add_argument(
        "--head",
        default="auto",
        choices=["auto", "label_words", "linear", "similarity"],
        help="how labels are read (auto: label words through the LM head when the model has one, else similarity)",
    )
    p.add_argument(
        "--layout",
        default="auto",
        choices=["auto", "slot_first", "prompt_first", "paper", "peft"],
        help="input layout (auto: slot_first = paper for encoders, prompt_first for causal LMs)",
    )
    p.add_argument(
        "--template", help="text template with {text}, e.g. '{text} Overall it was' (useful for causal LMs)"
    )
    p.add_argument(
        "--max-length", type=int, default=128, help="max sequence length incl. prompt (text is truncated)"
    )
    p.add_argument("--max-examples", type=int, help="stratified subsample of the task before splitting")
    p.add_argument("--seed", type=int, default=0, help="training seed (prompt init, data order)")
    p.add_argument("--split-seed", type=int, help="seed of the train/dev/test split (default: --seed)")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-2)
    p.add_argument("--eval-every", type=int, help="steps between dev evaluations (default: twice per epoch)")
    p.add_argument("--patience", type=int, help="early stopping: evaluations without improvement")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument(
        "--verbalizer",
        default="single",
        choices=["single", "kpt"],
        help="label words through the LM head: one word per class, or a knowledgeable verbalizer (KPT)",
    )
    p.add_argument("--words", help="kpt: label-word file ('class: w1, w2' lines or JSON)")
    p.add_argument("--expand", type=int, default=0, help="kpt: add this many embedding neighbours per class")
    p.add_argument("--calibrate", action="store_true", help="kpt: divide by the contextual prior")
    p.add_argument("--relevance", action="store_true", help="kpt: also apply the relevance refinement")
    from skillneurons.fpt.cli import add_arguments as _fpt_arguments

    _fpt_arguments(p)  # --progressive ... (fast prompt tuning)
    from skillneurons.delta.cli import add_method_args

    add_method_args(p)  # --method prompt|bitfit|adapter|lora and the methods' options


def _backbone_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        help="weights dtype (default float32; bfloat16 halves memory for large models)",
    )
    p.add_argument(
        "--device-map", help="transformers device_map, e.g. 'auto' to spread a large model over the GPUs"
    )
    p.add_argument(
        "--ffn", help="FFN layout of an unknown architecture: 'layers=PATH,down=PATH,up=PATH[,gate=PATH]'"
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run the model repository's own code (off by default)",
    )


def _backbone(args: argparse.Namespace, name: str) -> Any:
    from skillneurons.backbones import load_backbone, parse_ffn_option, register_architecture
    from skillneurons.backbones.architectures import known_architectures

    if getattr(args, "ffn", None):
        from transformers import AutoConfig

        model_type = AutoConfig.from_pretrained(name, trust_remote_code=args.trust_remote_code).model_type
        register_architecture(
            model_type, parse_ffn_option(args.ffn), overwrite=model_type in known_architectures()
        )
    return load_backbone(
        name,
        dtype=getattr(args, "dtype", None),
        device_map=getattr(args, "device_map", None),
        trust_remote_code=getattr(args, "trust_remote_code", False),
    )


def cmd_tune(args: argparse.Namespace) -> int:
    from skillneurons.delta.cli import method_options as _method_options
    from skillneurons.fpt.cli import schedule_from_args as _fpt_schedule
    from skillneurons.runs import tune_prompt

    task = _load_task_from(args)  # data errors first, before the (slow) model load
    config = _train_config(args)
    progressive = _fpt_schedule(args)
    res = tune_prompt(
        _backbone(args, args.model),
        task,
        args.out,
        prompt_length=args.prompt_length,
        init=args.init,
        init_text=args.init_text,
        init_prompt=args.init_prompt,
        head=args.head,
        layout=args.layout,
        template=args.template,
        max_length=args.max_length,
        max_examples=args.max_examples,
        split_seed=args.split_seed,
        config=config,
        verbalizer=args.verbalizer,
        words=args.words,
        expand=args.expand,
        calibrate=args.calibrate,
        relevance=args.relevance,
        progressive=progressive,
        progress=not args.quiet,
        method=args.method,
        method_options=_method_options(args),
    )
    print(
        f"test accuracy {res['test_accuracy']:.4f} (best dev {res['best_dev_accuracy']:.4f} at step {res['best_step']}); "
        f"prompt saved to {res['prompt']}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from skillneurons.runs import evaluate_prompt

    task = _load_task_from(args) if args.task else None
    model = _backbone(args, args.model) if args.model else None
    res = evaluate_prompt(args.prompt, task, model=model, split=args.split, progress=not args.quiet)
    print(json.dumps({k: v for k, v in res.to_json().items() if not k.startswith("schema")}, indent=2))
    return 0


def cmd_find(args: argparse.Namespace) -> int:
    from skillneurons.artifacts import load_manifest
    from skillneurons.runs import find_skill_neurons

    man = load_manifest(args.prompts[0], "prompt")
    task = _load_task_from(args) if args.task else _load_task_named(man["task"]["name"])
    bb = _backbone(args, args.model or man["backbone"]["name"])
    res = find_skill_neurons(
        bb,
        args.prompts,
        task,
        args.out,
        scheme=args.scheme,
        how=args.aggregate,
        auroc_bins=args.auroc_bins,
        controls=not args.no_controls,
        hand_written=args.hand_written,
        batch_size=args.batch_size,
        precision=args.precision,
        top_k=args.top,
        rho=args.rho,
        progress=not args.quiet,
    )
    print(res["text"])
    print(f"skill neurons saved to {Path(args.out) / 'skill_neurons.safetensors'}")
    return 0


def _load_task_named(name: str) -> Any:
    from skillneurons.data import load_task

    return load_task(name)


def cmd_data(args: argparse.Namespace) -> int:
    from skillneurons.data import builtin_tasks, fetch_builtin_data

    if args.action == "fetch":
        path = fetch_builtin_data(args.names or None, force=args.force, quiet=args.quiet)
        if not args.quiet:
            print(f"built-in data ready under {path}")
    else:
        for name, desc in builtin_tasks().items():
            print(f"{name:12s} {desc}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from skillneurons.backbones import known_architectures, offline_models

    print("offline models:")
    for name, desc in offline_models().items():
        print(f"  {name:12s} {desc}")
    print("architecture families (any Hub id or local folder of these):", ", ".join(known_architectures()))
    return 0


def cmd_peft(args: argparse.Namespace) -> int:
    from skillneurons.artifacts import load_manifest
    from skillneurons.backbones import load_backbone
    from skillneurons.prompts import (
        PromptModel,
        build_head,
        export_peft,
        import_peft,
        load_prompt,
        save_prompt,
    )

    if args.action == "export":
        man = load_manifest(args.prompt, "prompt")
        bb = load_backbone(args.model or man["backbone"]["name"])
        pm, _ = load_prompt(args.prompt, bb)
        out = export_peft(pm, args.out)
        print(f"PEFT prompt-tuning adapter written to {out}")
    else:
        prompt, cfg = import_peft(args.adapter)
        base = args.model or cfg.get("base_model_name_or_path")
        if not base:
            raise SkillNeuronsError(f"{args.adapter} does not name its base model: pass --model")
        bb = load_backbone(str(base))
        words = [w.split("|") for w in args.label_words.split(",")]
        pm = PromptModel(bb, prompt, build_head(args.head, bb, words), layout="prompt_first")
        path = save_prompt(args.out, pm, imported_from=str(args.adapter))
        print(f"prompt saved to {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from skillneurons.demo import run_demo

    run_demo(out_dir=Path(args.out), budget_minutes=args.budget_minutes, progress=not args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from skillneurons import __version__

    parser = argparse.ArgumentParser(
        prog="skillneurons", description=__doc__.splitlines()[0] if __doc__ else None
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
    sub = parser.add_subparsers(dest="command", required=True)
    _add = sub.add_parser

    def add_parser(name: str, **kw: Any) -> argparse.ArgumentParser:
        return _add(name, parents=[common], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    from skillneurons.cli.app import MODULES

    for module in MODULES:
        for cmd in module.COMMANDS:
            p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
            cmd.add_arguments(p)
            p.set_defaults(fn=cmd.run)
    p = sub.add_parser("find", help="find the skill neurons of trained prompts (one per seed)")
    _backbone_args(p)
    p.add_argument(
        "prompts", nargs="+", help="prompt artifacts (RUN/prompt.safetensors), each with its split.json"
    )
    p.add_argument("--out", required=True, help="output folder (skill_neurons.*, summary.json); resumes")
    p.add_argument("--model", help="backbone (default: the one recorded in the prompt)")
    p.add_argument(
        "--scheme",
        default="one_vs_rest",
        choices=["one_vs_rest", "pairwise", "paper"],
        help="binary subtasks of a multi-class task (paper: 0 vs 2 and 1 vs rest, 3 classes)",
    )
    p.add_argument("--aggregate", default="mean", choices=["mean", "min"], help="over prompts (seeds)")
    p.add_argument(
        "--auroc-bins", type=int, help="also compute the threshold-free AUROC score with this many bins"
    )
    p.add_argument(
        "--no-controls", action="store_true", help="skip the pooled-text / random / hand-written controls"
    )
    p.add_argument("--hand-written", help="text of the hand-written control prompt")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--top", type=int, default=10, help="neurons listed in the summary")
    p.add_argument(
        "--rho", type=float, default=0.01, help="fraction for the per-layer distribution and stability"
    )
    _task_args(p, required=False)
    p.set_defaults(fn=cmd_find)
    # commands whose parsers live with their package
    from skillneurons.perturb.cli import register as register_perturb
    from skillneurons.pruning.cli import register as register_prune

    register_perturb(sub)
    register_prune(sub)
    from skillneurons.verbalizers.cli import register as register_kpt

    register_kpt(sub)
    from skillneurons.report.cli import register as register_report

    register_report(sub)
    from skillneurons.transfer.cli import register as register_transfer

    register_transfer(sub)
    from skillneurons.delta.cli import register as register_delta

    register_delta(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not args.verbose:
        import transformers

        transformers.logging.set_verbosity_error()
        if args.quiet:
            transformers.utils.logging.disable_progress_bar()
    from skillneurons.distributed import init_from_env, is_main

    if init_from_env() and not is_main():
        args.quiet = True  # launched by torchrun: only rank 0 shows progress
    try:
        return int(args.fn(args))
    except SkillNeuronsError as e:
        print(f"skillneurons: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "skillneurons: interrupted; the last checkpoint is kept: rerun the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
