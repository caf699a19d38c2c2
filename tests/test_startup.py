"""Start-up (issue 20 section 4): `models`, `data list` and a command that fails validation load no
model library. Each case runs the CLI's ``main`` in a fresh interpreter and then lists which of torch,
transformers and numpy it imported (the pattern of test_architecture's ``--help`` check); no timings
are asserted (bench/startup.py measures them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "numpy")

RUNNER = (
    "import contextlib, io, json, sys\n"
    "from skillneurons.cli import main\n"
    "out, err = io.StringIO(), io.StringIO()\n"
    "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
    "    rc = main(sys.argv[1:])\n"
    f"loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
    "print(json.dumps({'rc': rc, 'out': out.getvalue(), 'err': err.getvalue(), 'loaded': loaded}))\n"
)


def _run(*argv: str) -> dict[str, object]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, *argv], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_models_lists_offline_models_without_model_libraries() -> None:
    res = _run("models")
    assert res["rc"] == 0, res
    lines = str(res["out"]).splitlines()
    assert lines[0] == "offline models ([x] installed, [ ] not installed):"
    assert any(" minilm " in ln for ln in lines) and "bert" in lines[-1]
    assert res["loaded"] == [], res["loaded"]


def test_data_list_lists_the_builtin_tasks_without_numpy() -> None:
    res = _run("data", "list")
    assert res["rc"] == 0, res
    names = [ln.split()[0] for ln in str(res["out"]).splitlines()]
    assert names[:2] == ["mr", "pang_lee"] and "tweets" in names
    assert res["loaded"] == [], res["loaded"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tune", "--task", "mr", "--prompt-length", "0"], "--prompt-length 0 is out of range"),
        (
            ["tune", "--task", "mr", "--method", "lora", "--progressive", "25,full"],
            "progressive training tunes prompts",
        ),
        (["find", "--prompt", "p.safetensors", "--auroc-bins", "0"], "--auroc-bins 0 is invalid"),
        (["perturb", "--prompt", "p", "--neurons", "n", "--rho", "2"], "rho=2.0 is invalid"),
    ],
)
def test_a_validation_failure_exits_before_any_model_library(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    """The options are checked before the task (numpy) and the model (torch, transformers) are
    loaded; nothing is written."""
    out = tmp_path / "out"
    res = _run("-q", *argv, "--out", str(out))
    assert res["rc"] == 2, res
    err = str(res["err"]).strip()
    assert err.startswith("skillneurons: error:") and message in err and "\n" not in err, err
    assert res["loaded"] == [], res["loaded"]
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["find", "--prompt", "{tmp}/none.safetensors"], "is neither a run folder nor an artifact"),
        (["find", "--prompt", "{tmp}/none.safetensors", "--position-chunk", "0"], "--position-chunk 0"),
        (["perturb", "--prompt", "{tmp}/none", "--neurons", "{tmp}/n"], "is neither a run folder"),
        (["cross-perturb", "--prompt", "{tmp}/none", "--neurons", "{tmp}/n"], "is neither a run folder"),
        (["prune", "--neurons", "{tmp}/none"], "no artifact manifest at"),
        (["similarity", "--neurons", "{tmp}/a", "{tmp}/b"], "no artifact manifest at"),
        (["transfer-matrix", "--prompt", "{tmp}/none"], "is neither a run folder"),
    ],
)
def test_a_missing_input_artifact_exits_before_any_model_library(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    """#20 item 4: opening the inputs (manifests, run folders) needs neither torch nor numpy."""
    out = tmp_path / "out"
    res = _run("-q", *(a.format(tmp=tmp_path) for a in argv), "--out", str(out))
    assert res["rc"] == 2, res
    err = str(res["err"]).strip()
    assert err.startswith("skillneurons: error:") and message in err and "\n" not in err, err
    assert res["loaded"] == [], res["loaded"]
    assert not out.exists()


def test_find_into_a_file_exits_before_any_model_library(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    res = _run("-q", "find", "--prompt", str(tmp_path / "p"), "--out", str(tmp_path / "file"))
    assert res["rc"] == 2 and "is a file, not a folder" in str(res["err"]), res
    assert res["loaded"] == [], res["loaded"]
