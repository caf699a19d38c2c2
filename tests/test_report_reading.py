"""The report's reading (DynSAN) sections (issue 19): a tiny real ``read train`` run with its test
evaluation, and the cost and ablation bench JSON (hand-made fixtures in the benches' schemas, checked
against the benches' own summaries) render with their figures; malformed files become notes."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from skillneurons.errors import ConfigError
from skillneurons.report import ReportConfig, discover, write_report
from skillneurons.report.discovery import classify

FIXTURES = Path(__file__).parent / "fixtures" / "report"
BENCH = Path(__file__).resolve().parent.parent / "bench"


def _bench(name: str) -> Any:
    """A bench script as a module (they import ``common`` from their folder)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return __import__(name)


def _sections(page: str) -> list[str]:
    import re

    return re.findall(r'<section id="([^"]+)">', page)


@pytest.fixture(scope="module")
def read_run(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    """``read train`` (4 steps) then ``read evaluate --split test --gates`` into the run folder."""
    from skillneurons.cli import main
    from skillneurons.reading.examples import write_jsonl
    from test_reading_train import _examples

    tmp = tmp_path_factory.mktemp("read")
    task = tmp / "task"
    task.mkdir()
    for split, (n, seed) in {"train": (16, 0), "dev": (6, 1), "test": (6, 2)}.items():
        write_jsonl(task / f"{split}.jsonl", _examples(n, seed))
    small = ["--dim", "16", "--heads", "2", "--top-k", "8", "--blocks", "1", "--read-passages", "3"]
    steps = ["--steps", "4", "--eval-every", "2", "--warmup-steps", "1", "--batch-size", "4"]
    out = tmp / "run"
    data = ["--task", f"jsonl:{task}"]
    assert (
        main(
            ["read", "train", "-q", *data, "--embeddings", str(model_dir), *small, *steps, "--out", str(out)]
        )
        == 0
    )
    ev = ["read", "evaluate", "-q", "--reader", str(out / "reader.safetensors"), *data, "--split", "test"]
    assert main([*ev, "--gates", "--out", str(out / "test_result.json")]) == 0
    return out


def test_a_read_train_run_shows_its_curve_and_its_evaluations(read_run: Path, tmp_path: Path) -> None:
    from skillneurons.reading.results import ReadEvaluation, ReadTrainResult

    data = discover(read_run)
    assert data.tunes == [] and data.neurons is None  # its history.json / checkpoint are the reader's
    assert sorted(r.kind for r in data.results) == ["read_eval", "read_eval", "read_train"]
    page = write_report(ReportConfig(run_dir=read_run, out=tmp_path / "r.html")).read_text()
    assert _sections(page) == ["reading"]  # no prompt-tuning run or model card to show
    assert "<title>DynSAN reading results</title>" in page
    train = ReadTrainResult.load(read_run / "train_result.json")
    test = ReadEvaluation.load(read_run / "test_result.json")
    dev = ReadEvaluation.load(read_run / "dev_result.json")
    assert f"{train.best_dev_em:.3f}" in page and f"step {train.best_step} of 4" in page
    for r in (test, dev):
        assert f"{r.em:.3f} [{r.em_low:.3f}, {r.em_high:.3f}]" in page
        assert f"{r.f1:.3f} [{r.f1_low:.3f}, {r.f1_high:.3f}]" in page
    assert f"on {test.n} questions" in page  # the test EM card
    for g in test.gates:  # the gate AUROC table, one row per block
        assert f"<td>{g.block}</td>" in page
        assert ", ".join(f"{a:.3f}" for a in g.auroc) in page
    assert "Reader: task jsonl:" in page and "selection gate" in page
    assert page.count('src="data:image/png;base64,') == 1  # the dev EM / F1 curve


def test_the_cost_bench_shows_curves_break_even_and_table(tmp_path: Path) -> None:
    dc = _bench("dynsan_cost")
    fixture = json.loads((FIXTURES / "dynsan_cost.json").read_text())
    ratios = dc._ratios(fixture["rows"])  # the fixture is what the bench writes for these rows
    assert ratios == fixture["ratios"]
    assert (
        fixture["break_even_L"] == {"block_K64": dc.break_even(ratios, "block", 64)} == {"block_K64": 200.0}
    )
    path = tmp_path / "dynsan_cost.json"
    shutil.copy(FIXTURES / "dynsan_cost.json", path)
    from skillneurons.cli import main

    assert main(["report", str(path)]) == 0  # one result file: its report is written beside it
    page = (tmp_path / "dynsan_cost.html").read_text()
    assert _sections(page) == ["dynsan-cost"]
    assert "Break-even length (measured step time, interpolated): DynSA K=64: L ≈ 200." in page
    assert page.count('src="data:image/png;base64,') == 1
    # L = 1600: full attention 0.32 s, 96 GFLOP, 256 MiB saved; DynSA 8x faster, 8x fewer FLOPs
    for text in ("0.3200", "96.000", "256.0", "240.0", "8.00×", "0.50×", "1,600"):
        assert f">{text}</td>" in page, text
    assert "Setting: dim 32, heads 4, blocks 1" in page and "cpu test CPU" in page


def test_the_ablation_table_with_intervals_baseline_and_gates(tmp_path: Path) -> None:
    da = _bench("dynsan_ablation")
    fixture = json.loads((FIXTURES / "dynsan_ablation.json").read_text())
    assert da.summarise(fixture["rows"]) == fixture["table"]  # the bench's own summary of these rows
    shutil.copy(FIXTURES / "dynsan_ablation.json", tmp_path / "dynsan_ablation.json")
    shutil.copy(FIXTURES / "dynsan_cost.json", tmp_path / "dynsan_cost.json")
    page = write_report(ReportConfig(run_dir=tmp_path, out=tmp_path / "r.html")).read_text()
    assert _sections(page) == ["dynsan-cost", "dynsan-ablation"]
    html = page[page.index('<section id="dynsan-ablation">') :]
    # gate: EM 1,1,1,0 and 1,0,1,1 -> 0.75 on both seeds; full attention 0.25 on both; per question
    # full - gate is -0.5 on every question, so the paired interval is a point
    assert "<td>gate</td>" in html and "0.750 [0.750, 0.750]" in html
    assert "0.825 [0.507, 1.143]" in html  # F1 0.8 and 0.85: t interval with 1 d.o.f.
    assert "0.250 [0.250, 0.250]" in html and "-0.500 [-0.500, -0.500]" in html
    assert "<td>45, 55</td>" in html and "<td>40, 50</td>" in html  # steps per seed
    assert "most-frequent entity (all passages)" in html and "0.250 [0.000, 0.750]" in html
    assert "most-frequent entity (read passages)" in html and "0.550 [0.100, 1.000]" in html
    assert "Task bbc_cloze, 4 test questions; 4 run(s)." in html
    # the gate AUROC rows of the gate reader, seed 0: per head, their mean, selected answer share
    assert "0.734, 0.500" in html and ">0.617</td>" in html and ">0.175</td>" in html
    assert "<td>cross0</td>" in html and "error bound 0.001" in html


def test_malformed_reading_files_are_notes_or_one_line_errors(read_run: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    shutil.copytree(read_run, root / "run")
    (root / "bad").mkdir()
    # a read evaluation missing its figures, and one written by a newer version
    (root / "bad" / "eval.json").write_text(
        json.dumps({"schema": "skillneurons.read_evaluation", "split": "x"})
    )
    newer = json.loads((read_run / "test_result.json").read_text()) | {"schema_version": 99}
    (root / "bad" / "newer.json").write_text(json.dumps(newer))
    # an ablation file whose table holds nonsense: shown with dashes, not a crash
    abl = json.loads((FIXTURES / "dynsan_ablation.json").read_text())
    abl["table"]["full"]["em"] = "n/a"
    abl["rows"][0]["gates_dev"] = [{"block": "encoder"}, 3]
    (root / "abl.json").write_text(json.dumps(abl))
    page = write_report(ReportConfig(run_dir=root, out=tmp_path / "r.html")).read_text()
    assert '<section id="reading">' in page and '<section id="dynsan-ablation">' in page
    # the good run is still shown; each unreadable file is a one-line note naming it
    assert '<section id="reading">' in page and "selection gate" in page
    notes = page[page.index('<section id="notes">') :].split("<li>")[1:]
    assert len(notes) == 2 and all("could not show" in n and "\n" not in n.split("</li>")[0] for n in notes)
    assert (
        "eval.json: ValueError" in notes[0] and "does not match the skillneurons.read_evaluation" in notes[0]
    )
    assert "newer.json: ValueError" in notes[1] and "newer skillneurons" in notes[1]
    alone = write_report(
        ReportConfig(run_dir=root / "bad" / "eval.json", out=tmp_path / "e.html")
    ).read_text()
    assert _sections(alone) == ["notes"] and "eval.json: ValueError" in alone
    assert "<td>full</td>" in page and "<td>gate</td>" in page
    assert classify({"rows": [{"level": "block", "L": 1}]}) is None  # not every cost key: not a cost file
    (tmp_path / "other.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ConfigError) as e:
        write_report(tmp_path / "other.json")
    assert "is not a folder, nor a result file this report shows" in str(e.value) and "\n" not in str(e.value)
