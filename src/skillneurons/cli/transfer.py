"""``transfer-matrix``, ``transferability``, ``project`` (train|apply) and ``tpt-compare``: prompt
transferability across tasks and models."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillneurons.cli.common import (
    Command,
    add_artifacts,
    add_backbone_options,
    add_out,
    artifacts,
    comma_list,
    file_out,
    folder_out,
    load_backbone_from,
    progress,
)
from skillneurons.cli.options import add_config, build_config
from skillneurons.cli.tasks import add_prompt_tasks, prompt_tasks
from skillneurons.data.config import TaskOptions
from skillneurons.errors import ConfigError
from skillneurons.options import option
from skillneurons.training.config import TrainConfig
from skillneurons.transfer.config import (
    OnOptions,
    ProjectApplyConfig,
    ProjectTrainConfig,
    TPTCompareConfig,
    TransferabilityConfig,
    TransferMatrixConfig,
)

__all__ = ["COMMANDS"]

_HEADS = ("auto", "label_words", "linear", "similarity")
_PRECISIONS = ("auto", "fp32", "bf16")


def _table(rows: list[str], cols: list[str], m: list[list[Any]], fmt: str = "{:.3f}") -> str:
    width = max(8, *(len(c) + 1 for c in cols))
    first = max(len(r) for r in rows) + 2
    lines = [" " * first + "".join(f"{c:>{width}s}" for c in cols)]
    for r, row in zip(rows, m):
        lines.append(
            f"{r:{first}s}"
            + "".join(f"{fmt.format(v):>{width}s}" if v is not None else f"{'-':>{width}s}" for v in row)
        )
    return "\n".join(lines)


def _add_task(p: argparse.ArgumentParser) -> None:
    add_config(p.add_argument_group("task (data)"), TaskOptions)


def _task(args: argparse.Namespace) -> Any:
    """The task ``--task`` names (loaded), or None when not given."""
    options: TaskOptions = build_config(args, TaskOptions)
    return options.load() if options.task else None


# ---- transfer-matrix ---------------------------------------------------------------------------


@dataclass
class MatrixOptions:
    """``transfer-matrix``'s own options (how the cells are evaluated is :class:`TransferMatrixConfig`)."""

    names: str | None = option(None, "comma-separated names of the sources (none: their tasks)")


def _add_transfer_matrix(p: argparse.ArgumentParser) -> None:
    add_artifacts(
        p, "prompt", "source prompt artifacts (RUN/prompt.safetensors with split.json)", old_positional=True
    )
    add_artifacts(
        p,
        "targets",
        "target prompt artifacts: their task, head and split (default: the sources)",
        required=False,
    )
    add_out(p, "folder for transfer_matrix.json (resumes from it)")
    add_config(p, MatrixOptions)
    add_config(p.add_argument_group("evaluation"), TransferMatrixConfig)
    add_prompt_tasks(p, "target")
    add_backbone_options(p, "backbone (default: the one recorded in the first prompt)")


def _run_transfer_matrix(args: argparse.Namespace) -> int:
    prompts = artifacts(args, "prompt")
    targets = artifacts(args, "targets") or None
    o: MatrixOptions = build_config(args, MatrixOptions)
    config: TransferMatrixConfig = build_config(args, TransferMatrixConfig)
    given = prompt_tasks(args, targets or prompts, "target")
    # lazy: --help stays fast
    from skillneurons.rundir import RunDir

    # the task and split of every target given --task or recording none (an imported prompt: --task,
    # --split-seed) before the model load; the others' recorded tasks are read as before
    tasks = []
    for p, t in zip(targets or prompts, given, strict=True):
        run = RunDir.of(p).require_kind("prompt")
        if t is not None or not run.task_record:
            t = run.task(t)
            run.part(config.split, t, config.split_seed)  # type: ignore[arg-type]
        tasks.append(t)
    from skillneurons.transfer.matrix import run_transfer_matrix  # the model libraries: after the checks

    # through the command's loader (--dtype, --device-map, --ffn, --trust-remote-code), also for the default
    model = load_backbone_from(args, args.model or RunDir.of(prompts[0]).backbone_name)
    res = run_transfer_matrix(
        prompts,
        args.out,
        config,
        model=model,
        targets=targets,
        names=comma_list(o.names),
        target_tasks=tasks,
        progress=progress(args),
    )
    print(
        f"accuracy on the target's {res['settings']['split']} split "
        "(rows: source prompt, columns: target task)"
    )
    print(_table(res["sources"], res["targets"], res["accuracy"]))
    print("\nrelative to the target's own prompt")
    print(_table(res["sources"], res["targets"], res["relative"]))
    print(f"\nresults written to {Path(args.out) / 'transfer_matrix.json'}")
    return 0


