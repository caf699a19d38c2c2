"""Tasks and loaders: seeded splits, file formats, pairs, one-line errors for bad input, built-in data."""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skillneurons.cli import build_parser
from skillneurons.data import Task, TaskOptions, TaskSplits, check_disjoint, load_task
from skillneurons.errors import DataError, SkillNeuronsError


def _task(n: int = 50, classes: int = 2) -> Task:
    return Task(
        "t",
        tuple(f"text number {i}" for i in range(n)),
        tuple(i % classes for i in range(n)),
        tuple(f"c{c}" for c in range(classes)),
    )


def test_splits_identical_for_the_same_seed_and_differ_otherwise() -> None:
    t = _task(100, 3)
    a, b, c = t.split(7), t.split(7), t.split(8)
    assert (a.train, a.dev, a.test) == (b.train, b.dev, b.test)
    assert a.train != c.train
    assert sorted(a.train + a.dev + a.test) == list(range(100))
    for part in ("dev", "test"):  # stratified: every class reaches dev and test
        assert set(a.part(part).labels) == {0, 1, 2}


def test_split_file_round_trip_and_tamper_detection(tmp_path: Path) -> None:
    t = _task()
    s = t.split(3)
    s.save(tmp_path / "split.json")
    assert TaskSplits.load(t, tmp_path / "split.json").dev == s.dev
    obj = json.loads((tmp_path / "split.json").read_text())
    obj["dev"][0], obj["train"][0] = obj["train"][0], obj["dev"][0]
    (tmp_path / "bad.json").write_text(json.dumps(obj))
    with pytest.raises(DataError, match="do not match"):
        TaskSplits.load(t, tmp_path / "bad.json")
    other = _task(51)
    with pytest.raises(DataError, match="other data"):
        TaskSplits.load(other, tmp_path / "split.json")


def test_split_parts_are_disjoint_and_overlap_is_detected() -> None:
    s = _task().split(0)
    check_disjoint(s.part("train"), s.part("dev"))
    with pytest.raises(DataError, match="also occur"):
        check_disjoint(s.part("train"), s.part("train").subset([0]))


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet", "csv.gz"])
def test_file_formats_load_the_same_task(tmp_path: Path, fmt: str) -> None:
    df = pd.DataFrame(
        {
            "review": ["a good film", "a bad film", "great fun", "dull plot"],
            "stars": ["pos", "neg", "pos", "neg"],
        }
    )
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "tsv":
        df.to_csv(path, sep="\t", index=False)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in df.to_dict("records")))
    elif fmt == "parquet":
        df.to_parquet(path)
    else:
        path.write_bytes(gzip.compress(df.to_csv(index=False).encode()))
    t = load_task(str(path), text_column="review", label_column="stars")
    assert t.label_names == ("neg", "pos") and t.labels == (1, 0, 1, 0) and t.texts[0] == "a good film"


def test_pair_task_keeps_segments_apart(tmp_path: Path) -> None:
    p = tmp_path / "nli.jsonl"
    rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": ["no", "yes"][i % 2]} for i in range(6)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t = load_task(str(p))
    assert t.is_pair and t.texts[0] == "p0" and t.texts_b is not None and t.texts_b[0] == "h0"


@pytest.mark.parametrize(
    ("content", "kwargs", "match"),
    [
        ("text,label\na,x\nb,y\n", {"text_column": "review"}, "review"),
        ("text,label\na,x\nb,y\n", {"label_names": ["x", "z"]}, "not one of the label names"),
        ("", {}, "empty|no data|no columns"),
        ("text,label\n", {}, "no data rows"),
    ],
)
def test_bad_files_give_one_line_errors(
    tmp_path: Path,
    content: str,
    kwargs: dict,  # type: ignore[type-arg]
    match: str,
) -> None:
    p = tmp_path / "d.csv"
    p.write_text(content)
    with pytest.raises(DataError, match=match) as e:
        load_task(str(p), **kwargs)
    assert "\n" not in str(e.value)


def test_non_utf8_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_bytes("text,label\ncaf\xe9,a\nb,b\n".encode("latin-1"))
    with pytest.raises(DataError, match="encoding"):
        load_task(str(p))
    assert load_task(str(p), encoding="latin-1").texts[0] == "café"
    with pytest.raises(DataError, match=r"not found|unknown task"):
        load_task(str(tmp_path / "nope.csv"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".parquet"]))
def test_random_malformed_files_never_crash(tmp_path: Path, data: bytes, suffix: str) -> None:
    p = tmp_path / f"fuzz{suffix}"
    p.write_bytes(data)
    try:
        t = load_task(str(p))
    except SkillNeuronsError as e:
        assert "\n" not in str(e) and str(e)
    else:
        assert len(t) >= 1 and t.num_classes >= 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(st.text(max_size=12), st.one_of(st.text(max_size=4), st.integers(-3, 3), st.none())),
        max_size=8,
    )
)
def test_random_tables_never_crash(tmp_path: Path, rows: list[tuple[str, object]]) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    try:
        t = load_task(str(p))
    except SkillNeuronsError as e:
        assert "\n" not in str(e)
    else:
        assert len(t) == len(t.labels)


@pytest.mark.real_model
@pytest.mark.parametrize(
    ("name", "classes", "minimum"),
    [
        ("mr", 2, 3900),
        ("pang_lee", 2, 1400),
        ("fine_food", 2, 4900),
        ("bbc_news", 5, 2000),
        ("tweets", 3, 30000),
    ],
)
def test_builtin_tasks_are_real_and_deduplicated(name: str, classes: int, minimum: int) -> None:
    t = load_task(name)
    assert t.num_classes == classes and len(t) >= minimum
    keys = {" ".join(x.casefold().split()) for x in t.texts}
    assert len(keys) == len(t)


