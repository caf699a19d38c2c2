"""Do skill neurons matter? Accuracy vs fraction of perturbed skill neurons, against random neurons.

Side by side in one run, same prompt, test split and seeds, for several perturbation settings
(``mode:positions[:sigma]``): the sweep of ``skillneurons.perturb.perturbation_sweep`` with a random
control of ``--draws`` draws per fraction. Writes ``OUT/perturb_<name>_<mode>_<positions>.json`` per
setting, one plot ``OUT/perturb_<name>.png`` with all settings, and prints markdown tables.

    .venv/bin/python bench/perturb_mr.py --prompt runs/mr/seed0/prompt.safetensors \
        --neurons runs/mr/neurons/skill_neurons.safetensors --draws 8 --out bench/results
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any

import torch

from skillneurons.artifacts import load_manifest
from skillneurons.backbones import load_backbone
from skillneurons.files import atomic_write_json
from skillneurons.perturb import load_prompt_run, perturbation_sweep
from skillneurons.perturb.plots import plot_sweep


def table(res: dict[str, Any]) -> str:
    head = (
        f"{res['mode']}"
        + (f" (sigma {res['sigma']})" if res.get("sigma") else "")
        + f", positions {res['positions']}"
    )
    lines = [
        f"**{head}** (unperturbed {res['unperturbed']:.4f}, n={res['n_eval']}, k={res['draws']})",
        "",
        "| rho | neurons | skill neurons | random neurons: mean [95% CI] | gap (random - skill) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for p in res["points"]:
        r = p["random"]
        ci = f"[{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}]" if r["ci95"][0] is not None else ""
        lines.append(
            f"| {p['rho']:.0%} | {p['neurons']} | {p['skill']:.4f} | {r['mean']:.4f} {ci} | "
            f"{r['mean'] - p['skill']:+.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--neurons", required=True)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--name", default="mr")
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rhos", default="0,0.01,0.02,0.05,0.1,0.15,0.2")
    ap.add_argument("--configs", default="gaussian:all:0.1,zero:all,mean:all,zero:prompt")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    man = load_manifest(args.prompt)
    bb = load_backbone(man["backbone"]["name"])
    run = load_prompt_run(args.prompt, bb, neurons=args.neurons)
    assert run.neurons is not None
    rhos = [float(x) for x in args.rhos.split(",")]
    results = []
    for cfg in args.configs.split(","):
        parts = cfg.split(":")
        mode, positions = parts[0], parts[1]
        sigma = float(parts[2]) if len(parts) > 2 else 0.1
        t0 = time.perf_counter()
        res = perturbation_sweep(
            run.model,
            run.eval_task,
            run.neurons,
            rhos=rhos,
            mode=mode,
            positions=positions,
            sigma=sigma,
            draws=args.draws,
            seed=args.seed,
            progress=True,
        )
        res.update(
            prompt=args.prompt,
            neurons=args.neurons,
            split="test",
            seconds=time.perf_counter() - t0,
            machine=f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        )
        tag = f"{mode}_{positions}" + (f"_s{sigma:g}" if mode == "gaussian" and sigma != 0.1 else "")
        atomic_write_json(out / f"perturb_{args.name}_{tag}.json", res)
        results.append(res)
        print(table(res), flush=True)
        print(f"({res['seconds']:.0f} s)\n", flush=True)
    labels = [
        f"{r['mode']}" + (f" σ={r['sigma']}" if r.get("sigma") else "") + f", {r['positions']} positions"
        for r in results
    ]
    plot_sweep(results, out / f"perturb_{args.name}.png", labels=labels)
    print(f"plot: {out / f'perturb_{args.name}.png'}")


if __name__ == "__main__":
    main()
