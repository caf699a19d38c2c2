"""Delta tuning (BitFit, adapters, LoRA) on tiny models: only the method's tensors train, the backbone is
never written and is plain outside the tuned model's forward passes, artifacts reload exactly, runs
resume, and the skill-neuron perturbation experiment runs end to end."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import separable_task
from skillneurons.backbones import Backbone, has_hooks, record_neurons
from skillneurons.cli import main
from skillneurons.delta import (
    Adapters,
    BitFit,
    DeltaModel,
    LoRA,
    NoPrompt,
    build_method,
    delta_model,
    delta_perturbation,
)
from skillneurons.delta.lora import lora_layers_active
from skillneurons.errors import ConfigError
from skillneurons.neurons import SkillRanking, decompose
from skillneurons.neurons.find import SkillNeurons
from skillneurons.perturb import Perturbation, perturbation_sweep, perturbed
from skillneurons.prompts import PromptModel, SoftPrompt, build_head, load_prompt, save_prompt
from skillneurons.runs import evaluate_prompt, tune_prompt
from skillneurons.testing import tiny_model
from skillneurons.training import TrainConfig, Trainer

FAMILIES = ["bert", "roberta", "gpt2"]  # BERT-, RoBERTa- and GPT-2-style
METHODS = [
    ("bitfit", {}),
    ("adapter", {"placement": "pfeiffer"}),
    ("adapter", {"placement": "houlsby"}),
    ("lora", {"r": 4}),
]
IDS = ["bitfit", "pfeiffer", "houlsby", "lora"]


def _plain(bb: Backbone, layout: str = "auto") -> PromptModel:
    return PromptModel(
        bb,
        NoPrompt(bb.hidden_size),
        build_head("auto", bb, [["bad"], ["good"]]),
        layout=layout,
        max_length=24,
    )


def _dm(
    family: str,
    method: str,
    options: dict,  # type: ignore[type-arg]
    bb: Backbone | None = None,
) -> DeltaModel:
    bb = bb or tiny_model(family)
    torch.manual_seed(0)
    dm = delta_model(_plain(bb), method, options)
    assert isinstance(dm, DeltaModel)
    return dm


def _randomise(dm: DeltaModel, seed: int = 1, scale: float = 0.3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in dm.delta.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def _batch(dm: PromptModel, n: int = 6):  # type: ignore[no-untyped-def]
    t = separable_task(n)
    return dm.encode(list(t.texts), None, list(t.labels))


def _backbone_state(bb: Backbone) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in bb.model.state_dict().items() if "lora_" not in k}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("method", "options"), METHODS, ids=IDS)
def test_a_step_trains_only_the_method(
    family: str,
    method: str,
    options: dict,  # type: ignore[type-arg]
) -> None:
    dm = _dm(family, method, options)
    bb = dm.backbone
    before_bb = _backbone_state(bb)
    before_head = {k: v.clone() for k, v in dm.head.state_dict().items()}
    before_delta = {k: v.clone() for k, v in dm.delta.state_dict().items()}
    task = separable_task(16)
    trainer = Trainer(dm, task, task, TrainConfig(max_steps=1, batch_size=8, lr=1e-2), progress=False)
    assert {id(p) for p in trainer.params} == {id(p) for p in dm.delta.parameters()}  # the head here has none
    assert trainer.optimizer.param_groups[0]["lr"] == 1e-2  # the method's tensors train at lr, not head_lr
    trainer.train_step(list(range(8)), 0)
    after_bb = _backbone_state(bb)
    assert before_bb.keys() == after_bb.keys()
    assert all(
        torch.equal(before_bb[k], after_bb[k]) for k in before_bb
    )  # neuron weights and biases untouched
    assert all(torch.equal(v, dm.head.state_dict()[k]) for k, v in before_head.items())
    assert dm.prompt.length == 0
    changed = [k for k, v in dm.delta.state_dict().items() if not torch.equal(v, before_delta[k])]
    assert changed, "the method's own tensors did not move"
    if method == "lora":  # B starts at 0: only B gets a gradient on the first step
        assert all(k.endswith("B.weight") for k in changed)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("method", "options"), METHODS, ids=IDS)
def test_starts_at_the_backbone_and_is_scoped(
    family: str, method: str, options: dict, tmp_path: Path
) -> None:  # type: ignore[type-arg]
    bb = tiny_model(family)
    plain = _plain(bb)
    batch = _batch(plain)
    with torch.no_grad():
        ref = plain.hidden_states(batch)
    dm = _dm(family, method, options, bb)
    with torch.no_grad():
        assert torch.allclose(dm.hidden_states(batch), ref, atol=1e-6)  # zero init: the backbone itself
        _randomise(dm)
        tuned = dm.hidden_states(batch)
        assert not torch.allclose(tuned, ref, atol=1e-3)
        # outside the tuned model's forward pass the shared backbone is the plain pre-trained model
        assert torch.equal(plain.hidden_states(batch), ref)
    assert not has_hooks(bb) and not lora_layers_active(bb.model)
    # save and reload (on the same backbone) give identical predictions
    path = save_prompt(tmp_path / "m", dm, task={"name": "tiny-sentiment"})
    man = json.loads((tmp_path / "m.json").read_text())
    assert (
        man["method"] == method and man["method_options"] == dm.delta.options() and man["prompt_length"] == 0
    )
    again, _ = load_prompt(path, bb)
    assert isinstance(again, DeltaModel) and again.method == method
    with torch.no_grad():
        assert torch.equal(again(batch), dm(batch))
        assert torch.equal(again.hidden_states(batch), tuned)
    again.release()
    dm.release()
    with torch.no_grad():
        assert torch.equal(plain.hidden_states(batch), ref)
    if method == "lora":  # released: the backbone's modules are its own again
        assert not any(hasattr(m, "lora_A") for m in bb.model.modules())


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_bitfit_is_exactly_training_the_biases(family: str) -> None:
    dm = _dm(family, "bitfit", {})
    _randomise(dm, scale=0.5)
    batch = _batch(dm)
    with torch.no_grad():
        got = dm.hidden_states(batch)
    merged = copy.deepcopy(dm.backbone)
    body = merged.model.base_model
    assert isinstance(dm.delta, BitFit)
    with torch.no_grad():
        for name in dm.delta.module_names:
            body.get_submodule(name).bias += dm.delta.biases[name.replace(".", "__")]
    ref = PromptModel(merged, NoPrompt(merged.hidden_size), dm.head, layout=dm.layout, max_length=24)
    with torch.no_grad():
        assert torch.allclose(got, ref.hidden_states(batch), atol=1e-5)
    names = set(dm.delta.module_names)
    assert not any(n.startswith("pooler") for n in names)
    up = (
        f"{dm.backbone.layers_path.removeprefix(dm.backbone.model.base_model_prefix + '.')}"
        f".0.{dm.backbone.spec.up}"
    )
    assert up in names  # the FFN biases are biases too (as in BitFit); their weights stay frozen


def test_adapter_shapes_and_placements() -> None:
    bb = tiny_model("bert", layers=3)
    pf = build_method("adapter", bb, {"placement": "pfeiffer", "reduction": 8})
    ho = build_method("adapter", bb, {"placement": "houlsby", "reduction": 8, "activation": "gelu"})
    assert isinstance(pf, Adapters) and isinstance(ho, Adapters)
    assert sorted(pf.adapters) == ["0_ffn", "1_ffn", "2_ffn"]
    assert len(ho.adapters) == 6 and pf.bottleneck == 4  # hidden 32 / 8
    a = pf.adapters["0_ffn"]
    assert a.down.weight.shape == (4, 32) and a.up.weight.shape == (32, 4) and not a.up.weight.any()
    assert pf.trainable_parameters() == 3 * (32 * 4 + 4 + 4 * 32 + 32)


def test_lora_targets_defaults_and_refusals() -> None:
    bb = tiny_model("bert")
    lo = build_method("lora", bb, {"r": 2, "alpha": 4})
    assert isinstance(lo, LoRA) and lo.targets == ["attention.self.query", "attention.self.value"]
    assert lo.layers["0_0"]["A"].weight.shape == (2, 32) and not lo.layers["0_0"]["B"].weight.any()
    lo.release()
    g = tiny_model("gpt2")
    assert build_method("lora", g).targets == ["attn.c_attn"]  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="FFN matrix"):
        build_method("lora", bb, {"targets": ["output.dense"]})
    with pytest.raises(ConfigError, match="FFN matrix"):
        build_method("lora", tiny_model("llama"), {"targets": ["mlp.gate_proj"]})
    with pytest.raises(ConfigError, match="has no module"):
        build_method("lora", bb, {"targets": ["attention.self.nothing"]})
    with pytest.raises(ConfigError, match="integer r"):
        build_method("lora", bb, {"r": 0})


def test_bad_methods_and_options_are_config_errors() -> None:
    bb = tiny_model("bert")
    with pytest.raises(ConfigError, match="unknown tuning method"):
        build_method("prefix", bb)
    with pytest.raises(ConfigError, match="has no option 'rank'"):
        build_method("lora", bb, {"rank": 4})
    with pytest.raises(ConfigError, match="no bias terms"):
        build_method("bitfit", tiny_model("llama"))
    with pytest.raises(ConfigError, match="placement"):
        build_method("adapter", bb, {"placement": "parallel"})
    with pytest.raises(ConfigError, match="no method options"):
        delta_model(_plain(bb), "prompt", {"r": 1})


@pytest.mark.parametrize("family", ["llama", "t5", "distilbert", "mpnet"])
def test_other_families_run_adapters_and_lora(family: str) -> None:
    bb = tiny_model(family)
    for method, opts in [("adapter", {"placement": "houlsby"}), ("lora", {})]:
        head = build_head("linear" if family == "t5" else "auto", bb, [["bad"], ["good"]])
        dm = delta_model(PromptModel(bb, NoPrompt(bb.hidden_size), head, max_length=24), method, opts)
        _randomise(dm)  # type: ignore[arg-type]
        with torch.no_grad():
            assert dm(_batch(dm)).shape == (6, 2)
        dm.release()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("method", "options"), METHODS, ids=IDS)
def test_neuron_sites_and_perturbation_see_the_tuned_model(
    method: str,
    options: dict,  # type: ignore[type-arg]
) -> None:
    dm = _dm("bert", method, options)
    _randomise(dm)
    batch = _batch(dm)
    mask = torch.zeros(dm.backbone.num_layers, dm.backbone.d_ff[0], dtype=torch.bool)
    mask[0, :10] = True
    with torch.no_grad(), record_neurons(dm.backbone) as acts:
        clean = dm(batch)
    assert acts[0].shape == (6, batch.input_ids.shape[1] + 1, dm.backbone.d_ff[0])  # + the read slot
    with torch.no_grad(), perturbed(dm, Perturbation("zero", mask)), record_neurons(dm.backbone) as pacts:
        pert = dm(batch)
    assert not pacts[0][..., :10].any() and torch.equal(pacts[0][..., 10:], acts[0][..., 10:])
    assert not torch.equal(pert, clean)
    assert not has_hooks(dm.backbone)
    # positions="prompt" of a model without soft prompt = the read slot only
    with (
        torch.no_grad(),
        perturbed(dm, Perturbation("zero", mask, positions="prompt")),
        record_neurons(dm.backbone) as sacts,
    ):
        dm(batch)
    assert not sacts[0][:, 0, :10].any() and torch.equal(sacts[0][:, 1:], acts[0][:, 1:])
    dm.release()


def test_tune_resume_and_evaluate(tmp_path: Path) -> None:
    task = separable_task(64)
    cfg = TrainConfig(max_steps=6, batch_size=8, lr=5e-3, eval_every=2, seed=0)
    kw = dict(
        method="adapter",
        method_options={"placement": "houlsby"},
        head="linear",
        max_length=24,
        config=cfg,
        progress=False,
    )
    full = tune_prompt(tiny_model("bert"), task, tmp_path / "full", **kw)  # type: ignore[arg-type]
    assert full["method"] == "adapter" and full["prompt_length"] == 0 and full["trainable_parameters"] > 0
    assert full["method_options"]["placement"] == "houlsby"
    # an interrupted run (Ctrl-C after the step-4 checkpoint) resumes to the same tensors
    real = Trainer.train_step

    def stop(self: Trainer, idx: list[int], step: int) -> float:
        if step == 4:
            raise KeyboardInterrupt
        return real(self, idx, step)

    Trainer.train_step = stop  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            tune_prompt(tiny_model("bert"), task, tmp_path / "cut", **kw)  # type: ignore[arg-type]
    finally:
        Trainer.train_step = real  # type: ignore[method-assign]
    resumed = tune_prompt(tiny_model("bert"), task, tmp_path / "cut", **kw)  # type: ignore[arg-type]
    assert resumed["resumed_from_step"] == 4
    a, _ = load_prompt(tmp_path / "full" / "prompt.safetensors", tiny_model("bert"))
    b, _ = load_prompt(tmp_path / "cut" / "prompt.safetensors", tiny_model("bert"))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.allclose(va, vb, atol=1e-6), ka
    ev = evaluate_prompt(
        tmp_path / "full" / "prompt.safetensors", task, model=tiny_model("bert"), progress=False
    )
    assert ev["accuracy"] == pytest.approx(full["test_accuracy"])
    # Wilson intervals beside the floats (issue 18): on the run's dev and test sizes
    from skillneurons.evidence import accuracy_ci

    assert full.test_ci == accuracy_ci(full.test_accuracy, full.sizes["test"])
    assert full.dev_ci == accuracy_ci(full.best_dev_accuracy, full.sizes["dev"])
    assert ev.ci == accuracy_ci(ev.accuracy, ev.n) and "test accuracy" in full.accuracy_text()
    assert type(full).from_json(full.to_json()) == full


def _neurons(bb: Backbone, task: str = "tiny-sentiment") -> SkillNeurons:
    g = torch.Generator().manual_seed(0)
    L, N = bb.num_layers, bb.d_ff[0]
    subs = decompose(2)
    scores = 0.5 + 0.5 * torch.rand(L, N, generator=g, dtype=torch.float64)
    return SkillNeurons(
        subs,
        {subs[0].name: SkillRanking(scores)},
        {subs[0].name: torch.zeros(L, N, dtype=torch.int64)},
        torch.zeros(L, N, dtype=torch.float64),
        {"task": task},
    )


def _saved_runs(tmp_path: Path, bb: Backbone) -> list[Path]:
    task = separable_task(40)
    splits = task.split(0)
    out = []
    for method, opts in METHODS:
        d = tmp_path / f"{method}-{opts.get('placement', '')}"
        d.mkdir()
        splits.save(d / "split.json")
        dm = _dm("bert", method, opts, bb)
        _randomise(dm, scale=0.2)
        out.append(
            save_prompt(
                d / "prompt",
                dm,
                task={"name": task.name, "fingerprint": task.fingerprint()},
                split={"seed": 0, "file": "split.json"},
            )
        )
        dm.release()
    return out


def test_delta_perturbation_experiment(tmp_path: Path) -> None:
    bb = tiny_model("bert", layers=2, d_ff=40)
    sn = _neurons(bb)
    paths = _saved_runs(tmp_path, bb)
    task = separable_task(40)
    res = delta_perturbation(sn, paths, bb, task=task, rhos=[0.0, 0.1, 0.5], draws=3, out_dir=tmp_path / "o")
    assert [m["method"] for m in res["models"]] == ["bitfit", "adapter", "adapter", "lora"]
    for m in res["models"]:
        sw = m["sweep"]
        assert sw["mode"] == "zero" and sw["positions"] == "all" and sw["draws"] == 3
        s0 = m["summary"][0]
        assert s0["rho"] == 0.0 and s0["skill_drop"] == 0.0 and s0["random_drop"] == 0.0
        top = m["summary"][-1]
        assert top["neurons"] == 2 * 20
        assert top["skill_drop"] == pytest.approx(sw["unperturbed"] - sw["points"][-1]["skill"])
        assert top["random_drop"] == pytest.approx(sw["unperturbed"] - sw["points"][-1]["random"]["mean"])
        assert top["random_drop_ci95"][0] <= top["random_drop"] <= top["random_drop_ci95"][1]
        # the paired estimates of the sweep (same examples): skill - random is -gap
        paired = m.summary[-1].paired
        assert paired is not None and paired.value == pytest.approx(-top["gap"], abs=1e-6)
        assert paired.to_json() == sw["points"][-1]["paired"]
    assert not any(hasattr(m, "lora_A") for m in bb.model.modules())  # every loaded model was released
    # the same numbers as a direct sweep on the loaded model
    lo, _ = load_prompt(paths[3], bb)
    direct = perturbation_sweep(
        lo, task.split(0).part("test"), sn, rhos=[0.0, 0.1, 0.5], draws=3, mode="zero"
    )
    assert direct["points"] == res["models"][3]["sweep"]["points"]
    lo.release()  # type: ignore[attr-defined]
    # a rerun reuses the finished sweeps
    before = (tmp_path / "o" / "sweep_0.json").stat().st_mtime_ns
    again = delta_perturbation(
        sn, paths[:1], bb, task=task, rhos=[0.0, 0.1, 0.5], draws=3, out_dir=tmp_path / "o"
    )
    assert (tmp_path / "o" / "sweep_0.json").stat().st_mtime_ns == before
    assert again["models"][0] == res["models"][0]
    with pytest.raises(ConfigError, match="found on task 'other'"):
        delta_perturbation(_neurons(bb, "other"), paths[:1], bb, task=task, rhos=[0.1], draws=1)


def test_cli_tune_methods_and_delta_perturb(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = separable_task(60)
    data = tmp_path / "d.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([t, ["negative", "positive"][y]] for t, y in zip(task.texts, task.labels))
    common = [
        "-q",
        "tune",
        "--model",
        str(model_dir),
        "--task",
        str(data),
        "--max-length",
        "24",
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--head",
        "linear",
        "--lr",
        "1e-3",
        "--split-seed",
        "0",
    ]
    runs = {}
    for method, extra in [
        ("prompt", ["--prompt-length", "3"]),
        ("bitfit", []),
        ("adapter", ["--adapter-placement", "houlsby", "--adapter-reduction", "8"]),
        ("lora", ["--lora-r", "2", "--lora-targets", "attention.self.query"]),
    ]:
        runs[method] = tmp_path / method
        assert main([*common, "--out", str(runs[method]), "--method", method, *extra]) == 0
        res = json.loads((runs[method] / "results.json").read_text())
        assert res.get("method", "prompt") == method
    opts = json.loads((runs["lora"] / "prompt.json").read_text())["method_options"]
    assert opts["r"] == 2 and opts["targets"] == ["attention.self.query"]
    assert json.loads((runs["adapter"] / "prompt.json").read_text())["method_options"]["reduction"] == 8.0
    capsys.readouterr()
    assert (
        main(["-q", "evaluate", "--prompt", str(runs["lora"] / "prompt.safetensors"), "--task", str(data)])
        == 0
    )
    assert 0 <= json.loads(capsys.readouterr().out)["accuracy"] <= 1
    assert (
        main(
            [
                "-q",
                "find",
                str(runs["prompt"] / "prompt.safetensors"),
                "--out",
                str(tmp_path / "n"),
                "--task",
                str(data),
                "--no-controls",
            ]
        )
        == 0
    )
    capsys.readouterr()
    models = [str(runs[m] / "prompt.safetensors") for m in ("bitfit", "adapter", "lora")]
    assert (
        main(
            [
                "-q",
                "delta-perturb",
                "--neurons",
                str(tmp_path / "n" / "skill_neurons.safetensors"),
                "--models",
                *models,
                "--out",
                str(tmp_path / "dp"),
                "--rho",
                "0,0.1",
                "--draws",
                "2",
                "--task",
                str(data),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "bitfit" in out and "adapter-houlsby" in out and "lora" in out
    saved = json.loads((tmp_path / "dp" / "delta_perturb.json").read_text())
    assert [m["method"] for m in saved["models"]] == ["bitfit", "adapter", "lora"]
    assert saved["settings"]["mode"] == "zero" and (tmp_path / "dp" / "delta_perturb.png").is_file()
    assert (
        main(
            [
                "-q",
                "tune",
                "--model",
                str(model_dir),
                "--task",
                str(data),
                "--out",
                str(tmp_path / "bad"),
                "--method",
                "lora",
                "--lora-targets",
                "output.dense",
                "--max-steps",
                "1",
            ]
        )
        == 2
    )


def test_no_prompt_module() -> None:
    p = NoPrompt(8)
    assert isinstance(p, SoftPrompt) and p.length == 0 and p().shape == (0, 8) and not p.weight.requires_grad
    assert isinstance(p, nn.Module)


def test_peft_export_refuses_delta_models(tmp_path: Path) -> None:
    from skillneurons.prompts import export_peft

    dm = _dm("gpt2", "lora", {})
    with pytest.raises(ConfigError, match="holds no soft prompt"):
        export_peft(dm, tmp_path / "x")
    dm.release()


def test_a_checkpoint_of_other_method_options_is_not_resumed(tmp_path: Path) -> None:
    task = separable_task(32)
    cfg = TrainConfig(max_steps=2, batch_size=8, lr=1e-3, eval_every=1)
    kw = dict(method="lora", head="linear", max_length=24, config=cfg, progress=False)
    tune_prompt(
        tiny_model("bert"),
        task,
        tmp_path,
        method_options={"alpha": 16.0},
        **kw,  # type: ignore[arg-type]
    )
    with pytest.raises(ConfigError, match="different run"):
        tune_prompt(
            tiny_model("bert"),
            task,
            tmp_path,
            method_options={"alpha": 32.0},
            **kw,  # type: ignore[arg-type]
        )


def test_methods_on_a_backbone_still_holding_another_lora(tmp_path: Path) -> None:
    bb = tiny_model("bert")
    ref = build_method("bitfit", bb)
    keys = set(ref.state_dict())
    held = _dm("bert", "lora", {}, bb)  # not released: its PEFT wrappers stay in the shared backbone
    _randomise(held)
    bf = _dm("bert", "bitfit", {}, bb)
    # the same keys as on a clean backbone (no base_layer, no lora_)
    assert set(bf.delta.state_dict()) == keys
    _randomise(bf)
    batch = _batch(bf)
    with torch.no_grad():
        out = bf(batch)
    path = save_prompt(tmp_path / "b", bf)
    held.release()
    again, _ = load_prompt(path, bb)  # reloads on the clean backbone to the same predictions
    with torch.no_grad():
        assert torch.allclose(again(batch), out, atol=1e-6)
    # tune_prompt gives the backbone back clean
    tune_prompt(
        bb,
        separable_task(32),
        None,
        method="lora",
        head="linear",
        max_length=24,
        progress=False,
        config=TrainConfig(max_steps=1, batch_size=8, lr=1e-3),
    )
    assert not any(hasattr(m, "lora_A") for m in bb.model.modules())


@pytest.mark.parametrize(("method", "options"), METHODS, ids=IDS)
def test_delta_tensors_are_float32_on_a_bf16_backbone(
    method: str,
    options: dict,  # type: ignore[type-arg]
) -> None:
    bb = tiny_model("bert")
    nn.Module.to(bb.model, torch.bfloat16)
    assert bb.dtype == torch.bfloat16
    dm = _dm("bert", method, options, bb)
    params = dict(dm.delta.named_parameters())
    assert params and {p.dtype for p in params.values()} == {torch.float32}
    _randomise(dm)
    batch = _batch(dm)
    with torch.no_grad():
        out = dm(batch)
    assert out.shape == (6, 2) and torch.isfinite(out).all()
    # the method changes the output (its float32 tensors really take part)
    with torch.no_grad():
        plain = _plain(bb)(batch)
    assert not torch.allclose(out.float(), plain.float())
    dm.release()


def test_lora_dropout_is_refused(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bb = tiny_model("bert")
    with pytest.raises(ConfigError, match=r"LoRA dropout 0\.1 is not supported"):
        build_method("lora", bb, {"dropout": 0.1})
    assert not any(hasattr(m, "lora_A") for m in bb.model.modules())  # refused before injection
    ok = build_method("lora", bb, {"dropout": 0.0})
    assert ok.options()["dropout"] == 0.0
    ok.release()
    data = tmp_path / "d.csv"
    task = separable_task(20)
    with open(data, "w", newline="") as f:
        csv.writer(f).writerows([["text", "label"], *([t, str(y)] for t, y in zip(task.texts, task.labels))])
    capsys.readouterr()
    assert (
        main(
            [
                "-q",
                "tune",
                "--model",
                str(model_dir),
                "--task",
                str(data),
                "--out",
                str(tmp_path / "o"),
                "--method",
                "lora",
                "--lora-dropout",
                "0.1",
                "--max-steps",
                "1",
            ]
        )
        == 2
    )
    assert "LoRA dropout 0.1 is not supported" in capsys.readouterr().err


def test_tune_releases_the_lora_when_training_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    bb = tiny_model("bert")

    def boom(self: Trainer) -> None:
        assert any(hasattr(m, "lora_A") for m in bb.model.modules())  # the LoRA is in while training
        raise RuntimeError("training failed")

    monkeypatch.setattr(Trainer, "fit", boom)
    with pytest.raises(RuntimeError, match="training failed"):
        tune_prompt(
            bb,
            separable_task(32),
            None,
            method="lora",
            head="linear",
            max_length=24,
            progress=False,
            config=TrainConfig(max_steps=1, batch_size=8, lr=1e-3),
        )
    assert not any(hasattr(m, "lora_A") or hasattr(m, "base_layer") for m in bb.model.modules())
    assert not lora_layers_active(bb.model)


@pytest.mark.parametrize("method", ["bitfit", "adapter", "lora"])
def test_tune_refuses_an_initial_prompt_for_delta_methods(method: str, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=f"--init-prompt starts a soft prompt; --method {method} tunes no prompt"
    ):
        tune_prompt(
            tiny_model("bert"),
            separable_task(32),
            tmp_path,
            method=method,
            init_prompt=tmp_path / "p",
            progress=False,
        )
    assert not (tmp_path / "split.json").exists()  # refused before any work


@pytest.mark.parametrize("method", ["bitfit", "adapter", "lora"])
def test_a_failing_install_leaves_the_backbone_plain(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dm = _dm("bert", method, {})
    bb = dm.backbone

    def hooked() -> int:
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in bb.model.modules())

    base = hooked()
    delta = dm.delta
    if isinstance(delta, BitFit):  # the last bias has no tensor: fails after every other hook is on
        del delta.biases[list(delta.biases.keys())[-1]]
        err: type[Exception] = AttributeError  # ParameterDict's missing key
    elif isinstance(delta, Adapters):  # the last site does not exist
        layer, key, _ = delta.sites[-1]
        delta.sites[-1] = (layer, key, "no.such.module")
        err = AttributeError
    else:  # the last wrapped layer cannot switch on
        assert isinstance(delta, LoRA)
        last = delta._wrapped()[-1]
        real = getattr(type(last), "set_adapter")  # noqa: B009

        def fail(self: nn.Module, name: str, *a: object, **k: object) -> None:
            if self is last:
                raise RuntimeError("cannot switch")
            real(self, name, *a, **k)

        monkeypatch.setattr(type(last), "set_adapter", fail)
        err = RuntimeError
    with pytest.raises(err):
        with delta.attached():
            pass
    assert hooked() == base and not lora_layers_active(bb.model)
    monkeypatch.undo()
    dm.release()


def test_delta_perturb_resume_keys_on_neurons_and_task(tmp_path: Path) -> None:
    bb = tiny_model("bert", layers=2, d_ff=40)
    paths = _saved_runs(tmp_path, bb)[:1]
    task = separable_task(40)
    a, b = _neurons(bb), _neurons(bb)
    b.rankings[b.subtasks[0].name] = SkillRanking(1.0 - a.rankings[a.subtasks[0].name].scores + 0.5)
    na, nb = a.save(tmp_path / "na"), b.save(tmp_path / "nb")
    kw = dict(task=task, rhos=[0.0, 0.5], draws=2, out_dir=tmp_path / "o")
    first = delta_perturbation(na, paths, bb, **kw)  # type: ignore[arg-type]
    key = first["models"][0]["settings"]
    assert key["neurons"] == str(na) and len(key["neurons_sha256"]) == 64
    assert key["task_fingerprint"] == task.fingerprint()
    sweep = tmp_path / "o" / "sweep_0.json"
    stamp = sweep.stat().st_mtime_ns
    assert (
        delta_perturbation(na, paths, bb, **kw)["models"][0]  # type: ignore[arg-type]
        == first["models"][0]
    )
    assert sweep.stat().st_mtime_ns == stamp  # reused
    # other neurons into the same folder: recomputed, with their own skill points
    other = delta_perturbation(nb, paths, bb, **kw)["models"][0]  # type: ignore[arg-type]
    assert (
        other["settings"]["neurons"] == str(nb)
        and other["settings"]["neurons_sha256"] != key["neurons_sha256"]
    )
    assert (
        other["sweep"]["points"][1]["skill"]
        == perturbation_sweep(
            load_prompt(paths[0], bb)[0], task.split(0).part("test"), b, rhos=[0.0, 0.5], draws=2, mode="zero"
        )["points"][1]["skill"]
    )
    # the same path rewritten with other neurons: recomputed too
    b.save(tmp_path / "na")
    again = delta_perturbation(na, paths, bb, **kw)["models"][0]  # type: ignore[arg-type]
    assert again["settings"]["neurons_sha256"] == other["settings"]["neurons_sha256"]
    assert again["sweep"] == other["sweep"]
    # in-memory neurons: keyed on their tensors
    m1 = delta_perturbation(a, paths, bb, **kw)["models"][0]  # type: ignore[arg-type]
    m2 = delta_perturbation(b, paths, bb, **kw)["models"][0]  # type: ignore[arg-type]
    assert (
        m1["settings"]["neurons"] is None
        and m1["settings"]["neurons_sha256"] != m2["settings"]["neurons_sha256"]
    )
    assert m1["sweep"] == first["models"][0]["sweep"] and m2["sweep"] == other["sweep"]
    # the same model path re-tuned on another task (other texts): recomputed
    task2 = separable_task(80)
    task2.split(0).save(paths[0].parent / "split.json")
    dm = _dm("bert", "bitfit", {}, bb)
    _randomise(dm, scale=0.2)
    save_prompt(
        paths[0].parent / "prompt",
        dm,
        task={"name": task2.name, "fingerprint": task2.fingerprint()},
        split={"seed": 0, "file": "split.json"},
    )
    t2 = delta_perturbation(b, paths, bb, **{**kw, "task": task2})["models"][0]  # type: ignore[arg-type]
    assert t2["settings"]["task_fingerprint"] == task2.fingerprint() != task.fingerprint()
    assert t2["settings"]["artifact_sha256"] != m2["settings"]["artifact_sha256"]
    assert t2["sweep"]["n_eval"] == len(task2.split(0).part("test")) != m2["sweep"]["n_eval"]
    assert not any(hasattr(m, "lora_A") for m in bb.model.modules())


def test_delta_perturb_cli_loads_the_manifest_backbone_with_the_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import skillneurons.backbones.loading as backbones  # BackboneOptions.load goes through it

    bb = tiny_model("bert", layers=2, d_ff=40)
    paths = _saved_runs(tmp_path, bb)[:1]
    sn = _neurons(bb).save(tmp_path / "n")
    seen: dict[str, object] = {}

    def load(name: str, **kw: object) -> Backbone:
        seen.update(kw, name=name)
        raise ConfigError("stop here")

    monkeypatch.setattr(backbones, "load_backbone", load)
    assert (
        main(
            [
                "-q",
                "delta-perturb",
                "--neurons",
                str(sn),
                "--models",
                str(paths[0]),
                "--out",
                str(tmp_path / "o"),
                "--dtype",
                "bfloat16",
                "--device-map",
                "auto",
            ]
        )
        == 2
    )
    manifest = json.loads(paths[0].with_suffix(".json").read_text())
    assert seen["name"] == manifest["backbone"]["name"]
    assert seen["dtype"] == "bfloat16" and seen["device_map"] == "auto" and seen["trust_remote_code"] is False


def test_method_configs_are_torch_free_plugins_with_their_options() -> None:
    import subprocess
    import sys

    from skillneurons.delta import AdapterConfig, BitFitConfig, LoraConfig, method_config
    from skillneurons.prompts.methods import TUNING_METHODS

    code = (
        "import sys, skillneurons.delta.config, skillneurons.delta.lora.config, "
        "skillneurons.delta.adapter.config, skillneurons.delta.bitfit.config; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    lora = TUNING_METHODS.get("lora")
    assert lora.config is LoraConfig and lora.config_from_options({"r": 4}) == LoraConfig(r=4)
    assert TUNING_METHODS.get("bitfit").config is BitFitConfig
    assert method_config("adapter", {"reduction": 8}) == AdapterConfig(reduction=8.0)
    assert LoraConfig(targets="attention.self.query, attention.self.key").targets == (
        "attention.self.query",
        "attention.self.key",
    )
    with pytest.raises(ConfigError, match="has no option 'rank'"):
        lora.config_from_options({"rank": 4})
    with pytest.raises(ConfigError, match="placement"):
        AdapterConfig(placement="parallel")
    with pytest.raises(ConfigError, match="no method options"):
        TUNING_METHODS.get("prompt").config_from_options({"r": 1})
    bb = tiny_model("bert")
    dm = lora.wrap(_plain(bb), LoraConfig(r=2))
    assert isinstance(dm, DeltaModel) and dm.delta.options()["r"] == 2
    dm.release()
