"""Cost of `find` (both streaming passes) vs plain forward passes vs caching every activation.

Side by side in one run, same model, prompt, examples and batch size, repetitions interleaved:

* ``forward``   - the physical limit: the same forward passes with no hook at all;
* ``find``      - skillneurons' streaming passes (baseline on "train", predictivity on "dev");
* ``find_null`` - the same passes with cross-fitting folds and the permutation null at find's
  defaults (5 folds, R = 100 label permutations, held-out null), counted in the SAME forward passes,
  plus the reductions to the held-out figures and the null distributions (#18 items 1-2);
* ``cache_all`` - the original code's approach: per batch, copy every prompt-position activation to
  host memory, compute the statistics at the end from the stored tensor.

Then peak memory (max RSS of a fresh process) of ``find`` and ``cache_all`` at 1x and 4x examples.

    .venv/bin/python bench/find_speed.py --examples 256 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

from common import cpu_model, write_json
from skillneurons.backbones import load_backbone, neuron_hooks
from skillneurons.data import Task, load_task
from skillneurons.neurons import BaselineStats, PredictivityStats
from skillneurons.neurons.collect import baseline_pass, predictivity_pass
from skillneurons.neurons.config import FindConfig
from skillneurons.neurons.crossfit import prompt_folds, set_figures
from skillneurons.neurons.ranking import decompose
from skillneurons.neurons.stats import FoldPlan
from skillneurons.prompts import PromptModel, SoftPrompt, build_head, load_prompt
from skillneurons.training.trainer import autocast_context, encode_examples, iterate_batches


def build(model: str, prompt: str | None, length: int) -> PromptModel:
    bb = load_backbone(model)
    if prompt:
        return load_prompt(prompt, bb)[0]
    gen = torch.Generator().manual_seed(0)
    return PromptModel(
        bb, SoftPrompt.create(bb, length, generator=gen), build_head("auto", bb, [["negative"], ["positive"]])
    )


def examples(n: int) -> tuple[Task, Task]:
    task = load_task("mr")  # the file is sorted by label: take a seeded shuffle
    order = torch.randperm(len(task), generator=torch.Generator().manual_seed(0)).tolist()
    return task.subset(order[:n]), task.subset(order[n : 2 * n])


@torch.inference_mode()
def run_forward(pm: PromptModel, train: Task, dev: Task, bs: int) -> None:
    dev_ = pm.backbone.device
    with autocast_context(dev_):  # the same precision as find's passes (bf16 on a GPU)
        for part in (train, dev):
            for idx in iterate_batches(part, bs):
                pm.hidden_states(encode_examples(pm, part, idx).to(dev_))


def run_find(pm: PromptModel, train: Task, dev: Task, bs: int) -> None:
    base, _ = baseline_pass(pm, train, batch_size=bs)
    predictivity_pass(pm, dev, base, batch_size=bs).predictivity()


def run_find_null(pm: PromptModel, train: Task, dev: Task, bs: int) -> None:
    cfg = FindConfig()
    plan = FoldPlan.make(dev.labels, dev.num_classes, cfg.folds, cfg.permutations, cfg.seed)
    base, _ = baseline_pass(pm, train, batch_size=bs)
    stats = predictivity_pass(pm, dev, base, batch_size=bs, plan=plan, heldout_null=cfg.heldout_null)
    stats.predictivity()
    folds = prompt_folds(stats.crossfit, decompose(2))
    set_figures([folds], cfg.aggregate, cfg.rho)


@torch.inference_mode()
def _cache(pm: PromptModel, part: Task, bs: int) -> tuple[torch.Tensor, torch.Tensor]:
    store: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    cur: dict[int, torch.Tensor] = {}
    pos_holder: list[torch.Tensor] = []

    def hook(layer: int, acts: torch.Tensor) -> None:
        idx = pos_holder[0].unsqueeze(-1).expand(-1, -1, acts.shape[-1])
        cur[layer] = torch.gather(acts, 1, idx).detach().cpu().clone()

    with neuron_hooks(pm.backbone, hook):
        for idx in iterate_batches(part, bs):
            batch = encode_examples(pm, part, idx).to(pm.backbone.device)
            pos_holder[:] = [pm.prompt_positions(batch)]
            with autocast_context(pm.backbone.device):
                pm.hidden_states(batch)
            store.append(torch.stack([cur[layer] for layer in sorted(cur)], 1))
            assert batch.labels is not None
            labels.append(batch.labels.cpu())
    return torch.cat(store), torch.cat(labels)


def run_cache_all(pm: PromptModel, train: Task, dev: Task, bs: int) -> None:
    acts, _ = _cache(pm, train, bs)
    base = BaselineStats(*acts.shape[1:])
    base.update(acts)
    del acts
    dacts, dlab = _cache(pm, dev, bs)
    stats = PredictivityStats(base, 2)
    stats.update(dacts, dlab)
    stats.predictivity()


METHODS = {"forward": run_forward, "find": run_find, "find_null": run_find_null, "cache_all": run_cache_all}


def peak_rss_mb(method: str, n: int, args: argparse.Namespace) -> float:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--examples",
        str(n),
        "--batch-size",
        str(args.batch_size),
        "--model",
        args.model,
        "--prompt-length",
        str(args.prompt_length),
    ] + (["--prompt", args.prompt] if args.prompt else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument(
        "--prompt",
        help="a trained prompt (default: a random 20-token prompt; speed does not depend on training)",
    )
    ap.add_argument("--prompt-length", type=int, default=20)
    ap.add_argument("--examples", type=int, default=256, help="examples per pass (train and dev each)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results/find_speed.json")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-RSS child processes")
    ap.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated methods to time (forward is always timed: the ratios are to it)",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.manual_seed(0)
    pm = build(args.model, args.prompt, args.prompt_length)
    train, dev = examples(args.examples)
    if args.child:
        METHODS[args.child](pm, train, dev, args.batch_size)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return
    run_forward(pm, train.subset(range(32)), dev.subset(range(32)), args.batch_size)  # warm-up
    chosen = ["forward"] + [m for m in args.methods.split(",") if m in METHODS and m != "forward"]
    times: dict[str, list[float]] = {m: [] for m in chosen}
    sync = torch.cuda.synchronize if pm.backbone.device.type == "cuda" else (lambda: None)
    for _ in range(args.repeats):
        for name in chosen:
            fn = METHODS[name]
            sync()
            t0 = time.perf_counter()
            fn(pm, train, dev, args.batch_size)
            sync()
            times[name].append(time.perf_counter() - t0)
    med = {m: statistics.median(t) for m, t in times.items()}
    mem = (
        {}
        if args.no_memory
        else {
            f"{m}_{k}x": peak_rss_mb(m, k * args.examples, args)
            for m in ("find", "find_null", "cache_all")
            if m in chosen
            for k in (1, 4)
        }
    )
    result = {
        "machine": {
            "cpu": cpu_model(),
            "gpu": torch.cuda.get_device_name() if pm.backbone.device.type == "cuda" else None,
            "cores": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "model": args.model,
        "examples_per_pass": args.examples,
        "batch_size": args.batch_size,
        "prompt_positions": pm.prompt.length + 1,
        "neurons": pm.backbone.num_neurons,
        "median_seconds": med,
        "over_forward": {m: med[m] / med["forward"] for m in chosen},
        "find_null_over_find": med["find_null"] / med["find"]
        if {"find", "find_null"} <= med.keys()
        else None,
        "null": {"folds": FindConfig().folds, "permutations": FindConfig().permutations, "heldout": True},
        "peak_rss_mb": mem,
    }
    write_json(args.out, result)


if __name__ == "__main__":
    main()
