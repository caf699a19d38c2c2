"""Are skill neurons task-specific? Task similarity and the cross-task perturbation matrix.

For tasks with one run each (``RUNS/TASK/prompt.safetensors`` with its ``split.json``, and
``RUNS/TASK/neurons/skill_neurons.safetensors``), side by side in one run on one backbone:

* similarity: Spearman correlation of neuron predictivity (all layers and per layer) and Jaccard
  overlap of the top-``--sim-rho`` skill sets (``skillneurons.perturb.run_similarity``);
* cross-task matrix: perturb task A's top-``--rho`` skill neurons while evaluating task B's prompt
  on B's test split, with a random control per column (``skillneurons.perturb.run_cross``).

Writes ``OUT/perturb_similarity*.{json,png}`` and ``OUT/perturb_cross_<mode>_rho<percent>.{json,png}``
and prints markdown tables.

    .venv/bin/python bench/perturb_tasks.py --runs runs/tasks --tasks mr,pang_lee,fine_food,bbc_news,tweets
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import matrix_md
from skillneurons.backbones import load_backbone
from skillneurons.perturb import run_cross, run_similarity


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", default="runs/tasks")
    ap.add_argument("--tasks", default="mr,pang_lee,fine_food,bbc_news,tweets")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--rho", type=float, default=0.05, help="fraction perturbed in the cross-task matrix")
    ap.add_argument("--sim-rho", type=float, default=0.02, help="fraction defining the skill sets (overlap)")
    ap.add_argument("--modes", default="zero", help="comma-separated perturbation modes for the matrix")
    ap.add_argument("--positions", default="all")
    ap.add_argument("--sigma", type=float, default=0.1)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument(
        "--use",
        action="append",
        default=[],
        help="TASK=PROMPT:NEURONS, artifacts of a task kept elsewhere (e.g. the 3-seed MR run)",
    )
    ap.add_argument("--no-cross", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs, out = Path(args.runs), Path(args.out)
    tasks = args.tasks.split(",")
    prompts = {t: runs / t / "prompt.safetensors" for t in tasks}
    neuron_files = {t: runs / t / "neurons" / "skill_neurons.safetensors" for t in tasks}
    for spec in args.use:
        t, _, paths = spec.partition("=")
        p, _, n = paths.partition(":")
        prompts[t], neuron_files[t] = Path(p), Path(n)
    neurons = [neuron_files[t] for t in tasks]
    print("artifacts: " + ", ".join(f"{t}: {prompts[t]} + {neuron_files[t]}" for t in tasks))
    sim = run_similarity(neurons, out, names=tasks, rho=args.sim_rho, name="perturb_similarity")
    print("Spearman correlation of neuron predictivity (all layers)\n")
    print(matrix_md(tasks, sim["spearman"]))
    print(
        f"\nJaccard overlap of the top {args.sim_rho:.0%} skill neurons per layer "
        f"(chance {sim['chance_jaccard'][0][1]:.4f})\n"
    )
    print(matrix_md(tasks, sim["jaccard"]))
    print("\nSpearman correlation within layers (mean of the per-layer correlations)\n")
    print(matrix_md(tasks, sim["spearman_layer_mean"]))
    L = sim["n_layers"]
    print("\nSpearman per layer, off-diagonal mean per layer:")
    for layer in range(L):
        vals = [
            sim["spearman_per_layer"][i][j][layer]
            for i in range(len(tasks))
            for j in range(len(tasks))
            if i < j
        ]
        vals = [v for v in vals if v is not None]
        print(f"  layer {layer}: {sum(vals) / max(len(vals), 1):.3f}")
    if args.no_cross:
        return
    bb = load_backbone("minilm")
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        res = run_cross(
            [prompts[t] for t in tasks],
            neurons,
            out,
            model=bb,
            rho=args.rho,
            mode=mode,
            positions=args.positions,
            sigma=args.sigma,
            control_draws=args.draws,
            name=f"perturb_cross_{mode}_rho{args.rho * 100:g}",
            progress=True,
        )
        print(
            f"\ncross-task matrix, {mode}, top {args.rho:.0%} per layer, {args.positions} positions "
            f"({time.perf_counter() - t0:.0f} s)\n"
        )
        print(
            "unperturbed accuracy: "
            + ", ".join(f"{t} {a:.4f} (n={n})" for t, a, n in zip(tasks, res["unperturbed"], res["n_eval"]))
        )
        print("\naccuracy drop (rows: perturbed neurons of; columns: evaluated task)\n")
        m = [*res["drop"], res["random_control"]["drop"]]
        print(matrix_md(tasks, m, fmt="{:+.3f}", rows=[*tasks, f"random (k={args.draws})"]))


if __name__ == "__main__":
    main()
