"""``perturb``, ``cross-perturb``, ``similarity``, ``delta-perturb``: do skill neurons matter, and for
which tasks? Perturbation against random controls, the cross-task matrix, task similarity."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from skillneurons.cli.common import (
    Command,
    add_artifacts,
    add_backbone_options,
    add_out,
    artifacts,
    backbone_of,
    backbone_options,
    check_inputs,
    folder_out,
    progress,
)
from skillneurons.cli.options import add_config, build_config
from skillneurons.cli.tasks import add_prompt_tasks, prompt_tasks
from skillneurons.data.config import TaskOptions
from skillneurons.delta.config import DeltaPerturbConfig
from skillneurons.perturb.config import CrossPerturbConfig, SimilarityConfig, SweepConfig

__all__ = ["COMMANDS"]

_MODEL_HELP = "backbone (default: the one recorded in the first prompt)"


def _add_perturb(p: argparse.ArgumentParser) -> None:
    add_artifacts(p, "prompt", "prompt artifact (RUN/prompt.safetensors), with its split.json", several=False)
    add_artifacts(p, "neurons", "skill-neuron artifact (NEURONS/skill_neurons.safetensors)", several=False)
    add_out(p, "folder for perturb_sweep.json and perturb_sweep.png")
    add_config(p, SweepConfig)
    add_config(p.add_argument_group("task (default: the prompt's own)"), TaskOptions)
    add_backbone_options(p, _MODEL_HELP)


def _run_perturb(args: argparse.Namespace) -> int:
    [prompt], [neurons] = artifacts(args, "prompt"), artifacts(args, "neurons")
    config: SweepConfig = build_config(args, SweepConfig)
    task_options: TaskOptions = build_config(args, TaskOptions)
    given = task_options.load() if task_options.task else None
    from skillneurons.rundir import RunDir  # lazy: --help stays fast

    # the prompt's task and split (an imported prompt: --task, --split-seed) before the (slow) model load
    run = RunDir.of(prompt).require_kind("prompt", "delta")
    task = run.task(given)
    run.part(config.split, task, config.split_seed)  # type: ignore[arg-type]
    from skillneurons.perturb.experiments import run_sweep  # the model libraries: after the input checks

    res = run_sweep(
        prompt,
        neurons,
        args.out,
        config,
        model=args.model,
        backbone_options=backbone_options(args),
        task=task,
        progress=progress(args),
    )
    print(res.table())
    print(f"results written to {Path(args.out) / 'perturb_sweep.json'} and perturb_sweep.png")
    return 0


def _add_cross(p: argparse.ArgumentParser) -> None:
    add_artifacts(p, "prompt", "one prompt artifact per task (built-in tasks)", aliases=("--prompts",))
    add_artifacts(p, "neurons", "the tasks' skill-neuron artifacts, same order")
    add_out(p, "folder for perturb_cross.json and perturb_cross.png")
    add_config(p, CrossPerturbConfig)
    add_prompt_tasks(p, "prompt")
    add_backbone_options(p, _MODEL_HELP)


def _run_cross(args: argparse.Namespace) -> int:
    prompts, neurons = artifacts(args, "prompt"), artifacts(args, "neurons")
    config: CrossPerturbConfig = build_config(args, CrossPerturbConfig)
    given = prompt_tasks(args, prompts, "prompt")
    from skillneurons.rundir import RunDir  # lazy: --help stays fast

    # every prompt's task and split (an imported one: --task, --split-seed) before the (slow) model load
    tasks = []
    for p, t in zip(prompts, given, strict=True):
        run = RunDir.of(p).require_kind("prompt", "delta")
        tasks.append(run.task(t))
        run.part(config.split, tasks[-1], config.split_seed)  # type: ignore[arg-type]
    check_inputs(neurons)
    from skillneurons.perturb.experiments import run_cross  # the model libraries: after the input checks

    res = run_cross(
        prompts,
        neurons,
        args.out,
        config,
        model=args.model,
        backbone_options=backbone_options(args),
        tasks=tasks,
        progress=progress(args),
    )
    print(res.table())
    print(f"results written to {Path(args.out) / 'perturb_cross.json'} and perturb_cross.png")
    return 0


def _add_similarity(p: argparse.ArgumentParser) -> None:
    add_artifacts(p, "neurons", "skill-neuron artifacts, one per task (same model)", old_positional=True)
    add_out(p, "folder for similarity.json and the heatmaps")
    add_config(p, SimilarityConfig)


def _run_similarity(args: argparse.Namespace) -> int:
    neurons = artifacts(args, "neurons")
    config: SimilarityConfig = build_config(args, SimilarityConfig)
    check_inputs(neurons)  # a missing input fails before the model libraries load
    from skillneurons.perturb.similarity import run_similarity  # lazy: --help stays fast

    res = run_similarity(neurons, args.out, config)
    print(json.dumps({"tasks": res.tasks, "spearman": res.spearman, "jaccard": res.jaccard}, indent=1))
    ci = res.spearman_ci or []
    for i, row in enumerate(ci):
        for j, e in enumerate(row[i + 1 :], start=i + 1):
            if e is not None:
                print(f"spearman {res.tasks[i]} x {res.tasks[j]}: {e.format(3, n=True, p=True)}")
    print(f"results written to {Path(args.out) / 'similarity.json'} and similarity_*.png")
    return 0


def _add_delta(p: argparse.ArgumentParser) -> None:
    add_artifacts(
        p,
        "neurons",
        "skill-neuron artifact found with prompt tuning (NEURONS/skill_neurons.safetensors)",
        several=False,
    )
    add_artifacts(
        p,
        "prompt",
        "artifacts of models tuned on the same task (RUN/prompt.safetensors, any --method)",
        aliases=("--models",),
    )
    add_out(p, "folder for delta_perturb.json, delta_perturb.png and per-model sweeps")
    add_config(p, DeltaPerturbConfig)
    add_config(p.add_argument_group("task (default: the models' own)"), TaskOptions)
    add_backbone_options(p, "backbone (default: the one recorded in the first tuned model)")


def _run_delta(args: argparse.Namespace) -> int:
    [neurons], models = artifacts(args, "neurons"), artifacts(args, "prompt")
    config: DeltaPerturbConfig = build_config(args, DeltaPerturbConfig)
    task_options: TaskOptions = build_config(args, TaskOptions)
    task = task_options.load() if task_options.task else None
    from skillneurons.delta.experiment import run_delta_perturbation  # lazy: --help stays fast
    from skillneurons.rundir import RunDir

    # the task and split of a tuned model given --task or recording none (an imported prompt: --task,
    # --split-seed) before the model load; the others' recorded tasks are read as before
    for path in models:
        run = RunDir.of(path).require_kind("prompt", "delta")
        if task is not None or not run.task_record or not run.split_record:
            run.part(config.split, run.task(task), config.split_seed)  # type: ignore[arg-type]
    # the backbone named by --model, else the one the first tuned model names; --dtype etc. apply to both
    bb = backbone_of(args, RunDir.of(models[0]))
    res = run_delta_perturbation(
        neurons, models, args.out, config, model=bb, task=task, progress=progress(args)
    )
    print(
        f"skill neurons of {res.task} ({config.mode}); drop from unperturbed test accuracy, random: mean "
        "[95% CI]"
    )
    for m in res.models:
        print(f"{m.label}: unperturbed {m.sweep['unperturbed']:.4f} (n={m.sweep['n_eval']})")
        for r in m.summary:
            ci = r.random_drop_ci95
            band = f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci[0] is not None else ""
            rnd = f"{r.random_drop:+.4f}" if r.random_drop is not None else "-"
            paired = f", skill - random {r.paired.format(4, p=True)}" if r.paired is not None else ""
            print(
                f"  rho {r.rho:.3f} ({r.neurons:5d} neurons): skill {r.skill_drop:+.4f}, random {rnd}{band}"
                + paired
            )
    print(f"results written to {Path(args.out) / 'delta_perturb.json'} and delta_perturb.png")
    return 0


COMMANDS = (
    Command(
        "perturb",
        "accuracy while perturbing skill neurons vs random neurons, over rho",
        _add_perturb,
        _run_perturb,
        folder_out(),
    ),
    Command(
        "cross-perturb",
        "perturb task A's skill neurons while evaluating task B's prompt, for all pairs",
        _add_cross,
        _run_cross,
        folder_out(),
    ),
    Command(
        "similarity",
        "task similarity: Spearman of neuron predictivity, skill-set overlap",
        _add_similarity,
        _run_similarity,
        folder_out(),
    ),
    Command(
        "delta-perturb",
        "perturb prompt-found skill neurons in models tuned with BitFit / adapters / LoRA",
        _add_delta,
        _run_delta,
        folder_out(),
    ),
)
