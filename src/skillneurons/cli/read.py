"""``read``: multi-passage reading comprehension (DynSAN), one group of sub-commands.

``skillneurons read data build|show`` builds the offline BBC News cloze task into the data cache, or
shows a reading task's statistics; ``read train`` trains a DynSAN reader on a reading task (resumable,
best reader by dev EM); ``read evaluate`` scores a saved reader on a split, optionally with its gates'
AUROC for answer tokens. Another sub-command plugs in by adding a :class:`Command` to
:data:`READ_COMMANDS` (its ``out`` is checked like a top-level command's).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from skillneurons.cli.common import Command, file_out, folder_out, progress
from skillneurons.cli.options import add_config, build_config
from skillneurons.options import option
from skillneurons.reading.config import ReaderConfig, ReadTrainConfig
from skillneurons.reading.data_config import CLOZE_TASK, ReadDataConfig


@dataclass
class ReadDataOptions:
    action: str = option(
        "show",
        "build the built-in cloze task into the data cache, or show a reading task's statistics",
        choices=("build", "show"),
        positional=True,
    )
    force: bool = option(False, "build: build again even if the cache holds it with the same options")


def _add_data(p: argparse.ArgumentParser) -> None:
    add_config(p, ReadDataOptions)
    add_config(p.add_argument_group("reading task"), ReadDataConfig)


def _run_data(args: argparse.Namespace) -> int:
    from skillneurons.errors import ConfigError
    from skillneurons.reading.cloze import build_bbc_cloze, describe
    from skillneurons.reading.data import load_reading_task

    o: ReadDataOptions = build_config(args, ReadDataOptions)
    cfg: ReadDataConfig = build_config(args, ReadDataConfig)
    quiet = bool(getattr(args, "quiet", False))
    if o.action == "build":
        if cfg.task != CLOZE_TASK:
            raise ConfigError(f"read data build makes the built-in {CLOZE_TASK} task only: drop --task")
        manifest = build_bbc_cloze(cfg, force=o.force)
        if not quiet:
            print(describe(manifest))
        return 0
    splits = load_reading_task(cfg.task, cfg)
    if splits.info:
        print(describe(dict(splits.info)))
        return 0
    examples = [e for s in ("train", "dev", "test") for e in splits.split(s)]
    words = sum(len(p.split()) for e in examples for p in e.passages) / max(1, len(examples))
    passages = sum(len(e.passages) for e in examples) / max(1, len(examples))
    print(f"{splits.name} ({splits.kind()}) from {splits.source}")
    print("splits: " + ", ".join(f"{k} {v}" for k, v in splits.sizes().items()))
    print(f"mean passages per question {passages:.2f}; mean words per question's passages {words:.1f}")
    print("skipped: " + (", ".join(f"{k} {v}" for k, v in splits.skipped.items()) or "none"))
    return 0


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run folder: checkpoint, best reader, history, results")
    add_config(p.add_argument_group("reading task"), ReadDataConfig)
    add_config(p.add_argument_group("reader"), ReaderConfig, exclude=("head",))  # head: the task's kind
    add_config(p.add_argument_group("optimisation"), ReadTrainConfig)


def _run_train(args: argparse.Namespace) -> int:
    data: ReadDataConfig = build_config(args, ReadDataConfig)
    reader: ReaderConfig = build_config(args, ReaderConfig)
    train: ReadTrainConfig = build_config(args, ReadTrainConfig)
    from skillneurons.reading.run import train_reader

    result, _ = train_reader(data, reader, train, args.out, progress=progress(args))
    if not getattr(args, "quiet", False):
        print(
            f"best dev EM {result.best_dev_em:.4f} F1 {result.best_dev_f1:.4f} at step {result.best_step} "
            f"of {result.steps} ({result.n_train} train / {result.n_dev} dev questions; skipped "
            f"{sum(result.skipped_train.values())} / {sum(result.skipped_dev.values())}); "
            f"reader: {args.out}/reader.safetensors"
        )
    return 0


@dataclass
class ReadEvalOptions:
    reader: str = option("", "the saved reader (RUN/reader.safetensors from read train)")
    split: str = option("test", "the split to score", choices=("train", "dev", "test"))
    gates: bool = option(False, "also each head's gate AUROC for 'token in the answer' (extractive tasks)")
    batch_size: int = option(32, "evaluation batch size")
    out: str = option("", "result file (JSON)")


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    add_config(p, ReadEvalOptions, required=("reader", "out"))
    add_config(p.add_argument_group("reading task"), ReadDataConfig)


def _run_evaluate(args: argparse.Namespace) -> int:
    o: ReadEvalOptions = build_config(args, ReadEvalOptions)
    data: ReadDataConfig = build_config(args, ReadDataConfig)
    from skillneurons.options import check_range
    from skillneurons.reading.run import evaluate_saved_reader

    check_range("--batch-size", o.batch_size, low=1)
    result = evaluate_saved_reader(
        o.reader, data, o.split, gates=o.gates, batch_size=o.batch_size, progress=progress(args)
    )
    result.save(o.out)
    if not getattr(args, "quiet", False):
        print(
            f"{o.split}: EM {result.em:.4f} [{result.em_low:.4f}, {result.em_high:.4f}] F1 {result.f1:.4f} "
            f"[{result.f1_low:.4f}, {result.f1_high:.4f}] on {result.n} questions "
            f"(skipped {sum(result.skipped.values())}); written to {o.out}"
        )
    return 0


#: the sub-commands of ``read`` (``read train`` / ``read evaluate`` are added here)
READ_COMMANDS: tuple[Command, ...] = (
    Command(
        "data",
        "build the offline BBC News cloze task, or show a reading task's statistics",
        _add_data,
        _run_data,
    ),
    Command(
        "train",
        "train a DynSAN reader on a reading task (resumable; best reader by dev EM)",
        _add_train,
        _run_train,
        out=folder_out(),
    ),
    Command(
        "evaluate",
        "score a saved reader on a split (EM/F1 or accuracy; --gates: the gate AUROC)",
        _add_evaluate,
        _run_evaluate,
        out=file_out(),
    ),
)


def _add_read(p: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)  # -q / -v after the sub-command too
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log more")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress")
    sub = p.add_subparsers(dest="read_command", required=True, metavar="ACTION")
    for cmd in READ_COMMANDS:
        sp = sub.add_parser(cmd.name, parents=[common], help=cmd.help, description=cmd.help)
        cmd.add_arguments(sp)
        sp.set_defaults(_run=cmd.run, _out=cmd.out)  # replace the group's own (argparse: innermost wins)


def _run_read(args: argparse.Namespace) -> int:  # pragma: no cover - argparse requires an ACTION
    raise SystemExit(2)


COMMANDS = (
    Command(
        "read",
        "multi-passage reading comprehension (DynSAN): " + ", ".join(c.name for c in READ_COMMANDS),
        _add_read,
        _run_read,
    ),
)
