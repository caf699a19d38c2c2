"""Perturbation experiments and task similarity on tiny models: exact edits, controls, files, CLI."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
import torch

from conftest import separable_task
from skillneurons.backbones import Backbone, has_hooks, record_neurons
from skillneurons.errors import ConfigError
from skillneurons.neurons import SkillRanking, decompose
from skillneurons.neurons.find import SkillNeurons
from skillneurons.perturb import (
    Perturbation,
    accuracy,
    cross_task_matrix,
    load_prompt_run,
    mean_ci,
    perturbation_sweep,
    perturbed,
    run_cross,
    run_similarity,
    run_sweep,
    task_similarity,
)
from skillneurons.perturb.config import CrossPerturbConfig, SimilarityConfig, SweepConfig
from skillneurons.perturb.interventions import Mode
from skillneurons.perturb.results import CrossResult, SimilarityResult, SweepResult
from skillneurons.prompts import PromptModel, SoftPrompt, build_head, save_prompt
from skillneurons.testing import tiny_model

LAYERS, D_FF = 3, 48


def _pm(family: str = "bert", layout: str = "auto", seed: int = 0, bb: Backbone | None = None) -> PromptModel:
    bb = bb or tiny_model(family, layers=LAYERS, d_ff=D_FF)
    torch.manual_seed(seed)
    prompt = SoftPrompt.create(bb, 3, "normal", std=0.5)
    head = build_head("linear" if family == "t5" else "auto", bb, [["bad"], ["good"]])
    return PromptModel(bb, prompt, head, layout=layout, max_length=24)


def _mask(seed: int = 0, p: float = 0.25, layers: int = LAYERS, d_ff: int = D_FF) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(layers, d_ff, generator=g) < p


def _neurons(seed: int = 0, layers: int = LAYERS, d_ff: int = D_FF, task: str = "tiny") -> SkillNeurons:
    g = torch.Generator().manual_seed(seed)
    subs = decompose(2)
    scores = 0.5 + 0.5 * torch.rand(layers, d_ff, generator=g, dtype=torch.float64)
    return SkillNeurons(
        subs,
        {subs[0].name: SkillRanking(scores)},
        {subs[0].name: torch.zeros(layers, d_ff, dtype=torch.int64)},
        torch.randn(layers, d_ff, generator=g, dtype=torch.float64),
        {"task": task},
    )


def _record(pm: PromptModel, batch: Any, perturbation: Perturbation | None = None) -> dict[int, torch.Tensor]:
    with torch.no_grad():
        if perturbation is None:
            with record_neurons(pm.backbone) as rec:
                pm(batch)
        else:
            with perturbed(pm, perturbation), record_neurons(pm.backbone) as rec:
                pm(batch)
    return dict(rec)


CASES = [("bert", "slot_first"), ("roberta", "prompt_first"), ("llama", "auto"), ("t5", "auto")]


@pytest.mark.parametrize(("family", "layout"), CASES)
@pytest.mark.parametrize("mode", ["zero", "mean", "gaussian"])
@pytest.mark.parametrize("positions", ["all", "prompt"])
def test_edits_exactly_the_chosen_neurons_positions_and_layers(
    family: str, layout: str, mode: str, positions: str
) -> None:
    pm = _pm(family, layout)
    # texts of different lengths: padding, and (prompt_first) a read position that differs per example
    batch = pm.encode(["good movie", "the plot was very bad and boring", "love it"])
    clean = _record(pm, batch)
    mask = _mask()
    base = torch.randn(LAYERS, D_FF, dtype=torch.float64)
    kw: dict[str, Any] = dict(sigma=0.3, seed=5, layers=[1], positions=positions, baseline=base)
    p = Perturbation(cast(Mode, mode), mask, **kw)
    got = _record(pm, batch, p)
    # layer 0 runs before the edit: untouched although the mask selects neurons there
    assert torch.equal(got[0], clean[0])
    a = clean[1]
    b, s, n = a.shape
    pos = torch.ones(b, s, dtype=torch.bool)
    if positions == "prompt":
        pos = torch.zeros(b, s, dtype=torch.bool)
        pos.scatter_(1, pm.prompt_positions(batch), True)
    sel = pos.unsqueeze(-1) & mask[1].view(1, 1, n)
    diff = got[1] - a
    if mode == "zero":
        expected = torch.where(sel, torch.zeros_like(a), a)
    elif mode == "mean":
        expected = torch.where(sel, base[1].float().view(1, 1, n).expand_as(a), a)
    else:
        # one draw per example and neuron: the same eps at every perturbed position of an example
        for i in range(b):
            first = int(pos[i].nonzero()[0, 0])
            eps_i = diff[i, first]
            torch.testing.assert_close(diff[i][pos[i]], eps_i.expand(int(pos[i].sum()), n), rtol=0, atol=1e-4)
        expected = torch.where(sel, got[1], a)
        assert float(diff[sel].abs().min()) > 0  # every chosen activation received noise
    assert torch.equal(got[1], expected)  # nothing outside (positions x neurons) changed, bit for bit
    assert not has_hooks(pm.backbone) and "embed" not in vars(pm)


def test_gaussian_noise_has_the_requested_scale_and_follows_the_seed() -> None:
    pm = _pm("bert")
    batch = pm.encode(["good movie"] * 64)
    full = torch.ones(LAYERS, D_FF, dtype=torch.bool)
    clean = _record(pm, batch)
    a = _record(pm, batch, Perturbation("gaussian", full, sigma=0.5, seed=1, layers=[0]))
    again = _record(pm, batch, Perturbation("gaussian", full, sigma=0.5, seed=1, layers=[0]))
    other = _record(pm, batch, Perturbation("gaussian", full, sigma=0.5, seed=2, layers=[0]))
    eps = (a[0] - clean[0])[:, 0]  # [64 examples, 48 neurons]
    assert abs(float(eps.std()) - 0.5) < 0.05 and abs(float(eps.mean())) < 0.05
    assert torch.equal(a[0], again[0]) and not torch.equal(a[0], other[0])
    assert not torch.equal(eps[0], eps[1])  # a fresh draw per example


def test_hooks_removed_when_the_body_raises_and_nesting_restores_everything() -> None:
    pm = _pm("roberta", "prompt_first")
    batch = pm.encode(["good movie", "bad"])
    p = Perturbation("zero", _mask(), positions="prompt")
    with pytest.raises(RuntimeError, match="boom"), perturbed(pm, p):
        raise RuntimeError("boom")
    assert not has_hooks(pm.backbone) and "embed" not in vars(pm)
    with perturbed(pm, p), perturbed(pm, mode="mean", mask=_mask(1), baseline=_neurons(), positions="prompt"):
        pm(batch)
    assert not has_hooks(pm.backbone) and "embed" not in vars(pm)


def test_zero_fraction_reproduces_the_unperturbed_accuracy_exactly() -> None:
    pm = _pm("bert")
    task = separable_task(40)
    clean = accuracy(pm, task)
    empty = torch.zeros(LAYERS, D_FF, dtype=torch.bool)
    for mode in ("gaussian", "zero", "mean"):
        assert accuracy(pm, task, Perturbation(cast(Mode, mode), empty, baseline=_neurons())) == clean
    res = perturbation_sweep(pm, task, _neurons(), SweepConfig(rho=(0.0, 0.1), draws=3, mode="zero"))
    first = res.points[0]
    assert res.unperturbed == clean and first.skill == clean and first.random.values == [clean] * 3
    assert first.neurons == 0 and res.points[1].neurons_per_layer == [5] * LAYERS  # 10% of 48


def test_sweep_is_reproducible_and_the_control_matches_the_skill_counts() -> None:
    pm = _pm("bert")
    task = separable_task(40)
    sn = _neurons()
    cfg = SweepConfig(rho=(0.0, 0.1, 0.3), draws=4, mode="gaussian", sigma=2.0, positions="prompt", seed=3)
    a = perturbation_sweep(pm, task, sn, cfg, train=task)
    b = perturbation_sweep(pm, task, sn, cfg, train=task)
    assert a == b and a.sigma_scale == "neuron_std"
    for p in a.points:
        assert len(p.random.values) == 4
        lo, hi = p.random.ci95
        assert lo is not None and hi is not None and p.random.mean is not None
        assert lo <= p.random.mean <= hi
    restricted = perturbation_sweep(pm, task, sn, SweepConfig(rho=(0.1,), draws=2, mode="zero", layers=(-1,)))
    assert restricted.points[0].neurons_per_layer == [0, 0, 5]
    # the former keyword spelling still works
    assert perturbation_sweep(pm, task, sn, rhos=[0.1], draws=2, mode="zero", layers=[-1]) == restricted


def test_mean_ci() -> None:
    r = mean_ci([0.5, 0.7])
    lo, hi = r.ci95
    assert r.mean == pytest.approx(0.6) and lo is not None and hi is not None and lo < 0.5 and hi > 0.7
    assert mean_ci([0.4]).ci95 == [None, None]


def test_cross_task_matrix_and_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bb = tiny_model("bert", layers=LAYERS, d_ff=D_FF)
    task = separable_task(60)
    splits = task.split(0)
    prompts, neurons = [], []
    for i in range(2):
        run = tmp_path / f"t{i}"
        splits.save(run / "split.json")
        pm = _pm("bert", seed=i, bb=bb)
        man = {
            "task": {"name": task.name, "fingerprint": task.fingerprint()},
            "split": {"seed": 0, "file": "split.json"},
        }
        prompts.append(save_prompt(run / "prompt", pm, **man))
        neurons.append(_neurons(i).save(run / "neurons" / "skill_neurons"))
    runs = [load_prompt_run(p, bb, task=task, neurons=n) for p, n in zip(prompts, neurons)]
    assert len(runs[0].eval_task) == len(splits.test)
    runs[1].name = "other"
    res = cross_task_matrix(runs, CrossPerturbConfig(rho=0.2, mode="mean", draws=2))
    assert len(res.accuracy) == 2 and all(len(r) == 2 for r in res.accuracy)
    for a in range(2):
        for b in range(2):
            assert res.drop[a][b] == pytest.approx(res.unperturbed[b] - res.accuracy[a][b])
    assert len(res.random_control.accuracy) == 2
    # from artifacts, to files
    sweep = run_sweep(
        prompts[0], neurons[0], tmp_path / "out", SweepConfig(rho=(0, 0.1), draws=2), model=bb, task=task
    )
    assert (
        json.loads((tmp_path / "out" / "perturb_sweep.json").read_text())["points"]
        == sweep.to_json()["points"]
    )
    assert SweepResult.load(tmp_path / "out" / "perturb_sweep.json") == sweep
    assert (tmp_path / "out" / "perturb_sweep.png").stat().st_size > 1000
    cross = run_cross(
        prompts, neurons, tmp_path / "out", CrossPerturbConfig(rho=0.1, draws=1), model=bb, tasks=[task, task]
    )
    assert cross.tasks == ["tiny-sentiment:t0", "tiny-sentiment:t1"]
    assert CrossResult.load(tmp_path / "out" / "perturb_cross.json") == cross
    assert (tmp_path / "out" / "perturb_cross.png").is_file()
    with pytest.raises(ConfigError, match="repeat"):
        cross_task_matrix([runs[0], runs[0]], CrossPerturbConfig(rho=0.1))


def test_similarity_of_a_ranking_with_itself_is_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b = _neurons(0, task="a"), _neurons(1, task="b")
    res = task_similarity({"a": a, "a again": a, "b": b}, SimilarityConfig(rho=0.1))
    assert res.spearman[0][1] == pytest.approx(1.0) and res.spearman[0][0] == pytest.approx(1.0)
    assert res.spearman_per_layer[0][1] == pytest.approx([1.0] * LAYERS)
    assert res.spearman_layer_mean[0][1] == pytest.approx(1.0)
    assert res.jaccard[0][1] == 1.0 and res.intersection[0][1] == res.set_size[0] == 5 * LAYERS
    independent = res.spearman[0][2]
    assert independent is not None and abs(independent) < 0.2  # independent random scores
    assert res.chance_jaccard[0][2] == pytest.approx(5 / 48 * 5 / (10 - 5 * 5 / 48))
    assert res.spearman[2][0] == res.spearman[0][2]  # symmetric
    paths = [a.save(tmp_path / "a" / "skill_neurons"), b.save(tmp_path / "b" / "skill_neurons")]
    out = run_similarity(paths, tmp_path / "sim", SimilarityConfig(rho=0.1))
    assert out.tasks == ["a", "b"]
    assert SimilarityResult.load(tmp_path / "sim" / "similarity.json") == out
    for name in (
        "similarity.json",
        "similarity_spearman.png",
        "similarity_jaccard.png",
        "similarity_spearman_layers.png",
    ):
        assert (tmp_path / "sim" / name).is_file()


def _one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg
    return msg


def test_bad_input_gives_one_line_config_errors() -> None:
    pm = _pm("bert")
    with pytest.raises(ConfigError) as e:
        with perturbed(pm, Perturbation("zero", torch.zeros(LAYERS, D_FF + 1, dtype=torch.bool))):
            pass
    assert "mask made for this model" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        Perturbation("scale", _mask())  # type: ignore[arg-type]
    assert "unknown" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        Perturbation("zero", torch.zeros(D_FF, dtype=torch.bool))
    _one_line(e)
    with pytest.raises(ConfigError) as e:
        Perturbation("mean", _mask())
    assert "token_mean" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        Perturbation("mean", _mask(), baseline=torch.zeros(2, 2))
    _one_line(e)
    with pytest.raises(ConfigError) as e:
        Perturbation("zero", torch.full((LAYERS, D_FF), 0.5))
    _one_line(e)
    with pytest.raises(ConfigError) as e:
        Perturbation("gaussian", _mask(), sigma=-1)
    _one_line(e)
    with pytest.raises(ConfigError) as e:
        Perturbation("zero", _mask(), positions="text")  # type: ignore[arg-type]
    _one_line(e)
    with (
        pytest.raises(ConfigError) as e,
        perturbed(pm.backbone, Perturbation("zero", _mask(), positions="prompt")),
    ):
        pass
    assert "PromptModel" in _one_line(e)
    with pytest.raises(ConfigError) as e, perturbed(pm, Perturbation("zero", _mask(), layers=[7])):
        pass
    _one_line(e)
    with pytest.raises(ConfigError) as e:
        perturbation_sweep(pm, separable_task(10), _neurons(), SweepConfig(rho=(1.5,)))
    _one_line(e)
    with pytest.raises(ConfigError) as e:
        perturbation_sweep(pm, separable_task(10), _neurons(d_ff=D_FF + 2))
    _one_line(e)
    assert not has_hooks(pm.backbone)


def test_backbone_target_perturbs_any_model_using_it() -> None:
    pm = _pm("llama")
    batch = pm.encode(["good movie", "bad"])
    clean = _record(pm, batch)
    with torch.no_grad(), perturbed(pm.backbone, mode="zero", mask=_mask(), layers=[0]):
        with record_neurons(pm.backbone) as rec:
            pm(batch)
    assert torch.equal(rec[0], torch.where(_mask()[0].view(1, 1, -1), torch.zeros_like(clean[0]), clean[0]))


def test_cli_commands(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import skillneurons.rundir as rundir
    from skillneurons.backbones.config import BackboneOptions

    bb = tiny_model("bert", layers=LAYERS, d_ff=D_FF)
    task = separable_task(60)
    splits = task.split(0)
    splits.save(tmp_path / "run" / "split.json")
    man = {
        "task": {"name": task.name, "fingerprint": task.fingerprint()},
        "split": {"seed": 0, "file": "split.json"},
    }
    prompt = save_prompt(tmp_path / "run" / "prompt", _pm("bert", bb=bb), **man)
    neurons = _neurons().save(tmp_path / "neurons" / "skill_neurons")
    monkeypatch.setattr(BackboneOptions, "load", lambda self, name: bb)
    monkeypatch.setattr(rundir.data, "load_task", lambda name: task)
    from skillneurons.cli import build_parser

    def run(*argv: str) -> None:
        args = build_parser().parse_args(["-q", *argv])
        assert args._run(args) == 0

    run(
        "perturb",
        "--prompt",
        str(prompt),
        "--neurons",
        str(neurons),
        "--out",
        str(tmp_path / "o"),
        "--rho",
        "0,0.1",
        "--draws",
        "2",
        "--mode",
        "zero",
        "--positions",
        "prompt",
    )
    assert "unperturbed accuracy" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "perturb_sweep.json").read_text())["positions"] == "prompt"
    run(
        "cross-perturb",
        "--prompts",
        str(prompt),
        "--neurons",
        str(neurons),
        "--out",
        str(tmp_path / "o"),
        "--rho",
        "0.1",
        "--draws",
        "1",
        "--layers",
        "0,2",
    )
    assert "random" in capsys.readouterr().out
    run("similarity", str(neurons), str(neurons), "--names", "x,y", "--out", str(tmp_path / "o"))
    assert json.loads((tmp_path / "o" / "similarity.json").read_text())["tasks"] == ["x", "y"]
    with pytest.raises(ConfigError, match="comma-separated"):
        run(
            "perturb",
            "--prompt",
            str(prompt),
            "--neurons",
            str(neurons),
            "--out",
            str(tmp_path / "o"),
            "--rho",
            "a,b",
        )


def test_gradients_flow_through_a_perturbation_after_an_evaluation() -> None:
    pm = _pm("roberta", "prompt_first")
    task = separable_task(8)
    batch = pm.encode(list(task.texts), labels=list(task.labels))
    with perturbed(pm, mode="mean", mask=_mask(), baseline=_neurons(), positions="prompt"):
        accuracy(pm, task)  # under inference mode
        loss = torch.nn.functional.cross_entropy(pm(batch), batch.labels)
        loss.backward()
    assert pm.prompt.weight.grad is not None and float(pm.prompt.weight.grad.abs().sum()) > 0
