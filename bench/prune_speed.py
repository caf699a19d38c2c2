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

``--sweep`` (needs --prompt and --neurons) times the unpruned model and one pruned model per
``--configs FIRST_LAYER:RHO`` over batch sizes (1-1,024, at --sweep-seq), sequence lengths (at
--sweep-batch), torch threads and devices (CPU; a GPU with bf16 autocast, with and without
torch.compile under --compile, skipped when absent) on fixed-length batches of real test text, prints
the FLOP bound (unpruned / pruned forward FLOPs) beside each speedup, the smallest batch from which
pruning pays (> 1.1x), and the accuracy as is and re-tuned over --retune-seeds (mean, t-interval):

    flock /work/heavy.lock env OMP_NUM_THREADS=2 .venv/bin/python bench/prune_speed.py --sweep \\
        --prompt runs/mr-s0/prompt.safetensors --neurons runs/mr-neurons/skill_neurons.safetensors \\
        --retune-steps 80        # --devices cpu,cuda --compile on a GPU; --render re-renders OUT.md

Without --prompt a random prompt is timed (speed only); without --neurons the kept neurons are drawn
at random (speed only: which neurons are kept does not change the cost). Results are merged into
bench/results/prune_speed.json (one entry per model and mode) and rendered to prune_speed.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
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
from skillneurons.rundir import RunDir
from skillneurons.training import TrainConfig, Trainer
from skillneurons.training.trainer import autocast_context, encode_examples, evaluate, iterate_batches


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
    _sweep_arguments(ap)
    args = ap.parse_args()
    if args.render:
        out_json = Path(args.out).with_suffix(".json")
        old = json.loads(out_json.read_text())
        md = render(old.get("entries", []), old.get("retuned", [])) + render_sweeps(old.get("sweeps", []))
        out_json.with_suffix(".md").write_text(md)
        return
    if args.sweep:
        run_sweep(args)
        return
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
    for rep in range(args.repeats):
        spent = dict.fromkeys(names, 0.0)
        for j, b in enumerate(time_batches):
            s0 = (rep + j) % len(names)
            for k in names[s0:] + names[:s0]:
                spent[k] += timed_pass(variants[k], [b])[0]
        for k in names:
            times[k].append(spent[k])
        print(f"repetition {rep + 1}/{args.repeats}: " + ", ".join(f"{k} {times[k][-1]:.2f}s" for k in names))
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


def _sweep_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group(
        "--sweep: batch size x sequence length x threads x device (needs --prompt, --neurons)"
    )
    g.add_argument("--sweep", action="store_true", help="run the sweep instead of the table above")
    g.add_argument("--render", action="store_true", help="only render OUT.md again from OUT.json")
    g.add_argument(
        "--configs", default="3:0.02,1:0.02,0:0.02", help="pruned models, FIRST_LAYER:RHO, comma-separated"
    )
    g.add_argument("--batches", default="1,8,64,256,1024", help="batch sizes of the batch sweep")
    g.add_argument("--sweep-seq", type=int, default=32, help="sequence length of the batch sweep")
    g.add_argument("--seq-lens", default="32,128,256", help="sequence lengths of the sequence sweep")
    g.add_argument("--sweep-batch", type=int, default=64, help="batch size of the sequence sweep")
    g.add_argument("--sweep-threads", default="1,2", help="CPU torch threads")
    g.add_argument("--devices", default="cpu,cuda", help="devices (cuda is skipped when absent)")
    g.add_argument("--compile", action="store_true", help="on a GPU, also time torch.compile'd models")
    g.add_argument(
        "--min-tokens", type=int, default=2048, help="tokens per cell at least (small batches repeat)"
    )
    g.add_argument(
        "--retune-configs", default="3:0.02,1:0.02", help="pruned models to re-tune (FIRST_LAYER:RHO)"
    )
    g.add_argument("--retune-seeds", default="0,1,2", help="re-tuning seeds")


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


