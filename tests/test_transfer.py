"""Prompt transferability on tiny models: indicators against hand-computed values, the transfer
matrix (its diagonal equals plain evaluation), transfer as initialisation, the cross-model
projector for mismatched widths, the speed-up comparison, and the CLI."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import separable_task
from skillneurons.backbones import record_neurons
from skillneurons.errors import ArtifactError, ConfigError
from skillneurons.neurons import SkillRanking, decompose
from skillneurons.neurons.find import SkillNeurons
from skillneurons.prompts import PromptModel, SoftPrompt, build_head, load_prompt
from skillneurons.runs import evaluate_prompt, tune_prompt
from skillneurons.testing import tiny_model
from skillneurons.training import TrainConfig
from skillneurons.transfer import (
    OnOptions,
    ProjectedPrompt,
    PromptProjector,
    activated_neurons,
    apply_projector,
    compare_runs,
    correlations,
    e_avg,
    e_tok,
    initial_prompt,
    load_projector,
    neuron_overlap,
    pearson,
    run_transfer_matrix,
    spearman,
    steps_to_reach,
    train_projector,
    transfer_matrix,
    transferability,
)

LAYERS, D_FF = 3, 40
CONFIG = TrainConfig(max_steps=3, batch_size=8, eval_every=1, lr=0.05)


# ---- indicators on hand-made values ------------------------------------------------------------


def test_embedding_similarity_by_hand() -> None:
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    q = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # means (0.5, 0.5) and (1, 0.5): cos = 0.75 / (sqrt(0.5) sqrt(1.25))
    assert e_avg(p, q) == pytest.approx(0.75 / math.sqrt(0.5 * 1.25))
    # aligned: cos(p0, q0) = 1, cos(p1, q1) = 1/sqrt(2)
    assert e_tok(p, q) == pytest.approx((1 + 1 / math.sqrt(2)) / 2)
    # all pairs: cos(p0,q0)=1, cos(p0,q1)=1/sqrt2, cos(p1,q0)=0, cos(p1,q1)=1/sqrt2
    assert e_tok(p, q, aligned=False) == pytest.approx((1 + 2 / math.sqrt(2)) / 4)
    assert e_avg(p, p) == pytest.approx(1.0) and e_tok(q, q) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="one length"):
        e_tok(p, q[:1])
    assert e_tok(p, q[:1], aligned=False) == pytest.approx((1 + 0) / 2)
    with pytest.raises(ConfigError, match="widths"):
        e_avg(p, torch.ones(2, 3))


def test_neuron_overlap_by_hand() -> None:
    a = torch.tensor([[True, True, False, False, True]])
    b = torch.tensor([[True, False, True, False, True]])
    assert neuron_overlap(a, b) == pytest.approx(2 / math.sqrt(3 * 3))
    within = torch.tensor([[True, True, True, False, False]])  # A -> {0, 1}, B -> {0, 2}
    assert neuron_overlap(a, b, within) == pytest.approx(1 / math.sqrt(2 * 2))
    assert math.isnan(neuron_overlap(a, torch.zeros_like(b)))
    with pytest.raises(ConfigError, match="cannot be compared"):
        neuron_overlap(a, b[:, :3])


def test_correlations_by_hand() -> None:
    x = [1.0, 2.0, 3.0, 4.0]
    # ranks differ by one swap: 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman(x, [1.0, 3.0, 2.0, 4.0]) == pytest.approx(0.8)
    assert spearman(x, [1.0, 4.0, 9.0, 16.0]) == pytest.approx(1.0)
    y = [2.0, 4.0, 5.0, 4.0]  # by hand: sum dx dy = 3.5, sum dx^2 = 5, sum dy^2 = 4.75
    assert pearson(x, y) == pytest.approx(3.5 / math.sqrt(5 * 4.75))
    c = correlations([*x, None, float("nan")], [*y, 1.0, 2.0])  # the missing pairs are dropped
    assert c["n"] == 4 and c["pearson"] == pytest.approx(3.5 / math.sqrt(5 * 4.75))
    # the Spearman estimate of skillneurons.evidence over the same (clean) pairs: interval and perm. p
    from skillneurons import evidence

    assert c["spearman_ci"] == evidence.spearman(x, y).to_json()
    assert c["spearman_ci"]["value"] == pytest.approx(c["spearman"]) and c["spearman_ci"]["p"] > 0
    assert spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None and spearman(x[:2], x[:2]) is None


@pytest.mark.parametrize(
    ("family", "layout"), [("bert", "slot_first"), ("roberta", "prompt_first"), ("llama", "auto")]
)
def test_activated_neurons_match_a_manual_recording(family: str, layout: str) -> None:
    bb = tiny_model(family, layers=LAYERS, d_ff=D_FF)
    torch.manual_seed(0)
    pm = PromptModel(
        bb,
        SoftPrompt.create(bb, 4, std=0.5),
        build_head("linear", bb, [["bad"], ["good"]]),
        layout=layout,
        max_length=24,
    )
    text = "" if family != "llama" else "it"
    batch = pm.encode([text])
    with torch.no_grad(), record_neurons(bb) as rec:
        pm.hidden_states(batch)
    read = int(batch.read_index[0])
    soft = list(range(1, 5)) if pm.layout == "slot_first" else list(range(4))
    on = activated_neurons(pm, OnOptions(texts=[text]))
    assert on.shape == (LAYERS, 1, D_FF) and on.dtype == torch.bool
    for layer in range(LAYERS):
        assert torch.equal(on[layer, 0], rec[layer][0, read] > 0)
    window = activated_neurons(pm, OnOptions(texts=[text], layers=[1, 2], threshold=0.1, position="prompt"))
    assert window.shape == (2, 4, D_FF)
    assert torch.equal(window[0], rec[1][0, soft] > 0.1)
    mean = activated_neurons(pm, OnOptions(texts=[text, text + " good"], position="prompt_mean"))
    b2 = pm.encode([text, text + " good"])
    with torch.no_grad(), record_neurons(bb) as rec2:
        pm.hidden_states(b2)
    pos = soft if pm.layout == "slot_first" else list(range(4))
    assert torch.equal(mean[0, 0], rec2[0][:, pos].mean(1).mean(0) > 0)
    with pytest.raises(ConfigError, match="position"):
        OnOptions(position="mask")  # type: ignore[arg-type]


# ---- prompts with runs on disk -----------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two tiny tasks with a tuned prompt each (own split.json), on one tiny BERT."""
    d = tmp_path_factory.mktemp("transfer")
    bb = tiny_model("bert", layers=LAYERS, d_ff=D_FF)
    a = separable_task(40, seed=0)
    b = dataclasses.replace(separable_task(40, seed=1), name="tiny-b")
    out = {}
    for name, task in (("a", a), ("b", b)):
        res = tune_prompt(bb, task, d / name, prompt_length=3, max_length=24, config=CONFIG, progress=False)
        out[name] = Path(res["prompt"])
    return {"bb": bb, "a": a, "b": b, "pa": out["a"], "pb": out["b"], "dir": d}


