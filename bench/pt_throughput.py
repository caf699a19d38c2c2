"""Prompt-tuning throughput: this package's trainer vs Hugging Face PEFT prompt tuning.

Same backbone, data, batch size, prompt length and head (a linear head read at a mask slot inserted
before the closing token), both in the PEFT layout ``[prompt][text]``, both trained by this package's
``Trainer.train_step`` (the PEFT side is ``bench/peft_side.py``: PEFT's forward); each step = tokenise +
forward + backward + optimizer step. Repetitions are interleaved and the median examples/s is reported with
the ratio (ours / PEFT): the machine is noisy, only the ratio is meaningful.

    .venv/bin/python bench/pt_throughput.py --steps 20 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from common import cpu_model, write_json
from peft_side import PeftPromptModel
from skillneurons.backbones import load_backbone
from skillneurons.data import load_task
from skillneurons.prompts import PromptModel, SoftPrompt, build_head
from skillneurons.training import TrainConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--prompt-length", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per repetition")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="autocast for both sides (auto: bf16 on a GPU that supports it, else fp32)",
    )
    ap.add_argument("--out", default="bench/results/pt_throughput.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    bb = load_backbone(args.model)
    task = load_task("mr")  # a seeded sample holding both classes (the file is ordered by class)
    pick = torch.randperm(len(task), generator=torch.Generator().manual_seed(0))[
        : args.batch_size * args.steps
    ]
    task = task.subset(sorted(pick.tolist()))
    device = bb.device

    # ---- ours ---------------------------------------------------------------------------------
    pm = PromptModel(
        bb,
        SoftPrompt.create(bb, args.prompt_length),
        build_head("linear", bb, task.label_words),
        layout="prompt_first",
        max_length=128,
    )
    trainer = Trainer(
        pm,
        task,
        task.subset(range(8)),
        TrainConfig(max_steps=10**6, batch_size=args.batch_size, precision=args.precision),
        progress=False,
    )
    order = list(range(len(task)))

    def ours() -> None:
        for s in range(args.steps):
            trainer.train_step(order[s * args.batch_size : (s + 1) * args.batch_size], s)

    # ---- PEFT (bench/peft_side.py: PEFT's forward, the same tokenisation, head and trainer) ------
    peft_trainer = Trainer(
        PeftPromptModel(
            bb, SoftPrompt.create(bb, args.prompt_length), build_head("linear", bb, task.label_words), 128
        ),
        task,
        task.subset(range(8)),
        TrainConfig(max_steps=10**6, batch_size=args.batch_size, precision=args.precision),
        progress=False,
    )

    def peft() -> None:
        for s in range(args.steps):
            peft_trainer.train_step(order[s * args.batch_size : (s + 1) * args.batch_size], s)

    ours_t: list[float] = []
    peft_t: list[float] = []
    ours(), peft()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    for _ in range(args.repeats):
        for fn, store in ((ours, ours_t), (peft, peft_t)):
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            store.append(time.perf_counter() - t0)
    n = args.steps * args.batch_size
    res = {
        "machine": {
            "device": str(device),
            "cpu": cpu_model(),
            "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "model": args.model,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "prompt_length": args.prompt_length,
        "steps": args.steps,
        "ours_examples_per_s": n / statistics.median(ours_t),
        "peft_examples_per_s": n / statistics.median(peft_t),
    }
    res["ratio_ours_over_peft"] = res["ours_examples_per_s"] / res["peft_examples_per_s"]
    write_json(args.out, res)


if __name__ == "__main__":
    main()
