"""Issue #17 items 9-12: every bad input is one line before any work, no traceback, nothing lost.

A tiny prompt run (a random BERT saved to a folder, a separable CSV) is tuned once per module; the
tests then break its files, its --out and its inputs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import separable_task
from skillneurons.artifacts import load_artifact, save_artifact
from skillneurons.cli import main
from skillneurons.errors import ArtifactError, ConfigError


def _csv(path: Path, n: int = 60, seed: int = 0) -> Path:
    task = separable_task(n, seed=seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for t, y in zip(task.texts, task.labels):
            w.writerow([t, ["negative", "positive"][y]])
    return path


def tune_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "-q",
        "tune",
        "--model",
        str(model),
        "--task",
        str(data),
        "--out",
        str(out),
        "--prompt-length",
        "3",
        "--max-length",
        "24",
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--dtype",
        "float32",
        *extra,
    ]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> dict[str, Path]:
    """A tuned prompt (prompt_first, label words: exportable to PEFT) and its data."""
    d = tmp_path_factory.mktemp("runs")
    data = _csv(d / "d.csv")
    run = d / "run"
    assert main(tune_args(model_dir, data, run, "--layout", "prompt_first")) == 0
    return {"data": data, "run": run, "prompt": run / "prompt.safetensors", "model": model_dir, "dir": d}


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    # library progress bars (transformers' weight loading) may share stderr: the CLI's own lines count
    lines = [
        line
        for line in err.splitlines()
        if line.startswith("skillneurons:") and not line.startswith("skillneurons: warning:")
    ]
    assert len(lines) == 1, err
    return lines[0]


# ---- item 10: unreadable tensor files, and whatever reaches main -----------------------------------


@pytest.mark.parametrize("bad", ["truncated", "pickle"])
def test_item10_tensor_file_that_is_not_safetensors(tmp_path: Path, bad: str) -> None:
    """#17 item 10: a tensor file whose manifest hash was updated but whose bytes are not safetensors is
    a one-line ArtifactError naming the file (not a SafetensorError traceback)."""
    from skillneurons.files import atomic_write_json, sha256_file

    tfile = save_artifact(tmp_path / "a", {"x": torch.zeros(4, 4)}, kind="thing")
    if bad == "truncated":
        tfile.write_bytes(tfile.read_bytes()[:40])
    else:
        tfile.write_bytes(pickle.dumps({"x": [0.0] * 16}))
    mfile = tmp_path / "a.json"
    man = json.loads(mfile.read_text())
    man["sha256"] = sha256_file(tfile)
    atomic_write_json(mfile, man)
    with pytest.raises(ArtifactError, match=r"a\.safetensors is not a readable safetensors file") as e:
        load_artifact(tmp_path / "a")
    assert "\n" not in str(e.value)


def test_item10_corrupted_prompt_through_the_cli(
    tiny_run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """#17 item 10: `evaluate` on a prompt whose tensor bytes were replaced (hash updated) is exit 2 and
    one line naming the file."""
    import shutil

    from skillneurons.files import atomic_write_json, sha256_file

    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run)
    tfile = run / "prompt.safetensors"
    tfile.write_bytes(tfile.read_bytes()[:-7])
    man = json.loads((run / "prompt.json").read_text())
    man["sha256"] = sha256_file(tfile)
    atomic_write_json(run / "prompt.json", man)
    args = ["-q", "evaluate", "--prompt", str(tfile), "--task", str(tiny_run["data"])]
    assert main(args) == 2
    line = _err(capsys)
    assert line.startswith("skillneurons: error:") and f"{tfile} is not a readable safetensors" in line


def _models_raising(monkeypatch: pytest.MonkeyPatch, make: Any) -> None:
    """`skillneurons models` raising what ``make()`` raises (the command reads offline_model_status)."""
    import skillneurons.backbones

    monkeypatch.setattr(skillneurons.backbones, "offline_model_status", make)


def test_item10_file_errors_reaching_main_name_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """#17 item 10: an OSError, a json.JSONDecodeError or a SafetensorError that reaches cli.main is one
    line naming the file, exit 2."""
    from safetensors.torch import load_file

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    notensors = tmp_path / "w.safetensors"
    notensors.write_bytes(b"\x00" * 5)

    def read_json_file() -> Any:
        path = broken
        return json.loads(path.read_text())

    def read_tensors() -> Any:
        path = str(notensors)
        return load_file(path)

    def open_missing() -> Any:
        return open(tmp_path / "gone.txt")

    for make, expected in (
        (read_json_file, f"{broken} is not valid JSON"),
        (read_tensors, f"{notensors} is not a readable safetensors file"),
        (open_missing, f"{tmp_path / 'gone.txt'}: No such file or directory"),
    ):
        _models_raising(monkeypatch, make)
        assert main(["models"]) == 2
        line = _err(capsys)
        assert line.startswith("skillneurons: error:") and expected in line, line


def test_item10_anything_else_is_a_bug_report_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """#17 item 10: any other exception prints one 'bug' line naming the file its traceback was written
    to (exit 1), never a silent exit."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)

    def boom() -> Any:
        raise RuntimeError("boom\nsecond line")

    _models_raising(monkeypatch, boom)
    assert main(["models"]) == 1
    line = _err(capsys)
    assert "internal error (a bug, not your input): RuntimeError: boom second line" in line
    [trace] = tmp_path.glob("skillneurons-bug-*.txt")
    assert str(trace) in line and "RuntimeError: boom" in trace.read_text()


