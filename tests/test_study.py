"""The study runner: a spec checked before any model loads, every step run once and reused, an
interrupted study resumed where it stopped, one typed study.json (the tiny random BERT)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import separable_task, tiny_model
from skillneurons.errors import ConfigError
from skillneurons.study import StudyResult, load_spec, parse_spec
from skillneurons.study import run as study_run

SPEC = """
name = "tiny"
model = "tiny-bert"
seeds = [0, 1]
split_seed = 0

[prompt]
prompt_length = 2
max_length = 16

[train]
max_steps = 4
batch_size = 8
eval_every = 2
lr = 0.05

[tasks.a]
dev_size = 12
test_size = 12

[tasks.b]
max_steps = 3
seeds = [1]

[tasks.c]
exclude = "measured: stays at chance"

[groups]
a = "sentiment"
b = "other"

[find]
controls = false
batch_size = 16

[perturb]
rho = [0.0, 0.1]
draws = 2
modes = ["zero", "mean"]

[cross]
rho = 0.1
draws = 1

[transfer]
windows = ["0:1", "1:2"]

[transfer.indicators]
rho = 0.1
"""


def _tasks() -> dict[str, Any]:
    return {
        "a": dataclasses.replace(separable_task(72, seed=1), name="a"),
        "b": dataclasses.replace(separable_task(60, seed=2), name="b"),
    }


def _spec(tmp_path: Path, text: str = SPEC) -> Any:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return load_spec(path)


def test_spec_is_checked_before_anything_loads(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert [t.name for t in spec.active_tasks] == ["a", "b"]
    assert spec.tasks[1].train.max_steps == 3 and spec.tasks[0].train.max_steps == 4
    assert spec.tasks[0].run.dev_size == 12 and spec.tasks[0].prompt.max_length == 16
    assert spec.perturb.sweeps["mean"].mode == "mean" and spec.perturb.sweeps["zero"].rho == (0.0, 0.1)
    balanced = _spec(tmp_path, SPEC.replace("[find]\n", '[find]\nscore = "balanced"\n'))
    assert balanced.find.score == "balanced" and spec.find.score == "accuracy"
    # a find step's identity leaves the default score out (studies recorded before it resume)
    assert "score" not in study_run.find_identity(spec.find)
    assert study_run.find_identity(balanced.find)["score"] == "balanced"
    bad = {
        "[find]\nnope = 1": "[find]: unknown key 'nope'",
        "[find]\nscore = 'f1'": "[find]: score 'f1' is unknown",
        "[tasks.a]\nepochz = 1": "[tasks.a]: unknown key 'epochz'",
        "[perturb]\nmodes = ['loud']": "[perturb]: modes",
        "[perturb]\nrho = [2.0]": "[perturb]",
        "[train]\nlr = -1": "[train]",
        "colour = 1": "unknown top-level key 'colour'",
        "[groups]\nzz = 'x'": "[groups]: 'zz'",
    }
    for extra, msg in bad.items():
        tasks = extra if extra.startswith("[tasks.a]") else "[tasks.a]\n" + extra
        text = 'name = "x"\nmodel = "m"\n' + (extra + "\n[tasks.a]" if extra[0] != "[" else tasks)
        with pytest.raises(ConfigError, match=msg.replace("[", r"\[").replace("]", r"\]")) as e:
            parse_spec(__import__("tomllib").loads(text))
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="not valid TOML"):
        _spec(tmp_path, "name = ")


def test_perturb_and_cross_can_be_skipped(tmp_path: Path) -> None:
    text = SPEC.replace("[perturb]\n", "[perturb]\nenabled = false\n").replace(
        "[cross]\n", "[cross]\nenabled = false\n"
    )
    stages = study_run.plan(study_run.Study(_spec(tmp_path, text), tmp_path / "s", tasks=_tasks()))
    assert stages["perturb"] == [] and stages["cross"] == []
    assert len(stages["tune"]) == 3 and stages["transfer"], "the other stages stay"
    full = study_run.plan(study_run.Study(_spec(tmp_path), tmp_path / "s", tasks=_tasks()))
    assert len(full["perturb"]) == 6 and len(full["cross"]) == 1
    with pytest.raises(ConfigError, match=r"\[perturb\]"):
        _spec(tmp_path, SPEC.replace("[perturb]\n", "[perturb]\nenabled = 'no'\n"))


def test_study_runs_resumes_and_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(tmp_path)
    bb = tiny_model("bert")
    out = tmp_path / "study"
    plan = study_run.run_study(spec, out=out, backbone=bb, tasks=_tasks(), dry_run=True, progress=False)
    assert isinstance(plan, str) and "estimated time" in plan and "excluded" in plan
    assert not out.exists()  # a dry run writes nothing

    # interrupted after the first step (the second tuning run fails)
    real_tune = study_run.tune_prompt
    calls: list[str] = []

    def tune_once(*args: Any, **kw: Any) -> Any:
        if calls:
            raise KeyboardInterrupt
        calls.append(str(args[2]))
        return real_tune(*args, **kw)

    monkeypatch.setattr(study_run, "tune_prompt", tune_once)
    with pytest.raises(KeyboardInterrupt):
        study_run.run_study(spec, out=out, backbone=bb, tasks=_tasks(), report=False, progress=False)
    assert (out / "tune" / "a" / "s0" / study_run.STEP_FILE).is_file()
    assert "done" in study_run.run_study(spec, out=out, backbone=bb, tasks=_tasks(), dry_run=True)
    part = study_run.run_study(spec, out=out, backbone=bb, tasks=_tasks(), partial=True, report=False)
    assert isinstance(part, StudyResult) and len(part.task("a").prompts) == 1 and part.task("a").find is None
    assert (
        part.similarity is None and part.transfer_matrix is None and not any(s.computed for s in part.steps)
    )

    # the rerun computes every step but the finished one
    monkeypatch.setattr(study_run, "tune_prompt", real_tune)
    res = study_run.run_study(spec, out=out, backbone=bb, tasks=_tasks(), report=True, progress=False)
    assert isinstance(res, StudyResult)
    computed = {s.name: s.computed for s in res.steps}
    assert computed.pop("tune prompt a seed 0") is False and all(computed.values())
    saved = StudyResult.load(out / "study.json")
    assert saved == res and len(res.reports) == 2 and all(Path(r).is_file() for r in res.reports)
    a = res.task("a")
    assert a.sizes["dev"] == 12 and a.sizes["test"] == 12 and len(a.prompts) == 2
    assert a.test_accuracy is not None and a.test_accuracy.n == 2
    assert a.prompts[0].test_accuracy.n == 12 and a.prompts[0].dev_curve
    assert {f.mode for f in a.sweep} == {"zero", "mean"} and all(f.rho == 0.1 for f in a.sweep)
    assert all(f.paired_pooled is not None and f.paired_pooled.n == 12 for f in a.sweep)
    assert a.find is not None and "evidence" in a.find  # held-out figures and the null travel along
    assert res.task("c").excluded == "measured: stays at chance"
    assert res.similarity is not None and res.similarity_groups[0].across_pairs == ["axb"]
    assert set(res.cross) == {"zero"} and res.cross_groups
    assert res.transfer_matrix is not None and len(res.transfer_matrix["sources"]) == 3
    assert [p.seed for p in res.task("b").prompts] == [1]
    assert res.transferability is not None and "ON" in res.indicator_spearman
    assert set(res.indicator_windows) == {"0:1", "1:2"} and "ON" in res.indicator_windows["0:1"]

    # nothing is recomputed by a third run; a changed step is an error naming its folder
    for name in ("tune_prompt", "find_skill_neurons", "run_sweep", "run_cross", "run_transfer_matrix"):
        monkeypatch.setattr(study_run, name, lambda *a, **k: pytest.fail("recomputed"))
    again = study_run.run_study(spec, out=out, backbone=bb, tasks=_tasks(), report=False, progress=False)
    assert isinstance(again, StudyResult) and not any(s.computed for s in again.steps)
    assert again.tasks == res.tasks and again.transfer_matrix == res.transfer_matrix
    same = _spec(tmp_path, SPEC.replace("[find]\n", '[find]\nscore = "accuracy"\n'))  # the default, spelt
    assert not any(
        s.computed
        for s in study_run.run_study(same, out=out, backbone=bb, tasks=_tasks(), report=False).steps
    )
    # a find step recorded by a version that kept a placement option in its identity is reused
    rec_path = out / "find" / "a" / study_run.STEP_FILE
    rec = json.loads(rec_path.read_text())
    rec["identity"]["find"]["null_memory_gb"] = 4.0
    rec_path.write_text(json.dumps(rec))
    assert not any(
        s.computed
        for s in study_run.run_study(spec, out=out, backbone=bb, tasks=_tasks(), report=False).steps
    )
    for extra in ("top = 3", 'score = "balanced"'):
        changed = _spec(
            tmp_path, SPEC.replace("[find]\ncontrols = false", f"[find]\ncontrols = false\n{extra}")
        )
        with pytest.raises(ConfigError, match="find/a holds the step 'find a' made with other options"):
            study_run.run_study(changed, out=out, backbone=bb, tasks=_tasks(), report=False, progress=False)
    json.loads((out / "spec.json").read_text())


def test_a_find_that_does_not_fit_is_refused_before_any_tuning(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each find step's memory (null, statistics) is checked from the geometry at the start and in the
    dry run, not found out after its prompts are tuned; the geometry is read without the weights."""
    text = SPEC.replace("[find]\n", "[find]\npermutations = 50\nnull_memory_gb = 0.00001\n").replace(
        'model = "tiny-bert"', f'model = "{model_dir}"'
    )
    spec = _spec(tmp_path, text)
    out = tmp_path / "s"
    monkeypatch.setattr(study_run, "load_backbone", lambda *a, **k: pytest.fail("weights loaded"))
    msg = r"study step 'find a' would be refused: the permutation null needs .* use --permutations"
    with pytest.raises(ConfigError, match=msg):
        study_run.run_study(spec, out=out, tasks=_tasks(), dry_run=True)
    with pytest.raises(ConfigError, match=msg) as e:
        study_run.run_study(spec, out=out, tasks=_tasks(), report=False, progress=False)
    assert "\n" not in str(e.value) and not (out / "tune").exists() and not (out / "spec.json").exists()
    fits = _spec(tmp_path, text.replace("null_memory_gb = 0.00001", "null_memory_gb = 4"))
    assert "estimated time" in str(study_run.run_study(fits, out=out, tasks=_tasks(), dry_run=True))


