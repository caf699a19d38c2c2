"""Skill-neuron pruning: inference speed and accuracy of pruned vs unpruned models, side by side.

For each keep fraction rho (default 2%, 5%, 10%, 20% of every pruned layer, layers [l0, L) with
l0 = L // 4 unless --first-layer), the model is pruned to its skill neurons (removed neurons' mean
activation folded into the down-projection bias), saved and loaded back, and the loaded model is
timed against the unpruned one on the same pre-tokenised inputs (the prompt's test split): every
repetition runs all models once each, in a rotating order, and the speedup is the median over
repetitions of (unpruned time / pruned time). The head is computed at the read position only
(PromptModel does this). Accuracy comes from the timed passes themselves; a control prunes the same
number of RANDOM neurons per layer (accuracy only: its speed is the same).

    .venv/bin/python bench/prune_speed.py --prompt runs/mr/seed0/prompt.safetensors \\
        --neurons runs/mr/neurons/skill_neurons.safetensors
    .venv/bin/python bench/prune_speed.py --model mpnet --examples 128 --repeats 3   # speed only
    (--time-examples N times on a subset; --retune-steps N also re-tunes the prompt on each pruned model)

Without --prompt a random prompt is timed (speed only); without --neurons the kept neurons are drawn
at random (speed only: which neurons are kept does not change the cost). Results are merged into
bench/results/prune_speed.json (one entry per model and mode) and rendered to prune_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import transformers

from common import cpu_model
from skillneurons.artifacts import artifact_paths, load_manifest, sha256_file
from skillneurons.backbones import Backbone, load_backbone
from skillneurons.data import Task, load_task
from skillneurons.files import atomic_write_json
from skillneurons.neurons.find import SkillNeurons, prompt_splits
from skillneurons.neurons.ranking import quota_size
from skillneurons.prompts import PromptModel, SoftPrompt, build_head, load_prompt
from skillneurons.prompts.model import Batch
from skillneurons.pruning import (
    count_parameters,
    default_first_layer,
    ffn_parameters,
    load_pruned,
    prune_backbone,
    save_pruned,
    skill_keep_mask,
)
from skillneurons.training import TrainConfig, Trainer
from skillneurons.training.trainer import autocast_context, encode_examples, iterate_batches


def random_keep(L: int, N: int, rho: float, first_layer: int, seed: int) -> torch.Tensor:
    """The same per-layer quota as the skill mask, drawn at random."""
    g = torch.Generator().manual_seed(seed)
    skill = torch.zeros(L, N, dtype=torch.bool)
    k = quota_size(rho, N)
    for layer in range(L):
        skill[layer, torch.randperm(N, generator=g)[:k]] = True
    return skill_keep_mask(skill, first_layer=first_layer)


def prompt_model(bb: Backbone, prompt: str | None, ref: PromptModel | None, task: Task) -> PromptModel:
    """The prompt on ``bb``: loaded from ``prompt``, or ``ref``'s random prompt rebuilt on ``bb``."""
    if prompt is not None:
        return load_prompt(prompt, bb)[0]
    if ref is None:
        torch.manual_seed(0)
        return PromptModel(
            bb, SoftPrompt.create(bb, 20), build_head("auto", bb, task.label_words), max_length=128
        )
    return PromptModel(
        bb,
        ref.prompt,
        build_head("auto", bb, task.label_words),
        layout=ref.layout,
        max_length=ref.max_length,
        template=ref.template,
    )


PRECISION = "auto"  # set from --precision: bf16 autocast on a GPU, fp32 on the CPU


@torch.inference_mode()
def timed_pass(pm: PromptModel, batches: list[Batch]) -> tuple[float, int]:
    """Seconds for one pass over ``batches``, and the number of correct predictions."""
    dev = pm.backbone.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    hits = []
    t0 = time.perf_counter()
    with autocast_context(dev, PRECISION):
        for b in batches:
            logits = pm(b)
            assert b.labels is not None
            hits.append((logits.argmax(-1) == b.labels).sum())
    sync()
    seconds = time.perf_counter() - t0
    return seconds, int(sum(int(h) for h in hits))


