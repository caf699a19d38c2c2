"""Padding per training epoch: random vs length-bucketed batches, on every built-in task.

The batches are the trainer's own (``Trainer.epoch_order``: seed 0, epoch 0, the training part of the
split of seed 0) and each is tokenised by the prompt model's ``encode``, as a training step does. The
padding fraction is the share of the positions the backbone computes that are padding: ``1 -
real / (batch x (prefix + padded text length))`` over the epoch, the prefix (slot + prompt) counted as
real; ``text_padding`` leaves the prefix out. No model is run (tokenisation only).

    python bench/padding.py --model minilm
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import torch

from common import cpu_model, write_json
from skillneurons.backbones import load_backbone
from skillneurons.data import BUILTINS, load_task
from skillneurons.prompts.build import build_prompt_model, new_prompt
from skillneurons.prompts.config import PromptConfig
from skillneurons.training import TrainConfig, Trainer
from skillneurons.training.trainer import encode_examples, iterate_batches


def epoch_padding(trainer: Trainer) -> dict[str, Any]:
    """Padding of the epoch-0 batches of ``trainer``."""
    model, task = trainer.model, trainer.train_task
    real = text = computed = 0
    widths = []
    for idx in iterate_batches(task, trainer.config.batch_size, trainer.epoch_order(0)):
        batch = encode_examples(model, task, idx)
        n, width = batch.input_ids.shape
        real += int(batch.attention_mask.sum())
        text += n * width
        computed += n * (width + model.prefix_length)
        widths.append(width + model.prefix_length)
    prefix = model.prefix_length * len(task)
    return {
        "padding": 1 - (real + prefix) / computed,
        "text_padding": 1 - real / text,
        "positions": computed,
        "mean_sequence_length": sum(widths) / len(widths),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--tasks", default=",".join(BUILTINS))
    ap.add_argument("--batch-size", type=int, default=TrainConfig().batch_size, help="(default: the demo's)")
    ap.add_argument("--bucket-batches", type=int, default=TrainConfig().bucket_batches)
    ap.add_argument("--out", default="bench/results/padding.json")
    args = ap.parse_args()
    bb = load_backbone(args.model)
    prompt = PromptConfig()  # the defaults: 20 tokens, max_length 128, the model's default layout
    rows = []
    for name in args.tasks.split(","):
        task = load_task(name)
        train = task.split(0).part("train")
        pm = build_prompt_model(
            bb, task.label_words, prompt, prompt=new_prompt(bb, prompt, torch.Generator())
        )
        row: dict[str, Any] = {"task": name, "train_examples": len(train)}
        for batching in ("random", "bucketed"):
            cfg = TrainConfig(
                batch_size=args.batch_size, batching=batching, bucket_batches=args.bucket_batches
            )
            row[batching] = epoch_padding(Trainer(pm, train, train, cfg, progress=False))
        row["positions_ratio"] = row["bucketed"]["positions"] / row["random"]["positions"]
        rows.append(row)
        print(f"{name}: padding {row['random']['padding']:.3f} -> {row['bucketed']['padding']:.3f}")
    write_json(
        args.out,
        {
            "bench": "padding",
            "model": bb.identity(),
            "prompt": dataclasses.asdict(prompt),
            "layout": pm.layout,
            "prefix_length": pm.prefix_length,
            "batch_size": args.batch_size,
            "bucket_batches": args.bucket_batches,
            "split_seed": 0,
            "cpu": cpu_model(),
            "tasks": rows,
        },
    )


if __name__ == "__main__":
    main()
