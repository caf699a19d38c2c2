"""Length-bucketed batching (issue 20, section 1): every example once per epoch, the same order on resume,
less padding; the FPT learning-rate re-warm-up; the LM head at the read slot only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import separable_task
from skillneurons.data import Task
from skillneurons.errors import ConfigError
from skillneurons.fpt import parse_schedule
from skillneurons.fpt.config import ProgressiveConfig
from skillneurons.fpt.progressive import ProgressiveTraining
from skillneurons.prompts import PromptModel, SoftPrompt, build_head
from skillneurons.testing import tiny_model
from skillneurons.training import TrainConfig, Trainer
from skillneurons.training.trainer import bucketed_order, encode_examples, example_lengths, iterate_batches


def _model(head: str = "linear", max_length: int = 24) -> PromptModel:
    bb = tiny_model("bert")
    torch.manual_seed(0)
    prompt = SoftPrompt.create(bb, 3, "normal", std=0.5)
    return PromptModel(bb, prompt, build_head(head, bb, [["bad"], ["good"]]), max_length=max_length)


def _varied(n: int = 90) -> Task:
    """The separable task with texts of 1 to 15 words (a cue word, then filler)."""
    base = separable_task(n)
    texts = tuple(t.split()[0] + " " + " ".join(["the movie"] * (i % 8)) for i, t in enumerate(base.texts))
    cue = tuple(("good " if y else "bad ") + t for t, y in zip(texts, base.labels, strict=True))
    return Task(
        name=base.name,
        texts=cue,
        labels=base.labels,
        label_names=base.label_names,
        label_words=base.label_words,
    )


def _padding(trainer: Trainer, epoch: int) -> float:
    real = total = 0
    for idx in iterate_batches(trainer.train_task, trainer.config.batch_size, trainer.epoch_order(epoch)):
        batch = encode_examples(trainer.model, trainer.train_task, idx)
        real += int(batch.attention_mask.sum())
        total += batch.input_ids.numel()
    return 1 - real / total


def test_bucketed_order_holds_every_example_once_and_batches_of_similar_length() -> None:
    perm = torch.randperm(103, generator=torch.Generator().manual_seed(3)).tolist()
    lengths = [(i * 7919) % 40 for i in range(103)]
    order = bucketed_order(perm, lengths, 8, 4, torch.Generator().manual_seed(1))
    assert sorted(order) == list(range(103))
    batches = list(iterate_batches(separable_task(103), 8, order))
    assert len(batches[-1]) == 103 % 8 and all(len(b) == 8 for b in batches[:-1])  # the short batch last

    def spread(bs: list[list[int]]) -> float:
        return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in bs) / len(bs)

    assert spread(batches) < spread([perm[i : i + 8] for i in range(0, 103, 8)]) / 2


@pytest.mark.parametrize("batching", ["random", "bucketed"])
def test_every_example_once_per_epoch_and_orders_differ_by_epoch(batching: str) -> None:
    task = _varied(90)
    cfg = TrainConfig(batch_size=8, batching=batching, bucket_batches=3, seed=2)
    trainer = Trainer(_model(), task, task, cfg, progress=False)
    orders = [trainer.epoch_order(e) for e in range(3)]
    for order in orders:
        assert sorted(order) == list(range(len(task)))
    assert orders[0] != orders[1] != orders[2]
    again = Trainer(_model(), task, task, cfg, progress=False)
    assert [again.epoch_order(e) for e in range(3)] == orders  # a pure function of (seed, epoch)


def test_random_batching_is_the_permutation_as_before() -> None:
    task = _varied(40)
    trainer = Trainer(_model(), task, task, TrainConfig(batch_size=8, seed=5), progress=False)
    before = torch.randperm(40, generator=torch.Generator().manual_seed(5 * 100_003 + 1)).tolist()
    assert trainer.epoch_order(1) == trainer.permutation(1) == before


def test_bucketing_cuts_the_padding_of_a_task_of_varied_lengths() -> None:
    task = _varied(96)
    model = _model(max_length=40)
    lengths = example_lengths(model, task)
    assert min(lengths) < max(lengths) <= 40
    assert lengths[0] == len(model.backbone.tokenizer(task.texts[0])["input_ids"])
    pads = {}
    for batching in ("random", "bucketed"):
        cfg = TrainConfig(batch_size=8, batching=batching, bucket_batches=4)
        pads[batching] = _padding(Trainer(model, task, task, cfg, progress=False), 0)
    assert pads["random"] > 0.3 and pads["bucketed"] < pads["random"] / 2, pads  # 0.37 -> 0.12


def test_bucketed_run_resumed_mid_epoch_matches_the_uninterrupted_one(tmp_path: Path) -> None:
    """The trainer's resume test (tests/test_prompts.py), with bucketed batches: interrupted in the middle
    of the second epoch, the resumed run takes the same batches and ends with the same prompt."""
    task = _varied(40)
    cfg = TrainConfig(
        max_steps=9, batch_size=8, lr=0.05, eval_every=2, seed=1, batching="bucketed", bucket_batches=2
    )
    full = _model()
    seen_full: list[list[int]] = []
    ref = Trainer(full, task, task, cfg, tmp_path / "a", progress=False)
    real_ref = ref.train_step
    ref.train_step = lambda idx, step: (seen_full.append(idx), real_ref(idx, step))[1]  # type: ignore[method-assign]
    ref.fit()

    seen: list[list[int]] = []
    part = _model()
    trainer = Trainer(part, task, task, cfg, tmp_path / "b", progress=False)
    real_step = trainer.train_step

    def flaky(idx: list[int], step: int) -> float:
        if step == 7:  # the third step of epoch 2 (5 steps per epoch)
            raise KeyboardInterrupt
        seen.append(idx)
        return real_step(idx, step)

    trainer.train_step = flaky  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    resumed = _model()
    again = Trainer(resumed, task, task, cfg, tmp_path / "b", progress=False)
    real_again = again.train_step
    again.train_step = lambda idx, step: (seen.append(idx), real_again(idx, step))[1]  # type: ignore[method-assign]
    res = again.fit()
    assert res.resumed_from == 7  # the checkpoint written on the interrupt, in the middle of epoch 1
    assert seen == seen_full
    assert seen_full[5:] != [b for b in iterate_batches(task, 8, again.permutation(1))][:4]  # bucketed
    torch.testing.assert_close(resumed.prompt.weight, full.prompt.weight)


def test_bucketing_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="bucket_batches must be >= 1"):
        TrainConfig(bucket_batches=0)
    with pytest.raises(ConfigError, match="unknown batching 'sorted'"):
        TrainConfig(batching="sorted")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="progressive-rewarm must be a fraction"):
        ProgressiveConfig(schedule="50,full", rewarm=2.0)


def test_fpt_rewarm_warms_the_learning_rate_up_again_at_every_expansion() -> None:
    sched = parse_schedule("50:1,25:1,full:2", rewarm=0.5)
    assert sched.boundaries(40) == [10, 20, 40]
    f = [sched.rewarm_factor(s, 40) for s in range(40)]
    assert f[:10] == [1.0] * 10  # the first stage has the trainer's own warm-up
    assert f[10:15] == [0.2, 0.4, 0.6, 0.8, 1.0] and f[15:20] == [1.0] * 5
    assert f[20:30] == [(i + 1) / 10 for i in range(10)] and f[30:] == [1.0] * 10
    assert "rewarm" not in parse_schedule("50,full").identity()  # the run keys of older runs stay valid
    assert sched.identity()["rewarm"] == 0.5
    # through the trainer: the optimizer's learning rate of the step after an expansion
    task = separable_task(32)
    model = _model()
    hooks = ProgressiveTraining(model, task, parse_schedule("50,full", rewarm=0.5))
    trainer = Trainer(
        model, task, task, TrainConfig(max_steps=12, batch_size=8, warmup_ratio=0.0), hooks=hooks
    )
    lrs = []
    for step in range(12):
        with hooks.step_context(step):
            trainer.train_step(list(range(8)), step)
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
    base = [trainer.config.lr * (12 - s) / 12 for s in range(12)]
    assert hooks.bounds == [4, 12]
    torch.testing.assert_close(torch.tensor(lrs[:4]), torch.tensor(base[:4]))
    torch.testing.assert_close(
        torch.tensor(lrs[4:8]), torch.tensor([base[s] * (s - 3) / 4 for s in range(4, 8)])
    )
    torch.testing.assert_close(torch.tensor(lrs[8:]), torch.tensor(base[8:]))
    assert hooks.summary().rewarm == 0.5


def test_the_lm_head_runs_at_the_read_slot_only() -> None:
    """Section 1, the read position: a masked LM's vocabulary projection sees one state per example."""
    model = _model(head="label_words")
    seen: list[tuple[int, ...]] = []
    lm = model.backbone.model.cls
    handle = lm.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    try:
        batch = model.encode(["good movie", "the plot was awful and dull"], labels=[1, 0])
        model(batch).sum().backward()
    finally:
        handle.remove()
    assert seen == [(2, model.backbone.hidden_size)]


