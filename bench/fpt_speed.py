"""Fast prompt tuning (progressive partial models) vs vanilla prompt tuning, side by side.

Same backbone, task split, prompt initialisation, head, optimizer, learning-rate schedule and number
of steps; the only difference is which model each training step runs on. Every run evaluates the
FULL model on the dev split at the same steps (``evaluate="all"``, not counted as training time),
so the steps, FLOPs and seconds needed to reach the vanilla run's best dev accuracy can be read
off. FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (forward + backward of one
representative batch per stage, times the stage's steps). Training seconds are the summed time of
the training steps (stage switches included, dev evaluation excluded). Because the machine may be
noisy, a second time ratio is estimated from per-stage step times measured in interleaved
repetitions (``--timing-steps``); the final test accuracy is that of the best-dev checkpoint.

    OMP_NUM_THREADS=1 .venv/bin/python bench/fpt_speed.py --model minilm --split runs/mr/seed0/split.json
    python bench/fpt_speed.py --model mpnet --device cuda       # on a GPU
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from common import cpu_model, write_json
from skillneurons.backbones import load_backbone
from skillneurons.data import TaskSplits, load_task
from skillneurons.fpt import ProgressiveTraining, parse_schedule
from skillneurons.prompts import PromptModel, SoftPrompt, build_head
from skillneurons.training import TrainConfig, Trainer, evaluate


def build_model(bb: Any, task: Any, args: argparse.Namespace) -> PromptModel:
    torch.manual_seed(args.seed)
    prompt = SoftPrompt.create(
        bb, args.prompt_length, "normal", generator=torch.Generator().manual_seed(args.seed)
    )
    head = build_head(args.head, bb, task.label_words)
    return PromptModel(bb, prompt, head, max_length=args.max_length)


def run_variant(bb: Any, splits: dict[str, Any], schedule: str, args: argparse.Namespace) -> dict[str, Any]:
    train, dev, test = splits["train"], splits["dev"], splits["test"]
    model = build_model(bb, train, args)
    cfg = TrainConfig(
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_every=args.eval_every,
        seed=args.seed,
        precision=args.precision,
    )
    hooks = ProgressiveTraining(
        model,
        train,
        parse_schedule(schedule, evaluate="all", width_by=args.width_by, neurons=args.neurons),
        precision=args.precision,
    )
    trainer = Trainer(model, train, dev, cfg, None, progress=not args.quiet, hooks=hooks)
    t0 = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - t0
    test_metrics = evaluate(model, test, cfg.eval_batch_size, precision=args.precision)
    return {
        "schedule": hooks.schedule.spec,
        "summary": hooks.summary(result.steps),
        "history": result.history,
        "best_dev_accuracy": result.best_dev_accuracy,
        "best_step": result.best_step,
        "test_accuracy": test_metrics["accuracy"],
        "train_step_seconds": sum(hooks.stage_seconds),
        "fit_seconds_with_eval": wall,
        "hooks": hooks,
        "trainer": trainer,
    }


def reach(history: list[dict[str, float]], target: float) -> dict[str, float] | None:
    for h in history:
        if h["dev_accuracy"] >= target - 1e-12:
            return {"step": h["step"], "flops": h["flops"], "train_seconds": h["train_seconds"]}
    return None


def interleaved_step_times(
    variants: list[dict[str, Any]], steps: int, repeats: int
) -> dict[str, list[float]]:
    """Median seconds per training step of every stage of every variant, measured in interleaved
    repetitions (throwaway steps on a copy of the optimizer state: the trained prompts are kept)."""
    times: dict[str, list[list[float]]] = {
        v["schedule"]: [[] for _ in v["hooks"].schedule.stages] for v in variants
    }
    for _ in range(repeats):
        for v in variants:
            hooks, trainer = v["hooks"], v["trainer"]
            saved = {k: t.detach().clone() for k, t in trainer.model.state_dict().items()}
            opt = copy.deepcopy(trainer.optimizer.state_dict())
            starts = [0, *hooks.bounds[:-1]]
            order = trainer.epoch_order(0)
            for i, start in enumerate(starts):
                for s in range(steps):
                    idx = order[(s * trainer.config.batch_size) % len(order) :][: trainer.config.batch_size]
                    with hooks.stage_model(i):
                        t0 = time.perf_counter()
                        trainer.train_step(idx, start)
                        if trainer.model.backbone.device.type == "cuda":
                            torch.cuda.synchronize()
                        times[v["schedule"]][i].append(time.perf_counter() - t0)
            trainer.model.load_state_dict(saved)
            trainer.optimizer.load_state_dict(opt)
    return {k: [statistics.median(x) for x in per] for k, per in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--task", default="mr")
    ap.add_argument(
        "--split", default="runs/mr/seed0/split.json", help="split.json to reuse (else drawn from --seed)"
    )
    ap.add_argument(
        "--train-examples", type=int, help="use a seeded random subset of N training examples of the split"
    )
    ap.add_argument("--dev-examples", type=int, help="use a seeded random subset of N dev examples")
    ap.add_argument(
        "--schedule", action="append", help="FPT schedule(s) (default: 25,50,75,full and w25,w50,w75,full)"
    )
    ap.add_argument("--width-by", default="mean_abs", choices=["mean_abs", "skill"])
    ap.add_argument("--neurons", help="skill-neuron artifact for --width-by skill")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-2)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--prompt-length", type=int, default=20)
    ap.add_argument("--head", default="auto")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when available)")
    ap.add_argument(
        "--timing-steps", type=int, default=3, help="steps per stage in the interleaved timing (0: skip)"
    )
    ap.add_argument("--timing-repeats", type=int, default=3)
    ap.add_argument("--warmup-steps", type=int, default=5, help="untimed training steps before the first run")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--out", help="result JSON (default bench/results/fpt_<model>.json)")
    args = ap.parse_args()
    schedules = args.schedule or ["25,50,75,full", "w25,w50,w75,full"]

    bb = load_backbone(args.model, device=args.device)
    task = load_task(args.task)
    splits_obj = (
        TaskSplits.load(task, args.split)
        if args.split and Path(args.split).is_file()
        else task.split(args.seed)
    )
    parts = {p: splits_obj.part(p) for p in ("train", "dev", "test")}  # type: ignore[arg-type]
    for part, n in (("train", args.train_examples), ("dev", args.dev_examples)):
        if n and n < len(parts[part]):  # a seeded random subset (split files are ordered by class)
            pick = torch.randperm(len(parts[part]), generator=torch.Generator().manual_seed(args.seed))[:n]
            parts[part] = parts[part].subset(sorted(pick.tolist()))

    if args.warmup_steps:  # kernels, allocator and caches warm before anything is timed
        model = build_model(bb, parts["train"], args)
        warm = Trainer(
            model, parts["train"], parts["dev"], TrainConfig(batch_size=args.batch_size), progress=False
        )
        for s in range(args.warmup_steps):
            warm.train_step(list(range(s, s + args.batch_size)), 0)
    runs = [run_variant(bb, parts, "full", args)]
    for s in schedules:
        runs.append(run_variant(bb, parts, s, args))
    vanilla = runs[0]
    target = vanilla["best_dev_accuracy"]
    step_times = (
        interleaved_step_times(runs, args.timing_steps, args.timing_repeats) if args.timing_steps else {}
    )
    out: dict[str, Any] = {
        "bench": "fpt_speed",
        "model": bb.identity(),
        "task": args.task,
        "split": args.split if args.split and Path(args.split).is_file() else f"seed {args.seed}",
        "sizes": {k: len(v) for k, v in parts.items()},
        "settings": {k: v for k, v in vars(args).items() if k not in ("quiet", "out")},
        "machine": {
            "cpu": cpu_model(),
            "cores": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": str(bb.device),
            "gpu": torch.cuda.get_device_name(0) if bb.device.type == "cuda" else None,
        },
        "target_dev_accuracy": target,
        "variants": [],
    }
    for r in runs:
        s = r["summary"]
        est = None
        if r["schedule"] in step_times and vanilla["schedule"] in step_times:
            t = step_times[r["schedule"]]
            t_full = step_times[vanilla["schedule"]][0]
            est = sum(st["steps"] * ti for st, ti in zip(s["stages"], t)) / (s["steps"] * t_full)
        reached = reach(r["history"], target)
        reached_99 = reach(r["history"], target - 0.01)
        v_reached = reach(vanilla["history"], target)
        out["variants"].append(
            {
                "schedule": r["schedule"],
                "stages": [
                    {k: st[k] for k in ("name", "layers", "widths", "steps", "flops_per_step", "seconds")}
                    for st in s["stages"]
                ],
                "steps": s["steps"],
                "flops": s["flops"],
                "flops_ratio": s["flops"] / vanilla["summary"]["flops"],
                "train_step_seconds": r["train_step_seconds"],
                "time_ratio": r["train_step_seconds"] / vanilla["train_step_seconds"],
                "time_ratio_interleaved": est,
                "stage_step_seconds_interleaved": step_times.get(r["schedule"]),
                "prepare_seconds": s["prepare_seconds"],
                "fit_seconds_with_eval": r["fit_seconds_with_eval"],
                "best_dev_accuracy": r["best_dev_accuracy"],
                "best_step": r["best_step"],
                "test_accuracy": r["test_accuracy"],
                "reach_vanilla_best": reached,
                "reach_vanilla_best_minus_1pt": reached_99,
                "reach_flops_ratio": (reached["flops"] / v_reached["flops"])
                if reached and v_reached
                else None,
                "reach_time_ratio": (reached["train_seconds"] / v_reached["train_seconds"])
                if reached and v_reached
                else None,
                "history": [
                    {k: h[k] for k in ("step", "dev_accuracy", "flops", "train_seconds", "stage")}
                    for h in r["history"]
                ],
            }
        )
    name = args.out or f"bench/results/fpt_{Path(args.model).name}.json"
    write_json(name, out)


if __name__ == "__main__":
    main()
