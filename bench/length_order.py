"""Inference batches in the task's order vs sorted by token length (``length_order``), side by side.

Evaluation, find's passes (baseline and predictivity) and the perturbation sweeps' evaluations now
batch the examples by token length: their results are sums and counts that address every example by
its index, so the order changes only the padding the backbone computes. This bench runs each pass
both ways on the same prompt, examples and batch size, repetitions interleaved, and reports

* the wall-time ratio (length / given) per pass, with every repetition's seconds;
* the positions computed (prefix + padded text) per pass, both ways;
* that the results agree: the accuracy and every example's correctness; the baseline means (float
  rounding: their largest difference); the predictivity counts (how many of the L x T x N values differ).

    .venv/bin/python bench/length_order.py --prompt runs/demo/seed0/prompt.safetensors --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from common import cpu_model, write_json
from skillneurons.backbones import load_backbone
from skillneurons.data import load_task
from skillneurons.neurons import collect
from skillneurons.neurons.collect import baseline_pass, predictivity_pass
from skillneurons.prompts import load_prompt
from skillneurons.rundir import RunDir
from skillneurons.training import trainer
from skillneurons.training.trainer import encode_examples, evaluate, iterate_batches, length_order


@contextlib.contextmanager
def given_order() -> Iterator[None]:
    """The former behaviour: every pass in the task's order."""
    keep = trainer.length_order, collect.length_order
    identity: Callable[[Any, Any], list[int]] = lambda model, task: list(range(len(task)))  # noqa: E731
    trainer.length_order = collect.length_order = identity  # type: ignore[assignment]
    try:
        yield
    finally:
        trainer.length_order, collect.length_order = keep  # type: ignore[assignment]


def positions(model: Any, task: Any, batch_size: int, order: list[int] | None) -> int:
    """Positions the backbone computes over ``task``: every batch's rows x (prefix + padded text)."""
    total = 0
    for idx in iterate_batches(task, batch_size, order):
        b = encode_examples(model, task, idx)
        total += len(idx) * (b.input_ids.shape[1] + model.prefix_length)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt", required=True, help="a tuned prompt (RUN/prompt.safetensors)")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--task", default="mr")
    ap.add_argument("--batch-size", type=int, default=64, help="(find's and evaluation's default)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results/length_order.json")
    args = ap.parse_args()
    bb = load_backbone(args.model)
    task = load_task(args.task)
    model, _ = load_prompt(args.prompt, bb)
    model.eval()
    splits = RunDir.of(args.prompt).splits(task)
    train, dev, test = splits.part("train"), splits.part("dev"), splits.part("test")
    bs = args.batch_size

    def run_eval() -> Any:
        correct = torch.zeros(len(test), dtype=torch.bool)
        acc = evaluate(model, test, bs, correct=correct)["accuracy"]
        return acc, correct

    def run_base() -> Any:
        return baseline_pass(model, train, batch_size=bs)[0]

    base = run_base()

    def run_pred() -> Any:
        return predictivity_pass(model, dev, base, batch_size=bs)

    passes = {
        "evaluate (test)": (run_eval, test),
        "pass 1 (train)": (run_base, train),
        "pass 2 (dev)": (run_pred, dev),
    }
    seconds: dict[str, dict[str, list[float]]] = {k: {"given": [], "length": []} for k in passes}
    results: dict[str, dict[str, Any]] = {k: {} for k in passes}
    for _rep in range(args.repeats):
        for name, (fn, _split) in passes.items():
            for how in ("given", "length"):
                ctx = given_order() if how == "given" else contextlib.nullcontext()
                with ctx:
                    t0 = time.perf_counter()
                    results[name][how] = fn()
                    seconds[name][how].append(time.perf_counter() - t0)
    rows = []
    for name, (_fn, split) in passes.items():
        g, s = results[name]["given"], results[name]["length"]
        if name.startswith("evaluate"):
            agree = {"accuracy": [g[0], s[0]], "examples_differing": int((g[1] != s[1]).sum())}
        elif name.startswith("pass 1"):
            agree = {"baseline_mean_max_abs_diff": float((g.mean() - s.mean()).abs().max())}
        else:
            pg, ps = g.predictivity().flatten(), s.predictivity().flatten()
            k = max(1, round(0.01 * pg.numel()))
            top_g, top_s = set(pg.topk(k).indices.tolist()), set(ps.topk(k).indices.tolist())
            top = torch.tensor(sorted(top_g))
            agree = {
                "above_counts_differing": int((g.above != s.above).sum()),
                "values": int(g.above.numel()),
                "predictivity_max_abs_diff": float((pg - ps).abs().max()),
                "predictivity_values_differing": int((pg != ps).sum()),
                "top1pct_jaccard": len(top_g & top_s) / len(top_g | top_s),
                "top1pct_max_abs_diff": float((pg[top] - ps[top]).abs().max()),
                "top1": [float(pg.max()), float(ps.max())],
                "top1pct_mean": [float(pg.topk(k).values.mean()), float(ps.topk(k).values.mean())],
            }
        pos = {
            "given": positions(model, split, bs, None),
            "length": positions(model, split, bs, length_order(model, split)),
        }
        med = {k: statistics.median(v) for k, v in seconds[name].items()}
        rows.append(
            {
                "pass": name,
                "examples": len(split),
                "seconds": seconds[name],
                "ratio_length_over_given": med["length"] / med["given"],
                "positions": pos,
                "positions_ratio": pos["length"] / pos["given"],
                "agreement": agree,
            }
        )
        print(
            f"{name}: {len(split)} examples, time length/given {med['length'] / med['given']:.2f} "
            f"(median of {args.repeats}: {med['given']:.1f} s -> {med['length']:.1f} s), positions "
            f"{pos['length'] / pos['given']:.2f}; {agree}"
        )
    write_json(
        args.out,
        {
            "machine": {
                "cpu": cpu_model(),
                "threads": torch.get_num_threads(),
                "python": platform.python_version(),
            },
            "model": args.model,
            "task": args.task,
            "prompt": args.prompt,
            "batch_size": bs,
            "repeats": args.repeats,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
