"""The whole pipeline on a CUDA device (skipped without one): tune, find, perturb, prune.

Each step runs on a tiny model moved to the GPU, with bf16 autocast where the library uses it, and
its result is checked against the same step on the CPU (exactly where no autocast is involved).
"""

from __future__ import annotations

import pytest
import torch

from conftest import separable_task
from skillneurons.neurons.find import SkillNeurons, find_skill_neurons
from skillneurons.perturb import perturbation_sweep
from skillneurons.prompts import load_prompt
from skillneurons.pruning import prune_backbone, skill_keep_mask
from skillneurons.runs import tune_prompt
from skillneurons.testing import tiny_model
from skillneurons.training import TrainConfig, evaluate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_pipeline_on_cuda(tmp_path, family: str) -> None:  # type: ignore[no-untyped-def]
    task = separable_task(64)
    bb = tiny_model(family)
    bb.model.to("cuda")
    assert bb.device.type == "cuda"
    cfg = TrainConfig(max_steps=6, batch_size=16, eval_every=3, seed=0)
    res = tune_prompt(bb, task, tmp_path / "run", prompt_length=4, max_length=24, config=cfg, progress=False)
    assert 0.0 <= res["test_accuracy"] <= 1.0 and res["steps"] == 6
    prompt = tmp_path / "run" / "prompt.safetensors"

    # the saved prompt evaluates the same on the GPU in fp32 as on the CPU
    pm_gpu, _ = load_prompt(prompt, bb)
    cpu = tiny_model(family)
    pm_cpu, _ = load_prompt(prompt, cpu)
    part = task.subset(range(32))
    a_gpu = evaluate(pm_gpu, part, 16, precision="fp32", progress=False)
    a_cpu = evaluate(pm_cpu, part, 16, precision="fp32", progress=False)
    assert a_gpu["accuracy"] == a_cpu["accuracy"]
    assert a_gpu["loss"] == pytest.approx(a_cpu["loss"], abs=1e-4)

    found = find_skill_neurons(bb, [prompt], task, tmp_path / "neurons", controls=False, progress=False)
    neurons: SkillNeurons = found["neurons"]
    assert neurons.scores().shape[0] == bb.num_layers

    sweep = perturbation_sweep(pm_gpu, part, neurons, rhos=[0.1], mode="zero", draws=2, batch_size=16)
    assert len(sweep["points"]) == 1

    small = prune_backbone(bb, skill_keep_mask(neurons.mask(0.25), first_layer=0), neurons.token_mean)
    assert small.device.type == "cuda" and small.d_ff[0] < bb.d_ff[0]
    pm_small, _ = load_prompt(prompt, small)
    assert 0.0 <= evaluate(pm_small, part, 16, progress=False)["accuracy"] <= 1.0


@pytest.mark.parametrize("method", ["bitfit", "adapter", "lora"])
def test_delta_methods_on_cuda_reload_equal_to_cpu(  # type: ignore[no-untyped-def]
    tmp_path,
    method: str,
) -> None:
    task = separable_task(64)
    bb = tiny_model("bert")
    bb.model.to("cuda")
    cfg = TrainConfig(max_steps=4, batch_size=16, eval_every=2, seed=0, lr=1e-2)
    res = tune_prompt(bb, task, tmp_path / method, method=method, max_length=24, config=cfg, progress=False)
    assert res["steps"] == 4
    prompt = tmp_path / method / "prompt.safetensors"
    part = task.subset(range(32))
    on_gpu = evaluate(load_prompt(prompt, bb)[0], part, 16, precision="fp32", progress=False)
    on_cpu = evaluate(load_prompt(prompt, tiny_model("bert"))[0], part, 16, precision="fp32", progress=False)
    assert on_gpu["accuracy"] == on_cpu["accuracy"]
    assert on_gpu["loss"] == pytest.approx(on_cpu["loss"], abs=1e-4)


def test_progressive_tuning_and_projector_on_cuda(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from skillneurons.transfer.projector import apply_projector, train_projector

    task = separable_task(64)
    bb = tiny_model("bert")
    bb.model.to("cuda")
    cfg = TrainConfig(max_steps=8, batch_size=16, eval_every=4, seed=0)
    res = tune_prompt(
        bb,
        task,
        tmp_path / "fpt",
        prompt_length=3,
        max_length=24,
        config=cfg,
        progressive="50,full",
        progress=False,
    )
    stages = res["progressive"]["stages"]
    assert len(stages) == 2 and stages[0]["flops_per_step"] < stages[1]["flops_per_step"]
    target = tiny_model("roberta", hidden=48)
    target.model.to("cuda")
    proj = train_projector(
        tmp_path / "fpt" / "prompt.safetensors",
        target,
        tmp_path / "proj",
        task=task,
        inner=16,
        max_length=24,
        config=TrainConfig(max_steps=4, batch_size=16, eval_every=2, lr=1e-3),
        progress=False,
    )
    assert 0.0 <= proj["test_accuracy"] <= 1.0
    out = apply_projector(
        tmp_path / "proj" / "projector.safetensors",
        tmp_path / "fpt" / "prompt.safetensors",
        target,
        tmp_path / "applied",
        task=task,
        progress=False,
    )
    assert out is not None
