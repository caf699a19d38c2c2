"""The evidence of the perturbation experiments (issue 18 items 3-4): per-example correctness, paired
estimates equal to :mod:`skillneurons.evidence` on the result's own vectors, Wilson intervals, the
gaussian noise scaled by each neuron's train std, and old result files still readable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import separable_task
from skillneurons.backbones import record_neurons
from skillneurons.errors import ConfigError
from skillneurons.evidence import accuracy_ci, bootstrap_mean, paired_difference, wilson
from skillneurons.neurons import SkillRanking, decompose
from skillneurons.neurons.find import SkillNeurons
from skillneurons.perturb import Perturbation, cross_task_matrix, perturbation_sweep, perturbed
from skillneurons.perturb.config import CrossPerturbConfig, SweepConfig
from skillneurons.perturb.experiments import PromptRun, correctness
from skillneurons.perturb.results import CrossResult, SweepResult
from skillneurons.perturb.scale import neuron_std
from skillneurons.prompts import PromptModel, SoftPrompt, build_head
from skillneurons.testing import tiny_model
from skillneurons.training import evaluate

LAYERS, D_FF = 3, 48


def _pm(seed: int = 0) -> PromptModel:
    bb = tiny_model("bert", layers=LAYERS, d_ff=D_FF)
    torch.manual_seed(seed)
    prompt = SoftPrompt.create(bb, 3, "normal", std=0.5)
    return PromptModel(bb, prompt, build_head("auto", bb, [["bad"], ["good"]]), max_length=24)


def _neurons(seed: int = 0) -> SkillNeurons:
    g = torch.Generator().manual_seed(seed)
    subs = decompose(2)
    scores = 0.5 + 0.5 * torch.rand(LAYERS, D_FF, generator=g, dtype=torch.float64)
    return SkillNeurons(
        subs,
        {subs[0].name: SkillRanking(scores)},
        {subs[0].name: torch.zeros(LAYERS, D_FF, dtype=torch.int64)},
        torch.randn(LAYERS, D_FF, generator=g, dtype=torch.float64),
        {"task": "tiny"},
    )


def _vec(s: str | None) -> np.ndarray:
    assert s is not None
    return np.frombuffer(s.encode(), dtype=np.uint8).astype(np.float64) - ord("0")


def test_evaluate_returns_the_per_example_correctness_in_order() -> None:
    pm, task = _pm(), separable_task(50)
    out = torch.zeros(len(task), dtype=torch.bool)
    metrics = evaluate(pm, task, 7, correct=out)
    assert int(out.sum()) / len(task) == metrics["accuracy"]
    one = [evaluate(pm, task.subset([i]), 1)["accuracy"] == 1.0 for i in range(len(task))]
    assert out.tolist() == one
    with pytest.raises(ConfigError, match="shape"):
        evaluate(pm, task, correct=torch.zeros(3, dtype=torch.bool))


def test_sweep_carries_paired_estimates_of_its_own_per_example_vectors() -> None:
    pm, task, sn = _pm(), separable_task(60), _neurons()
    res = perturbation_sweep(pm, task, sn, SweepConfig(rho=(0.0, 0.2, 0.5), draws=3, mode="zero", seed=4))
    clean = _vec(res.unperturbed_correct)
    assert clean.mean() == res.unperturbed and clean.size == res.n_eval == len(task)
    assert res.unperturbed_ci == wilson(int(clean.sum()), clean.size)
    for p in res.points:
        skill = _vec(p.skill_correct)
        assert p.random_correct is not None and len(p.random_correct) == 3
        rand = np.stack([_vec(r) for r in p.random_correct])
        assert skill.mean() == p.skill and list(rand.mean(1)) == p.random.values
        assert p.skill_ci == wilson(int(skill.sum()), skill.size)
        assert p.paired == paired_difference(skill, rand, seed=4)
        assert p.skill_drop == paired_difference(clean, skill, seed=4)
        assert p.random_ci == bootstrap_mean(rand, seed=4)
        assert p.paired is not None and p.paired.p is not None and p.paired.method == "paired-bootstrap"
    # the vectors are the evaluations themselves: the skill condition re-run example by example
    mask = sn.mask(0.5, per_layer=True)
    again = correctness(pm, task, Perturbation("zero", mask))
    assert again.double().numpy().tolist() == _vec(res.points[2].skill_correct).tolist()
    # round trip, and a v1 file (no paired fields) still loads
    assert SweepResult.from_json(res.to_json()) == res
    old = res.to_json()
    old["schema_version"] = 1
    for key in ("unperturbed_ci", "unperturbed_correct", "sigma_scale"):
        old.pop(key)
    for p in old["points"]:
        for key in ("skill_ci", "random_ci", "paired", "skill_drop", "skill_correct", "random_correct"):
            p.pop(key)
    v1 = SweepResult.from_json(old)
    assert v1.points[1].paired is None and v1.points[1].skill == pytest.approx(res.points[1].skill)


def test_cross_matrix_cells_are_paired_with_their_column() -> None:
    task = separable_task(60)
    runs = [PromptRun(f"t{i}", _pm(i), task, neurons=_neurons(i), train_task=task) for i in range(2)]
    res = cross_task_matrix(runs, CrossPerturbConfig(rho=0.3, mode="zero", draws=2, seed=1))
    assert res.accuracy_ci is not None and res.drop_ci is not None and res.versus_random is not None
    rc = res.random_control
    assert rc.accuracy_ci is not None and rc.drop_ci is not None
    for a in range(2):
        for b in range(2):
            cell = correctness(runs[b].model, task, Perturbation("zero", _neurons(a).mask(0.3)))
            assert res.accuracy_ci[a][b] == wilson(int(cell.sum()), len(task))
            assert res.accuracy_ci[a][b].value == res.accuracy[a][b]
            d = res.drop_ci[a][b]
            assert d.value == pytest.approx(res.drop[a][b]) and d.method == "paired-bootstrap"
            vr = res.versus_random[a][b]
            assert vr is not None and rc.accuracy[b] is not None
            assert vr.value == pytest.approx(res.accuracy[a][b] - rc.accuracy[b])
    assert CrossResult.from_json(res.to_json()) == res


def test_neuron_std_equals_a_naive_pass_and_scales_the_noise() -> None:
    pm, task = _pm(), separable_task(40)
    batch = pm.encode(list(task.texts), None, list(task.labels))
    with torch.no_grad(), record_neurons(pm.backbone) as rec:
        pm(batch)
    full = torch.cat(
        [torch.ones(len(task), pm.prefix_length, dtype=torch.bool), batch.attention_mask.bool()], 1
    )
    naive = torch.stack([rec[layer][full].double().std(0, unbiased=False) for layer in range(LAYERS)])
    std = neuron_std(pm, task, batch_size=7)
    assert torch.allclose(std, naive, atol=1e-5)
    idx = pm.prompt_positions(batch)
    at_prompt = torch.stack(
        [
            torch.gather(rec[layer], 1, idx.unsqueeze(-1).expand(-1, -1, D_FF))
            .reshape(-1, D_FF)
            .double()
            .std(0, unbiased=False)
            for layer in range(LAYERS)
        ]
    )
    assert torch.allclose(neuron_std(pm, task, positions="prompt", batch_size=9), at_prompt, atol=1e-5)
    # the scaled noise: per neuron, std sigma * scale_i (many examples, one draw each)
    scale = torch.linspace(0.1, 3.0, D_FF, dtype=torch.float64).repeat(LAYERS, 1)
    big = pm.encode(["good movie"] * 3000)
    mask = torch.ones(LAYERS, D_FF, dtype=torch.bool)
    with torch.no_grad(), record_neurons(pm.backbone) as clean:
        pm(big)
    clean0 = clean[0].clone()
    p = Perturbation("gaussian", mask, sigma=0.5, seed=2, layers=[0], scale=scale)
    with torch.no_grad(), perturbed(pm, p), record_neurons(pm.backbone) as rec2:
        pm(big)
    eps = (rec2[0] - clean0)[:, 0].double()  # [examples, neurons]
    ratio = eps.std(0) / (0.5 * scale[0])
    assert float((ratio - 1).abs().max()) < 0.08
    # the same standard normal draws as the absolute noise (common random numbers)
    q = Perturbation("gaussian", mask, sigma=0.5, seed=2, layers=[0])
    with torch.no_grad(), perturbed(pm, q), record_neurons(pm.backbone) as rec3:
        pm(big)
    plain = (rec3[0] - clean0)[:, 0].double()
    assert torch.allclose(eps, plain * scale[0], atol=1e-4)
    with pytest.raises(ConfigError, match="noise scale"):
        Perturbation("gaussian", mask, scale=-scale)


def test_scaled_sweep_needs_the_train_split_and_records_the_scale() -> None:
    pm, task, sn = _pm(), separable_task(40), _neurons()
    cfg = SweepConfig(rho=(0.2,), draws=1, mode="gaussian", sigma=1.0)
    with pytest.raises(ConfigError, match="train split"):
        perturbation_sweep(pm, task, sn, cfg)
    std = neuron_std(pm, task)
    a = perturbation_sweep(pm, task, sn, cfg, train=task)
    assert a == perturbation_sweep(pm, task, sn, cfg, scale=std)
    assert a.sigma_scale == "neuron_std"
    absolute = perturbation_sweep(pm, task, sn, cfg, sigma_scale="absolute")
    assert absolute.sigma_scale == "absolute"


def test_accuracy_ci_from_a_reported_accuracy() -> None:
    assert accuracy_ci(0.725, 400) == wilson(290, 400)
    assert accuracy_ci(0.725, 400).format(n=True) == "0.725 [0.679, 0.766] (n=400)"
    with pytest.raises(ConfigError, match="fraction"):
        accuracy_ci(0.7251, 400)


def test_similarity_spearman_intervals_and_the_fast_resampled_ranks() -> None:
    from skillneurons import evidence
    from skillneurons.perturb import task_similarity
    from skillneurons.perturb.config import SimilarityConfig

    a, b = _neurons(0), _neurons(1)
    res = task_similarity({"a": a, "b": b}, SimilarityConfig(draws=200, seed=3))
    assert res.spearman_ci is not None and res.spearman_ci[0][0] is None
    e = res.spearman_ci[0][1]
    flat = [n.scores().reshape(-1).numpy() for n in (a, b)]
    assert e == evidence.spearman(*flat, draws=200, permutations=200, seed=3) == res.spearman_ci[1][0]
    assert e is not None and e.value == pytest.approx(res.spearman[0][1], abs=1e-9)
    assert task_similarity({"a": a, "b": b}, draws=0).spearman_ci is None
    # the O(n) resampled ranks equal ranking each resample (ties included)
    rng = np.random.default_rng(0)
    for ties in (False, True):
        x, y = rng.random(30), rng.random(30)
        if ties:
            x, y = np.round(x * 3), np.round(y * 2)
        idx = rng.integers(0, 30, size=(50, 30))
        fast = evidence._resampled_spearman(x, y, idx, chunk=7)
        slow = evidence._pearson_rows(evidence._rank(x[idx]), evidence._rank(y[idx]))
        assert np.array_equal(np.isnan(fast), np.isnan(slow))
        assert np.allclose(fast[~np.isnan(fast)], slow[~np.isnan(slow)], atol=1e-12)


def test_report_sections_print_the_paired_intervals(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from skillneurons.perturb import task_similarity
    from skillneurons.report.discovery import ResultFile
    from skillneurons.report.sections.perturbation import render_perturb_cross, render_perturb_sweep
    from skillneurons.report.sections.similarity import render_similarity

    pm, task, sn = _pm(), separable_task(60), _neurons()
    sweep = perturbation_sweep(pm, task, sn, SweepConfig(rho=(0.0, 0.2), draws=2, mode="zero"))
    page = str(render_perturb_sweep([ResultFile("perturb_sweep", Path("s.json"), sweep.to_json())]).body)
    p = sweep.points[1]
    assert p.skill_ci is not None and p.paired is not None
    assert p.skill_ci.format(3) in page and p.paired.format(3) in page and "paired" in page
    # an old (v1) file still renders, without the paired columns' figures
    old = sweep.to_json()
    for q in old["points"]:
        q.pop("paired")
        q.pop("skill_ci")
    assert "skill" in str(render_perturb_sweep([ResultFile("perturb_sweep", Path("s.json"), old)]).body)
    runs = [PromptRun(f"t{i}", _pm(i), task, neurons=_neurons(i), train_task=task) for i in range(2)]
    cross = cross_task_matrix(runs, CrossPerturbConfig(rho=0.3, mode="zero", draws=2))
    body = str(render_perturb_cross([ResultFile("perturb_cross", Path("c.json"), cross.to_json())]).body)
    assert cross.drop_ci is not None and cross.drop_ci[0][1].format(3) in body
    sim = task_similarity({"a": _neurons(0), "b": _neurons(1)}, draws=100)
    body = str(render_similarity([ResultFile("similarity", Path("m.json"), sim.to_json())]).body)
    assert sim.spearman_ci is not None and sim.spearman_ci[0][1] is not None
    assert sim.spearman_ci[0][1].format(3) in body and "permutation p" in body
    # the command line's table
    assert p.paired.format(4, p=True) in sweep.table() and "paired" in cross.table()


def test_demo_ends_with_the_paired_evidence(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from skillneurons import demo
    from skillneurons.evidence import Estimate

    bb = tiny_model("bert", layers=LAYERS, d_ff=D_FF)
    task = separable_task(600)
    monkeypatch.setattr(demo, "load_backbone", lambda name: bb)
    monkeypatch.setattr(demo, "load_task", lambda name: task)
    monkeypatch.setattr(demo, "DEMO_EPOCHS", 0.05)
    monkeypatch.setattr(demo, "DEMO_PROMPT_LENGTH", 3)
    summary = demo.run_demo(tmp_path / "demo", max_seeds=1, progress=False)
    out = capsys.readouterr().out
    sweep = SweepResult.load(tmp_path / "demo" / "perturb" / "perturb_sweep.json")
    pt = sweep.points[0]
    assert sweep.mode == "zero" and sweep.draws == 5 and pt.rho == 0.02 and pt.paired is not None
    rand = np.stack([_vec(r) for r in pt.random_correct or []])
    assert pt.paired == paired_difference(_vec(pt.skill_correct), rand, seed=0)
    ev = summary["perturbation"]
    assert Estimate.from_json(ev["skill_minus_random"]) == pt.paired and ev["n"] == sweep.n_eval
    assert pt.paired.format(4, p=True) in out and "paired difference skill - random" in out
    page = (tmp_path / "demo" / "report.html").read_text(encoding="utf-8")
    assert "skill − random" in page and pt.paired.format(3) in page
