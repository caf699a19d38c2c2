"""RunDir: one rule each for a run folder's kind, backbone, task and split; one writer; one identity."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from conftest import separable_task
from skillneurons.artifacts import save_artifact
from skillneurons.data import Task, TaskOptions
from skillneurons.errors import ArtifactError, ConfigError, DataError
from skillneurons.rundir import RunDir, make_splits, run_manifest


def _prompt_run(  # type: ignore[no-untyped-def]
    tmp: Path,
    task,
    seed: int | None = 0,
    split_file: bool = True,
    **split_extra,
):
    splits = make_splits(
        task, 0 if seed is None else seed, tmp if split_file else None, split_extra.get("max_examples")
    )
    man = run_manifest(task, splits)
    if seed is None:
        man["split"].pop("seed")
    man["backbone"] = {"name": "tiny-bert"}
    save_artifact(tmp / "prompt", {"prompt": torch.zeros(2, 4)}, kind="prompt", manifest=man)
    return splits


def test_kind_backbone_and_paths(tmp_path: Path) -> None:
    task = separable_task()
    _prompt_run(tmp_path, task)
    for p in (tmp_path, tmp_path / "prompt.safetensors", tmp_path / "prompt.json", tmp_path / "prompt"):
        run = RunDir.of(p)
        assert run.path == tmp_path and run.kind == "prompt" and run.backbone_name == "tiny-bert"
    with pytest.raises(ArtifactError, match="not skill_neurons"):
        RunDir.of(tmp_path).require_kind("skill_neurons")
    with pytest.raises(ArtifactError, match="neither a run folder nor an artifact"):
        RunDir.of(tmp_path / "missing.safetensors")


def test_split_rule_split_file_then_recorded_seed_never_a_default(tmp_path: Path) -> None:
    task = separable_task()
    saved = _prompt_run(tmp_path / "a", task)
    run = RunDir.of(tmp_path / "a")
    assert run.splits(task).dev == saved.dev
    # no split.json: the recorded seed (and max_examples) re-draw the same split
    saved = _prompt_run(tmp_path / "b", task, seed=3, split_file=False, max_examples=40)
    assert RunDir.of(tmp_path / "b").splits(task).test == saved.test
    # no split.json and no seed: an error, not seed 0
    _prompt_run(tmp_path / "c", task, seed=None, split_file=False)
    with pytest.raises(DataError, match="records no split seed"):
        RunDir.of(tmp_path / "c").splits(task)
    # another task: refused for the run's split; split_of draws that task's split with the run's seed
    other = separable_task(seed=1)
    with pytest.raises(DataError, match="other data"):
        RunDir.of(tmp_path / "a").splits(other)
    assert RunDir.of(tmp_path / "b").split_of(other).dev == other.split(3).dev


def test_identity_differs_is_an_error_naming_the_option(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.check_identity({"seed": 0, "max_examples": None})
    run.check_identity({"seed": 0, "max_examples": None})  # same run: resumes
    with pytest.raises(ConfigError, match=r"different run .*max_examples \(None -> 100\).*--overwrite"):
        run.check_identity({"seed": 0, "max_examples": 100})
    (tmp_path / "checkpoint.json").write_text("{}")
    run.check_identity({"seed": 0, "max_examples": 100}, overwrite=True)
    assert not (tmp_path / "checkpoint.json").exists()


@contextlib.contextmanager
def _lock_held_elsewhere(folder: Path) -> Iterator[int]:
    """Another process holds ``folder``'s lock while the block runs; yields its pid."""
    holder = textwrap.dedent(f"""
        import sys
        from skillneurons.rundir import RunDir
        with RunDir({str(folder)!r}).lock():
            print("locked", flush=True)
            sys.stdin.readline()
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc.pid
    finally:
        proc.communicate("\n", timeout=30)


def test_second_writer_gets_the_holders_pid(tmp_path: Path) -> None:
    with _lock_held_elsewhere(tmp_path) as pid:
        with pytest.raises(ConfigError, match=rf"another skillneurons process \(pid {pid}\)"):
            with RunDir(tmp_path).lock():
                pass
    with RunDir(tmp_path).lock():  # released when the holder exits
        pass


# ---- issue 17 items 2 and 3, at the level of a tuning run ----------------------------------------


def _tiny_tune(out: Path, **kw):  # type: ignore[no-untyped-def]
    from skillneurons.runs import tune_prompt
    from skillneurons.testing import tiny_model
    from skillneurons.training import TrainConfig

    cfg = TrainConfig(max_steps=2, batch_size=8, eval_every=1)
    options = {"prompt_length": 2, "head": "linear", "max_length": 24, **kw}
    return tune_prompt(tiny_model("bert"), separable_task(40), out, config=cfg, progress=False, **options)


def test_rerun_with_another_split_is_refused_not_answered_from_the_old_run(tmp_path: Path) -> None:
    """Item 2: a finished run rerun with other --max-examples / --split-seed used to return the old
    results."""
    first = _tiny_tune(tmp_path, split_seed=0)
    assert _tiny_tune(tmp_path, split_seed=0).test_accuracy == first.test_accuracy  # same run: resumes
    with pytest.raises(ConfigError, match=r"different run .*split_seed \(0 -> 1\)"):
        _tiny_tune(tmp_path, split_seed=1)
    with pytest.raises(ConfigError, match=r"different run .*max_examples \(None -> 30\)"):
        _tiny_tune(tmp_path, split_seed=0, max_examples=30)
    again = _tiny_tune(tmp_path, split_seed=1, overwrite=True)
    assert again.split_seed == 1


def test_an_invalid_option_writes_nothing(tmp_path: Path) -> None:
    """Item 2: --prompt-length 0 used to write split.json first, which the corrected command reused."""
    with pytest.raises(ConfigError, match="--prompt-length 0"):
        _tiny_tune(tmp_path / "run", prompt_length=0)
    assert not (tmp_path / "run").exists()


def test_a_second_tune_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    """Item 3: two tune commands on one --out both exited 0 and the folder held only the second."""
    with _lock_held_elsewhere(tmp_path) as pid:
        with pytest.raises(
            ConfigError, match=rf"being written by another skillneurons process \(pid {pid}\)"
        ):
            _tiny_tune(tmp_path)
        assert not (tmp_path / "split.json").exists()


def test_task_rule_load_spec_moved_file_and_name_only_records(tmp_path: Path) -> None:
    """#17 item 13: run_manifest records how the task was loaded (path, columns, content hash) and
    RunDir.task loads it again; a moved file, or a file recorded by name only, is an error naming the
    recorded path; #17 item 1: a given task's classes are matched to the recorded ones by name."""
    data = tmp_path / "good.csv"
    task = separable_task()
    data.write_text("body,y\n" + "".join(f"{t},{'np'[y]}\n" for t, y in zip(task.texts, task.labels)))
    loaded = TaskOptions(str(data), text_column="body", label_column="y").load()
    man = run_manifest(loaded, loaded.split(0))
    assert man["task"]["load"] == {"spec": str(data.resolve()), "text_column": "body", "label_column": "y"}
    man["backbone"] = {"name": "tiny-bert"}
    save_artifact(tmp_path / "a" / "prompt", {"prompt": torch.zeros(2, 4)}, kind="prompt", manifest=man)
    run = RunDir.of(tmp_path / "a")
    assert run.task().fingerprint() == loaded.fingerprint()
    swapped = TaskOptions(str(data), text_column="body", label_column="y", label_names="p,n").load()
    assert run.task(swapped).fingerprint() == loaded.fingerprint()
    one = Task("one", ("good film", "great fun"), (0, 0), ("p",))
    assert run.task(one).label_names == ("n", "p") and run.task(one).labels == (1, 1)
    with pytest.raises(DataError, match=r"tuned on the classes \(n, p\) but task 'other' has \(n, x\)"):
        run.task(Task("other", ("a", "b"), (0, 1), ("n", "x")))
    data.rename(tmp_path / "moved.csv")
    with pytest.raises(DataError, match=f"the data file {data.resolve()}, which is not there any more"):
        run.task()
    del man["task"]["load"]
    save_artifact(tmp_path / "b" / "prompt", {"prompt": torch.zeros(2, 4)}, kind="prompt", manifest=man)
    with pytest.raises(DataError, match=rf"records its task 'good' \(from {data.resolve()}\)"):
        RunDir.of(tmp_path / "b").task()