@torch.inference_mode()
def accuracy(pm: PromptModel, batches: list[Batch]) -> float:
    n = sum(len(b) for b in batches)
    return timed_pass(pm, batches)[1] / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--prompt",
        help="prompt trained on the unpruned model (RUN/prompt.safetensors); "
        "default: a random prompt, speed only",
    )
    ap.add_argument(
        "--neurons",
        help="skill-neuron artifact (NEURONS/skill_neurons.safetensors); default: random neurons, speed only",
    )
    ap.add_argument(
        "--model", help="backbone (default: the one recorded in the prompt or artifact, else minilm)"
    )
    ap.add_argument("--task", default=None, help="task (default: the prompt's; mr without a prompt)")
    ap.add_argument("--rhos", default="0.02,0.05,0.1,0.2", help="keep fractions per pruned layer")
    ap.add_argument("--first-layer", type=int, help="prune layers [N, L) (default L // 4)")
    ap.add_argument("--split", default="test", choices=["train", "dev", "test"])
    ap.add_argument("--examples", type=int, help="use the first N examples of the split (default: all)")
    ap.add_argument(
        "--time-examples", type=int, help="time on the first N of those (default: all); accuracy uses all"
    )
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved timed repetitions")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, the same for every model")
    ap.add_argument(
        "--device", default="cpu", help="cpu (default), cuda, ... - every model on the same device"
    )
    ap.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="autocast (auto: bf16 on a GPU, fp32 on the CPU)",
    )
    ap.add_argument(
        "--no-random-control", action="store_true", help="skip the random-neuron accuracy control"
    )
    ap.add_argument(
        "--retune-steps",
        type=int,
        default=0,
        help="also re-tune the prompt on each pruned model (needs --prompt)",
    )
    ap.add_argument("--retune-rhos", help="re-tune only at these keep fractions (default: all)")
    ap.add_argument("--retune-lr", type=float, help="re-tuning learning rate (default: the prompt's)")
    ap.add_argument("--out", default="bench/results/prune_speed", help="writes OUT.json (merged) and OUT.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global PRECISION
    PRECISION = args.precision
    rhos = [float(r) for r in args.rhos.split(",") if r.strip()]

    # ---- model, prompt, inputs -------------------------------------------------------------
    pman = load_manifest(args.prompt) if args.prompt else {}
    sn = SkillNeurons.load(args.neurons) if args.neurons else None
    name = (
        args.model
        or pman.get("backbone", {}).get("name")
        or (sn.meta.get("backbone", {}).get("name") if sn else None)
    )
    bb = load_backbone(name or "minilm", device=args.device)
    task = load_task(args.task or pman.get("task", {}).get("name") or "mr")
    ppath: Path | None = None
    if args.prompt:
        ppath = artifact_paths(args.prompt)[0]
        full = load_prompt(ppath, bb)[0]
        part = prompt_splits(ppath, pman, task).part(args.split)
    else:
        full = prompt_model(bb, None, None, task)
        part = task.split(0).part(args.split)
    if args.examples:
        part = part.subset(range(min(args.examples, len(part))))
    batches = [
        encode_examples(full, part, idx).to(bb.device) for idx in iterate_batches(part, args.batch_size)
    ]
    n = len(part)
    timed = part.subset(range(min(args.time_examples or n, n)))
    time_batches = [
        encode_examples(full, timed, idx).to(bb.device) for idx in iterate_batches(timed, args.batch_size)
    ]
    n_timed = len(timed)
    L, N = bb.num_layers, bb.d_ff[0]
    l0 = default_first_layer(L) if args.first_layer is None else args.first_layer
    print(
        f"{bb.name}: {L} layers x {N} neurons; pruning layers {l0}..{L - 1}; "
        f"{n} examples ({n_timed} timed), batch {args.batch_size}, "
        f"{args.threads} thread(s)"
    )

    # ---- pruned models, saved and loaded back -------------------------------------------------
    variants: dict[str, PromptModel] = {"unpruned": full}
    info: dict[str, dict[str, Any]] = {}
    tmp = tempfile.TemporaryDirectory(prefix="prune-bench-")
    for i, rho in enumerate(rhos):
        if sn is not None:
            keep = skill_keep_mask(sn.mask(rho), first_layer=l0)
            base = sn.token_mean
        else:
            keep = random_keep(L, N, rho, l0, seed=i)
            base = torch.zeros(L, N, dtype=torch.float64)
        folder = save_pruned(
            prune_backbone(bb, keep, base), Path(tmp.name) / f"rho{rho}", keep, source=bb, rho=rho
        )
        small = load_pruned(folder, device=args.device)
        key = f"rho={rho:g}"
        variants[key] = prompt_model(small, str(ppath) if ppath else None, full, task)
        info[key] = {
            "rho": rho,
            "kept_per_pruned_layer": small.d_ff[l0],
            "d_ff": small.d_ff,
            "parameters_fraction": count_parameters(small) / count_parameters(bb),
            "ffn_parameters_fraction": ffn_parameters(small) / ffn_parameters(bb),
        }
        if sn is not None and not args.no_random_control:
            rk = random_keep(L, N, rho, l0, seed=1000 + i)
            rnd = prune_backbone(bb, rk, sn.token_mean)
            info[key]["accuracy_random_neurons"] = accuracy(
                prompt_model(rnd, str(ppath) if ppath else None, full, task), batches
            )
            del rnd

    # ---- interleaved timing ------------------------------------------------------------------
    names = list(variants)
    times: dict[str, list[float]] = {k: [] for k in names}
    correct: dict[str, int] = {}
    for k in names:  # accuracy (and warm-up)
        correct[k] = timed_pass(variants[k], batches)[1]
    for k in names:  # warm-up on the timed inputs
        timed_pass(variants[k], time_batches)
    # interleaved at the batch level: a burst of load on this shared machine hits every model alike
    for r in range(args.repeats):
        spent = dict.fromkeys(names, 0.0)
        for j, b in enumerate(time_batches):
            s0 = (r + j) % len(names)
            for k in names[s0:] + names[:s0]:
                spent[k] += timed_pass(variants[k], [b])[0]
        for k in names:
            times[k].append(spent[k])
        print(f"repetition {r + 1}/{args.repeats}: " + ", ".join(f"{k} {times[k][-1]:.2f}s" for k in names))
    tmp.cleanup()

    # ---- optional re-tuning of the prompt on each pruned model (after timing) ----------------
    if args.retune_steps > 0 and ppath is not None:
        splits = prompt_splits(ppath, pman, task)
        lr = args.retune_lr or float(pman.get("train_config", {}).get("lr", 3e-2))
        only = {float(r) for r in args.retune_rhos.split(",")} if args.retune_rhos else set(rhos)
        for k in names[1:]:
            if info[k]["rho"] not in only:
                continue
            cfg = TrainConfig(
                max_steps=args.retune_steps,
                batch_size=args.batch_size,
                lr=lr,
                eval_every=max(1, args.retune_steps // 4),
                seed=0,
            )
            fit = Trainer(
                variants[k], splits.part("train"), splits.part("dev"), cfg, None, progress=False
            ).fit()
            info[k].update(
                accuracy_retuned=accuracy(variants[k], batches),
                retune_dev_accuracy=fit.best_dev_accuracy,
                retune_steps=fit.steps,
                retune_seconds=fit.seconds,
                retune_lr=lr,
            )
            print(
                f"{k}: re-tuned {fit.steps} steps in {fit.seconds:.0f}s, "
                f"accuracy {info[k]['accuracy_retuned']:.4f}"
            )

    rows = []
    for k in names:
        ratios = [a / b for a, b in zip(times["unpruned"], times[k])]
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        med = statistics.median(times[k])
        row = {
            "variant": k,
            **info.get(
                k,
                {
                    "rho": 1.0,
                    "kept_per_pruned_layer": N,
                    "d_ff": bb.d_ff,
                    "parameters_fraction": 1.0,
                    "ffn_parameters_fraction": 1.0,
                },
            ),
            "seconds_median": med,
            "examples_per_s": n_timed / med,
            "speedup_median": statistics.median(ratios),
            "speedup_q1": q[0],
            "speedup_q3": q[2],
            "seconds": times[k],
            "accuracy": correct[k] / n if args.prompt else None,
        }
        if not args.prompt:
            row.pop("accuracy_random_neurons", None)
        rows.append(row)
    entry = {
        "key": f"{bb.name}|{'accuracy' if args.prompt else 'speed-only'}|l0={l0}"
        + ("" if bb.device.type == "cpu" else f"|{bb.device.type}"),
        "model": bb.name,
        "geometry": f"{L} x {N}",
        "prompt": str(args.prompt) if args.prompt else "random prompt (speed only)",
        "prompt_sha256": sha256_file(artifact_paths(args.prompt)[0]) if args.prompt else None,
        "neurons": str(args.neurons) if args.neurons else "random neurons (speed only)",
        "neurons_sha256": sha256_file(artifact_paths(args.neurons)[0]) if args.neurons else None,
        "task": task.name,
        "split": args.split,
        "examples": n,
        "timed_examples": n_timed,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "threads": args.threads,
        "first_layer": l0,
        "retune_steps": args.retune_steps if ppath is not None else 0,
        "head": full.head.kind,
        "prompt_length": full.prompt.length,
        "machine": {
            "cpu": cpu_model(),
            "gpu": torch.cuda.get_device_name(bb.device) if bb.device.type == "cuda" else None,
            "precision": args.precision,
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "rows": rows,
    }
    out_json = Path(args.out).with_suffix(".json")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(out_json.read_text()) if out_json.is_file() else {}
    entries, retuned = old.get("entries", []), old.get("retuned", [])
    for e in entries:  # re-tuning results of a replaced entry stay valid (they do not depend on timing)
        for r in e["rows"]:
            if r.get("accuracy_retuned") is not None:
                retuned.append(_retune_record(e, r))
    for r in rows:
        if r.get("accuracy_retuned") is not None:
            retuned.append(_retune_record(entry, r))
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for rec in retuned:
        seen[_retune_key(rec)] = rec
    entries = [e for e in entries if e.get("key") != entry["key"]] + [entry]
    for e in entries:
        for r in e["rows"]:
            r.pop("accuracy_retuned", None)
    atomic_write_json(out_json, {"entries": entries, "retuned": list(seen.values())})
    md = render(entries, list(seen.values()))
    out_json.with_suffix(".md").write_text(md)
    print(md)


def _retune_record(e: dict[str, Any], r: dict[str, Any]) -> dict[str, Any]:
    keys = ("model", "first_layer", "prompt_sha256", "neurons_sha256", "task", "split", "examples")
    return {
        **{k: e.get(k) for k in keys},
        "rho": r["rho"],
        "steps": r.get("retune_steps"),
        "lr": r.get("retune_lr"),
        "accuracy_retuned": r["accuracy_retuned"],
        "retune_dev_accuracy": r.get("retune_dev_accuracy"),
        "retune_seconds": r.get("retune_seconds"),
        "date": e.get("date"),
    }


def _retune_key(rec: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        rec.get(k)
        for k in ("model", "first_layer", "prompt_sha256", "neurons_sha256", "split", "examples", "rho")
    )


def render(entries: list[dict[str, Any]], retuned: list[dict[str, Any]] | None = None) -> str:
    found = {_retune_key(rec): rec for rec in retuned or []}
    lines = [
        "# Skill-neuron pruning: speed and accuracy",
        "",
        "Written by `bench/prune_speed.py`. Speedup = unpruned time / pruned time on the same inputs, "
        "median over interleaved repetitions [quartiles]. Accuracy on the same inputs, the prompt trained "
        "on the unpruned model evaluated as is; 'random neurons' keeps the same number of random neurons "
        "per layer; 're-tuned' re-tunes the prompt on the pruned model (train split, best dev checkpoint). "
        "The machine is shared with other jobs: "
        "absolute examples/s follow its load, the paired ratio does not.",
        "",
    ]
    for e in entries:
        m = e["machine"]
        recs = [found.get(_retune_key({**e, "rho": r["rho"]})) for r in e["rows"]]
        steps = sorted({rec["steps"] for rec in recs if rec})
        lines += [
            f"## {e['model']} ({e['geometry']} neurons), pruned layers {e['first_layer']}.., {e['task']} "
            f"{e['split']} split, {e['examples']} examples ({e.get('timed_examples', e['examples'])} timed)",
            "",
            f"Prompt: {e['prompt']} ({e['head']} head, {e['prompt_length']} tokens). "
            f"Neurons: {e['neurons']}. "
            f"Batch {e['batch_size']}; {e['repeats']} interleaved repetitions; "
            f"CPU {m['cpu']} ({m['cores']} cores, {e['threads']} torch thread(s) for every model), "
            f"torch {m['torch']}, "
            f"transformers {m['transformers']}; {e['date']}."
            + (f" Re-tuning: {', '.join(map(str, steps))} steps from the trained prompt." if steps else ""),
            "",
            "| model | kept / pruned layer | params left | FFN params left | examples/s | speedup | accuracy "
            "| accuracy, random neurons | accuracy, re-tuned |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r, rec in zip(e["rows"], recs):
            fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
            lines.append(
                f"| {r['variant']} | {r['kept_per_pruned_layer']} | {100 * r['parameters_fraction']:.1f}% "
                f"| {100 * r['ffn_parameters_fraction']:.1f}% | {r['examples_per_s']:.1f} "
                f"| {r['speedup_median']:.2f}x [{r['speedup_q1']:.2f}, {r['speedup_q3']:.2f}] "
                f"| {fmt(r.get('accuracy'))} "
                f"| {fmt(r.get('accuracy_random_neurons'))} "
                f"| {fmt(rec['accuracy_retuned'] if rec else None)} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
