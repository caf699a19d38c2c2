"""Cross-model prompt projection: train the projector (flatten, Linear 768, Tanh, Linear, LayerNorm)
from a source model to a target model on one task, then project other tasks' source prompts and
evaluate them on the target model, side by side with a random target prompt (the same head).

Per evaluated task (each source prompt's own test split): the source prompt on the source model
(its own accuracy), the projected prompt on the target model, a random N(0, 0.03^2) prompt on the
target model, and the majority-class rate. Writes ``bench/results/transfer_projector.json``.

    OMP_NUM_THREADS=1 .venv/bin/python bench/transfer_projector.py --target mpnet \\
        --train-prompt runs/mr/seed0/prompt.safetensors --max-examples 800 --epochs 2 \\
        --eval fine_food=runs/tasks/fine_food/prompt.safetensors \\
        --eval tweets=runs/tasks/tweets/prompt.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from common import cpu_model, write_json
from skillneurons.artifacts import load_manifest
from skillneurons.backbones import load_backbone
from skillneurons.data import Task, load_task
from skillneurons.neurons.find import prompt_splits
from skillneurons.prompts import PromptModel, SoftPrompt, build_head
from skillneurons.runs import evaluate_prompt
from skillneurons.training import TrainConfig, evaluate
from skillneurons.transfer import apply_projector, train_projector


def source_accuracy(path: Path, task: Task) -> float:
    """The source prompt's own test accuracy: from its run's results.json (same test split) when it
    records it, so the source model need not be loaded; else evaluated on the source model."""
    results = path.parent / "results.json"
    if results.is_file():
        r = json.loads(results.read_text())
        if r.get("task") == task.name and r.get("test_accuracy") is not None:
            return float(r["test_accuracy"])
    return float(evaluate_prompt(path, task, progress=False)["accuracy"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--target", default="mpnet", help="target model")
    ap.add_argument(
        "--train-prompt",
        default="runs/mr/seed0/prompt.safetensors",
        help="source prompt of the projector-training task",
    )
    ap.add_argument(
        "--eval", action="append", default=[], help="NAME=PROMPT: source prompts to project and evaluate"
    )
    ap.add_argument("--out", default="runs/transfer/projector")
    ap.add_argument("--result", default="bench/results/transfer_projector.json")
    ap.add_argument("--max-examples", type=int, default=800)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--eval-every", type=int)
    ap.add_argument("--eval-max", type=int, help="evaluate on at most this many test examples per task")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bb = load_backbone(args.target, device=None if args.device == "auto" else args.device)
    config = TrainConfig(
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, eval_every=args.eval_every, seed=args.seed
    )
    out = Path(args.out)
    t0 = time.perf_counter()
    res = train_projector(args.train_prompt, bb, out, max_examples=args.max_examples, config=config)
    train_seconds = time.perf_counter() - t0
    train = {
        k: res[k]
        for k in (
            "task",
            "sizes",
            "best_dev_accuracy",
            "best_step",
            "steps",
            "test_accuracy",
            "train_seconds",
            "source_backbone",
            "target_backbone",
            "projector",
        )
    }
    print(f"projector trained on {res['task']}: projected test accuracy {res['test_accuracy']:.4f}")
    rows = []
    for spec in args.eval:
        name, _, path = spec.partition("=")
        man = load_manifest(path, "prompt")
        task = load_task(man["task"]["name"])
        part = prompt_splits(Path(path), man, task).part("test")
        if args.eval_max and len(part) > args.eval_max:
            part = part.subset(range(args.eval_max))
        own = None if args.eval_max else source_accuracy(Path(path), task)
        t1 = time.perf_counter()
        proj = apply_projector(
            out / "projector.safetensors",
            path,
            bb,
            out / f"projected-{name}",
            task=task,
            split=None,
            progress=False,
        )
        projected = evaluate(proj["model"], part, 64)["accuracy"]
        g = torch.Generator().manual_seed(args.seed)
        rnd = PromptModel(
            bb,
            SoftPrompt.create(bb, proj["model"].prompt.length, generator=g),
            build_head("auto", bb, task.label_words),
            layout=proj["model"].layout,
            max_length=proj["model"].max_length,
        )
        random_acc = evaluate(rnd, part, 64)["accuracy"]
        labels = torch.tensor(part.labels)
        majority = float(torch.bincount(labels).max()) / len(labels)
        row = {
            "task": name,
            "n": len(part),
            "source_own": own,
            "projected": projected,
            "random_prompt": random_acc,
            "majority": majority,
            "seconds": time.perf_counter() - t1,
        }
        print(row)
        rows.append(row)
    result = {
        "benchmark": "transfer_projector",
        "train_prompt": args.train_prompt,
        "train": train,
        "train_wall_seconds": train_seconds,
        "evaluated": rows,
        "settings": {
            "max_examples": args.max_examples,
            "epochs": args.epochs,
            "lr": args.lr,
            "batch_size": args.batch_size,
            "seed": args.seed,
        },
        "device": str(bb.device),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
    }
    write_json(args.result, result)
    print("\n| task | n | source model, own prompt | projected | random prompt | majority |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        own = f"{r['source_own']:.3f}" if r["source_own"] is not None else "-"
        print(
            f"| {r['task']} | {r['n']} | {own} | {r['projected']:.3f} | {r['random_prompt']:.3f} "
            f"| {r['majority']:.3f} |"
        )


if __name__ == "__main__":
    main()
