"""Transferable prompt tuning (TPT): tune a target task from another task's prompt vs from a random
initialisation, side by side in one run, with the same split, seed and budget.

For each initialisation (``random`` = the default N(0, 0.03^2) init, and one run per ``--init``
prompt) this runs ``tune_prompt`` into ``OUT/<name>/`` (resumable), then compares the dev-accuracy
curves from their ``history.json``: steps and seconds to reach ``--threshold`` (default
``--fraction`` of the random run's best dev accuracy), first-evaluation accuracy, best dev and
test accuracy (``skillneurons.transfer.compare_runs``). Writes ``bench/results/transfer_tpt.json``.

    OMP_NUM_THREADS=1 .venv/bin/python bench/transfer_tpt.py --task mr \\
        --init fine_food=runs/tasks/fine_food/prompt.safetensors --max-examples 2000 --epochs 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from common import cpu_model, write_json
from skillneurons.backbones import load_backbone
from skillneurons.data import load_task
from skillneurons.runs import tune_prompt
from skillneurons.training import TrainConfig
from skillneurons.transfer import compare_runs, load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--task", default="mr")
    ap.add_argument("--init", action="append", default=[], help="NAME=PROMPT: a source prompt to start from")
    ap.add_argument("--out", default="runs/transfer/tpt")
    ap.add_argument("--result", default="bench/results/transfer_tpt.json")
    ap.add_argument("--max-examples", type=int, default=2000)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--lr", type=float, default=3e-2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--prompt-length", type=int, default=20)
    ap.add_argument(
        "--threshold", type=float, help="dev accuracy to reach (default: --fraction of random's best)"
    )
    ap.add_argument("--fraction", type=float, default=0.9)
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    inits = {"random": None}
    for spec in args.init:
        name, _, path = spec.partition("=")
        if not path:
            ap.error(f"--init {spec!r}: write NAME=PROMPT")
        inits[name] = path
    bb = load_backbone(args.model, device=None if args.device == "auto" else args.device)
    task = load_task(args.task)
    out = Path(args.out)
    config = TrainConfig(epochs=args.epochs, lr=args.lr, eval_every=args.eval_every, seed=args.seed)
    for name, init in inits.items():
        run = out / name
        if (run / "results.json").is_file():
            print(f"{name}: finished earlier, reusing {run}")
            continue
        print(f"=== {name} (init {init or 'normal'})")
        res = tune_prompt(
            bb,
            task,
            run,
            prompt_length=args.prompt_length,
            init_prompt=init,
            max_examples=args.max_examples,
            split_seed=args.split_seed,
            config=config,
        )
        print(
            f"{name}: test {res['test_accuracy']:.4f}, best dev {res['best_dev_accuracy']:.4f} "
            f"at {res['best_step']}"
        )
    runs = {name: load_run(out / name) for name in inits}
    splits = {(out / n / "split.json").read_text() for n in inits}
    cmp = compare_runs(
        runs["random"],
        {n: r for n, r in runs.items() if n != "random"},
        threshold=args.threshold,
        fraction=args.fraction,
    )
    cmp["runs"]["random"] = cmp["runs"].pop("baseline")
    result = {
        "benchmark": "transfer_tpt",
        "model": args.model,
        "task": args.task,
        "inits": {n: p for n, p in inits.items()},
        "same_split": len(splits) == 1,
        "settings": {
            "max_examples": args.max_examples,
            "epochs": args.epochs,
            "eval_every": args.eval_every,
            "lr": args.lr,
            "seed": args.seed,
            "split_seed": args.split_seed,
            "prompt_length": args.prompt_length,
        },
        "device": str(bb.device),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        **cmp,
    }
    write_json(args.result, result)
    print(
        "\n| init | steps to {:.3f} | seconds | speed-up | first eval | best dev | test |".format(
            cmp["threshold"]
        )
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for n, r in cmp["runs"].items():
        sec = f"{r['seconds_to_threshold']:.0f}" if r["seconds_to_threshold"] is not None else "-"
        sp = f"{r['speedup']:.2f}x" if r["speedup"] is not None else "-"
        print(
            f"| {n} | {r['steps_to_threshold'] or '-'} | {sec} | {sp} "
            f"| {r['first_eval']['dev_accuracy']:.3f} "
            f"| {r['best_dev_accuracy']:.3f} | {r['test_accuracy']:.3f} |"
        )


if __name__ == "__main__":
    main()