# ---- item 9: --out checked first, for every command ---------------------------------------------

#: the least each command needs to parse (the --out check comes before anything else is read)
_OUT_COMMANDS: dict[str, list[str]] = {
    "tune": ["tune", "--task", "mr"],
    "find": ["find"],
    "perturb": ["perturb"],
    "cross-perturb": ["cross-perturb"],
    "similarity": ["similarity"],
    "delta-perturb": ["delta-perturb"],
    "prune": ["prune"],
    "transfer-matrix": ["transfer-matrix"],
    "transferability": ["transferability"],
    "project train": ["project", "train"],
    "project apply": ["project", "apply"],
    "tpt-compare": ["tpt-compare", "--baseline", "b", "r"],
    "kpt-evaluate": ["kpt-evaluate", "--task", "mr"],
    "report": ["report", "RUN"],
    "peft export": ["peft", "export"],
    "peft import": ["peft", "import"],
    "demo": ["demo"],
    "study": ["study", "SPEC.toml"],
}


def test_item9_every_command_that_writes_declares_its_out() -> None:
    """#17 item 9: every command with an --out flag declares it (Command.out), so the entry point checks
    it before the command runs; the table above covers every such command."""
    from skillneurons.cli.app import build_parser, commands

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    writers = set()
    for cmd in commands():
        flags = {s for a in sub.choices[cmd.name]._actions for s in a.option_strings}
        if "--out" in flags:
            writers.add(cmd.name)
            assert cmd.out is not None, f"{cmd.name} has --out but declares no Command.out"
    assert writers == {k.split()[0] for k in _OUT_COMMANDS}


def _no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from skillneurons.backbones.config import BackboneOptions

    def refuse(self: Any, name: str) -> Any:
        raise AssertionError(f"a model ({name}) was loaded before --out was checked")

    monkeypatch.setattr(BackboneOptions, "load", refuse)


def _tree(d: Path) -> set[Path]:
    return {p for p in d.rglob("*")}


