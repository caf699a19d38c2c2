"""Delta tuning on MiniLM + MR, and prompt-found skill neurons perturbed in the tuned models.

Side by side in one run, on the split of the prompt the skill neurons came from (its ``split.json``):
train each method (``skillneurons.runs.tune_prompt`` with ``method=...``; runs resume), then perturb
the skill neurons in every tuned model against ``--draws`` random draws per fraction
(``skillneurons.delta.delta_perturbation``, the existing sweep). The reference prompt is included as
the first row. Writes ``OUT/delta_mr.json`` (training results + sweeps), ``OUT/delta_mr.png`` and
prints markdown tables.

    .venv/bin/python bench/delta_mr.py --prompt runs/mr/seed0/prompt.safetensors \
        --neurons runs/mr/neurons/skill_neurons.safetensors --runs runs/delta-bench --out bench/results
"""

from __future__ import annotations

import argparse
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from common import cpu_model, write_json
from skillneurons.artifacts import load_manifest
from skillneurons.backbones import load_backbone
from skillneurons.data import load_task
from skillneurons.delta import delta_perturbation
from skillneurons.perturb.plots import plot_sweep
from skillneurons.runs import tune_prompt
from skillneurons.training import TrainConfig

#: name -> (method, options, lr)
SETTINGS: dict[str, tuple[str, dict[str, Any], float]] = {
    "bitfit": ("bitfit", {}, 5e-3),
    "adapter": ("adapter", {"placement": "pfeiffer"}, 3e-3),
    "adapter-houlsby": ("adapter", {"placement": "houlsby"}, 3e-3),
    "lora": ("lora", {}, 3e-3),
}


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | unperturbed | rho | neurons | skill drop | random drop: mean [95% CI] | gap |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in rows:
        for r in m["summary"]:
            if r["rho"] == 0:
                continue
            ci = r["random_drop_ci95"]
            band = f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci[0] is not None else ""
            lines.append(
                f"| {m['label']} | {m['sweep']['unperturbed']:.4f} | {r['rho']:.0%} | {r['neurons']} | "
                f"{r['skill_drop']:+.4f} | {r['random_drop']:+.4f}{band} | {r['gap']:+.4f} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument(
        "--prompt", default="runs/mr/seed0/prompt.safetensors", help="prompt the neurons came from"
    )
    ap.add_argument("--neurons", default="runs/mr/neurons/skill_neurons.safetensors")
    ap.add_argument(
        "--runs", default="runs/delta-bench", help="folder of the tuned models (one run folder each)"
    )
    ap.add_argument("--out", default="bench/results")
    ap.add_argument(
        "--methods", default="bitfit,adapter,adapter-houlsby,lora", help=f"of {', '.join(SETTINGS)}"
    )
    ap.add_argument("--lr", action="append", default=[], help="override, e.g. --lr lora=1e-3 (repeatable)")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--max-steps", type=int, help="cap the training steps (CPU budgets)")
    ap.add_argument("--eval-every", type=int)
    ap.add_argument("--rhos", default="0,0.01,0.02,0.05")
    ap.add_argument("--mode", default="zero")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lrs = {k: float(v) for k, v in (x.split("=", 1) for x in args.lr)}
    man = load_manifest(args.prompt, "prompt")
    bb = load_backbone(man["backbone"]["name"], device=None if args.device == "auto" else args.device)
    task = load_task(man["task"]["name"])
    split_file = Path(args.prompt).parent / "split.json"
    trained: dict[str, Any] = {}
    paths = [Path(args.prompt)]
    for name in [m for m in args.methods.split(",") if m]:
        method, opts, lr = SETTINGS[name]
        run = Path(args.runs) / name
        run.mkdir(parents=True, exist_ok=True)
        if not (
            run / "split.json"
        ).is_file():  # the neurons' split: ranked on its dev part, tested on its test part
            shutil.copy(split_file, run / "split.json")
        cfg = TrainConfig(
            epochs=args.epochs,
            max_steps=args.max_steps,
            lr=lrs.get(name, lr),
            seed=int(man.get("seed", 0)),
            eval_every=args.eval_every,
        )
        t0 = time.perf_counter()
        res = tune_prompt(
            bb,
            task,
            run,
            method=method,
            method_options=opts,
            head=man["head"]["type"],
            layout=man["layout"],
            max_length=int(man.get("max_length", 128)),
            config=cfg,
        )
        res["wall_seconds"] = time.perf_counter() - t0
        trained[name] = {
            k: res[k]
            for k in (
                "test_accuracy",
                "best_dev_accuracy",
                "best_step",
                "steps",
                "train_seconds",
                "trainable_parameters",
                "method_options",
            )
        }
        trained[name]["lr"] = cfg.lr
        print(
            f"{name}: test {res['test_accuracy']:.4f} (dev {res['best_dev_accuracy']:.4f}), "
            f"{res['trainable_parameters']} parameters, {res['train_seconds']:.0f} s",
            flush=True,
        )
        paths.append(run / "prompt.safetensors")
    t0 = time.perf_counter()
    exp = delta_perturbation(
        args.neurons,
        paths,
        bb,
        rhos=[float(x) for x in args.rhos.split(",")],
        mode=args.mode,
        draws=args.draws,
        out_dir=Path(args.runs) / "perturb",
        progress=True,
    )
    out = Path(args.out)
    result = {
        "machine": {
            "cpu": cpu_model(),
            "device": str(bb.device),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },
        "backbone": bb.name,
        "task": task.name,
        "trained": trained,
        "perturb_seconds": time.perf_counter() - t0,
        "perturbation": exp,
    }
    write_json(out / "delta_mr.json", result)
    plot_sweep(
        [m["sweep"] for m in exp["models"]],
        out / "delta_mr.png",
        labels=[m["label"] for m in exp["models"]],
        title=f"{bb.name} on {task.name}: prompt-found skill neurons in tuned models ({args.mode})",
    )
    print(table(exp["models"]))


if __name__ == "__main__":
    main()
