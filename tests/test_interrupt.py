"""A killed run (SIGKILL, no chance to clean up) or an interrupted one (SIGINT during a dev evaluation)
resumes and ends with the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

# The child builds everything from seeds (tiny model, separable task) so that every process -
# the killed one, the resumed one and the reference - sees identical data and weights.
CHILD = textwrap.dedent(
    """
    import signal, sys, time, torch
    # Ctrl-C as in a terminal: a process started in the background of a non-interactive shell (a CI
    # runner, `cmd &`) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, {tests!r})
    from conftest import separable_task
    from skillneurons.testing import tiny_model
    from skillneurons.runs import tune_prompt, find_skill_neurons
    from skillneurons.training import TrainConfig, Trainer

    what, out, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    slow = Trainer.train_step
    def train_step(self, idx, step):
        time.sleep(delay)
        return slow(self, idx, step)
    Trainer.train_step = train_step
    stall = int(sys.argv[4]) if len(sys.argv) > 4 else 0  # hang in this dev evaluation (1-based)
    if stall:
        import skillneurons.training.trainer as tr
        real_eval, seen = tr.evaluate, []
        def evaluate(*a, **k):
            seen.append(1)
            if len(seen) == stall:
                open(out + ".stalled", "w").close()
                time.sleep(600)
            return real_eval(*a, **k)
        tr.evaluate = evaluate
    task = separable_task(80)
    bb = tiny_model("bert")
    if what == "tune":
        tune_prompt(bb, task, out, prompt_length=3, head="linear", max_length=24, split_seed=0,
                    progress=False,
                    config=TrainConfig(max_steps=24, batch_size=8, eval_every=2, seed=0, lr=0.05))
    else:
        import skillneurons.neurons.find as f
        real = f.score_prompt
        def score(*a, **k):
            r = real(*a, **k)
            time.sleep(delay * 20)
            return r
        f.score_prompt = score
        import os
        prompts = [os.path.join(os.path.dirname(out), f"run{{s}}", "prompt.safetensors") for s in (0, 1)]
        find_skill_neurons(bb, prompts, task, out, controls=False, progress=False)
    """
)


def _tune_here(out: Path) -> None:
    """The uninterrupted reference, run in this process (same code and seeds as the child)."""
    from conftest import separable_task
    from skillneurons.runs import tune_prompt
    from skillneurons.testing import tiny_model
    from skillneurons.training import TrainConfig

    tune_prompt(
        tiny_model("bert"),
        separable_task(80),
        out,
        prompt_length=3,
        head="linear",
        max_length=24,
        split_seed=0,
        progress=False,
        config=TrainConfig(max_steps=24, batch_size=8, eval_every=2, seed=0, lr=0.05),
    )


def _child(
    tmp: Path, what: str, out: Path, delay: float, stall: int = 0, stderr: int | None = None
) -> subprocess.Popen[bytes]:
    script = tmp / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, str(script), what, str(out), str(delay), str(stall)]
    return subprocess.Popen(argv, env=env, stderr=stderr)


def _wait_for(  # type: ignore[no-untyped-def]
    cond,
    proc: subprocess.Popen[bytes],
    timeout: float = 120.0,
) -> None:
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, "the child finished before it could be killed: raise its delay"
        assert time.time() - t0 < timeout, "the child made no progress"
        time.sleep(0.05)


def _step(out: Path) -> int:
    try:
        return int(json.loads((out / "checkpoint.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0


def test_sigkilled_tuning_resumes_to_the_same_prompt(tmp_path: Path) -> None:
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    _tune_here(ref)
    proc = _child(tmp_path, "tune", killed, 0.15)
    _wait_for(lambda: _step(killed) >= 6, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _step(killed) < 24
    assert _child(tmp_path, "tune", killed, 0.0).wait() == 0
    res = json.loads((killed / "results.json").read_text())
    assert res["resumed_from_step"] >= 6
    a, b = load_file(ref / "prompt.safetensors"), load_file(killed / "prompt.safetensors")
    torch.testing.assert_close(a["prompt"], b["prompt"])
    assert res["test_accuracy"] == json.loads((ref / "results.json").read_text())["test_accuracy"]


def test_ctrl_c_during_a_dev_evaluation_resumes_to_the_uninterrupted_run(tmp_path: Path) -> None:
    """Item 5: SIGINT during the dev evaluation after step 6 left a checkpoint that skipped that
    evaluation forever (history 2, 4, 8, ...) and restarted the train-loss curve. The resumed run must
    give the same history (train loss included), best prompt and test figures as an uninterrupted
    one, and say "resuming from step 6" without -v."""
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert _child(tmp_path, "tune", ref, 0.0).wait() == 0  # the reference, in a process like the others
    proc = _child(tmp_path, "tune", cut, 0.0, stall=3)
    _wait_for(lambda: Path(f"{cut}.stalled").is_file(), proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) != 0
    ckpt = json.loads((cut / "checkpoint.json").read_text())
    assert ckpt["step"] == 6 and ckpt["eval_pending"] and [h["step"] for h in ckpt["history"]] == [2, 4]
    resumed = _child(tmp_path, "tune", cut, 0.0, stderr=subprocess.PIPE)
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err.decode()
    assert "resuming from step 6 of 24" in err.decode()
    history = json.loads((cut / "history.json").read_text())
    assert history == json.loads((ref / "history.json").read_text())
    assert [h["step"] for h in history] == list(range(2, 25, 2))
    a, b = load_file(ref / "prompt.safetensors"), load_file(cut / "prompt.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    res, want = (json.loads((d / "results.json").read_text()) for d in (cut, ref))
    assert res["resumed_from_step"] == 6
    for key in ("best_step", "best_dev_accuracy", "test_accuracy", "test_loss", "steps"):
        assert res[key] == want[key], key


def test_sigkilled_find_resumes_to_the_same_ranking(tmp_path: Path) -> None:
    from conftest import separable_task
    from skillneurons.runs import find_skill_neurons
    from skillneurons.testing import tiny_model

    for s in (0, 1):
        _tune_here(tmp_path / f"run{s}")
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    prompts = [tmp_path / f"run{s}" / "prompt.safetensors" for s in (0, 1)]
    find_skill_neurons(tiny_model("bert"), prompts, separable_task(80), ref, controls=False, progress=False)
    proc = _child(tmp_path, "find", killed, 0.2)
    _wait_for(lambda: (killed / "scores_0.json").is_file(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "skill_neurons.json").is_file()
    assert _child(tmp_path, "find", killed, 0.0).wait() == 0
    a, b = load_file(ref / "skill_neurons.safetensors"), load_file(killed / "skill_neurons.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
