"""The main job on the embedded default: the offline MiniLM prompt-tuned on MR sentence polarity.

``skillneurons demo`` (the README's first command) runs the whole chain on real data and a real
pre-trained model within a CPU time budget: prompt-tune as many seeds as the budget allows (all on
one shared split), find the skill neurons of the trained prompts, and print a summary. Everything is
written under the output folder, and rerunning the command resumes / reuses what is already there.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from skillneurons.artifacts import atomic_write_json
from skillneurons.backbones import load_backbone
from skillneurons.data import load_task
from skillneurons.report import write_report
from skillneurons.runs import find_skill_neurons, tune_prompt
from skillneurons.runs.results import TuneResult
from skillneurons.training import TrainConfig

DEMO_MODEL = "minilm"
DEMO_TASK = "mr"
DEMO_PROMPT_LENGTH = 20
DEMO_EPOCHS = 3.0


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    budget_minutes: float = 6.0,
    max_seeds: int = 3,
    progress: bool = True,
) -> dict[str, Any]:
    """Tune -> find -> summary on MiniLM + MR; returns the summary also written to ``out/summary.json``.

    The first seed always runs; another seed starts only while the time already spent on tuning
    suggests it will finish within ``budget_minutes``.
    """
    out = Path(out_dir)
    start = time.perf_counter()
    bb = load_backbone(DEMO_MODEL)
    task = load_task(DEMO_TASK)
    print(
        f"demo: {DEMO_MODEL} ({bb.num_layers} layers x {bb.d_ff[0]} neurons) on {task.name} ({len(task)} "
        "examples)"
    )
    results: list[TuneResult] = []
    per_seed = 0.0
    for seed in range(max_seeds):
        spent = time.perf_counter() - start
        if seed > 0 and spent + per_seed > budget_minutes * 60:
            print(f"demo: time budget reached after {seed} seed(s) ({spent / 60:.1f} min)")
            break
        t0 = time.perf_counter()
        cfg = TrainConfig(epochs=DEMO_EPOCHS, seed=seed)
        res = tune_prompt(
            bb,
            task,
            out / f"seed{seed}",
            prompt_length=DEMO_PROMPT_LENGTH,
            split_seed=0,
            config=cfg,
            progress=progress,
        )
        per_seed = max(per_seed, time.perf_counter() - t0)
        results.append(res)
        print(
            f"demo: seed {seed}: test accuracy {res['test_accuracy']:.4f} (dev "
            f"{res['best_dev_accuracy']:.4f}, "
            f"{res['train_seconds']:.0f} s)"
        )
    prompts = [Path(r["prompt"]) for r in results if r.get("prompt")]
    found = find_skill_neurons(bb, prompts, task, out / "neurons", progress=progress)
    summary = {
        "model": DEMO_MODEL,
        "task": DEMO_TASK,
        "seeds": [r["seed"] for r in results],
        "test_accuracy": [r["test_accuracy"] for r in results],
        "neurons": found["summary"],
        "minutes": (time.perf_counter() - start) / 60,
    }
    atomic_write_json(out / "summary.json", summary)
    print(found["text"])
    report = write_report(out, backbone=bb, task=task, progress=progress)
    summary["report"] = str(report)
    print(f"demo: report written to {report} (open it in a browser; no network needed)")
    print(f"demo: done in {summary['minutes']:.1f} min; results under {out}/ (summary.json)")
    return json.loads(json.dumps(summary, default=str))