def test_own_prompt_through_the_transfer_path_equals_plain_evaluation(
    runs: dict,  # type: ignore[type-arg]
) -> None:
    bb, pa, pb = runs["bb"], runs["pa"], runs["pb"]
    tasks = {"tiny-sentiment": runs["a"], "tiny-b": runs["b"]}
    res = transfer_matrix([pa, pb], bb, tasks=tasks, progress=False)
    plain_a = evaluate_prompt(pa, runs["a"], model=bb, progress=False)["accuracy"]
    plain_b = evaluate_prompt(pb, runs["b"], model=bb, progress=False)["accuracy"]
    assert res["own"] == [pytest.approx(plain_a), pytest.approx(plain_b)]
    assert res["accuracy"][0][0] == pytest.approx(plain_a) and res["accuracy"][1][1] == pytest.approx(plain_b)
    assert res["relative"][0][0] == pytest.approx(1.0)
    from skillneurons.evidence import accuracy_ci

    cells = res.to_json()["accuracy_ci"]
    assert cells[0][1] == accuracy_ci(res.accuracy[0][1], res.n_eval[1]).to_json()  # type: ignore[arg-type]
    assert res.own_ci()[0] == accuracy_ci(res.own[0], res.n_eval[0])  # type: ignore[arg-type]
    # the off-diagonal cell: a's prompt with b's head, format and test split
    pm_b, _ = load_prompt(pb, bb)
    pm_a, _ = load_prompt(pa, bb)
    pm_b.prompt = SoftPrompt(pm_a.prompt.weight)
    from skillneurons.training import evaluate

    test_b = res["n_eval"][1]
    cross = evaluate_prompt(pb, runs["b"], model=bb, progress=False)  # same split as the matrix column
    assert cross["n"] == test_b
    from skillneurons.rundir import RunDir

    part = RunDir.of(pb).part("test", runs["b"])
    assert res["accuracy"][0][1] == pytest.approx(evaluate(pm_b, part)["accuracy"])
    assert res["relative"][0][1] == pytest.approx(res["accuracy"][0][1] / res["own"][1])
    assert res["same_task"] == [[True, False], [False, True]] and res["same_head"][0][1] is True
    assert res["sources"] == ["tiny-sentiment", "tiny-b"]