# ================================================================================================
# --sweep: where pruning pays (batch size x sequence length x threads x device), FLOP bound, accuracy


@dataclass
class Variant:
    """One model of the sweep: unpruned (first_layer None) or pruned layers [first_layer, L) to rho."""

    name: str
    first_layer: int | None
    rho: float
    folder: Path | None = None  # the saved pruned model (None: the unpruned backbone)
    info: dict[str, Any] = field(default_factory=dict)


def parse_configs(text: str) -> list[tuple[int, float]]:
    """``"3:0.02,1:0.02"`` -> ``[(3, 0.02), (1, 0.02)]`` (first pruned layer : keep fraction)."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        l0, _, rho = part.partition(":")
        out.append((int(l0), float(rho)))
    return out


def variant_name(l0: int, rho: float, L: int) -> str:
    return f"layers {l0}-{L - 1} @{rho:.0%}"


def t_interval(values: list[float], level: float = 0.95) -> dict[str, Any]:
    """Mean and the Student-t interval of the mean (None when n < 2)."""
    from scipy.stats import t as student_t

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"n": n, "mean": mean, "ci95": [None, None], "values": values}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "ci95": [mean - half, mean + half], "values": values}


def token_stream(pm: PromptModel, part: Task) -> list[int]:
    """The split's texts as one token stream (no special tokens), cut into fixed-length rows below."""
    enc = pm.backbone.tokenizer(list(part.texts), add_special_tokens=False)["input_ids"]
    return [t for ids in enc for t in ids]


