"""Cross-task zero-shot prompt transfer and how well transferability indicators predict it, in one run
on one backbone.

1. transfer matrix: every prompt on every prompt's task (the target's head, format and test split),
   accuracy and relative to the target's own prompt (``skillneurons.transfer.run_transfer_matrix``,
   resumable from ``OUT/transfer_matrix.json``);
2. indicators for every ordered pair (E_avg, E_tok aligned / all pairs, ON at the read slot with an
   empty input, ON restricted to skill neurons, skill-neuron overlap; the skill neurons are looked up
   beside each run) and their Spearman/Pearson correlation with the relative transfer over the
   cross-task pairs (``skillneurons.transfer.transferability``).

Writes ``bench/results/transfer_matrix.json`` and prints markdown tables.

    OMP_NUM_THREADS=1 .venv/bin/python bench/transfer_matrix.py \\
        runs/tasks/{fine_food,tweets,pang_lee,bbc_news}/prompt.safetensors \\
        runs/mr/seed{0,1,2}/prompt.safetensors
"""

from __future__ import annotations

import argparse
import time

import torch

from common import cpu_model, matrix_md, write_json
from skillneurons.artifacts import load_manifest
from skillneurons.backbones import load_backbone
from skillneurons.transfer import INDICATORS, OnOptions, run_transfer_matrix, transferability


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("prompts", nargs="+")
    ap.add_argument("--out", default="runs/transfer/matrix")
    ap.add_argument("--result", default="bench/results/transfer_matrix.json")
    ap.add_argument("--rho", type=float, default=0.02)
    ap.add_argument(
        "--min-margin",
        type=float,
        default=0.05,
        help="second correlation table: leave out prompts within this margin of their majority class",
    )
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    name = load_manifest(args.prompts[0], "prompt")["backbone"]["name"]
    bb = load_backbone(name, device=None if args.device == "auto" else args.device)
    t0 = time.perf_counter()
    matrix = run_transfer_matrix(args.prompts, args.out, model=bb)
    t1 = time.perf_counter()
    ind = transferability(args.prompts, bb, matrix=matrix, on=OnOptions(), rho=args.rho)
    learned = transferability(
        args.prompts, bb, matrix=matrix, on=OnOptions(), rho=args.rho, min_margin=args.min_margin
    )
    t2 = time.perf_counter()
    result = {
        "benchmark": "transfer_matrix",
        "model": name,
        "matrix": matrix,
        "transferability": ind,
        "correlation_learned": {
            "min_margin": args.min_margin,
            "n_pairs": learned["n_pairs"],
            "correlation": learned["correlation"],
        },
        "seconds": {"matrix": t1 - t0, "indicators": t2 - t1},
        "device": str(bb.device),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
    }
    write_json(args.result, result)
    print("\nAccuracy (rows: source prompt; columns: target task, its test split)\n")
    print(matrix_md(matrix["targets"], matrix["accuracy"], rows=matrix["sources"], corner="source \\ target"))
    print("\nRelative to the target's own prompt\n")
    print(matrix_md(matrix["targets"], matrix["relative"], rows=matrix["sources"], corner="source \\ target"))
    print(
        f"\nCorrelation with relative transfer: all {ind['n_pairs']} cross-task pairs; "
        f"{learned['n_pairs']} pairs of prompts beating their majority class by >= {args.min_margin}; "
        "same-head pairs\n"
    )
    print(
        "| indicator | Spearman | p | Pearson | p | Spearman, learned | p | Pearson, learned "
        "| Spearman, same head |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    f = lambda v: f"{v:.3f}" if v is not None else "-"  # noqa: E731
    for k in INDICATORS:
        c, s, g = ind["correlation"][k], ind["correlation_same_head"][k], learned["correlation"][k]
        print(
            f"| {k} | {f(c['spearman'])} | {f(c['spearman_p'])} | {f(c['pearson'])} | {f(c['pearson_p'])} "
            f"| {f(g['spearman'])} | {f(g['spearman_p'])} | {f(g['pearson'])} "
            f"| {f(s['spearman'])} (n={s['n']}) |"
        )


if __name__ == "__main__":
    main()
