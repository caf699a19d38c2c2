"""Property test over CLI option combinations (issue #17, acceptance): whatever mix of good and bad
values a user passes to a handful of commands, the exit code is 0 or 2, there is never a traceback
(nor an "internal error" line), and when the exit code is 2 no file was written.

No model is loaded: the model loader is replaced by one that refuses with a one-line error, so a
combination that passes every check ends at exit 2 there, which also asserts that nothing is written
before the model loads. ``similarity`` and ``data list`` need no model and end at exit 0.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import separable_task
from skillneurons.artifacts import save_artifact
from skillneurons.cli import main
from skillneurons.errors import ModelError


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CSV task, a prompt artifact of it (with its split) and two skill-neuron artifacts."""
    from skillneurons.data import load_task
    from skillneurons.neurons.find import SkillNeurons
    from skillneurons.neurons.ranking import SkillRanking, decompose
    from skillneurons.rundir import make_splits, run_manifest

    d = tmp_path_factory.mktemp("fuzz")
    data = d / "d.csv"
    task = separable_task(40)
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for t, y in zip(task.texts, task.labels):
            w.writerow([t, ["negative", "positive"][y]])
    loaded = load_task(str(data))
    run = d / "run"
    run.mkdir()
    man = run_manifest(loaded, make_splits(loaded, 0, run))
    man["backbone"] = {"name": "tiny-bert", "hidden_size": 32, "num_layers": 2}
    save_artifact(run / "prompt", {"prompt": torch.zeros(3, 32)}, kind="prompt", manifest=man)
    subtasks = decompose(2, "one_vs_rest")
    paths = []
    for i in range(2):
        g = torch.Generator().manual_seed(i)
        rankings = {s.name: SkillRanking(torch.rand(2, 48, generator=g)) for s in subtasks}
        best = {s.name: torch.zeros(2, 48, dtype=torch.int64) for s in subtasks}
        sn = SkillNeurons(
            subtasks, rankings, best, torch.zeros(2, 48, dtype=torch.float64), {"task": f"t{i}"}
        )
        paths.append(str(sn.save(d / f"n{i}" / "skill_neurons")))
    (d / "note.txt").write_text("not a folder")
    return {
        "data": str(data),
        "prompt": str(run / "prompt.safetensors"),
        "n0": paths[0],
        "n1": paths[1],
        "file": str(d / "note.txt"),
        "root": str(d),
    }


def _values(*good: str, bad: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """A good value three times as often as a bad one, so that many combinations pass every check."""
    return st.sampled_from([*good * 3, *bad]) if bad else st.sampled_from(good)


#: flags given in every combination (a command without them stops at argparse, which is tested enough)
_ALWAYS = {"--task", "--out", "--prompt", "--neurons"}


def _plan(w: dict[str, str], out: str) -> dict[str, tuple[list[str], dict[str, st.SearchStrategy[str]]]]:
    """command -> (fixed arguments, {flag: values}); each flag is left out or given one value."""
    missing = str(Path(w["root"]) / "missing.csv")
    task = _values(w["data"], bad=(missing, "no-such-task", w["file"]))
    outs = _values(out, bad=(w["file"], str(Path(w["file"]) / "sub")))
    return {
        "tune": (
            ["--model", "tiny"],
            {
                "--task": task,
                "--out": outs,
                "--prompt-length": _values("3", bad=("0", "-2", "x")),
                "--lr": _values("0.03", bad=("-1", "0", "abc")),
                "--max-steps": _values("2", bad=("0", "-1")),
                "--batch-size": _values("8", bad=("0",)),
                "--max-examples": _values("30", bad=("0",)),
                "--head": _values("linear", "auto", bad=("nope",)),
                "--method": _values("prompt", "lora", bad=("nope",)),
                "--progressive": _values("50,full", bad=("25,50", "x5,full")),
                "--lora-dropout": _values("0", bad=("0.1",)),
            },
        ),
        "find": (
            [],
            {
                "--prompt": _values(w["prompt"], bad=(missing, w["n0"])),
                "--out": outs,
                "--task": task,
                "--rho": _values("0.01", bad=("2", "-0.5", "x")),
                "--auroc-bins": _values("8", bad=("0",)),
                "--top": _values("3", bad=("-1",)),
                "--batch-size": _values("16", bad=("0",)),
                "--scheme": _values("one_vs_rest", bad=("nope",)),
                "--split-seed": _values("0", bad=("3", "x")),
            },
        ),
        "perturb": (
            [],
            {
                "--prompt": _values(w["prompt"], bad=(missing,)),
                "--neurons": _values(w["n0"], bad=(w["prompt"], missing)),
                "--out": outs,
                "--rho": _values("0,0.1", bad=("2", "0,x")),
                "--draws": _values("1", bad=("-1",)),
                "--mode": _values("zero", "gaussian", bad=("nope",)),
                "--split": _values("test", "dev", bad=("nope",)),
            },
        ),
        "similarity": (
            [],
            {
                "--neurons": st.sampled_from([f"{w['n0']} {w['n1']}", w["n0"], missing]),
                "--out": outs,
                "--rho": _values("0.05", bad=("2", "x")),
            },
        ),
        "kpt-evaluate": (
            ["--model", "tiny"],
            {
                "--task": task,
                "--out": _values(str(Path(out) / "kpt.json"), bad=(str(Path(w["file"]) / "k.json"),)),
                "--verbalizer": _values("single", "kpt", bad=("nope",)),
                "--expand": _values("0", "5", bad=("-1",)),
                "--max-examples": _values("20", bad=("0",)),
                "--contexts-split": _values("train"),  # refused: not an hf: task
            },
        ),
        "data": (["list"], {}),
    }


@st.composite
def _command(draw: st.DrawFn, w: dict[str, str], out: str) -> list[str]:
    plan = _plan(w, out)
    name = draw(st.sampled_from(sorted(plan)))
    fixed, flags = plan[name]
    argv = [name, *fixed]
    for flag, values in flags.items():
        if flag in _ALWAYS or draw(st.booleans()):
            argv += [flag, *draw(values).split(" ")]
    return argv


def _files(root: str) -> set[str]:
    return {os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs} | {
        os.path.join(d, s) for d, ss, _ in os.walk(root) for s in ss
    }


@pytest.fixture
def no_models(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from skillneurons.backbones.config import BackboneOptions

    def refuse(self: Any, name: str) -> Any:
        raise ModelError(f"(test) every check passed; no model is loaded ({name})")

    monkeypatch.setattr(BackboneOptions, "load", refuse)
    yield


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_cli_option_combinations_exit_0_or_2_without_traceback_or_files(
    data: st.DataObject,
    workspace: dict[str, str],
    no_models: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Fuzz (#17 acceptance): exit 0 or 2, never a traceback, no file written when the exit code is 2."""
    scratch = tempfile.mkdtemp(dir=workspace["root"], prefix="out-")
    out = str(Path(scratch) / "out")
    try:
        argv = data.draw(_command(workspace, out), label="argv")
        before = _files(workspace["root"])
        try:
            rc = main(["-q", *argv])
        except SystemExit as e:  # argparse: an unknown choice or a value of the wrong type
            rc = int(e.code or 0)
        err = capsys.readouterr().err
        assert rc in (0, 2), (argv, rc, err)
        assert "Traceback" not in err and "internal error" not in err, (argv, err)
        if rc == 2:
            assert _files(workspace["root"]) == before, (argv, err)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