@pytest.mark.parametrize("command", sorted(_OUT_COMMANDS))
def test_item9_out_under_a_file_is_one_line_before_any_work(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """#17 item 9: --out under a file (and a folder --out that is a file) is exit 2, one line, before any
    model load or data read, for every command; nothing is written."""
    _no_model_load(monkeypatch)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    before = _tree(tmp_path)
    assert main(["-q", *_OUT_COMMANDS[command], "--out", str(blocker / "sub.json")]) == 2
    assert f"{blocker} is a file, not a folder" in _err(capsys)
    folder_commands = {"tune", "find", "perturb", "prune", "demo", "similarity", "peft export"}
    if command in folder_commands:
        assert main(["-q", *_OUT_COMMANDS[command], "--out", str(blocker)]) == 2
        assert f"--out {blocker} is a file, not a folder" in _err(capsys)
    assert _tree(tmp_path) == before


def _unwritable_root() -> Path:
    """A folder nobody can create files in, root included (sysfs); skip where there is none."""
    d = Path("/sys")
    try:
        (d / ".skillneurons-probe").touch()
    except OSError:
        return d
    pytest.skip("no folder here refuses root's writes")


@pytest.mark.parametrize("command", ["tune", "perturb", "find", "kpt-evaluate", "report", "peft import"])
def test_item9_unwritable_parent_is_one_line_before_any_work(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """#17 item 9: an --out whose parent cannot really be written (a probe file, not os.access, which
    says yes to root) is exit 2, one line, before any model load or compute (perturb used to fail after
    the whole sweep)."""
    _no_model_load(monkeypatch)
    out = _unwritable_root() / "skillneurons-out" / "x"
    assert main(["-q", *_OUT_COMMANDS[command], "--out", str(out)]) == 2
    assert "is not writable" in _err(capsys) and not out.parent.exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into 0555 folders")
def test_item9_read_only_out_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """#17 item 9: a read-only --out folder (mode 0555) is one line before any work."""
    _no_model_load(monkeypatch)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["-q", "perturb", "--out", str(ro)]) == 2
        assert f"{ro} is not writable" in _err(capsys)
    finally:
        ro.chmod(0o755)


# ---- item 11: find refuses a mixed prompt list, and bad options, before any work ---------------------


def _variant(run: Path, dest: Path, **changes: Any) -> Path:
    """A copy of the prompt run ``run`` whose manifest has ``changes`` (dotted keys: ``task.name``)."""
    import shutil

    from skillneurons.files import atomic_write_json

    shutil.copytree(run, dest)
    man = json.loads((dest / "prompt.json").read_text())
    for key, value in changes.items():
        *parents, last = key.split(".")
        node = man
        for k in parents:
            node = node[k]
        node[last] = value
    atomic_write_json(dest / "prompt.json", man)
    return dest / "prompt.safetensors"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task.name": "other", "task.fingerprint": "0" * 64}, "were trained on different tasks"),
        ({"method": "lora"}, "holds a 'delta' artifact, not prompt"),
        ({"backbone.name": "another-model"}, "were made on different backbones (name"),
    ],
)
def test_item11_find_refuses_a_mixed_prompt_list_before_scoring(
    changes: dict[str, Any],
    message: str,
    tiny_run: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """#17 item 11: find with prompts of two tasks, a delta model among prompts, or prompts of different
    backbones is refused before the model loads (CLI) and before the first prompt is scored (API)."""
    import skillneurons.neurons.find as find_module
    from skillneurons.backbones import load_backbone
    from skillneurons.errors import SkillNeuronsError
    from skillneurons.runs import find_skill_neurons

    other = _variant(tiny_run["run"], tmp_path / "other", **changes)
    prompts = [str(tiny_run["prompt"]), str(other)]
    bb = load_backbone(str(tiny_run["model"]))
    _no_model_load(monkeypatch)
    out = tmp_path / "n"
    args = ["-q", "find", "--prompt", *prompts, "--task", str(tiny_run["data"]), "--out", str(out)]
    assert main(args) == 2
    assert message in _err(capsys) and not out.exists()

    def no_scoring(*a: Any, **k: Any) -> Any:
        raise AssertionError("a prompt was scored")

    monkeypatch.setattr(find_module, "score_prompt", no_scoring)
    from skillneurons.data import load_task

    with pytest.raises(SkillNeuronsError, match=message.replace("(", r"\(")):
        find_skill_neurons(bb, prompts, load_task(str(tiny_run["data"])), None, controls=False)


def test_item11_find_option_errors_before_the_model_loads(
    tiny_run: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """#17 item 11: every option error of find (--rho 2, --auroc-bins 0, --batch-size 0) is reported
    before the model loads."""
    _no_model_load(monkeypatch)
    for bad in (["--rho", "2"], ["--auroc-bins", "0"], ["--batch-size", "0"]):
        args = ["-q", "find", "--prompt", str(tiny_run["prompt"]), "--out", str(tmp_path / "n"), *bad]
        assert main(args) == 2
        assert _err(capsys).startswith("skillneurons: error:")
    assert not (tmp_path / "n").exists()


# ---- item 12: imported PEFT prompts work in every command given --task and --split-seed -----------


@pytest.fixture(scope="module")
def imported(tiny_run: dict[str, Path]) -> Path:
    """The tiny prompt exported to PEFT and imported back: no task, no split recorded."""
    d = tiny_run["dir"]
    assert main(["-q", "peft", "export", "--prompt", str(tiny_run["prompt"]), "--out", str(d / "peft")]) == 0
    out = d / "imported" / "prompt.safetensors"
    assert main(["-q", "peft", "import", "--adapter", str(d / "peft"), "--out", str(out)]) == 0
    man = json.loads(out.with_suffix(".json").read_text())
    assert "task" not in man and "split" not in man
    return out


def _flags(command: str) -> set[str]:
    from skillneurons.cli.app import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {s for a in sub.choices[command]._actions for s in a.option_strings}


def test_item12_imported_prompt_in_evaluate_find_perturb(
    tiny_run: dict[str, Path], imported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """#17 item 12: an imported PEFT prompt (no task, no split recorded) works in evaluate, find and
    perturb given --task and --split-seed (it crashed with KeyError: 'task' before)."""
    data, seed = str(tiny_run["data"]), ["--split-seed", "0"]
    assert main(["-q", "evaluate", "--prompt", str(imported), "--task", data, *seed]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["split"] == "test" and res["n"] == 6
    neurons = tmp_path / "n"
    find = ["-q", "find", "--prompt", str(imported), "--task", data, "--out", str(neurons), "--no-controls"]
    assert main([*find, *seed]) == 0
    sn = neurons / "skill_neurons.safetensors"
    perturb = ["-q", "perturb", "--prompt", str(imported), "--neurons", str(sn), "--task", data]
    assert main([*perturb, "--out", str(tmp_path / "p"), "--rho", "0.1", "--draws", "1", *seed]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("command", ["evaluate", "find", "perturb"])
def test_item12_errors_name_flags_that_exist(
    command: str,
    tiny_run: dict[str, Path],
    imported: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """#17 item 12: without --task or --split-seed the one-line error names exactly the flags to add, and
    the command has them (the hint named a --dev-file that does not exist); before the model loads."""
    _no_model_load(monkeypatch)
    args = {
        "evaluate": ["evaluate", "--prompt", str(imported)],
        "find": ["find", "--prompt", str(imported), "--out", str(tmp_path / "o")],
        "perturb": ["perturb", "--prompt", str(imported), "--neurons", "n", "--out", str(tmp_path / "o")],
    }[command]
    assert main(["-q", *args]) == 2
    assert "records no task: pass --task" in _err(capsys)
    assert main(["-q", *args, "--task", str(tiny_run["data"])]) == 2
    assert "pass --task TASK and --split-seed SEED" in _err(capsys)
    assert {"--task", "--split-seed"} <= _flags(command)
    assert not (tmp_path / "o").exists()


def test_item12_split_seed_against_a_recorded_split(
    tiny_run: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """#17 item 12: --split-seed for a prompt whose split is recorded must be that split's seed (never
    silently ignored)."""
    _no_model_load(monkeypatch)
    args = ["-q", "evaluate", "--prompt", str(tiny_run["prompt"]), "--task", str(tiny_run["data"])]
    assert main([*args, "--split-seed", "5"]) == 2
    assert "not --split-seed 5: drop --split-seed" in _err(capsys)


def test_item12_peft_export_records_the_real_model_path(
    tiny_run: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#17 item 12: `peft export` of a prompt trained on an offline alias records the folder the alias
    resolves to, so AutoPeftModel*.from_pretrained(dir) loads offline (the alias sent it to the Hub)."""
    import skillneurons.backbones.loading as loading
    from skillneurons.files import atomic_write_json

    model = tiny_run["model"]
    monkeypatch.setitem(loading.OFFLINE_MODELS, "tiny-alias", ("a test alias", lambda: (model, None)))
    prompt = _variant(tiny_run["run"], tmp_path / "run", **{"backbone.name": "tiny-alias"})
    man = json.loads(prompt.with_suffix(".json").read_text())
    atomic_write_json(prompt.with_suffix(".json"), man)
    assert main(["-q", "peft", "export", "--prompt", str(prompt), "--out", str(tmp_path / "peft")]) == 0
    cfg = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(model)
    from peft import AutoPeftModelForFeatureExtraction  # the task type of an encoder's prompt

    loaded = AutoPeftModelForFeatureExtraction.from_pretrained(str(tmp_path / "peft"))
    assert loaded.peft_config["default"].num_virtual_tokens == 3


# ---- imported prompts in the commands that take several tasks, and their split before the model ----


@pytest.fixture(scope="module")
def tiny_neurons(tiny_run: dict[str, Path]) -> Path:
    """Skill neurons of the tiny prompt (find, no controls)."""
    out = tiny_run["dir"] / "neurons"
    args = ["-q", "find", "--prompt", str(tiny_run["prompt"]), "--out", str(out), "--no-controls"]
    assert main(args) == 0
    return out / "skill_neurons.safetensors"


def _several_task_commands(tiny_run: dict[str, Path], imported: Path, sn: Path, out: Path) -> dict[str, list]:
    own, imp = str(tiny_run["prompt"]), str(imported)
    return {
        "cross-perturb": [
            "cross-perturb",
            "--prompt",
            imp,
            own,
            "--neurons",
            str(sn),
            str(sn),
            "--draws",
            "1",
        ],
        "transfer-matrix": ["transfer-matrix", "--prompt", imp, own],
        "prune": ["prune", "--neurons", str(sn), "--prompt", imp, "--rho", "0.5"],
        "delta-perturb": [
            "delta-perturb",
            "--neurons",
            str(sn),
            "--prompt",
            imp,
            "--rho",
            "0,0.5",
            "--draws",
            "1",
        ],
    }


@pytest.mark.parametrize("command", ["cross-perturb", "transfer-matrix", "prune", "delta-perturb"])
def test_imported_prompt_task_and_split_before_the_model_loads(
    command: str,
    tiny_run: dict[str, Path],
    imported: Path,
    tiny_neurons: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """#17 item 12 (the rest): cross-perturb and transfer-matrix take --task (one per prompt, '-' for a
    prompt's own) and --split-seed for an imported prompt; prune and delta-perturb resolve its task and
    split before the model loads; without them the one-line error names the flags to add."""
    out = tmp_path / "o"
    args = [*_several_task_commands(tiny_run, imported, tiny_neurons, out)[command], "--out", str(out)]
    data = str(tiny_run["data"])
    several = command in ("cross-perturb", "transfer-matrix")
    tasks = ["--task", data, "-"] if several else ["--task", data]
    with monkeypatch.context() as m:
        _no_model_load(m)
        assert main(["-q", *args]) == 2
        assert "records no task: pass --task" in _err(capsys)
        assert main(["-q", *args, *tasks]) == 2
        assert "pass --task TASK and --split-seed SEED" in _err(capsys)
        if several:
            assert main(["-q", *args, "--task", data, "--split-seed", "0"]) == 2
            assert "--task names 1 task(s) for 2" in _err(capsys)
        assert {"--task", "--split-seed"} <= _flags(command)
        assert not out.exists()
    assert main(["-q", *args, *tasks, "--split-seed", "0"]) == 0
    capsys.readouterr()
    result = {
        "cross-perturb": "perturb_cross.json",
        "transfer-matrix": "transfer_matrix.json",
        "prune": "results.json",
        "delta-perturb": "delta_perturb.json",
    }[command]
    res = json.loads((out / result).read_text())
    if command == "transfer-matrix":
        assert res["n_eval"][0] == res["n_eval"][1] == 6 and res["settings"]["split_seed"] == 0
    if command == "prune":
        assert res["n"] == 6 and res["task"] == tiny_run["data"].stem


def test_negative_sigma_is_refused_by_the_config() -> None:
    from skillneurons.perturb.config import PerturbConfig

    with pytest.raises(ConfigError, match="--sigma"):
        PerturbConfig(sigma=-1.0)
