"""Time to a target accuracy: PEFT vanilla prompt tuning against this package's trainer (plain,
length-bucketed, bucketed + TPT from a related task's prompt, bucketed + FPT), side by side.

Every variant: the same backbone, split (split seed 0; dev cut to ``--dev-examples``), batch size, prompt
length, initial prompt (drawn from the run's seed; TPT starts from the source prompt instead), head
(similarity verbalizer read at the mask slot), layout (PEFT's ``[prompt][text]``, a mask slot before the
closing token), optimizer, learning-rate schedule and step cap, trained by ``Trainer`` (the PEFT side is
``bench/peft_side.py``: PEFT's forward). A dev evaluation every ``--eval-every`` steps (not counted as
training time). Per run: training seconds (the summed time of the training steps: tokenise, forward,
backward, optimizer step), FLOPs (``FlopCounterMode``, forward + backward, of every step's actual
shape: the count of a step is exactly quadratic in its sequence length and linear in its batch, so it is
fitted from three counted shapes per stage and checked on a fourth) and the steps until dev accuracy
first reaches ``--target`` (0.97) x the PEFT run's best dev accuracy of the same seed. Over seeds: mean
and 95% t confidence interval. The TPT source prompt is trained once (``--source-task``, bucketed) before
the runs; its cost is reported apart. FPT: ``--fpt-schedule`` with ``--fpt-rewarm``, dev evaluated on the
full model at every evaluation, compared with the bucketed run of the same seed for the FLOPs goal.

    flock /work/heavy.lock env OMP_NUM_THREADS=2 .venv/bin/python bench/time_to_accuracy.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from common import cpu_model, write_json
from peft_side import PeftPromptModel
from skillneurons.data import Task, load_task
from skillneurons.files import atomic_write_json
from skillneurons.fpt import ProgressiveTraining, parse_schedule
from skillneurons.fpt.progressive import count_step_flops
from skillneurons.prompts import PromptModel, SoftPrompt, build_head
from skillneurons.prompts.model import Batch
from skillneurons.training import TrainConfig, Trainer
from skillneurons.training.trainer import encode_examples, example_lengths

VARIANTS = ("peft", "plain", "bucketed", "bucketed_tpt", "bucketed_fpt")


class TimedTrainer(Trainer):
    """A trainer that records each training step's seconds, batch size, sequence length and stage."""

    steps_log: list[tuple[float, int, int, int]]

    def train_step(self, idx: list[int], step: int) -> float:
        if not hasattr(self, "steps_log"):
            self.steps_log = []
        width = encode_examples(self.model, self.train_task, idx).input_ids.shape[1]
        t0 = time.perf_counter()
        loss = super().train_step(idx, step)
        seconds = time.perf_counter() - t0
        hooks = self.hooks
        stage = (
            hooks.schedule.stage_at(step, self.total_steps) if isinstance(hooks, ProgressiveTraining) else 0
        )
        self.steps_log.append((seconds, len(idx), width + self.model.prefix_length, stage))
        return loss


def shaped_batch(model: Any, template: Batch, width: int) -> Batch:
    """A batch like ``template`` whose text part is ``width`` tokens wide (FLOPs depend on shapes only)."""
    n = len(template)
    tt = template.token_type_ids
    return Batch(
        torch.full((n, width), int(model.backbone.tokenizer.pad_token_id or 0)),
        torch.ones(n, width, dtype=template.attention_mask.dtype),
        None if tt is None else torch.zeros(n, width, dtype=tt.dtype),
        torch.zeros(n, dtype=torch.long),
        template.labels,
    ).to(model.backbone.device)


