"""Issue #17, training robustness: NaN/inf refused (item 4), valid JSON from every writer (item 4),
figures rounded and counts as integers in result files, the tune bar before the first evaluation."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import separable_task
from skillneurons.artifacts import load_artifact, save_artifact
from skillneurons.cli import main
from skillneurons.errors import NonFiniteError
from skillneurons.prompts import PromptModel, SoftPrompt, build_head, load_prompt
from skillneurons.results import Result
from skillneurons.testing import tiny_model
from skillneurons.training import TrainConfig, Trainer, evaluate
from skillneurons.training.state import sigint_deferred
from skillneurons.training.trainer import TrainHooks

ROOT = Path(__file__).resolve().parent.parent


def _model() -> PromptModel:
    bb = tiny_model("bert")
    torch.manual_seed(0)
    prompt = SoftPrompt.create(bb, 3, "normal", std=0.5)
    return PromptModel(bb, prompt, build_head("linear", bb, [["bad"], ["good"]]), max_length=24)


def _csv(path: Path, n: int = 60) -> Path:
    task = separable_task(n)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for t, y in zip(task.texts, task.labels, strict=True):
            w.writerow([t, ["negative", "positive"][y]])
    return path


def _poison(prompt: Path) -> None:
    """Put a NaN into a saved prompt, keeping its manifest (and a matching hash)."""
    tensors, man = load_artifact(prompt, kind="prompt")
    tensors["prompt"][0, 0] = math.nan
    keep = {k: v for k, v in man.items() if k not in ("shapes", "dtypes", "tensor_file", "sha256")}
    save_artifact(prompt, tensors, kind="prompt", manifest=keep)


def test_a_prompt_holding_nan_is_refused_at_load_and_evaluation(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 4: a prompt with NaN values is refused with one line (it evaluated to 0.5 and wrote NaN)."""
    data, run = _csv(tmp_path / "d.csv"), tmp_path / "run"
    tune = ["-q", "tune", "--model", str(model_dir), "--task", str(data), "--out", str(run)]
    tune += ["--prompt-length", "3", "--max-length", "24", "--max-steps", "2", "--batch-size", "8"]
    assert main([*tune, "--head", "linear", "--dtype", "float32"]) == 0
    prompt = run / "prompt.safetensors"
    _poison(prompt)
    capsys.readouterr()
    assert main(["-q", "evaluate", "--prompt", str(prompt), "--task", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the model library's loading bar
    assert err.startswith("skillneurons: error: ") and "holds NaN or infinite values (in prompt)" in err, err
    with pytest.raises(NonFiniteError, match="not a usable prompt"):
        load_prompt(prompt, tiny_model("bert"))
    # a model in memory whose prompt is NaN: the evaluation refuses it instead of reporting accuracy 0.5
    pm = _model()
    with torch.no_grad():
        pm.prompt.weight[0, 0] = math.nan
    with pytest.raises(NonFiniteError, match="evaluation loss on task 'tiny-sentiment' is nan"):
        evaluate(pm, separable_task(16))


@dataclass
class _Poison(TrainHooks):
    """From training step ``at`` (0-based) on, the embeddings (``what="loss"``) or the prompt's gradient
    (``what="grad"``) become non-finite."""

    at: int
    what: str

    def step_context(self, step: int) -> contextlib.AbstractContextManager[Any]:
        return self._poisoned() if step >= self.at else contextlib.nullcontext()

    @contextlib.contextmanager
    def _poisoned(self) -> Iterator[None]:
        model = self.trainer.model
        if self.what == "loss":
            handle = model.backbone.input_embeddings.register_forward_hook(lambda m, i, o: o * math.nan)
        else:
            handle = model.prompt.weight.register_hook(lambda g: g * math.inf)
        try:
            yield
        finally:
            handle.remove()

    def attach(self, trainer: Trainer) -> None:
        self.trainer = trainer


@pytest.mark.parametrize(("what", "message"), [("loss", "loss became nan"), ("grad", "gradient norm became")])
def test_diverging_training_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, what: str, message: str
) -> None:
    """Item 4: a non-finite loss or gradient stops training with an error naming the step (1-based,
    as the history counts steps) and the checkpoint kept; the checkpoint and best prompt stay finite."""
    task = separable_task(40)
    cfg = TrainConfig(max_steps=8, batch_size=8, eval_every=2, lr=0.05)
    trainer = Trainer(_model(), task, task, cfg, tmp_path, progress=False, hooks=_Poison(5, what))
    with pytest.raises(NonFiniteError, match=rf"{message}.* at step 6 \(the checkpoint of step 4 is kept\)"):
        trainer.fit()
    tensors, man = load_artifact(tmp_path / "checkpoint", kind="checkpoint")
    assert man["step"] == 4 and [h["step"] for h in man["history"]] == [2, 4]
    assert all(bool(torch.isfinite(v).all()) for v in tensors.values() if v.is_floating_point())
    load_prompt(tmp_path / "prompt.safetensors", tiny_model("bert"))  # the best prompt loads: finite


def test_every_json_writer_refuses_nan(tmp_path: Path) -> None:
    """Item 4: JSON is always valid: the benches write through atomic_write_json (they wrote NaN), and
    no module of src/ or bench/ writes JSON text but through skillneurons.files."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from common import write_json  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ROOT / "bench"))
    with pytest.raises(ValueError, match=r"x\.json\.a\[1\] is nan"):
        write_json(tmp_path / "x.json", {"a": [1.0, math.nan]})
    assert not (tmp_path / "x.json").exists()
    write_json(tmp_path / "ok.json", {"a": 1})
    assert json.loads((tmp_path / "ok.json").read_text()) == {"a": 1}
    writer = re.compile(r"json\.dump\(|write_text\(\s*json\.dumps|\.write\(\s*json\.dumps")
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in [*sorted((ROOT / "src").rglob("*.py")), *sorted((ROOT / "bench").glob("*.py"))]
        if p.name != "files.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if writer.search(line)
    ]
    assert not offenders, offenders


@dataclass
class _Figures(Result):
    SCHEMA = "test.figures"

    accuracy: float
    n: int
    values: list[float]
    big: float


def test_result_files_round_figures_and_keep_integers(tmp_path: Path) -> None:
    """Smaller item: result JSON holds 6 significant digits (no float32 noise) and counts as integers;
    a result still equals itself saved and loaded; evaluation counts are ints."""
    r = _Figures(accuracy=0.7166666388511658, n=40, values=[1 / 3, 2.0, 1e-9 / 3], big=123456789.123)
    assert r.to_json() == {
        "schema": "test.figures",
        "schema_version": 1,
        "accuracy": 0.716667,
        "n": 40,
        "values": [0.333333, 2.0, 3.33333e-10],
        "big": 123457000.0,
    }
    text = r.save(tmp_path / "r.json").read_text()
    assert '"accuracy": 0.716667,' in text and '"n": 40,' in text
    again = _Figures.load(tmp_path / "r.json")
    assert again == r and again.to_json() == r.to_json()
    assert _Figures(0.5, 40, [], 1.0) != _Figures(0.6, 40, [], 1.0)
    metrics = evaluate(_model(), separable_task(16))
    assert isinstance(metrics["n"], int) and metrics["n"] == 16


def test_tune_bar_shows_no_best_before_the_first_evaluation(capsys: pytest.CaptureFixture[str]) -> None:
    """Smaller item: the tune bar shows best=- until a dev evaluation has run (it showed best=0.0000)."""
    task = separable_task(24)
    Trainer(_model(), task, task, TrainConfig(max_steps=3, batch_size=8, eval_every=3), progress=True).fit()
    err = capsys.readouterr().err
    assert "best=-" in err and "best=0.0000" not in err, err


def test_ctrl_c_inside_a_training_step_takes_effect_after_it() -> None:
    """Item 5: Ctrl-C during a step (or its record) is delivered when the step is recorded, so an
    interrupt never leaves a checkpoint of half a step. (Under Python's default SIGINT handler, as in
    a terminal: a test run started in the background of a non-interactive shell inherits SIGINT
    ignored, where ``sigint_deferred`` rightly does nothing.)"""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        done = []
        with pytest.raises(KeyboardInterrupt):
            with sigint_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                done.append("the rest of the step")
        assert done == ["the rest of the step"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
