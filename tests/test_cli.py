"""The command line end to end on a tiny model saved to a folder: tune -> evaluate -> find."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import separable_task
from skillneurons.cli import main


def _csv(path: Path, n: int = 60) -> Path:
    task = separable_task(n)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for t, y in zip(task.texts, task.labels):
            w.writerow([t, ["negative", "positive"][y]])
    return path


def test_tune_evaluate_find(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _csv(tmp_path / "d.csv")
    run = tmp_path / "run"
    args = [
        "-q",
        "tune",
        "--model",
        str(model_dir),
        "--task",
        str(data),
        "--out",
        str(run),
        "--prompt-length",
        "3",
        "--max-length",
        "24",
        "--max-steps",
        "4",
        "--batch-size",
        "8",
        "--head",
        "linear",
        "--dtype",
        "float32",
    ]
    assert main(args) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert {"split.json", "prompt.json", "results.json", "history.json"} <= {p.name for p in run.iterdir()}
    assert main(["-q", "evaluate", "--prompt", str(run / "prompt.safetensors"), "--task", str(data)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["split"] == "test" and 0 <= res["accuracy"] <= 1
    assert (
        main(
            [
                "find",
                "-q",
                str(run / "prompt.safetensors"),
                "--out",
                str(tmp_path / "n"),
                "--task",
                str(data),
                "--no-controls",
                "--top",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "top-1 predictivity" in out and (tmp_path / "n" / "skill_neurons.safetensors").is_file()


def test_errors_are_one_line_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "tune", "--task", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("skillneurons: error:") and "\n" not in err


def test_tune_with_a_knowledgeable_verbalizer(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _csv(tmp_path / "d.csv")
    words = tmp_path / "words.txt"
    words.write_text("negative: bad, awful, worst\npositive: good, great, best\n")
    run = tmp_path / "kpt"
    args = [
        "-q",
        "tune",
        "--model",
        str(model_dir),
        "--task",
        str(data),
        "--out",
        str(run),
        "--prompt-length",
        "3",
        "--max-length",
        "24",
        "--max-steps",
        "3",
        "--batch-size",
        "8",
        "--verbalizer",
        "kpt",
        "--words",
        str(words),
    ]
    assert main(args) == 0
    man = json.loads((run / "prompt.json").read_text())
    assert man["head"]["type"] == "kpt" and "head.word_weights" in man["shapes"]


def test_models_marks_which_offline_models_are_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """#17 (smaller things): ``skillneurons models`` marks the installed offline models and says how to
    install the others, checked without extracting or assembling any model files."""
    import skillneurons.backbones.loading as loading

    checks = {n: ((lambda n=n: n != "smollm2"), f"install-{n}") for n in loading.OFFLINE_MODELS}
    monkeypatch.setattr(loading, "_INSTALLED", checks)
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "offline models ([x] installed, [ ] not installed):"
    smol = next(ln for ln in lines if " smollm2 " in ln)
    assert smol.startswith("  [ ] smollm2") and smol.endswith("; install: install-smollm2")
    mini = next(ln for ln in lines if " minilm " in ln)
    assert mini.startswith("  [x] minilm") and "install:" not in mini
    status = {m.name: m.installed for m in loading.offline_model_status()}
    assert status == {n: n != "smollm2" for n in loading.OFFLINE_MODELS}