def flop_curve(model: Any, template: Batch, precision: str) -> tuple[float, float, float]:
    """``(a, b, c)`` with ``FLOPs(step of len(template) examples, sequence length S) = a + b S + c S^2``,
    fitted exactly from three counts and checked on a fourth."""
    pre = model.prefix_length
    widths = (16, 48, 80, 112)
    counts = [count_step_flops(model, shaped_batch(model, template, w), precision) for w in widths]
    s = [float(w + pre) for w in widths[:3]]
    m = torch.tensor([[1.0, x, x * x] for x in s], dtype=torch.float64)
    a, b, c = torch.linalg.solve(m, torch.tensor(counts[:3], dtype=torch.float64)).tolist()
    s4 = widths[3] + pre
    fitted = a + b * s4 + c * s4 * s4
    if abs(fitted - counts[3]) > 1e-6 * counts[3]:
        raise RuntimeError(f"step FLOPs are not quadratic in the sequence length: {fitted} vs {counts[3]}")
    return a, b, c


def step_flops(
    curves: list[tuple[float, float, float]], log: list[tuple[float, int, int, int]], bs: int
) -> list[float]:
    return [(n / bs) * (curves[st][0] + curves[st][1] * s + curves[st][2] * s * s) for _, n, s, st in log]


def t_ci(values: list[float]) -> dict[str, Any]:
    """Mean and 95% t interval over seeds (None where fewer than two values)."""
    from scipy.stats import t as student_t

    vals = [v for v in values if v is not None and math.isfinite(v)]
    out: dict[str, Any] = {"n": len(vals), "mean": statistics.fmean(vals) if vals else None, "values": values}
    if len(vals) >= 2:
        half = float(student_t.ppf(0.975, len(vals) - 1)) * statistics.stdev(vals) / math.sqrt(len(vals))
        out["ci95"] = [out["mean"] - half, out["mean"] + half]
    else:
        out["ci95"] = None
    return out


def new_model(bb: Any, task: Task, args: argparse.Namespace, seed: int, variant: str, source: Any) -> Any:
    prompt = SoftPrompt.create(
        bb, args.prompt_length, "normal", generator=torch.Generator().manual_seed(seed)
    )
    if variant == "bucketed_tpt":
        prompt = SoftPrompt(source.detach().clone())
    head = build_head("similarity", bb, task.label_words)
    if variant == "peft":
        return PeftPromptModel(bb, prompt, head, args.max_length)
    return PromptModel(bb, prompt, head, layout="prompt_first", max_length=args.max_length)


def run(
    bb: Any, parts: dict[str, Task], args: argparse.Namespace, seed: int, variant: str, ctx: dict[str, Any]
) -> dict[str, Any]:
    """One training run; ``ctx`` caches the FLOP curves and holds the source prompt."""
    train, dev = parts["train"], parts["dev"]
    torch.manual_seed(seed)
    model = new_model(bb, train, args, seed, variant, ctx.get("source"))
    cfg = TrainConfig(
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_every=args.eval_every,
        seed=seed,
        precision=args.precision,
        batching="random" if variant in ("peft", "plain") else "bucketed",
    )
    hooks = None
    if variant == "bucketed_fpt":
        schedule = parse_schedule(args.fpt_schedule, evaluate="all", rewarm=args.fpt_rewarm)
        hooks = ProgressiveTraining(model, train, schedule, precision=args.precision)
    trainer = TimedTrainer(model, train, dev, cfg, None, progress=not args.quiet, hooks=hooks)
    kind = "peft" if variant == "peft" else "fpt" if hooks else "ours"
    if kind not in ctx["curves"]:
        template = encode_examples(model, train, trainer.permutation(0)[: args.batch_size]).to(bb.device)
        if hooks is None:
            ctx["curves"][kind] = [flop_curve(model, template, args.precision)]
        else:
            ctx["curves"][kind] = []
            for i in range(len(hooks.schedule.stages)):
                with hooks.stage_model(i):
                    ctx["curves"][kind].append(flop_curve(model, template, args.precision))
    t0 = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - t0
    log = trainer.steps_log
    flops = step_flops(ctx["curves"][kind], log, args.batch_size)
    return {
        "variant": variant,
        "seed": seed,
        "best_dev_accuracy": result.best_dev_accuracy,
        "best_step": result.best_step,
        "steps": result.steps,
        "train_seconds": sum(x[0] for x in log),
        "fit_seconds_with_eval": wall,
        "flops": sum(flops),
        "mean_sequence_length": statistics.fmean(x[2] for x in log),
        "history": [  # with the training seconds and FLOPs of the steps up to each evaluation
            {
                "step": h["step"],
                "dev_accuracy": h["dev_accuracy"],
                "seconds": sum(x[0] for x in log[: int(h["step"])]),
                "flops": sum(flops[: int(h["step"])]),
            }
            for h in result.history
        ],
        "cum_seconds": _cumulative([x[0] for x in log]),
        "cum_flops": _cumulative(flops),
        "fpt": hooks.summary(result.steps).to_json() if hooks is not None else None,
    }


