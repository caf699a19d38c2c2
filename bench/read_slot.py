"""The LM head at the read slot only (ours) against PEFT's way (the LM head over every position and the
whole vocabulary, then the read slot's label words), on a model with an LM head, one training step.

Same backbone, batch, prompt, layout (``[prompt][text]``) and label-word head; the PEFT side is
``bench/peft_side.py``. FLOPs: ``FlopCounterMode`` (forward + backward; exact, machine-independent);
seconds: the median of ``--repeats`` interleaved training steps (noisy; the FLOPs are the figure).

    python bench/read_slot.py --model smollm2 --batch-size 16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import cpu_model, write_json
from peft_side import PeftPromptModel
from skillneurons.backbones import load_backbone
from skillneurons.data import load_task
from skillneurons.fpt.progressive import count_step_flops
from skillneurons.prompts import PromptModel, SoftPrompt, build_head
from skillneurons.training import TrainConfig, Trainer
from skillneurons.training.trainer import encode_examples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--task", default="mr")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--prompt-length", type=int, default=20)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results/read_slot.json")
    args = ap.parse_args()
    bb = load_backbone(args.model)
    task = load_task(args.task)
    pick = torch.randperm(len(task), generator=torch.Generator().manual_seed(0))[: args.batch_size]
    task = task.subset(sorted(pick.tolist()))
    prompt = SoftPrompt.create(bb, args.prompt_length, "normal", generator=torch.Generator().manual_seed(0))
    models = {
        "ours_read_slot": PromptModel(
            bb, prompt, build_head("label_words", bb, task.label_words), layout="prompt_first"
        ),
        "peft_full_logits": PeftPromptModel(
            bb, prompt, build_head("label_words", bb, task.label_words), args.max_length
        ),
    }
    batch = encode_examples(models["ours_read_slot"], task, list(range(len(task)))).to(bb.device)
    with torch.inference_mode():
        diff = float((models["ours_read_slot"](batch) - models["peft_full_logits"](batch)).abs().max())
    flops = {k: count_step_flops(m, batch) for k, m in models.items()}
    trainers = {
        k: Trainer(m, task, task, TrainConfig(max_steps=10**6, batch_size=args.batch_size), progress=False)
        for k, m in models.items()
    }
    seconds: dict[str, list[float]] = {k: [] for k in models}
    for r in range(args.repeats + 1):  # the first round warms up, untimed
        for k, t in trainers.items():
            t0 = time.perf_counter()
            t.train_step(list(range(len(task))), 0)
            if r:
                seconds[k].append(time.perf_counter() - t0)
    write_json(
        args.out,
        {
            "bench": "read_slot",
            "model": bb.identity(),
            "vocabulary": int(bb.config.vocab_size),
            "batch_size": args.batch_size,
            "sequence_length": int(batch.input_ids.shape[1]) + args.prompt_length,
            "max_logit_difference": diff,
            "flops": flops,
            "flops_ratio_peft_over_ours": flops["peft_full_logits"] / flops["ours_read_slot"],
            "step_seconds_median": {k: statistics.median(v) for k, v in seconds.items()},
            "cpu": cpu_model(),
            "threads": torch.get_num_threads(),
        },
    )


if __name__ == "__main__":
    main()
