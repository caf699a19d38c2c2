"""DynSAN ablations on the offline BBC News cloze task (issue #19 acceptance): gate vs full
self-attention vs no cross-passage blocks vs random selection vs random without gate vs no
convolutions vs the frozen-encoder embeddings (MiniLM's last hidden states of each passage, cached,
instead of its word-piece table), several seeds, test EM/F1 with 95% intervals, plus the
most-frequent-candidate baseline and the gate-as-neuron AUROC of the gate reader on dev.

Every run trains with the same budget (``--minutes`` of training, or ``--steps``, whichever ends
first), keeps the best EMA weights by dev EM and scores them on test (questions whose answer is not in
the passages read are kept and score 0). The task and its encoding are loaded once. The results file is
rewritten after every run, so an interrupted table keeps what finished. The ``frozen_encoder`` variant
encodes every question and passage once with MiniLM before its first run and keeps the vectors in
memory (fp16: 768 bytes a word piece, up to about 6.7 GB for the whole training split at 5 passages of
<= 200 pieces; ``--train-limit`` caps it).

    flock /work/heavy.lock env OMP_NUM_THREADS=2 PYTHONPATH=src python bench/dynsan_ablation.py \
        --variants gate --seeds 0 --minutes 4
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

import torch

from common import cpu_model, write_json
from skillneurons.evidence import mean_over_seeds, paired_difference
from skillneurons.reading.config import ReaderConfig, ReadTrainConfig
from skillneurons.reading.contextual import load_encoder
from skillneurons.reading.data import load_reading_task
from skillneurons.reading.data_config import ReadDataConfig
from skillneurons.reading.encode import encode_examples, load_embeddings
from skillneurons.reading.gates import GATE_STATISTIC, GateRecorder
from skillneurons.reading.network import Reader
from skillneurons.reading.run import evaluation_of, most_frequent_entity, window_overlap_entity
from skillneurons.reading.train import ReaderTrainer, evaluate_reader, load_reader

ROOT = Path(__file__).resolve().parent.parent

VARIANTS: dict[str, dict[str, Any]] = {
    "gate": {},
    "full": {"selection": "full"},
    "no_cross": {"cross": False},
    "random": {"selection": "random"},
    "random_nogate": {"selection": "random_nogate"},
    "no_conv": {"conv": False},
    "frozen_encoder": {"embeddings_kind": "encoder"},
}


def head_of(args: argparse.Namespace) -> Literal["span", "choice"]:
    """The answer head: multiple choice over the entity candidates, else extractive spans."""
    return "choice" if args.candidates == "entities" else "span"


def seed_interval(values: list[float]) -> dict[str, Any]:
    """Mean over seeds with a 95% t interval (None with one seed): :func:`evidence.mean_over_seeds`."""
    e = mean_over_seeds(values)
    return {"mean": e.value, "low": e.lo, "high": e.hi, "n": e.n}


def run_one(args: argparse.Namespace, name: str, seed: int, data: dict[str, Any]) -> dict[str, Any]:
    base = ReaderConfig(
        dim=args.dim,
        heads=args.heads,
        top_k=args.top_k,
        blocks=args.blocks,
        passages=args.passages,
        max_passage_tokens=args.max_passage_tokens,
        head=head_of(args),
    )
    rc = replace(base, **VARIANTS[name])
    tc = ReadTrainConfig(
        steps=args.steps,
        batch_size=args.batch,
        eval_batch_size=64,
        warmup_steps=args.warmup,
        eval_every=args.eval_every,
        seed=seed,
        time_budget=args.minutes,
        ema=args.ema,
    )
    if rc.embeddings_kind == "encoder":
        data = data["encoder"]
    torch.manual_seed(seed)
    model = Reader(rc, data["table"])
    out = Path(args.runs) / f"{name}_s{seed}"
    trainer = ReaderTrainer(model, data["train"], data["dev"], tc, out, progress=not args.quiet)
    t0 = time.perf_counter()
    state = trainer.fit()
    seconds = time.perf_counter() - t0
    best, _ = load_reader(out / "reader", data["table"])
    scored = evaluate_reader(best, data["test"].examples, 64, seed=seed)
    test = evaluation_of("test", rc.head, scored, data["test"])
    row: dict[str, Any] = {
        "variant": name,
        "seed": seed,
        "reader": asdict(rc),
        "steps": state.step,
        "best_step": state.best_step,
        "best_dev_em": state.best,
        "train_seconds": seconds,
        "stopped_by_time": trainer.stopped_by_time,
        "test": test.to_json(),
        "test_em_per_example": scored.em,
        "test_f1_per_example": scored.f1,
        "history": state.history,
    }
    if args.gates and name in ("gate", "random") and seed == args.seeds[0]:
        rec = GateRecorder(best)
        try:
            evaluate_reader(best, data["dev"].examples, 64, on_batch=rec, seed=seed)
        finally:
            rec.close()
        row["gates_dev"] = [asdict(g) for g in rec.result()]
        row["gate_statistic"] = f"{GATE_STATISTIC}; error bound {rec.error_bound():.2g}"
    print(
        f"{name} seed {seed}: {state.step} steps in {seconds:.0f} s, best dev EM {state.best:.4f}, "
        f"test EM {test.em:.4f} F1 {test.f1:.4f}",
        file=sys.stderr,
    )
    return row


def paired_vs_gate(rows: list[dict[str, Any]], name: str, resamples: int = 2000) -> dict[str, Any] | None:
    """Per-example EM difference (variant - gate) on the same test questions and seeds: the mean, a
    paired bootstrap 95% interval and its p (:func:`evidence.paired_difference`, resampling questions;
    each question's EM averaged over the seeds both variants ran)."""
    gate = {r["seed"]: r["test_em_per_example"] for r in rows if r["variant"] == "gate"}
    mine = {r["seed"]: r["test_em_per_example"] for r in rows if r["variant"] == name and r["seed"] in gate}
    if name == "gate" or not mine:
        return None
    seeds = sorted(mine)
    a = [sum(mine[s][i] for s in seeds) / len(seeds) for i in range(len(gate[seeds[0]]))]
    b = [sum(gate[s][i] for s in seeds) / len(seeds) for i in range(len(gate[seeds[0]]))]
    d = paired_difference(a, b, draws=resamples)
    return {"em_minus_gate": d.value, "low": d.lo, "high": d.hi, "p": d.p, "n": d.n, "seeds": seeds}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    table = {}
    for name in VARIANTS:
        mine = [r for r in rows if r["variant"] == name]
        if mine:
            table[name] = {
                "em": seed_interval([r["test"]["em"] for r in mine]),
                "f1": seed_interval([r["test"]["f1"] for r in mine]),
                "steps": [r["steps"] for r in mine],
                "paired_vs_gate": paired_vs_gate(rows, name),
            }
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--minutes", type=float, default=4.0, help="training budget per run")
    ap.add_argument("--steps", type=int, default=100_000, help="training steps per run (the budget's cap)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--top-k", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--passages", type=int, default=5)
    ap.add_argument(
        "--candidates",
        default="none",
        choices=("none", "entities"),
        help="entities: multiple choice over the passages' entities (read data --candidates), choice head",
    )
    ap.add_argument("--max-passage-tokens", type=int, default=200)
    ap.add_argument("--dev-limit", type=int, default=400, help="dev questions used for model selection")
    ap.add_argument("--train-limit", type=int, default=None, help="first N training questions (default all)")
    ap.add_argument("--test-limit", type=int, default=None, help="first N test questions (default all)")
    ap.add_argument("--gates", action="store_true", help="gate AUROC of the gate (and random) reader")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--runs", default="/tmp/dynsan_ablation_runs", help="run folders (checkpoints)")
    ap.add_argument("--out", default=str(ROOT / "bench/results/dynsan_ablation.json"))
    args = ap.parse_args()
    splits = load_reading_task("bbc_cloze", ReadDataConfig(candidates=args.candidates))
    tokenizer, table = load_embeddings("minilm")
    enc_cfg = ReaderConfig(
        passages=args.passages, max_passage_tokens=args.max_passage_tokens, head=head_of(args)
    )
    questions = {
        "train": splits.train[: args.train_limit],
        "dev": splits.dev[: args.dev_limit],
        "test": splits.test[: args.test_limit],
    }
    data: dict[str, Any] = {
        "table": table,
        **{
            k: encode_examples(v, tokenizer, enc_cfg, keep_unanswerable=k != "train")
            for k, v in questions.items()
        },
    }
    if "frozen_encoder" in args.variants:  # MiniLM's vectors of every question and passage, once
        encoder = load_encoder("minilm")
        cfg = replace(enc_cfg, embeddings_kind="encoder")
        data["encoder"] = {
            "table": encoder.width,
            **{
                k: encode_examples(v, encoder.tokenizer, cfg, keep_unanswerable=k != "train", encoder=encoder)
                for k, v in questions.items()
            },
        }
        del encoder
    read_test = [replace(e, passages=e.passages[: args.passages]) for e in questions["test"]]  # baselines
    result: dict[str, Any] = {
        "setting": {k: v for k, v in vars(args).items() if k not in ("out", "quiet")},
        "machine": {"cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "task": {
            "name": "bbc_cloze",
            "sizes": splits.sizes(),
            "encoded": {k: len(data[k].examples) for k in ("train", "dev", "test")},
            "skipped": {k: data[k].skipped for k in ("train", "dev", "test")},
            "unanswerable": {k: data[k].unanswerable for k in ("dev", "test")},
        },
        "baseline_most_frequent_entity": {
            "test_all_passages": most_frequent_entity(questions["test"]),
            "test_read_passages": most_frequent_entity(read_test),
        },
        "baseline_window_overlap": {
            f"test_read_passages_window{w}": window_overlap_entity(read_test, window=w) for w in (5, 10)
        },
        "rows": [],
    }
    for seed in args.seeds:
        for name in args.variants:
            result["rows"].append(run_one(args, name, seed, data))
            result["table"] = summarise(result["rows"])
            write_json(args.out, result)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
