"""Data parallelism: 2 CPU processes (gloo, loopback) give the single-process statistics exactly and the
single-process prompt-tuning result up to float error."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from safetensors.torch import load_file

from conftest import separable_task
from skillneurons.neurons.collect import baseline_pass, predictivity_pass
from skillneurons.neurons.stats import FoldPlan
from skillneurons.prompts import PromptModel, SoftPrompt, build_head
from skillneurons.testing import tiny_model
from skillneurons.training import TrainConfig, Trainer

CHILD = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {tests!r})
    from safetensors.torch import save_file
    from conftest import separable_task
    from skillneurons.distributed import init_from_env, is_main, world_size
    from skillneurons.neurons.collect import baseline_pass, predictivity_pass
    from skillneurons.neurons.stats import FoldPlan
    from skillneurons.prompts import PromptModel, SoftPrompt, build_head
    from skillneurons.testing import tiny_model
    from skillneurons.training import TrainConfig, Trainer

    assert init_from_env() and world_size() == 2
    out = sys.argv[1]
    torch.manual_seed(0)
    bb = tiny_model("bert")
    pm = PromptModel(bb, SoftPrompt.create(bb, 3, std=0.5), build_head("linear", bb, [["bad"], ["good"]]),
                     max_length=24)
    base, token_mean = baseline_pass(pm, separable_task(45, seed=1), batch_size=8)
    dev = separable_task(37, seed=2)
    plan = FoldPlan.make(dev.labels, 2, 4, 5, 0)
    stats = predictivity_pass(pm, dev, base, batch_size=8, hist_bins=8, plan=plan)
    from skillneurons.perturb.scale import neuron_std
    from skillneurons.training import evaluate
    correct = torch.zeros(37, dtype=torch.bool)
    evaluate(pm, separable_task(37, seed=2), 8, correct=correct)
    std = neuron_std(pm, separable_task(45, seed=1), batch_size=8)
    cfg = TrainConfig(max_steps=6, batch_size=8, lr=0.05, eval_every=3, seed=0)
    from skillneurons.neurons import decompose
    from skillneurons.neurons.find import score_prompt
    sc = score_prompt(pm, separable_task(45, seed=1), dev, decompose(2), pooled=True, plan=plan, batch_size=8,
                      paired_rho=0.05)
    Trainer(pm, separable_task(40), separable_task(12, seed=3), cfg, progress=False).fit()
    if is_main():
        save_file({{"sum": base.sum, "count": torch.tensor(base.count), "token_mean": token_mean,
                   "above": stats.above, "hist": stats.hist, "counts": stats.class_counts,
                   "cf": stats.crossfit.counts, "cf_n": stats.crossfit.class_counts,
                   "cf_null": stats.crossfit.null,
                   "correct": correct, "std": std, "e1": sc["cf.examples_top1"], "ek": sc["cf.examples_topk"],
                   "pe1": sc["pooled.cf1.examples_top1"],
                   "prompt": pm.prompt.weight.detach(), "head": pm.head.linear.weight.detach()}}, out)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_gloo_processes_match_single_process(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent)))
    out = tmp_path / "dp.safetensors"
    port = str(_free_port())
    procs = []
    for r in range(2):
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "WORLD_SIZE": "2",
            "RANK": str(r),
            "LOCAL_RANK": str(r),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(subprocess.Popen([sys.executable, str(script), str(out)], env=env))
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    dp = load_file(out)

    torch.manual_seed(0)
    bb = tiny_model("bert")
    pm = PromptModel(
        bb, SoftPrompt.create(bb, 3, std=0.5), build_head("linear", bb, [["bad"], ["good"]]), max_length=24
    )
    base, token_mean = baseline_pass(pm, separable_task(45, seed=1), batch_size=8)
    dev = separable_task(37, seed=2)
    plan = FoldPlan.make(dev.labels, 2, 4, 5, 0)
    stats = predictivity_pass(pm, dev, base, batch_size=8, hist_bins=8, plan=plan)
    cf = stats.crossfit
    assert cf is not None and cf.null is not None
    assert torch.equal(dp["cf"], cf.counts) and torch.equal(dp["cf_n"], cf.class_counts)
    assert torch.equal(dp["cf_null"], cf.null)  # fold and null counts: int16 summed across ranks
    # statistics: exactly the single-process ones (whole batches per rank, sums of the same numbers)
    assert int(dp["count"]) == base.count == 45
    torch.testing.assert_close(dp["sum"], base.sum, rtol=1e-13, atol=1e-13)
    assert torch.equal(dp["above"], stats.above) and torch.equal(dp["counts"], stats.class_counts)
    assert stats.hist is not None and torch.equal(dp["hist"], stats.hist)
    torch.testing.assert_close(dp["token_mean"], token_mean, rtol=1e-6, atol=1e-7)
    # each example's part in the held-out figures (find's paired pass): summed across the ranks
    from skillneurons.neurons import decompose
    from skillneurons.neurons.find import score_prompt

    sc = score_prompt(
        pm,
        separable_task(45, seed=1),
        dev,
        decompose(2),
        pooled=True,
        plan=plan,
        batch_size=8,
        paired_rho=0.05,
    )
    for key, name in (
        ("e1", "cf.examples_top1"),
        ("ek", "cf.examples_topk"),
        ("pe1", "pooled.cf1.examples_top1"),
    ):
        torch.testing.assert_close(dp[key], sc[name], rtol=0, atol=1e-12)
    # per-example correctness (paired comparisons) and the per-neuron std: gathered across the ranks
    from skillneurons.perturb.scale import neuron_std
    from skillneurons.training import evaluate

    correct = torch.zeros(37, dtype=torch.bool)
    evaluate(pm, separable_task(37, seed=2), 8, correct=correct)
    assert torch.equal(dp["correct"], correct)
    torch.testing.assert_close(dp["std"], neuron_std(pm, separable_task(45, seed=1), batch_size=8))
    # training: the same updates up to float summation order
    cfg = TrainConfig(max_steps=6, batch_size=8, lr=0.05, eval_every=3, seed=0)
    Trainer(pm, separable_task(40), separable_task(12, seed=3), cfg, progress=False).fit()
    torch.testing.assert_close(dp["prompt"], pm.prompt.weight.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dp["head"], pm.head.linear.weight.detach(), rtol=1e-4, atol=1e-5)