# ---- transferability ---------------------------------------------------------------------------


@dataclass
class TransferabilityOptions:
    """``transferability``'s own options (the indicators' are :class:`TransferabilityConfig` and
    :class:`OnOptions`)."""

    matrix: str | None = option(None, "transfer_matrix.json to correlate the indicators with")
    names: str | None = option(None, "comma-separated names (none: the prompts' tasks)")


def _on_texts_field() -> dataclasses.Field[Any]:
    return next(f for f in dataclasses.fields(OnOptions) if f.name == "texts")


def _add_transferability(p: argparse.ArgumentParser) -> None:
    add_artifacts(p, "prompt", "prompt artifacts of one model", old_positional=True)
    add_artifacts(
        p,
        "neurons",
        "skill-neuron artifacts, one per prompt ('-' for none; default: looked up in RUN/neurons "
        "or RUN/../neurons)",
        required=False,
    )
    add_out(p, "folder for transferability.json")
    add_config(p, TransferabilityOptions)
    add_config(p.add_argument_group("indicators"), TransferabilityConfig)  # --global: per_layer off
    g = p.add_argument_group("ON (activated neurons)")
    add_config(g, OnOptions, exclude=("texts",))
    # repeatable and never split at commas (a text may hold one): the generator's lists are neither
    texts = _on_texts_field()
    g.add_argument(
        texts.metadata["flag"], dest="on_texts", action="append", metavar="TEXT", help=texts.metadata["help"]
    )
    add_backbone_options(p, "backbone (default: the one recorded in the first prompt)")


def _print_correlations(res: Any, include_same_task: bool, min_margin: float | None) -> None:
    print(
        f"\ncorrelation with the relative transfer over {res['n_pairs']} pairs "
        f"({'including' if include_same_task else 'excluding'} same-task pairs"
        f"{'' if min_margin is None else f', prompts within {min_margin} of chance left out'})"
    )
    from skillneurons.evidence import Estimate

    print(f"{'indicator':16s} {'spearman [95% CI]':>22s} {'perm. p':>8s} {'pearson':>9s} {'p':>7s} {'n':>4s}")
    for k, c in res["correlation"].items():
        f = lambda v: f"{v:9.3f}" if v is not None else f"{'-':>9s}"  # noqa: E731
        g = lambda v: f"{v:7.3f}" if v is not None else f"{'-':>7s}"  # noqa: E731
        est = Estimate.from_json(c["spearman_ci"]) if c.get("spearman_ci") else None
        sp = (
            est.format(3)
            if est is not None
            else (f"{c['spearman']:.3f}" if c["spearman"] is not None else "-")
        )
        pp = f"{est.p:8.3f}" if est is not None and est.p is not None else f"{'-':>8s}"
        print(f"{k:16s} {sp:>22s} {pp} {f(c['pearson'])} {g(c['pearson_p'])} {c['n']:4d}")