def test_task_options_load_the_same_task_as_load_task(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("review,stars\na good film,pos\na bad film,neg\ngreat fun,pos\n")
    t = TaskOptions(str(p), text_column="review", label_column="stars", label_names="pos,neg").load()
    ref = load_task(str(p), text_column="review", label_column="stars", label_names=["pos", "neg"])
    assert t.label_names == ("pos", "neg") and t.fingerprint() == ref.fingerprint()
    with pytest.raises(DataError, match="no task given"):
        TaskOptions().load()


def test_config_modules_import_no_model_libraries() -> None:
    code = (
        "import sys\n"
        "import skillneurons.backbones.config, skillneurons.data.config\n"
        "import skillneurons.prompts.config, skillneurons.training.config\n"
        "print(sorted(m for m in ('torch', 'transformers', 'numpy', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_encoding_is_a_task_option_and_recorded(tmp_path: Path) -> None:
    """#17 item 14: the non-UTF-8 message suggests --encoding latin-1: TaskOptions (so every command
    reading data files) takes it, passes it to load_task and records it; hf: datasets refuse it."""
    p = tmp_path / "latin.csv"
    p.write_bytes("text,label\ncaf\xe9 cr\xe8me,a\nplain,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"--encoding latin-1"):
        TaskOptions(str(p)).load()
    t = TaskOptions(str(p), encoding="latin-1").load()
    assert t.texts[0] == "café crème" and t.load_spec is not None and t.load_spec["encoding"] == "latin-1"
    with pytest.raises(DataError, match="--encoding applies to data files"):
        load_task("hf:some/dataset", encoding="latin-1")
    with pytest.raises(DataError, match="--encoding does not apply to the built-in task"):
        load_task("mr", encoding="latin-1")


def test_every_command_reading_data_takes_encoding() -> None:
    """#17 item 14: every command with --task has --encoding."""
    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    with_task = {n for n, p in sub.choices.items() if any("--task" in a.option_strings for a in p._actions)}
    with_encoding = {
        n for n, p in sub.choices.items() if any("--encoding" in a.option_strings for a in p._actions)
    }
    assert with_task and with_task <= with_encoding, with_task - with_encoding


def test_one_class_is_a_valid_test_set_but_not_a_training_set(tmp_path: Path) -> None:
    """#17 item 16: a file with a single class loads (it is a valid test set); training and ranking
    refuse it (Task.require_classes), with one line."""
    p = tmp_path / "oneclass.csv"
    p.write_text("text,label\na good film,pos\ngreat fun,pos\n")
    t = load_task(str(p))
    assert t.label_names == ("pos",) and t.labels == (0, 0)
    assert load_task(str(p), label_names=["neg", "pos"]).labels == (1, 1)
    with pytest.raises(DataError, match=r"one class only \('pos'\): training needs at least two") as e:
        t.require_classes("training")
    assert "\n" not in str(e.value)
    assert _task().require_classes("ranking").num_classes == 2


def test_label_names_map_data_labels_to_classes(tmp_path: Path) -> None:
    """#17 item 1: --label-names NAME=LABEL reads the data's label LABEL as class NAME; a task's
    classes are put in another order by name, never by position."""
    p = tmp_path / "d.csv"
    p.write_text("text,label\na good film,pos\na bad film,zneg\ngreat fun,pos\n")
    t = load_task(str(p), label_names=["neg=zneg", "pos"])
    assert t.label_names == ("neg", "pos") and t.labels == (1, 0, 1)
    assert TaskOptions(str(p), label_names="neg=zneg,pos").load().labels == (1, 0, 1)
    with pytest.raises(DataError, match="not one of the label names \\(zneg, good\\)"):
        load_task(str(p), label_names=["neg=zneg", "pos=good"])
    with pytest.raises(DataError, match="repeats a name"):
        load_task(str(p), label_names=["neg=pos", "pos"])
    plain = load_task(str(p))
    assert plain.label_names == ("pos", "zneg")
    swapped = plain.with_classes(["zneg", "pos"])
    assert swapped.labels == (1, 0, 1) and swapped.texts == plain.texts
    assert swapped.with_classes(["pos", "zneg"]).fingerprint() == plain.fingerprint()
    with pytest.raises(DataError, match="not among"):
        plain.with_classes(["neg", "pos"])


def test_hub_dataset_while_offline_is_one_line_within_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """#17 (smaller things): ``hf:`` datasets with no network gave 25 s of retry warnings before the
    error. The Hub is now probed once (one connection, 3 s at most); unreachable, the Hub libraries go
    offline (a cached copy still loads) and a missing dataset is one line within seconds."""
    import socket
    import time

    import datasets
    from huggingface_hub import constants

    import skillneurons.data.hub as hub

    probes: list[object] = []

    def unreachable(address, timeout=None):  # type: ignore[no-untyped-def]
        probes.append(address)
        raise OSError("no route to host")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    monkeypatch.setattr(hub, "_probe", None)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    for _ in range(2):
        t0 = time.perf_counter()
        with pytest.raises(DataError, match="cannot reach the Hugging Face Hub") as e:
            load_task("hf:skillneurons-test/no-such-dataset")
        assert time.perf_counter() - t0 < 10 and "\n" not in str(e.value)
    assert len(probes) == 1 and constants.HF_HUB_OFFLINE is True
    # already offline (HF_HUB_OFFLINE=1): no probe at all
    monkeypatch.setattr(hub, "_probe", None)
    assert hub.hub_reachable() is False and len(probes) == 1
