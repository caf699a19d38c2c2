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


def _rows(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "stars"])
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def csv_run(
    tmp_path_factory: pytest.TempPathFactory,
    model_dir: Path,
) -> tuple[Path, Path, list]:  # type: ignore[type-arg]
    """A prompt tuned on a CSV with its own column names (review, stars; classes negative, positive)."""
    tmp = tmp_path_factory.mktemp("csv-run")
    task = separable_task(60)
    rows = [(t, ["negative", "positive"][y]) for t, y in zip(task.texts, task.labels)]
    data = _rows(tmp / "reviews.csv", rows)
    run = tmp / "run"
    args = ["-q", "tune", "--model", str(model_dir), "--task", str(data), "--text-column", "review"]
    args += ["--label-column", "stars", "--out", str(run), "--prompt-length", "3", "--max-length", "24"]
    assert main([*args, "--max-steps", "4", "--batch-size", "8", "--head", "linear"]) == 0
    return data, run / "prompt.safetensors", rows


def _evaluate(
    capsys: pytest.CaptureFixture[str],
    prompt: Path,
    *extra: str,
) -> tuple[int, dict | str]:  # type: ignore[type-arg]
    capsys.readouterr()
    code = main(["-q", "evaluate", "--prompt", str(prompt), *extra])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else out.err.strip())


def _figures(res: dict) -> tuple:  # type: ignore[type-arg]
    return res["accuracy"], res["loss"], res["n"]


def test_a_prompt_tuned_on_a_csv_records_its_source(
    tmp_path: Path,
    csv_run: tuple[Path, Path, list],
    capsys: pytest.CaptureFixture[str],  # type: ignore[type-arg]
) -> None:
    """#17 item 13: the prompt records its task source (path, columns, content hash), so evaluate and
    find work without --task; when the file moved, the error names the recorded path."""
    data, prompt, _ = csv_run
    task = json.loads(prompt.with_suffix(".json").read_text())["task"]
    assert task["load"] == {"spec": str(data.resolve()), "text_column": "review", "label_column": "stars"}
    assert task["fingerprint"] and task["label_names"] == ["negative", "positive"]
    code, own = _evaluate(capsys, prompt)
    assert code == 0, own
    code, given = _evaluate(
        capsys, prompt, "--task", str(data), "--text-column", "review", "--label-column", "stars"
    )
    assert code == 0 and _figures(own) == _figures(given)  # type: ignore[arg-type]
    out = tmp_path / "n"
    assert (
        main(["find", "-q", "--prompt", str(prompt), "--out", str(out), "--no-controls", "--top", "3"]) == 0
    )
    moved = tmp_path / "moved.csv"
    moved.write_bytes(data.read_bytes())
    data.unlink()
    try:
        code, err = _evaluate(capsys, prompt)
    finally:
        data.write_bytes(moved.read_bytes())
    assert code == 2 and str(data.resolve()) in err and "\n" not in err  # type: ignore[operator]
    assert "--task PATH --text-column review --label-column stars" in err  # type: ignore[operator]


def test_labels_are_matched_by_name_at_evaluation(
    tmp_path: Path,
    csv_run: tuple[Path, Path, list],
    capsys: pytest.CaptureFixture[str],  # type: ignore[type-arg]
) -> None:
    """#17 item 1: the prompt records its label names in order; an evaluation task with other names is
    an error listing both sets and how to map them (--label-names, before any model load); the same
    names in another order are mapped by name, never by position."""
    data, prompt, rows = csv_run
    cols = ["--text-column", "review", "--label-column", "stars"]
    code, own = _evaluate(capsys, prompt, "--task", str(data), *cols)
    assert code == 0
    code, reordered = _evaluate(
        capsys, prompt, "--task", str(data), *cols, "--label-names", "positive,negative"
    )
    assert code == 0 and _figures(reordered) == _figures(own)  # type: ignore[arg-type]
    renamed = _rows(tmp_path / "renamed.csv", [(t, {"negative": "zneg"}.get(y, y)) for t, y in rows])
    code, err = _evaluate(
        capsys, prompt, "--task", str(renamed), *cols, "--model", str(tmp_path / "no-model")
    )
    assert code == 2 and "\n" not in err, err  # type: ignore[operator]
    assert "(negative, positive)" in err and "(positive, zneg)" in err  # type: ignore[operator]
    assert "--label-names negative=DATA_LABEL,positive=DATA_LABEL" in err  # type: ignore[operator]
    mapping = ["--label-names", "negative=zneg,positive"]
    code, mapped = _evaluate(capsys, prompt, "--task", str(renamed), *cols, *mapping)
    assert code == 0 and _figures(mapped) == _figures(own)  # type: ignore[arg-type]


def test_one_class_file_evaluates_but_does_not_train_or_rank(
    tmp_path: Path,
    csv_run: tuple[Path, Path, list],
    capsys: pytest.CaptureFixture[str],  # type: ignore[type-arg]
) -> None:
    """#17 item 16: an evaluation file with a single class is a valid test set; tune (before the model
    loads) and find refuse it."""
    _, prompt, rows = csv_run
    one = _rows(tmp_path / "positive.csv", [r for r in rows if r[1] == "positive"])
    cols = ["--text-column", "review", "--label-column", "stars"]
    code, res = _evaluate(capsys, prompt, "--task", str(one), *cols, "--split", "all")
    assert code == 0, res
    assert res["n"] == len(one.read_text().splitlines()) - 1  # type: ignore[index]
    assert 0 <= res["accuracy"] <= 1  # type: ignore[index]
    args = ["-q", "tune", "--model", str(tmp_path / "no-model"), "--task", str(one), *cols, "--out"]
    assert main([*args, str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "one class only ('positive'): training needs at least two" in err and "\n" not in err
    assert not (tmp_path / "r").exists()
    find = ["-q", "find", "--prompt", str(prompt), "--task", str(one), *cols, "--out", str(tmp_path / "n")]
    assert main(find) == 2
    assert "ranking needs at least two" in capsys.readouterr().err


def test_models_marks_which_offline_models_are_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """#17 (smaller things): ``skillneurons models`` marks the installed offline models and says how to
    install the others, checked without extracting or assembling any model files."""
    import skillneurons.backbones.offline as offline

    checks = {n: ((lambda n=n: n != "smollm2"), f"install-{n}") for n in offline.OFFLINE_MODELS}
    monkeypatch.setattr(offline, "_INSTALLED", checks)
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "offline models ([x] installed, [ ] not installed):"
    smol = next(ln for ln in lines if " smollm2 " in ln)
    assert smol.startswith("  [ ] smollm2") and smol.endswith("; install: install-smollm2")
    mini = next(ln for ln in lines if " minilm " in ln)
    assert mini.startswith("  [x] minilm") and "install:" not in mini
    status = {m.name: m.installed for m in offline.offline_model_status()}
    assert status == {n: n != "smollm2" for n in offline.OFFLINE_MODELS}