def special_frame(tok: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text (e.g. [CLS] and [SEP])."""
    bare = tok("a", add_special_tokens=False)["input_ids"]
    full = tok("a")["input_ids"]
    i = next(i for i in range(len(full)) if full[i : i + len(bare)] == bare)
    return list(full[:i]), list(full[i + len(bare) :])


def fixed_batch(pm: PromptModel, stream: list[int], batch: int, seq: int, offset: int) -> Batch:
    """``batch`` rows of real text, every row exactly ``seq`` positions long with the prompt prefix (no
    padding), read from ``stream`` from ``offset`` on, wrapping around (examples repeat when the
    split is shorter than the batch)."""
    tok = pm.backbone.tokenizer
    n_text = seq - pm.prefix_length
    head, tail = special_frame(tok)
    core = n_text - len(head) - len(tail)
    if core < 1:
        raise SystemExit(f"--seq-lens {seq} leaves no text after the {pm.prefix_length}-position prefix")
    if pm.layout != "slot_first" and not pm.backbone.is_causal:
        raise SystemExit("--sweep builds slot_first (encoder) or prompt_first causal batches only")
    rows = []
    for r in range(batch):
        start = (offset + r * core) % len(stream)
        rows.append(head + (stream[start:] + stream)[:core] + tail)
    ids = torch.tensor(rows, dtype=torch.long)
    mask = torch.ones_like(ids)
    uses_types = "token_type_ids" in tok.model_input_names
    tt = (
        torch.zeros_like(ids)
        if uses_types and getattr(pm.backbone.config, "type_vocab_size", 2) >= 2
        else None
    )
    read = torch.zeros(batch, dtype=torch.long)
    if pm.layout != "slot_first":  # causal, prompt_first: the last text token
        read += n_text - 1 + pm.prefix_length
    return Batch(ids, mask, tt, read)


@torch.no_grad()  # not inference_mode: FlopCounterMode's module tracker hooks the autograd graph
def flops_per_example(pm: PromptModel, stream: list[int], seq: int) -> float:
    """Forward FLOPs of one example of ``seq`` positions: every matmul PyTorch's FlopCounterMode counts
    (the linear layers, the head at the read slot), plus the attention products QK^T and AV
    (4 * seq^2 * hidden per layer), which the counter misses when attention runs as SDPA on the CPU."""
    from torch.utils.flop_counter import FlopCounterMode

    b = fixed_batch(pm, stream, 1, seq, 0).to(pm.backbone.device)
    with FlopCounterMode(display=False) as fc:
        pm(b)
    counted = fc.get_flop_counts().get("Global", {})
    linear = sum(v for op, v in counted.items() if "attention" not in str(op))
    bb = pm.backbone
    return float(linear + 4 * seq * seq * bb.hidden_size * bb.num_layers)


def ffn_flops_per_example(bb: Backbone, seq: int) -> float:
    """Forward FLOPs of the FFN matrices (2 per weight per position)."""
    w = 0
    for i in range(bb.num_layers):
        mods = [bb.up_proj(i), bb.gate_proj(i), bb.down_proj(i)]
        w += sum(m.weight.numel() for m in mods if m is not None)
    return 2.0 * w * seq


def make_variants(
    bb: Backbone, sn: SkillNeurons, configs: list[tuple[int, float]], root: Path
) -> list[Variant]:
    """The unpruned model and one pruned model per config, each saved to ``root`` (loaded back below)."""
    L = bb.num_layers
    out = [Variant("unpruned", None, 1.0)]
    for l0, rho in configs:
        keep = skill_keep_mask(sn.mask(rho), first_layer=l0)
        small = prune_backbone(bb, keep, sn.token_mean)
        folder = save_pruned(small, root / f"l{l0}-rho{rho}", keep, source=bb, rho=rho, first_layer=l0)
        info = {
            "kept_per_pruned_layer": small.d_ff[l0],
            "d_ff": small.d_ff,
            "parameters_fraction": count_parameters(small) / count_parameters(bb),
            "ffn_parameters_fraction": ffn_parameters(small) / ffn_parameters(bb),
        }
        out.append(Variant(variant_name(l0, rho, L), l0, rho, folder, info))
        del small
    return out


def load_variants(variants: list[Variant], name: str, device: str, prompt: Path) -> dict[str, PromptModel]:
    """Each variant's prompt model on ``device``, the pruned ones loaded from their saved folders."""
    out = {}
    for v in variants:
        bb = load_backbone(name, device=device) if v.folder is None else load_pruned(v.folder, device=device)
        out[v.name] = load_prompt(prompt, bb)[0].eval()
    return out


@torch.inference_mode()
def _seconds(fn: Any, b: Batch, dev: torch.device) -> float:
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    with autocast_context(dev, "auto"):
        fn(b)
    sync()
    return time.perf_counter() - t0


def time_cell(
    models: dict[str, Any], inputs: list[Batch], dev: torch.device, repeats: int
) -> dict[str, list[float]]:
    """Seconds per repetition of each model over ``inputs``, interleaved batch by batch in a rotating
    order (a burst of load hits every model alike); one warm-up pass first (and compilation)."""
    names = list(models)
    for k in names:
        _seconds(models[k], inputs[0], dev)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        spent = dict.fromkeys(names, 0.0)
        for j, b in enumerate(inputs):
            s0 = (r + j) % len(names)
            for k in names[s0:] + names[:s0]:
                spent[k] += _seconds(models[k], b, dev)
        for k in names:
            times[k].append(spent[k])
    return times


def sweep_cells(args: argparse.Namespace) -> list[tuple[int, int]]:
    """(batch, seq) cells: the batch sweep at --sweep-seq, the sequence sweep at --sweep-batch."""
    batches = [int(x) for x in args.batches.split(",")]
    seqs = [int(x) for x in args.seq_lens.split(",")]
    cells = [(b, args.sweep_seq) for b in batches]
    cells += [(args.sweep_batch, s) for s in seqs if (args.sweep_batch, s) not in cells]
    return cells


def speed_rows(
    args: argparse.Namespace,
    pms: dict[str, PromptModel],
    stream: list[int],
    device: str,
    flops: dict[tuple[str, int], float],
) -> list[dict[str, Any]]:
    """Every (mode, threads, batch, seq) cell on ``device``: each variant's time and speedup."""
    dev = torch.device(device)
    modes = ["eager"] + (["compile"] if args.compile and dev.type == "cuda" else [])
    threads = (
        [int(t) for t in args.sweep_threads.split(",")] if dev.type == "cpu" else [torch.get_num_threads()]
    )
    ref = next(iter(pms.values()))
    rows = []
    for mode in modes:
        models: dict[str, Any] = pms if mode == "eager" else {k: torch.compile(m) for k, m in pms.items()}
        for th in threads:
            torch.set_num_threads(th)
            for batch, seq in sweep_cells(args):
                n = max(1, math.ceil(args.min_tokens / (batch * seq)))
                inputs = [fixed_batch(ref, stream, batch, seq, i * batch * 7).to(dev) for i in range(n)]
                t0 = time.perf_counter()
                times = time_cell(models, inputs, dev, args.repeats)
                base = times["unpruned"]
                for k, ts in times.items():
                    ratios = [a / b for a, b in zip(base, ts)]
                    rows.append(
                        {
                            "device": device,
                            "mode": mode,
                            "threads": th,
                            "batch": batch,
                            "seq": seq,
                            "variant": k,
                            "examples": n * batch,
                            "seconds": ts,
                            "examples_per_s": n * batch / statistics.median(ts),
                            "speedup_median": statistics.median(ratios),
                            "speedup_min": min(ratios),
                            "speedup_max": max(ratios),
                            "flop_ratio": flops[("unpruned", seq)] / flops[(k, seq)],
                        }
                    )
                sp = ", ".join(f"{r['variant']} {r['speedup_median']:.2f}x" for r in rows[-len(times) :])
                print(
                    f"{device} {mode} {th}t batch {batch:4d} seq {seq:3d}: {sp} "
                    f"({time.perf_counter() - t0:.1f}s)",
                    flush=True,
                )
    return rows


def retune_accuracy(
    args: argparse.Namespace, v: Variant, prompt: Path, splits: Any, lr: float
) -> dict[str, Any]:
    """Test accuracy of the prompt re-tuned on the pruned model, once per seed (each from the trained
    prompt; the best dev checkpoint is kept), with the mean and its 95% t-interval."""
    assert v.folder is not None
    accs, steps, secs = [], [], []
    for seed in (int(s) for s in args.retune_seeds.split(",")):
        pm = load_prompt(prompt, load_pruned(v.folder, device="cpu"))[0]
        cfg = TrainConfig(
            max_steps=args.retune_steps,
            batch_size=args.batch_size,
            lr=lr,
            eval_every=max(1, args.retune_steps // 2),  # two dev evaluations: the best one is kept
            seed=seed,
        )
        fit = Trainer(pm, splits.part("train"), splits.part("dev"), cfg, None, progress=False).fit()
        accs.append(evaluate(pm, splits.part("test"), 64)["accuracy"])
        steps.append(fit.steps)
        secs.append(fit.seconds)
        print(f"{v.name}: re-tuned (seed {seed}) {fit.steps} steps in {fit.seconds:.0f}s: {accs[-1]:.4f}")
    return {**t_interval(accs), "steps": steps, "seconds": secs, "lr": lr, "seeds": args.retune_seeds}


def pays_from(rows: list[dict[str, Any]], seq: int) -> list[dict[str, Any]]:
    """Per (device, mode, threads, variant) of the batch sweep: the smallest batch whose median speedup
    exceeds 1.1x (None: at no batch tried)."""
    out = []
    keys = sorted({(r["device"], r["mode"], r["threads"], r["variant"]) for r in rows if r["seq"] == seq})
    for key in keys:
        if key[3] == "unpruned":
            continue
        series = sorted(
            (
                r
                for r in rows
                if (r["device"], r["mode"], r["threads"], r["variant"]) == key and r["seq"] == seq
            ),
            key=lambda r: r["batch"],
        )
        first = next((r["batch"] for r in series if r["speedup_median"] > 1.1), None)
        out.append(dict(zip(("device", "mode", "threads", "variant"), key), seq=seq, batch=first))
    return out


def run_sweep(args: argparse.Namespace) -> None:
    """``--sweep``: speed over batch size, sequence length, threads and device beside the FLOP bound and
    the accuracy (as is; re-tuned over seeds), merged into OUT.json under "sweeps" and rendered."""
    if not (args.prompt and args.neurons):
        raise SystemExit("--sweep needs --prompt and --neurons (the accuracy goes beside each speed)")
    load0, t_start = os.getloadavg()[0], time.perf_counter()
    pman, sn = load_manifest(args.prompt), SkillNeurons.load(args.neurons)
    name = args.model or pman.get("backbone", {}).get("name") or "minilm"
    bb = load_backbone(name, device="cpu")
    task = load_task(args.task or pman.get("task", {}).get("name") or "mr")
    ppath = artifact_paths(args.prompt)[0]
    splits = RunDir.of(ppath).splits(task)
    test = splits.part("test")
    tmp = tempfile.TemporaryDirectory(prefix="prune-sweep-")
    variants = make_variants(bb, sn, parse_configs(args.configs), Path(tmp.name))
    pms = load_variants(variants, name, "cpu", ppath)
    torch.set_num_threads(max(int(t) for t in args.sweep_threads.split(",")))
    for v in variants:
        v.info["accuracy"] = evaluate(pms[v.name], test, 64)["accuracy"]
        print(f"{v.name}: accuracy as is {v.info['accuracy']:.4f} (test, n={len(test)})")
    stream = token_stream(pms["unpruned"], test)
    seqs = sorted({s for _, s in sweep_cells(args)})
    flops = {(k, s): flops_per_example(pm, stream, s) for k, pm in pms.items() for s in seqs}
    ffn_share = {s: ffn_flops_per_example(bb, s) / flops[("unpruned", s)] for s in seqs}
    rows = speed_rows(args, pms, stream, "cpu", flops)
    devices = [d.strip() for d in args.devices.split(",") if d.strip() and d.strip() != "cpu"]
    for device in devices:  # a GPU (bf16 autocast; --compile adds torch.compile'd models)
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"{device}: no CUDA device here, skipped")
            continue
        rows += speed_rows(args, load_variants(variants, name, device, ppath), stream, device, flops)
    t_speed = time.perf_counter() - t_start
    torch.set_num_threads(max(int(t) for t in args.sweep_threads.split(",")))
    lr = args.retune_lr or float(pman.get("train_config", {}).get("lr", 3e-2))
    wanted = set(parse_configs(args.retune_configs)) if args.retune_configs else set()
    for v in variants:
        if args.retune_steps > 0 and (v.first_layer, v.rho) in wanted:
            v.info["retuned"] = retune_accuracy(args, v, ppath, splits, lr)
    tmp.cleanup()
    entry = {
        "key": f"{bb.name}|sweep|{args.configs}",
        "model": bb.name,
        "geometry": f"{bb.num_layers} x {bb.d_ff[0]}, hidden {bb.hidden_size}",
        "prompt": str(args.prompt),
        "prompt_sha256": sha256_file(ppath),
        "neurons": str(args.neurons),
        "neurons_sha256": sha256_file(artifact_paths(args.neurons)[0]),
        "task": task.name,
        "test_examples": len(test),
        "prefix_length": pms["unpruned"].prefix_length,
        "head": pms["unpruned"].head.kind,
        "repeats": args.repeats,
        "min_tokens": args.min_tokens,
        "batch_sweep_seq": args.sweep_seq,
        "seq_sweep_batch": args.sweep_batch,
        "variants": [
            {"name": v.name, "first_layer": v.first_layer, "rho": v.rho, **v.info} for v in variants
        ],
        "flops_per_example": {f"{k}|{s}": f for (k, s), f in flops.items()},
        "ffn_flop_share": {str(s): f for s, f in ffn_share.items()},
        "rows": rows,
        "pays_from": pays_from(rows, args.sweep_seq),
        "seconds": {"speed": t_speed, "total": time.perf_counter() - t_start},
        "machine": _machine(load0),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    _write_sweep(Path(args.out).with_suffix(".json"), entry)


def _machine(load0: float) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "load_average_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def _write_sweep(out_json: Path, entry: dict[str, Any]) -> None:
    old = json.loads(out_json.read_text()) if out_json.is_file() else {}
    sweeps = [s for s in old.get("sweeps", []) if s.get("key") != entry["key"]] + [entry]
    atomic_write_json(out_json, {**old, "sweeps": sweeps})
    md = render(old.get("entries", []), old.get("retuned", [])) + render_sweeps(sweeps)
    out_json.with_suffix(".md").write_text(md)
    print(render_sweeps([entry]))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _variant_table(e: dict[str, Any], seqs: list[int]) -> list[str]:
    base = e["variants"][0]["accuracy"]
    fl = e["flops_per_example"]
    head = " / ".join(str(s) for s in seqs)
    lines = [
        f"| model | kept / pruned layer | params left | FFN params left | FLOPs removed (seq {head}) "
        f"| FLOP bound on the speedup (seq {head}) | accuracy as is | re-tuned: mean [95% CI] (n) "
        "| re-tuned - unpruned (points) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v in e["variants"]:
        ratio = [fl[f"unpruned|{s}"] / fl[f"{v['name']}|{s}"] for s in seqs]
        rt = v.get("retuned")
        if rt:
            lo, hi = rt["ci95"]
            band = f" [{lo:.4f}, {hi:.4f}]" if lo is not None else ""
            tuned, delta = f"{rt['mean']:.4f}{band} ({rt['n']})", f"{100 * (rt['mean'] - base):+.1f}"
        else:
            tuned, delta = "-", "-"
        lines.append(
            f"| {v['name']} | {v.get('kept_per_pruned_layer', '-')} "
            f"| {_pct(v.get('parameters_fraction', 1.0))} | {_pct(v.get('ffn_parameters_fraction', 1.0))} "
            f"| {' / '.join(_pct(1 - 1 / r) for r in ratio)} | {' / '.join(f'{r:.2f}x' for r in ratio)} "
            f"| {v['accuracy']:.4f} | {tuned} | {delta} |"
        )
    return lines


def _speed_table(e: dict[str, Any]) -> list[str]:
    names = [v["name"] for v in e["variants"]]
    lines = [
        "| device | mode | threads | batch | seq | unpruned examples/s | "
        + " | ".join(f"{n}: speedup [min, max] / bound" for n in names[1:])
        + " |",
        "|---|---|---:|---:|---:|---:|" + "---:|" * (len(names) - 1),
    ]
    cells: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for r in e["rows"]:
        cells.setdefault((r["device"], r["mode"], r["threads"], r["batch"], r["seq"]), {})[r["variant"]] = r
    for key, by in cells.items():
        parts = [
            f"{by[n]['speedup_median']:.2f}x [{by[n]['speedup_min']:.2f}, {by[n]['speedup_max']:.2f}] "
            f"/ {by[n]['flop_ratio']:.2f}x"
            for n in names[1:]
        ]
        lines.append(
            "| "
            + " | ".join(map(str, key))
            + f" | {by['unpruned']['examples_per_s']:.1f} | "
            + " | ".join(parts)
            + " |"
        )
    return lines


def _verdict(e: dict[str, Any]) -> list[str]:
    """Per pruned model: the typical CPU speedup (median over the cells at batch >= 64), the range over
    all cells, the FLOP bound, and the accuracy; goal: >= 2x typical at <= 1 point re-tuned."""
    base = e["variants"][0]["accuracy"]
    out = []
    for v in e["variants"][1:]:
        cpu = [r for r in e["rows"] if r["variant"] == v["name"] and r["device"] == "cpu"]
        if not cpu:
            continue
        big = [r["speedup_median"] for r in cpu if r["batch"] >= 64] or [r["speedup_median"] for r in cpu]
        typical = statistics.median(big)
        over = sum(r["speedup_median"] > 1.05 * r["flop_ratio"] for r in cpu)
        bounds = [r["flop_ratio"] for r in cpu]
        rt = v.get("retuned")
        acc = (
            f"re-tuned {100 * (rt['mean'] - base):+.1f} points (n={rt['n']}, {rt['steps'][0]} steps)"
            if rt
            else f"as is {100 * (v['accuracy'] - base):+.1f} points (not re-tuned)"
        )
        met = rt is not None and typical >= 2.0 and rt["mean"] >= base - 0.01
        out.append(
            f"- {v['name']}: CPU speedup {typical:.2f}x (median over the cells at batch >= 64; "
            f"{min(r['speedup_median'] for r in cpu):.2f}-{max(r['speedup_median'] for r in cpu):.2f}x "
            f"over all cells, {over} above their bound by > 5%), FLOP bound {min(bounds):.2f}-"
            f"{max(bounds):.2f}x; {acc}: goal (>= 2x at <= 1 point re-tuned) {'met' if met else 'not met'}"
        )
    return out


def render_sweeps(sweeps: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for e in sweeps:
        m = e["machine"]
        seqs = sorted({int(k.split("|")[1]) for k in e["flops_per_example"]})
        share = ", ".join(
            f"{_pct(f)} at seq {s}" for s, f in sorted((int(s), f) for s, f in e["ffn_flop_share"].items())
        )
        best_bound = ", ".join(f"{1 / (1 - f):.2f}x" for f in e["ffn_flop_share"].values())
        lines += [
            f"## Sweep: {e['model']} ({e['geometry']}), {e['task']}: where pruning pays",
            "",
            f"Prompt {e['prompt']} ({e['head']} head, {e['prefix_length']} prefix positions); neurons "
            f"{e['neurons']}. Accuracy on the test split (n={e['test_examples']}); re-tuned = the prompt "
            "re-tuned on the pruned model from its trained value, once per seed (best dev checkpoint), mean "
            "and Student-t 95% CI. Speed on fixed-length batches of real test text (no padding; seq counts "
            "every position the encoder runs on, prompt included; examples repeat past the split's end), "
            f"batch sweep at seq {e['batch_sweep_seq']}, sequence sweep at batch {e['seq_sweep_batch']}; "
            f"each cell at least {e['min_tokens']} tokens, {e['repeats']} interleaved repetitions, speedup = "
            "median of unpruned / pruned time [min, max]. Bound = unpruned / pruned forward FLOPs (matmuls "
            "counted by torch's FlopCounterMode plus 4 seq^2 hidden per layer for attention): the speedup if "
            "time followed FLOPs (Amdahl: attention, embeddings and unpruned layers stay).",
            "",
            f"CPU {m['cpu']} ({m['cores']} cores), GPU {m['gpu'] or 'none'}, torch {m['torch']}, "
            f"transformers {m['transformers']}; load average {m['load_average_1min'][0]} at the start, "
            f"{m['load_average_1min'][1]} at the end (other jobs may have run beside it); {e['date']}; "
            f"{e['seconds']['total'] / 60:.1f} min in all ({e['seconds']['speed'] / 60:.1f} min of timing).",
            "",
            f"The FFN matrices are {share} of the unpruned model's FLOPs: removing every FFN neuron of every "
            f"layer could at best give {best_bound}.",
            "",
            *_variant_table(e, seqs),
            "",
            *_speed_table(e),
            "",
            "Pruning pays (median speedup > 1.1x) from batch: "
            + "; ".join(
                f"{p['variant']} {p['device']} {p['mode']} {p['threads']}t: {p['batch'] or 'never'}"
                for p in e["pays_from"]
            )
            + f" (seq {e['batch_sweep_seq']}).",
            "",
            *_verdict(e),
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