def _run_transferability(args: argparse.Namespace) -> int:
    prompts = artifacts(args, "prompt")
    given = artifacts(args, "neurons")
    o: TransferabilityOptions = build_config(args, TransferabilityOptions)
    config: TransferabilityConfig = build_config(args, TransferabilityConfig)
    on: OnOptions = build_config(args, OnOptions, texts=tuple(args.on_texts or OnOptions().texts))
    out = Path(args.out)
    if given and len(given) != len(prompts):
        raise ConfigError(
            f"--neurons gives {len(given)} artifacts for {len(prompts)} prompts: "
            "give one per prompt ('-' for none)"
        )
    neurons = {p: (None if n == "-" else n) for p, n in zip(prompts, given)}
    # lazy: --help stays fast
    from skillneurons.rundir import RunDir
    from skillneurons.transfer.indicators import INDICATORS, transferability
    from skillneurons.transfer.matrix import TransferMatrix

    matrix = TransferMatrix.load(o.matrix) if o.matrix else None
    bb = load_backbone_from(args, args.model or RunDir.of(prompts[0]).backbone_name)
    res = transferability(
        prompts, bb, config, matrix=matrix, names=comma_list(o.names), neurons=neurons, on=on
    )
    out.mkdir(parents=True, exist_ok=True)
    res.save(out / "transferability.json")
    for k in INDICATORS:
        print(f"{k}")
        print(_table(res["names"], res["names"], res["indicators"][k]))
    if matrix is not None:
        _print_correlations(res, config.include_same_task, config.min_margin)
    print(f"results written to {out / 'transferability.json'}")
    return 0


# ---- project train|apply -----------------------------------------------------------------------


@dataclass
class ProjectOptions:
    """``project``'s own options; those both actions read (``--head``, ``--batch-size``,
    ``--precision``) go into :class:`ProjectTrainConfig` / :class:`TrainConfig` or
    :class:`ProjectApplyConfig`."""

    action: str = option(
        "train",
        "train a projector, or apply one to a prompt",
        choices=("train", "apply"),
        metavar="{train,apply}",
        positional=True,
    )
    projector: str | None = option(None, "apply: the projector artifact (OUT/projector.safetensors)")
    head: str | None = option(
        None,
        "how the target model reads labels (train: default auto; apply: default the head the "
        "projector was trained through)",
        choices=_HEADS,
    )
    batch_size: int = option(32, "train: batch size; apply: evaluation batch size")
    precision: str = option("auto", "training / evaluation precision", choices=_PRECISIONS)


def _add_project(p: argparse.ArgumentParser) -> None:
    add_config(p, ProjectOptions)
    add_artifacts(
        p,
        "prompt",
        "train: the source prompt of the projector-training task; apply: the prompt to project",
        several=False,
        required=False,
    )
    add_out(p, "train: output folder; apply: where to save the projected prompt", required=False)
    g = p.add_argument_group("project train")
    add_config(g, ProjectTrainConfig, exclude=("head",))
    add_config(g, TrainConfig, exclude=("batch_size", "precision"), defaults={"lr": 1e-3})
    add_config(
        p.add_argument_group("project apply"),
        ProjectApplyConfig,
        exclude=("head", "batch_size", "precision"),
    )
    add_backbone_options(p, "train: the target model (required); apply: default the projector's target")
    _add_task(p)


def _run_project(args: argparse.Namespace) -> int:
    o: ProjectOptions = build_config(args, ProjectOptions)
    prompts = artifacts(args, "prompt")
    shared: dict[str, Any] = {"batch_size": o.batch_size, "precision": o.precision}
    if o.action == "train":
        if not prompts or not args.model:
            raise ConfigError(
                "project train needs --prompt (the source prompt) and --model (the target model)"
            )
        options = build_config(args, ProjectTrainConfig, head=o.head or "auto")
        train = build_config(args, TrainConfig, **shared)
        return _project_train(args, prompts[0], options, train)
    if not o.projector or not prompts:
        raise ConfigError(
            "project apply needs --projector and --prompt (a prompt of the projector's source model)"
        )
    config: ProjectApplyConfig = build_config(args, ProjectApplyConfig, head=o.head, **shared)
    task = _task(args)
    # lazy: --help stays fast
    from skillneurons.transfer.projector import apply_projector, projector_manifest

    target = args.model or projector_manifest(o.projector)["target_backbone"]["name"]
    applied = apply_projector(
        o.projector,
        prompts[0],
        load_backbone_from(args, target),
        args.out,
        task=task,
        progress=progress(args),
        **dataclasses.asdict(config),
    )
    body = applied.to_json() if hasattr(applied, "to_json") else dict(applied)
    body.pop("model", None)
    print(json.dumps(body, indent=2))
    return 0