def test_find_placement_options_are_not_part_of_a_find_steps_identity() -> None:
    from skillneurons.neurons.config import FindConfig

    base = study_run.find_identity(FindConfig())
    placed = FindConfig(stats_device="cpu", position_chunk=3, stats_memory_gb=2, null_memory_gb=12)
    assert study_run.find_identity(placed) == base
    assert study_run.find_identity(FindConfig(folds=3)) != base


def test_delta_methods_are_tuned_seed_by_seed_and_pooled_over_seeds(tmp_path: Path) -> None:
    """Claim 5: each delta method tuned on a task with several seeds, its models perturbed with the
    prompt-found skill neurons, and the sweeps pooled per method over the seeds (paired over examples)."""
    text = (
        SPEC.replace("[perturb]\n", "[perturb]\nenabled = false\n")
        .replace("[cross]\n", "[cross]\nenabled = false\n")
        .replace("[transfer]\n", "[transfer]\nenabled = false\n")
        + '\n[delta]\ntasks = ["a"]\nmethods = ["bitfit", "lora"]\nseeds = [0, 1]\nlr = 0.01\nmax_steps = 2\n'
        + "\n[delta.perturb]\nrho = [0.0, 0.1]\ndraws = 2\n"  # [perturb]'s spelling
    )
    spec = _spec(tmp_path, text)
    stages = study_run.plan(study_run.Study(spec, tmp_path / "s", tasks=_tasks()))
    assert [st.name for st in stages["delta"] if st.kind != "delta"] == [
        "tune bitfit a seed 0",
        "tune lora a seed 0",
        "tune bitfit a seed 1",
        "tune lora a seed 1",
    ]
    res = study_run.run_study(
        spec, out=tmp_path / "s", backbone=tiny_model("bert"), tasks=_tasks(), report=False, progress=False
    )
    assert isinstance(res, StudyResult) and res.delta is not None and len(res.delta) == 4
    assert set(res.delta_sweeps) == {"a/bitfit", "a/lora"} == set(res.delta_accuracy)
    for key, figs in res.delta_sweeps.items():
        assert [f.rho for f in figs] == [0.1], key
        assert figs[0].paired_pooled is not None and figs[0].paired_pooled.n == 12
        assert figs[0].skill_drop.n == 2 and res.delta_accuracy[key].n == 2
    assert StudyResult.load(tmp_path / "s" / "study.json") == res