def test_tune_runs_bucketed_with_a_warm_start_and_a_rewarmed_schedule(
    tmp_path: Path, model_dir: Path
) -> None:
    """Section 1, warm starts: TPT initialisation and FPT are options of the same `tune`, with bucketing."""
    import csv
    import json

    from skillneurons.cli import main

    data = tmp_path / "d.csv"
    task = _varied(48)
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([t, ["negative", "positive"][y]] for t, y in zip(task.texts, task.labels, strict=True))
    common = ["-q", "tune", "--model", str(model_dir), "--task", str(data), "--head", "linear"]
    common += ["--prompt-length", "3", "--max-length", "24", "--max-steps", "6", "--batch-size", "8"]
    common += ["--batching", "bucketed", "--bucket-batches", "2", "--dtype", "float32"]
    assert main([*common, "--out", str(tmp_path / "src")]) == 0
    init = tmp_path / "src" / "prompt.safetensors"
    out = tmp_path / "warm"
    args = ["--init-prompt", str(init), "--progressive", "50,full", "--progressive-rewarm", "0.5"]
    assert main([*common, *args, "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["train_config"]["batching"] == "bucketed" and res["progressive"]["rewarm"] == 0.5
    assert json.loads((out / "run.json").read_text())["init_prompt"] == str(init)