def _project_out(args: argparse.Namespace) -> tuple[str | None, bool]:
    """train: the output folder; apply: a folder, or the projected prompt's ``.safetensors`` path."""
    out = args.out
    apply = args.ProjectOptions__action == "apply"
    return out, not (apply and str(out or "").endswith(".safetensors"))


def _project_train(
    args: argparse.Namespace, prompt: str, options: ProjectTrainConfig, train: TrainConfig
) -> int:
    task = _task(args)  # data errors first, before the (slow) model load
    # lazy: --help stays fast
    from skillneurons.transfer.projector import train_projector

    res = train_projector(
        prompt,
        load_backbone_from(args, args.model),
        args.out,
        options,
        task=task,
        config=train,
        progress=progress(args),
    )
    print(
        f"projected {res['task']} prompt: test accuracy {res['test_accuracy']:.4f} "
        f"(best dev {res['best_dev_accuracy']:.4f} at step {res['best_step']}); "
        f"projector saved to {res['projector_path']}"
    )
    return 0


# ---- tpt-compare -------------------------------------------------------------------------------


@dataclass
class TPTCompareOptions:
    """``tpt-compare``'s inputs (the threshold is :class:`TPTCompareConfig`)."""

    baseline: str | None = option(None, "run folder of the randomly initialised run")
    runs: tuple[str, ...] = option(
        (), "run folders (NAME=FOLDER) started from transferred prompts", positional=True
    )


def _add_tpt_compare(p: argparse.ArgumentParser) -> None:
    add_config(p, TPTCompareOptions, required=("baseline", "runs"))
    add_config(p, TPTCompareConfig)
    add_out(p, "JSON file to write the comparison to", required=False)


def _run_tpt_compare(args: argparse.Namespace) -> int:
    o: TPTCompareOptions = build_config(args, TPTCompareOptions)
    config: TPTCompareConfig = build_config(args, TPTCompareConfig)
    # lazy: --help stays fast
    from skillneurons.transfer.tpt import compare_runs

    others = {}
    for spec in o.runs:
        name, sep, path = spec.partition("=")
        others[name if sep else Path(spec).name] = path if sep else spec
    res = compare_runs(str(o.baseline), others, config)
    print(f"target dev accuracy {res['threshold']:.4f}")
    print(f"{'run':16s} {'steps':>6s} {'seconds':>8s} {'speed-up':>8s} {'best dev':>8s} {'test':>7s}")
    for n, r in res["runs"].items():
        st = r["steps_to_threshold"]
        sec = r["seconds_to_threshold"]
        sp = r["speedup"]
        print(
            f"{n:16s} {st if st is not None else '-':>6} {f'{sec:.0f}' if sec is not None else '-':>8s} "
            f"{f'{sp:.2f}x' if sp is not None else '-':>8s} {r['best_dev_accuracy']:8.4f} "
            f"{r['test_accuracy']:7.4f}"
        )
    if args.out:
        res.save(Path(args.out))
        print(f"results written to {args.out}")
    return 0


COMMANDS = (
    Command(
        "transfer-matrix",
        "cross-task zero-shot transfer: every prompt on every task",
        _add_transfer_matrix,
        _run_transfer_matrix,
        folder_out(),
    ),
    Command(
        "transferability",
        "indicators (E_avg, E_tok, ON, skill-neuron overlap) for every pair, and their correlation "
        "with transfer",
        _add_transferability,
        _run_transferability,
        folder_out(),
    ),
    Command(
        "project",
        "cross-model prompt projector: train it, or apply it to a prompt",
        _add_project,
        _run_project,
        _project_out,
    ),
    Command(
        "tpt-compare",
        "speed-up of transfer-initialised tuning runs over a baseline run",
        _add_tpt_compare,
        _run_tpt_compare,
        file_out(),
    ),
)