def _cumulative(xs: list[float]) -> list[float]:
    out, acc = [], 0.0
    for x in xs:
        acc += x
        out.append(acc)
    return out


def reach(r: dict[str, Any], target: float) -> dict[str, float] | None:
    """Steps, training seconds and FLOPs until the first dev evaluation at or above ``target``."""
    for h in r["history"]:
        if h["dev_accuracy"] >= target - 1e-12:
            s = int(h["step"])
            return {"step": s, "seconds": r["cum_seconds"][s - 1], "flops": r["cum_flops"][s - 1]}
    return None


def source_prompt(bb: Any, args: argparse.Namespace) -> tuple[torch.Tensor, dict[str, Any]]:
    """The TPT source: a prompt trained on ``--source-task`` (bucketed, seed 0), and what it cost."""
    task = load_task(args.source_task)
    splits = task.split(0)
    train, dev = splits.part("train"), _cut(splits.part("dev"), args.dev_examples, 0)
    model = new_model(bb, train, args, 0, "bucketed", None)
    cfg = TrainConfig(
        max_steps=args.source_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_every=max(1, args.source_steps // 4),
        precision=args.precision,
        batching="bucketed",
    )
    t0 = time.perf_counter()
    res = Trainer(model, train, dev, cfg, None, progress=not args.quiet).fit()
    info = {
        "task": args.source_task,
        "steps": res.steps,
        "best_dev_accuracy": res.best_dev_accuracy,
        "seconds_with_eval": time.perf_counter() - t0,
    }
    return model.prompt.weight.detach().clone(), info


def _cut(task: Task, n: int | None, seed: int) -> Task:
    """A seeded random subset of ``n`` examples (all when ``n`` is None or not smaller)."""
    if not n or n >= len(task):
        return task
    pick = torch.randperm(len(task), generator=torch.Generator().manual_seed(seed))[:n]
    return task.subset(sorted(pick.tolist()))


def check_peft_matches(bb: Any, parts: dict[str, Task], args: argparse.Namespace) -> float:
    """Max |logit difference| between the PEFT side and ours on one batch, same prompt and head."""
    ours = new_model(bb, parts["train"], args, 0, "plain", None)
    peft = new_model(bb, parts["train"], args, 0, "peft", None)
    batch = encode_examples(ours, parts["dev"], list(range(args.batch_size))).to(bb.device)
    with torch.inference_mode():
        return float((ours(batch) - peft(batch)).abs().max())


def summarise(runs: list[dict[str, Any]], variants: list[str], target: float) -> dict[str, Any]:
    """Per variant, over seeds: time, FLOPs and steps to the target, speed-ups against PEFT (paired by
    seed), best dev, and the FPT goal against the bucketed run."""
    by = {(r["variant"], r["seed"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    out: dict[str, Any] = {}
    for v in variants:
        rows = []
        for s in seeds:
            r, p = by[(v, s)], by[("peft", s)]
            goal = target * p["best_dev_accuracy"]
            got, base = reach(r, goal), reach(p, goal)
            rows.append(
                {
                    "seed": s,
                    "target": goal,
                    "reach": got,
                    "speedup_time": base["seconds"] / got["seconds"] if got and base else None,
                    "speedup_flops": base["flops"] / got["flops"] if got and base else None,
                    "speedup_steps": base["step"] / got["step"] if got and base else None,
                }
            )
        rs = [by[(v, s)] for s in seeds]
        out[v] = {
            "per_seed": rows,
            "reached": sum(1 for x in rows if x["reach"]),
            "steps_to_target": t_ci([x["reach"]["step"] if x["reach"] else None for x in rows]),
            "seconds_to_target": t_ci([x["reach"]["seconds"] if x["reach"] else None for x in rows]),
            "flops_to_target": t_ci([x["reach"]["flops"] if x["reach"] else None for x in rows]),
            "speedup_time": t_ci([x["speedup_time"] for x in rows]),
            "speedup_flops": t_ci([x["speedup_flops"] for x in rows]),
            "best_dev_accuracy": t_ci([r["best_dev_accuracy"] for r in rs]),
            "train_seconds": t_ci([r["train_seconds"] for r in rs]),
            "seconds_per_step": t_ci([r["train_seconds"] / r["steps"] for r in rs]),
            "flops": t_ci([r["flops"] for r in rs]),
            "mean_sequence_length": t_ci([r["mean_sequence_length"] for r in rs]),
        }
    if "bucketed_fpt" in variants and "bucketed" in variants:
        fr = [by[("bucketed_fpt", s)]["flops"] / by[("bucketed", s)]["flops"] for s in seeds]
        dd = [
            100 * (by[("bucketed_fpt", s)]["best_dev_accuracy"] - by[("bucketed", s)]["best_dev_accuracy"])
            for s in seeds
        ]
        # the same goal read as time to accuracy: FPT's FLOPs until its dev first reaches the bucketed
        # run's best - 0.5 points, against the bucketed run's FLOPs until that best
        rr = []
        for s in seeds:
            b, f = by[("bucketed", s)], by[("bucketed_fpt", s)]
            got = reach(f, b["best_dev_accuracy"] - 0.005)
            rr.append(got["flops"] / b["cum_flops"][b["best_step"] - 1] if got else None)
        out["fpt_goal"] = {
            "flops_ratio": t_ci(fr),
            "dev_points_vs_bucketed": t_ci(dd),
            "goal": "<= 0.60 of the FLOPs at >= -0.5 dev points (mean over seeds)",
            "met": statistics.fmean(fr) <= 0.60 and statistics.fmean(dd) >= -0.5,
            "flops_to_bucketed_best_minus_half_point": t_ci(rr),
            "met_as_time_to_accuracy": all(x is not None for x in rr) and statistics.fmean(rr) <= 0.60,
        }
    return out


def markdown(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md table of a result file: mean [95% CI] over seeds."""

    def f(c: dict[str, Any], fmt: str, scale: float = 1.0) -> str:
        if c["mean"] is None:
            return "-"
        ci = c["ci95"]
        rng = f" [{fmt.format(ci[0] * scale)}, {fmt.format(ci[1] * scale)}]" if ci else ""
        return fmt.format(c["mean"] * scale) + rng

    lines = [
        "| variant | reached | steps to target | s to target | GFLOPs to target | speed-up vs PEFT (time) "
        "| speed-up (FLOPs) | s per step | mean sequence | best dev |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v, c in result["summary"].items():
        if v == "fpt_goal":
            continue
        lines.append(
            f"| {v} | {c['reached']}/{len(c['per_seed'])} | {f(c['steps_to_target'], '{:.0f}')} "
            f"| {f(c['seconds_to_target'], '{:.1f}')} | {f(c['flops_to_target'], '{:.0f}', 1e-9)} "
            f"| {f(c['speedup_time'], '{:.2f}')} | {f(c['speedup_flops'], '{:.2f}')} "
            f"| {f(c['seconds_per_step'], '{:.3f}')} | {f(c['mean_sequence_length'], '{:.1f}')} "
            f"| {f(c['best_dev_accuracy'], '{:.4f}')} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--task", default="mr")
    ap.add_argument("--source-task", default="fine_food", help="the TPT source prompt's task")
    ap.add_argument("--source-steps", type=int, default=100)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--max-steps", type=int, default=120, help="the step cap (the lr decays to 0 there)")
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--dev-examples", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-2)
    ap.add_argument("--prompt-length", type=int, default=20)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--target", type=float, default=0.97, help="share of the PEFT run's best dev accuracy")
    ap.add_argument("--fpt-schedule", default="25:2,50:2,full:3")
    ap.add_argument("--fpt-rewarm", type=float, default=0.1)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--device", default=None)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--out", default="bench/results/time_to_accuracy.json")
    ap.add_argument("--table", metavar="RESULT", help="print the markdown table of a result file and exit")
    args = ap.parse_args()
    if args.table:
        print(markdown(json.loads(Path(args.table).read_text())))
        return
    from skillneurons.backbones import load_backbone

    variants = args.variants.split(",")
    if variants[0] != "peft":
        raise SystemExit("the variants start with peft (the target is a share of its best dev accuracy)")
    load0 = os.getloadavg()
    bb = load_backbone(args.model, device=args.device)
    splits = load_task(args.task).split(0)
    parts = {"train": splits.part("train"), "dev": _cut(splits.part("dev"), args.dev_examples, 0)}
    probe = new_model(bb, parts["dev"], args, 0, "plain", None)
    lengths = example_lengths(probe, parts["dev"])  # dev sorted by length: cheaper evaluations, same figures
    parts["dev"] = parts["dev"].subset(sorted(range(len(parts["dev"])), key=lambda i: lengths[i]))
    mismatch = check_peft_matches(bb, parts, args)
    ctx: dict[str, Any] = {"curves": {}}
    if "bucketed_tpt" in variants:
        ctx["source"], ctx["source_info"] = source_prompt(bb, args)
    warm = TimedTrainer(
        probe, parts["train"], parts["dev"], TrainConfig(batch_size=args.batch_size), progress=False
    )
    for s in range(3):  # kernels and allocator warm before anything is timed
        warm.train_step(list(range(s, s + args.batch_size)), 0)
    runs: list[dict[str, Any]] = []
    for seed in [int(x) for x in args.seeds.split(",")]:
        for v in variants:  # interleaved: every variant of a seed runs in the same minutes
            runs.append(run(bb, parts, args, seed, v, ctx))
            r = runs[-1]
            print(
                f"seed {seed} {v}: best dev {r['best_dev_accuracy']:.4f}, {r['train_seconds']:.1f} s",
                flush=True,
            )
        out = {  # written after every seed: a run cut short keeps its finished seeds
            "bench": "time_to_accuracy",
            "model": bb.identity(),
            "task": args.task,
            "sizes": {k: len(t) for k, t in parts.items()},
            "settings": {k: v for k, v in vars(args).items() if k not in ("quiet", "out")},
            "machine": {
                "cpu": cpu_model(),
                "nproc": os.cpu_count(),
                "threads": torch.get_num_threads(),
                "load_average_before": load0,
                "load_average_after": os.getloadavg(),
                "torch": torch.__version__,
                "python": platform.python_version(),
                "device": str(bb.device),
            },
            "peft_max_logit_difference": mismatch,
            "source_prompt": ctx.get("source_info"),
            "flop_curves": ctx["curves"],
            "summary": summarise(runs, variants, args.target),
            "runs": [{k: v for k, v in r.items() if k not in ("cum_seconds", "cum_flops")} for r in runs],
        }
        atomic_write_json(args.out, out)
    write_json(args.out, out)


if __name__ == "__main__":
    main()
