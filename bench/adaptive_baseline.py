"""The adaptive / sampled baseline of `find` (issue 20 item 2) against the full two passes.

One trained prompt (MiniLM + mr, split seed 0: the demo's split), find's defaults but the controls
(``--no-controls``: they cost three more prompts' passes and are not what is compared). The full find
(pass 1 on every train example) is the reference; every setting of ``baseline_examples`` and
``baseline_stop`` is one more find with the same folds, permutations and dev split. Per setting:

* ``pass1_examples`` (from the prompt's cached scores) and ``forward_ratio``: (pass 1 + pass 2)
  forward examples over the full find's - the load-independent cost;
* ``wall_ratio``: wall seconds over the full find's (timed first and, with ``--full-repeats 2``, again
  after the settings; the mean of those: on a loaded machine only a rough figure);
* ``jaccard_global`` / ``jaccard_per_layer``: top-1% sets vs the full ranking (``SkillNeurons.mask``
  with ``per_layer`` False / True, as find selects);
* the held-out top-1 and top-1% predictivity with their 95% Wilson intervals from the summary.

Results are written after every setting (a partial file is valid).

    OMP_NUM_THREADS=1 .venv/bin/python bench/adaptive_baseline.py --prompt runs/.../mr/s0/prompt.safetensors
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from common import cpu_model, write_json
from skillneurons.artifacts import load_artifact
from skillneurons.backbones import load_backbone
from skillneurons.data import load_task
from skillneurons.neurons.config import FindConfig
from skillneurons.rundir import RunDir
from skillneurons.runs import find_skill_neurons


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def run_one(bb: Any, prompt: str, task: Any, cfg: FindConfig) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="adaptive_"))
    try:
        t0 = time.perf_counter()
        res = find_skill_neurons(bb, [prompt], task, out, cfg, progress=False)
        wall = time.perf_counter() - t0
        tensors, _ = load_artifact(out / "scores_0", kind="prompt_scores")
        pass1 = int(tensors["baseline_count"])
    finally:
        shutil.rmtree(out, ignore_errors=True)
    ev = res.summary.evidence
    assert ev is not None
    return {
        "neurons": res.neurons,
        "wall_seconds": wall,
        "pass1_examples": pass1,
        "dev_size": res.summary.prompts[0].dev_size,
        "top1": ev.top1.interval(),
        "top1_heldout": [ev.top1.heldout, ev.top1.lo, ev.top1.hi],
        "top1pct_heldout": [ev.top1pct.heldout, ev.top1pct.lo, ev.top1pct.hi],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt", required=True, help="a trained mr prompt (RUN/prompt.safetensors)")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--examples", default="64,128,256,512", help="baseline_examples settings")
    ap.add_argument("--stops", default="0.05,0.02,0.01", help="baseline_stop settings")
    ap.add_argument("--rho", type=float, default=0.01)
    ap.add_argument(
        "--full-repeats", type=int, default=1, help="time the full find this often (first, then after all)"
    )
    ap.add_argument("--out", default="bench/results/adaptive_baseline.json")
    args = ap.parse_args()
    bb = load_backbone(args.model)
    task = load_task("mr")
    train_size = len(RunDir.of(args.prompt).splits(task).train)
    settings: list[tuple[str, dict[str, Any]]] = [
        (f"examples={n}", {"baseline_examples": int(n)}) for n in args.examples.split(",") if n
    ] + [(f"stop={s}", {"baseline_stop": float(s)}) for s in args.stops.split(",") if s]
    full_runs: list[dict[str, Any]] = []
    rows: dict[str, dict[str, Any]] = {}
    result: dict[str, Any] = {
        "machine": {
            "cpu": cpu_model(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "model": args.model,
        "task": "mr",
        "prompt": args.prompt,
        "train_size": train_size,
        "find": "defaults, --no-controls",
        "rho": args.rho,
        "full": None,
        "settings": rows,
    }
    order = [("full", {})] + settings + [("full", {})] * (args.full_repeats - 1)
    for name, extra in order:
        r = run_one(bb, args.prompt, task, FindConfig(controls=False, **extra))
        if name == "full":
            full_runs.append(r)
        else:
            rows[name] = r
        ref = full_runs[0]
        ref_wall = sum(f["wall_seconds"] for f in full_runs) / len(full_runs)
        full_fwd = ref["pass1_examples"] + ref["dev_size"]
        result["full"] = {
            **{k: v for k, v in ref.items() if k != "neurons"},
            "wall_seconds": [f["wall_seconds"] for f in full_runs],
        }
        for row in rows.values():
            nb = row["neurons"]
            row["forward_ratio"] = (row["pass1_examples"] + row["dev_size"]) / full_fwd
            row["wall_ratio"] = row["wall_seconds"] / ref_wall
            row["jaccard_global"] = jaccard(nb.mask(args.rho, False), ref["neurons"].mask(args.rho, False))
            row["jaccard_per_layer"] = jaccard(nb.mask(args.rho, True), ref["neurons"].mask(args.rho, True))
        write_json(
            args.out,
            {
                **result,
                "settings": {k: {a: b for a, b in v.items() if a != "neurons"} for k, v in rows.items()},
            },
        )


if __name__ == "__main__":
    main()