def test_transfer_matrix_file_resumes(
    runs: dict,  # type: ignore[type-arg]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import skillneurons.transfer.matrix as m

    tasks = {"tiny-sentiment": runs["a"], "tiny-b": runs["b"]}
    first = run_transfer_matrix(
        [runs["pa"], runs["pb"]], tmp_path, model=runs["bb"], tasks=tasks, progress=False
    )
    calls = []
    monkeypatch.setattr(
        m,
        "transfer_accuracy",
        lambda *a, **k: calls.append(1) or {"accuracy": 0.0},  # type: ignore[func-returns-value]
    )
    again = run_transfer_matrix(
        [runs["pa"], runs["pb"]], tmp_path, model=runs["bb"], tasks=tasks, progress=False
    )
    assert not calls and again["accuracy"] == first["accuracy"]
    assert json.loads((tmp_path / "transfer_matrix.json").read_text())["accuracy"] == first["accuracy"]


def test_tune_from_another_prompt(runs: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    bb, pa = runs["bb"], runs["pa"]
    start = initial_prompt(bb, pa, 3)
    pm, _ = load_prompt(pa, bb)
    assert torch.equal(start.weight, pm.prompt.weight) and start.weight.requires_grad
    res = tune_prompt(
        bb,
        runs["b"],
        tmp_path / "tpt",
        prompt_length=3,
        max_length=24,
        init_prompt=pa,
        config=TrainConfig(max_steps=1, batch_size=8, eval_every=1, lr=1e-9),
        progress=False,
    )
    tuned, _ = load_prompt(res["prompt"], bb)
    assert torch.allclose(tuned.prompt.weight, pm.prompt.weight, atol=1e-6)  # lr ~ 0: still the source
    with pytest.raises(ConfigError, match="--prompt-length 3"):
        initial_prompt(bb, pa, 5)
    other = tiny_model("bert", layers=LAYERS, d_ff=D_FF, hidden=48)
    with pytest.raises(ArtifactError, match="hidden_size"):
        initial_prompt(other, pa, 3)
    with pytest.raises(ConfigError, match="project it"):
        initial_prompt(other, SoftPrompt(torch.zeros(3, 32)), 3)


# ---- the projector -------------------------------------------------------------------------


def test_projector_shapes_for_mismatched_widths() -> None:
    proj = PromptProjector(4, 32, 48, inner=16)
    assert proj.net[0].weight.shape == (16, 4 * 32) and proj.net[2].weight.shape == (4 * 48, 16)
    assert isinstance(proj.net[1], torch.nn.Tanh) and proj.norm.normalized_shape == (48,)
    y = proj(torch.randn(4, 32))
    assert y.shape == (4, 48)
    # LayerNorm(d_t) with its initial affine: every projected vector has mean 0 and variance 1
    assert torch.allclose(y.mean(-1), torch.zeros(4), atol=1e-5)
    assert torch.allclose(y.var(-1, unbiased=False), torch.ones(4), atol=1e-3)
    assert proj(torch.randn(2, 4, 32)).shape == (2, 4, 48)
    with pytest.raises(ConfigError, match=r"\[4, 32\]"):
        proj(torch.randn(5, 32))
    wide = PromptProjector(2, 48, 24)
    assert wide.net[0].weight.shape == (768, 96) and wide(torch.randn(2, 48)).shape == (2, 24)
    pp = ProjectedPrompt(proj, torch.randn(4, 32))
    assert pp.length == 4 and pp.hidden_size == 48 and pp().shape == (4, 48)
    assert [n for n, _ in pp.named_parameters()] == [f"projector.{n}" for n, _ in proj.named_parameters()]


def test_train_and_apply_a_projector_across_widths(
    runs: dict,  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    target = tiny_model("mpnet", layers=2, d_ff=24, hidden=48)
    res = train_projector(
        runs["pa"],
        target,
        tmp_path / "proj",
        task=runs["a"],
        inner=16,
        max_length=24,
        config=TrainConfig(max_steps=3, batch_size=8, eval_every=1, lr=1e-3),
        progress=False,
    )
    proj, man = load_projector(tmp_path / "proj" / "projector.safetensors")
    assert man["source_backbone"]["hidden_size"] == 32 and man["target_backbone"]["hidden_size"] == 48
    assert proj.config() == {"length": 3, "source_hidden": 32, "target_hidden": 48, "inner": 16}
    # the saved projected training prompt is the projector's output for the source prompt
    src, _ = load_prompt(runs["pa"], runs["bb"])
    projected, pman = load_prompt(tmp_path / "proj" / "prompt.safetensors", target)
    assert torch.allclose(projected.prompt.weight, proj(src.prompt.weight.detach()), atol=1e-5)
    assert pman["dev_accuracy"] == pytest.approx(res["best_dev_accuracy"])
    # apply to the other task's prompt: saved as a prompt of the target model, evaluated on b's test split
    out = apply_projector(
        tmp_path / "proj" / "projector.safetensors",
        runs["pb"],
        target,
        tmp_path / "pb-proj",
        task=runs["b"],
        progress=False,
    )
    again = evaluate_prompt(out["prompt_path"], runs["b"], model=target, progress=False)
    assert out["accuracy"] == pytest.approx(again["accuracy"]) and out["n"] == again["n"]
    with pytest.raises(ArtifactError, match="hidden_size"):
        apply_projector(
            tmp_path / "proj" / "projector.safetensors", out["prompt_path"], target, task=runs["b"]
        )
    # the projected prompt starts a tuning run on the target model (model transfer as initialisation)
    r = tune_prompt(
        target,
        runs["b"],
        tmp_path / "tpt",
        prompt_length=3,
        max_length=24,
        init_prompt=out["prompt_path"],
        config=CONFIG,
        progress=False,
    )
    assert r["steps"] == 3


# ---- all indicators for all pairs --------------------------------------------------------------


def _neurons(seed: int) -> SkillNeurons:
    g = torch.Generator().manual_seed(seed)
    subs = decompose(2)
    scores = torch.rand(LAYERS, D_FF, generator=g, dtype=torch.float64)
    return SkillNeurons(
        subs,
        {subs[0].name: SkillRanking(scores)},
        {subs[0].name: torch.zeros(LAYERS, D_FF, dtype=torch.int64)},
        torch.zeros(LAYERS, D_FF, dtype=torch.float64),
        {"task": "x"},
    )


def test_transferability_against_a_matrix(runs: dict) -> None:  # type: ignore[type-arg]
    bb, pa, pb = runs["bb"], runs["pa"], runs["pb"]
    tasks = {"tiny-sentiment": runs["a"], "tiny-b": runs["b"]}
    # a third prompt: b's task, another "seed" (a perturbed copy), to have 3 cross-task pairs
    pm_b, man = load_prompt(pb, bb)
    pc_dir = Path(runs["dir"]) / "c"
    pc_dir.mkdir(exist_ok=True)
    (pc_dir / "split.json").write_text((Path(pb).parent / "split.json").read_text())
    pm_b.prompt = SoftPrompt(pm_b.prompt.weight + 0.3 * torch.randn_like(pm_b.prompt.weight))
    from skillneurons.prompts import save_prompt

    pc = save_prompt(pc_dir / "prompt", pm_b, task=man["task"], split=man["split"])
    prompts = [pa, pb, pc]
    matrix = transfer_matrix(prompts, bb, tasks=tasks, progress=False)
    na, nb = _neurons(0), _neurons(1)
    res = transferability(
        prompts, bb, matrix=matrix, neurons={str(pa): na, str(pb): nb, str(pc): nb}, rho=0.1
    )
    ind = res["indicators"]
    for k in ("E_avg", "E_tok_aligned", "E_tok_all", "ON", "ON_skill", "skill_overlap"):
        assert ind[k][0][0] == pytest.approx(1.0) or k == "E_tok_all", k
    pms = [load_prompt(p, bb)[0] for p in prompts]
    acts = [activated_neurons(pm) for pm in pms]
    assert ind["ON"][0][1] == pytest.approx(neuron_overlap(acts[0], acts[1]))
    assert ind["E_avg"][2][0] == pytest.approx(e_avg(pms[2].prompt.weight, pms[0].prompt.weight))
    ma, mb = na.mask(0.1), nb.mask(0.1)
    assert ind["skill_overlap"][0][1] == pytest.approx(neuron_overlap(ma, mb))
    assert ind["ON_skill"][0][1] == pytest.approx(neuron_overlap(acts[0], acts[1], (ma | mb).unsqueeze(1)))
    # pairs: 6 ordered, of which b<->c are one task (left out of the correlation by default)
    assert len(res["pairs"]) == 6 and res["n_pairs"] == 4
    rel = {(p["source"], p["target"]): p["relative"] for p in res["pairs"]}
    names = matrix["sources"]
    assert rel[(names[0], names[1])] == pytest.approx(matrix["relative"][0][1])
    used = [p for p in res["pairs"] if not p["same_task"]]
    assert res["correlation"]["E_avg"] == correlations(
        [p["E_avg"] for p in used], [p["relative"] for p in used]
    )
    both = transferability(
        prompts, bb, matrix=matrix, neurons={str(pa): na, str(pb): nb, str(pc): nb}, include_same_task=True
    )
    assert both["n_pairs"] == 6
    # a's own prompt at its chance level: pairs with a are left out of the correlation with min_margin
    flat = {**matrix, "majority": [matrix["own"][0], 0.0, 0.0]}
    kept = transferability(
        prompts,
        bb,
        matrix=flat,
        neurons={str(pa): na, str(pb): nb, str(pc): nb},
        include_same_task=True,
        min_margin=0.01,
    )
    assert kept["n_pairs"] == 2 and all(
        p["learned"] == ("tiny-sentiment" not in (p["source"], p["target"])) for p in kept["pairs"]
    )


# ---- speed-up from histories -------------------------------------------------------------------


def test_compare_runs_by_hand() -> None:
    hist = [
        {"step": 10, "dev_accuracy": 0.5},
        {"step": 20, "dev_accuracy": 0.7},
        {"step": 30, "dev_accuracy": 0.8},
    ]
    assert steps_to_reach(hist, 0.7) == 20 and steps_to_reach(hist, 0.9) is None
    base = {
        "history": hist,
        "best_dev_accuracy": 0.8,
        "best_step": 30,
        "steps": 40,
        "train_seconds": 80.0,
        "test_accuracy": 0.78,
        "sizes": {"train": 10},
    }
    fast = {
        **base,
        "history": [{"step": 10, "dev_accuracy": 0.75}],
        "best_dev_accuracy": 0.75,
        "best_step": 10,
        "train_seconds": 40.0,
        "test_accuracy": 0.74,
    }
    res = compare_runs(base, {"transfer": fast})  # threshold 0.9 * 0.8 = 0.72
    assert res["threshold"] == pytest.approx(0.72) and res["same_sizes"]
    assert res["runs"]["baseline"]["steps_to_threshold"] == 30
    assert res["runs"]["transfer"]["steps_to_threshold"] == 10
    assert res["runs"]["transfer"]["speedup"] == pytest.approx(3.0)
    assert res["runs"]["transfer"]["seconds_to_threshold"] == pytest.approx(10 * 40.0 / 40)
    assert compare_runs(base, {"t": fast}, threshold=0.79)["runs"]["t"]["speedup"] is None


# ---- command line --------------------------------------------------------------------------


def test_cli_commands(  # type: ignore[no-untyped-def]
    runs: dict,  # type: ignore[type-arg]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
) -> None:
    import skillneurons.cli.transfer as cli
    import skillneurons.transfer.matrix as m
    from skillneurons.cli.app import build_parser

    tasks = {"tiny-sentiment": runs["a"], "tiny-b": runs["b"]}
    monkeypatch.setattr(cli, "load_backbone_from", lambda args, name: runs["bb"])
    monkeypatch.setattr(m, "load_backbone", lambda name: runs["bb"])
    monkeypatch.setattr(m, "load_task", lambda name: tasks[name])
    parser = build_parser()

    def run(*argv: str) -> str:
        args = parser.parse_args(["-q", *argv])
        assert args._run(args) == 0
        return capsys.readouterr().out

    pa, pb = str(runs["pa"]), str(runs["pb"])
    out = run("transfer-matrix", pa, pb, "--out", str(tmp_path / "m"))
    assert "relative to the target's own prompt" in out
    out = run(
        "transferability",
        pa,
        pb,
        "--matrix",
        str(tmp_path / "m" / "transfer_matrix.json"),
        "--out",
        str(tmp_path / "t"),
        "--layers",
        "1:3",
        "--on-position",
        "prompt",
    )
    res = json.loads((tmp_path / "t" / "transferability.json").read_text())
    assert res["on"]["layers"] == [1, 2] and res["n_pairs"] == 2 and "spearman" in out
    hist = [{"step": 5, "dev_accuracy": 0.6}]
    for name in ("base", "tr"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "history.json").write_text(json.dumps(hist))
        (tmp_path / name / "results.json").write_text(
            json.dumps(
                {
                    "best_dev_accuracy": 0.6,
                    "best_step": 5,
                    "steps": 5,
                    "train_seconds": 5.0,
                    "test_accuracy": 0.6,
                }
            )
        )
    out = run(
        "tpt-compare",
        "--baseline",
        str(tmp_path / "base"),
        f"tr={tmp_path / 'tr'}",
        "--out",
        str(tmp_path / "cmp.json"),
    )
    assert "1.00x" in out and json.loads((tmp_path / "cmp.json").read_text())["runs"]["tr"]["speedup"] == 1.0
    with pytest.raises(ConfigError, match="window"):
        run("transferability", pa, pb, "--out", str(tmp_path / "t"), "--layers", "a:b")
    import skillneurons.transfer.projector as pj

    monkeypatch.setattr(pj, "load_backbone", lambda name: runs["bb"])
    monkeypatch.setattr(pj, "load_task", lambda name: tasks[name])
    out = run(
        "project",
        "train",
        "--prompt",
        pa,
        "--model",
        "tiny",
        "--out",
        str(tmp_path / "p"),
        "--inner",
        "8",
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--max-length",
        "24",
    )
    assert (
        "projector saved to" in out
        and load_projector(tmp_path / "p" / "projector")[1]["source_task"] == "tiny-sentiment"
    )
    out = run(
        "project",
        "apply",
        "--projector",
        str(tmp_path / "p" / "projector.safetensors"),
        "--prompt",
        pb,
        "--out",
        str(tmp_path / "pb"),
    )
    applied = json.loads(out)
    assert (
        applied["task"] == "tiny-b"
        and 0 <= applied["accuracy"] <= 1
        and Path(applied["prompt_path"]).is_file()
    )


# ---- review fixes: resume identity, projector head, delta artifacts, CLI options, seconds ------


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src.parent, dst)
    return dst / src.name


def test_transfer_matrix_recomputes_a_prompt_overwritten_in_place(
    runs: dict,  # type: ignore[type-arg]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import skillneurons.transfer.matrix as m
    from skillneurons.prompts import save_prompt

    pa, pb = _copy_run(runs["pa"], tmp_path / "a"), _copy_run(runs["pb"], tmp_path / "b")
    tasks = {"tiny-sentiment": runs["a"], "tiny-b": runs["b"]}
    first = run_transfer_matrix([pa, pb], tmp_path / "m", model=runs["bb"], tasks=tasks, progress=False)
    assert first["settings"]["precision"] == "auto" and len(set(first["source_ids"])) == 2
    # b's prompt is re-tuned in place: same path, other vectors
    pm_b, man = load_prompt(pb, runs["bb"])
    pm_b.prompt = SoftPrompt(pm_b.prompt.weight + 1.0)
    save_prompt(pb.with_suffix(""), pm_b, **{k: man[k] for k in ("task", "split")})
    calls: list[float] = []

    def fake(w: torch.Tensor, target: object, **kw: object) -> dict[str, float]:
        calls.append(float(w.sum()))
        return {"accuracy": 0.5}

    monkeypatch.setattr(m, "transfer_accuracy", fake)
    again = run_transfer_matrix([pa, pb], tmp_path / "m", model=runs["bb"], tasks=tasks, progress=False)
    # recomputed: b -> a, b's own accuracy (also the b -> b cell), a -> b; a's own and a -> a reused
    assert len(calls) == 3
    assert again["accuracy"][0][0] == first["accuracy"][0][0] and again["own"][0] == first["own"][0]
    assert again["accuracy"][1][0] == 0.5 and again["accuracy"][0][1] == 0.5 and again["own"][1] == 0.5
    assert again["accuracy"][1][1] == 0.5 and again["source_ids"][1] != first["source_ids"][1]
    # another precision is another setting: nothing reused
    calls.clear()
    transfer_matrix([pa, pb], runs["bb"], tasks=tasks, progress=False, precision="fp32", previous=again)
    assert len(calls) == 4  # 2 own + 2 off-diagonal


def test_projector_keeps_its_trained_linear_head(
    runs: dict,  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    from skillneurons.data import Task
    from skillneurons.prompts import LinearHead
    from skillneurons.transfer.projector import projector_head_state

    target = tiny_model("mpnet", layers=2, d_ff=24, hidden=48)
    cfg = TrainConfig(max_steps=2, batch_size=8, eval_every=1, lr=1e-3, head_lr=0.5)
    train_projector(
        runs["pa"],
        target,
        tmp_path / "proj",
        task=runs["a"],
        inner=8,
        head="linear",
        max_length=24,
        config=cfg,
        progress=False,
    )
    path = tmp_path / "proj" / "projector.safetensors"
    _, man = load_projector(path)  # the head tensors do not disturb the projector's
    assert man["head"] == {"kind": "linear", "config": {"type": "linear", "num_classes": 2}}
    state = projector_head_state(path)
    trained, _ = load_prompt(tmp_path / "proj" / "prompt.safetensors", target)
    assert torch.equal(state["linear.weight"], trained.head.state_dict()["linear.weight"])
    # apply defaults to the trained head, with its weights
    out = apply_projector(
        path, runs["pb"], target, task=runs["b"], batch_size=4, precision="fp32", progress=False
    )
    assert isinstance(out["model"].head, LinearHead)
    assert torch.equal(out["model"].head.state_dict()["linear.weight"], state["linear.weight"])
    # another number of classes: refused; a fixed head can still be asked for
    three = Task(
        name="three",
        texts=tuple(f"text {i}" for i in range(30)),
        labels=tuple(i % 3 for i in range(30)),
        label_names=("a", "b", "c"),
        label_words=(("bad",), ("fine",), ("good",)),
        source="tests",
    )
    with pytest.raises(ConfigError, match="linear head of 2 classes"):
        apply_projector(path, runs["pb"], target, task=three, split=None, progress=False)
    sim = apply_projector(path, runs["pb"], target, task=three, head="similarity", split=None, progress=False)
    assert sim["model"].head.kind == "similarity"


def test_delta_artifacts_are_refused_before_loading(
    runs: dict,  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    from skillneurons.transfer import load_target

    lora = _copy_run(runs["pa"], tmp_path / "lora")
    man_file = lora.with_suffix(".json")
    man_file.write_text(json.dumps({**json.loads(man_file.read_text()), "method": "lora"}))
    bb, pb = runs["bb"], runs["pb"]
    msg = r"was tuned with --method lora and has no soft prompt to transfer"
    target = tiny_model("mpnet", layers=2, d_ff=24, hidden=48)
    calls = [
        lambda: transferability([lora, pb], bb),
        lambda: load_target(lora, bb, task=runs["a"]),
        lambda: transfer_matrix([pb], bb, targets=[lora], progress=False),
        lambda: transfer_matrix([lora, pb], bb, progress=False),
        lambda: train_projector(lora, target, None, task=runs["a"], inner=8, progress=False),
        lambda: initial_prompt(bb, lora, 3),
    ]
    for call in calls:
        with pytest.raises(ConfigError, match=msg):
            call()
    # a real delta-tuned artifact (BitFit)
    res = tune_prompt(
        bb, runs["a"], tmp_path / "bitfit", method="bitfit", max_length=24, config=CONFIG, progress=False
    )
    with pytest.raises(ConfigError, match="--method bitfit and has no soft prompt"):
        initial_prompt(bb, res["prompt"], 3)


def test_tpt_init_prompt_is_part_of_the_run(runs: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    from skillneurons.training import Trainer

    bb = runs["bb"]
    kw = {"prompt_length": 3, "max_length": 24, "progress": False}
    tune_prompt(
        bb,
        runs["b"],
        tmp_path / "t",
        init_prompt=runs["pa"],
        config=CONFIG,
        **kw,  # type: ignore[arg-type]
    )
    # the same run resumes; another start of the same shape is another run
    again = tune_prompt(
        bb,
        runs["b"],
        tmp_path / "t",
        init_prompt=runs["pa"],
        config=CONFIG,
        **kw,  # type: ignore[arg-type]
    )
    assert again["resumed_from_step"] == 3
    with pytest.raises(ConfigError, match="different run"):
        tune_prompt(
            bb,
            runs["b"],
            tmp_path / "t",
            init_prompt=runs["pb"],
            config=CONFIG,
            **kw,  # type: ignore[arg-type]
        )
    # plain runs keep their key: only the init/source entries add to it
    pm, _ = load_prompt(runs["pa"], bb)
    split = runs["b"].split(0)
    tr, dv = split.part("train"), split.part("dev")
    plain = Trainer(pm, tr, dv, CONFIG, progress=False).run_key()
    assert Trainer(pm, tr, dv, CONFIG, manifest={"task": {"name": "x"}}, progress=False).run_key() == plain
    keyed = Trainer(pm, tr, dv, CONFIG, manifest={"init_prompt": {"sha256": "abc"}}, progress=False).run_key()
    assert keyed != plain


def test_compare_runs_seconds_of_a_resumed_run() -> None:
    hist = [{"step": 10, "dev_accuracy": 0.5}, {"step": 20, "dev_accuracy": 0.8}]
    base = {
        "history": hist,
        "best_dev_accuracy": 0.8,
        "best_step": 20,
        "steps": 40,
        "train_seconds": 30.0,
        "test_accuracy": 0.8,
        "resumed_from_step": 30,
    }  # 30 s for the 10 steps after the resume
    res = compare_runs(base, {})
    assert res["runs"]["baseline"]["seconds_to_threshold"] == pytest.approx(20 * 30.0 / 10)
    assert compare_runs({**base, "resumed_from_step": None}, {})["runs"]["baseline"][
        "seconds_to_threshold"
    ] == pytest.approx(20 * 30.0 / 40)


def test_empty_on_layer_windows_are_refused() -> None:
    from skillneurons.transfer.config import parse_layers as _layers

    assert _layers("1:3") == [1, 2] and _layers("0,2") == [0, 2] and _layers(None) is None
    for text in ("1:1", "5:3", ","):
        with pytest.raises(ConfigError, match="selects no layer"):
            _layers(text)
    with pytest.raises(ConfigError, match="layer window is empty"):
        OnOptions(layers=[])


def test_project_cli_options(
    runs: dict,  # type: ignore[type-arg]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import skillneurons.cli.transfer as cli
    import skillneurons.transfer.projector as pj
    from skillneurons.cli.app import build_parser

    parser = build_parser()
    for opt in (
        ["--method", "lora"],
        ["--progressive", "50,full"],
        ["--init-prompt", "x"],
        ["--verbalizer", "kpt"],
        ["--prompt-length", "3"],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(["project", "apply", *opt])
    loaded: list[str] = []

    def fake_backbone(args: argparse.Namespace, name: str) -> object:
        loaded.append(name)
        return runs["bb"]

    monkeypatch.setattr(cli, "load_backbone_from", fake_backbone)
    seen: dict[str, object] = {}
    monkeypatch.setattr(pj, "apply_projector", lambda *a, **k: seen.update(k) or {"accuracy": 1.0})
    proj = tmp_path / "projector.json"
    proj.write_text(
        json.dumps(
            {
                "format": "skillneurons-artifact",
                "kind": "projector",
                "target_backbone": {"name": "the-target"},
            }
        )
    )
    args = parser.parse_args(
        [
            "-q",
            "project",
            "apply",
            "--projector",
            str(proj),
            "--prompt",
            str(runs["pa"]),
            "--batch-size",
            "7",
            "--precision",
            "fp32",
            "--dtype",
            "bfloat16",
        ]
    )
    assert args._run(args) == 0
    assert seen["batch_size"] == 7 and seen["precision"] == "fp32" and seen["head"] is None
    assert loaded == ["the-target"]  # the manifest's backbone, through the CLI loader
    args = parser.parse_args(["-q", "transfer-matrix", str(runs["pa"]), "--out", str(tmp_path / "m")])
    import skillneurons.transfer.matrix as m

    monkeypatch.setattr(
        m,
        "run_transfer_matrix",
        lambda *a, **k: (
            seen.update(model=k["model"])
            or {
                "settings": {"split": "test"},
                "sources": ["a"],
                "targets": ["a"],
                "accuracy": [[1.0]],
                "relative": [[1.0]],
            }
        ),
    )
    assert args._run(args) == 0 and seen["model"] is runs["bb"]
    assert loaded[-1] == runs["bb"].name  # type: ignore[attr-defined]


def test_typed_results_round_trip(runs: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    from skillneurons.transfer import TransferMatrix, TransferMatrixConfig, parse_layers

    tasks = {"tiny-sentiment": runs["a"], "tiny-b": runs["b"]}
    res = run_transfer_matrix(
        [runs["pa"], runs["pb"]],
        tmp_path,
        TransferMatrixConfig(precision="fp32"),
        model=runs["bb"],
        tasks=tasks,
    )
    saved = TransferMatrix.load(tmp_path / "transfer_matrix.json")
    assert saved == res and saved.settings["precision"] == "fp32" and saved.accuracy == res["accuracy"]
    assert (
        json.loads((tmp_path / "transfer_matrix.json").read_text())["schema"]
        == "skillneurons.transfer_matrix"
    )
    assert parse_layers("1:3") == [1, 2] and parse_layers("0,2") == [0, 2] and parse_layers(None) is None
