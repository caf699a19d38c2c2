"""Every command line of the README runs as written, in order, on a fresh folder (issue 17).

The README's ``bash`` blocks are parsed; each ``skillneurons ...`` line (with its continuations) runs
through :func:`skillneurons.cli.main` in an empty working folder, at tiny scale: the offline models
are replaced by tiny random models saved as folders, the built-in tasks by small CSV files of the
same label names, and the training commands get a few steps (appended flags: the last one wins).
What cannot run here is listed in :data:`SKIPPED` with the reason; a README command that is neither
run nor skipped fails the test.
"""

from __future__ import annotations

import csv
import glob
import itertools
import os
import re
import shlex
from pathlib import Path

import pytest

from conftest import separable_task
from skillneurons.cli import main
from skillneurons.testing import tiny_model

README = Path(__file__).resolve().parents[1] / "README.md"

#: commands of the README that this test does not run, by their first words, with the reason
SKIPPED = {
    "bash scripts/demo.sh": "set-up: creates .venv and installs the package, models and data",
    "bash scripts/test.sh": "set-up: creates .venv with the dev tools and runs the whole suite",
    "torchrun": "launches several processes (tests/test_distributed.py runs the data-parallel paths)",
    "skillneurons study": "runs the repository's bench/studies spec (minutes of real models); "
    "tests/test_study.py runs a study, interrupts and resumes it on the tiny model",
    "skillneurons report runs/read-gate": "reports the `read train` run above (not run here); "
    "tests/test_report_reading.py reports a tiny `read train` run",
    "skillneurons report bench/results": "the repository's bench results; tests/test_report_reading.py "
    "reports fixtures of the same schemas",
    "skillneurons read": "builds the real BBC cloze task and trains on MiniLM's embedding table (minutes); "
    "tests/test_reading_data.py and tests/test_reading_train.py run these commands on fixture tasks",
}

#: offline aliases -> tiny family, saved as a folder (hidden sizes differ, as the real models' do)
MODELS = {"minilm": ("bert", 32), "mpnet": ("mpnet", 24), "smollm2": ("gpt2", 32)}
TASKS = {"mr": 0, "fine_food": 1, "pang_lee": 2}  # built-in task -> seed of its tiny CSV
#: flags appended to a command at tiny scale (argparse keeps the last value of an option)
TINY = {
    "tune": ["--max-steps", "10", "--batch-size", "8", "--prompt-length", "3", "--max-length", "24"],
    "prune": ["--max-steps", "2", "--batch-size", "8"],
    "project": ["--max-steps", "2", "--batch-size", "8", "--max-length", "24"],
    "kpt-evaluate": ["--max-examples", "48", "--max-length", "24", "--expand", "4"],
}


def readme_commands(text: str) -> list[tuple[int, str]]:
    """``(line number, command)`` of every command line in the README's ``bash`` blocks."""
    out: list[tuple[int, str]] = []
    in_bash, pending, start = False, "", 0
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            in_bash = line.strip() == "```bash"
            continue
        if not in_bash:
            continue
        code = line
        if not pending:
            if not code.strip() or code.lstrip().startswith("#"):
                continue
            start = n
        if code.rstrip().endswith("\\"):
            pending += code.rstrip()[:-1] + " "
            continue
        out.append((start, pending + code))
        pending = ""
    return out


def _argv(command: str) -> list[str]:
    """The arguments of one shell command: comments dropped, globs expanded as the shell does."""
    words = shlex.split(command, comments=True)
    out: list[str] = []
    for w in words:
        hits = sorted(glob.glob(w)) if any(c in w for c in "*?[") else []
        out.extend(hits or [w])
    return out


def _skip_reason(command: str) -> str | None:
    return next((why for head, why in SKIPPED.items() if command.lstrip().startswith(head)), None)


def _tiny(argv: list[str], models: dict[str, Path], tasks: dict[str, Path]) -> list[str]:
    """The command at tiny scale: tiny model folders and task files, a few training steps."""
    out = list(argv)
    for i, (flag, value) in enumerate(itertools.pairwise(out)):
        if flag == "--model" and value in models:
            out[i + 1] = str(models[value])
        elif flag == "--task" and value in tasks:
            out[i + 1] = str(tasks[value])
    return ["-q", *out, *TINY.get(out[0], [])]


def _task_csv(path: Path, seed: int) -> Path:
    task = separable_task(80, seed=seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for t, y in zip(task.texts, task.labels):
            w.writerow([t, task.label_names[y]])
    return path


def test_the_readme_names_what_it_skips() -> None:
    commands = readme_commands(README.read_text(encoding="utf-8"))
    assert len(commands) > 20 and all(
        c.startswith(("skillneurons ", "bash ", "torchrun ")) for _, c in commands
    )
    heads = {head for head in SKIPPED if any(c.startswith(head) for _, c in commands)}
    assert heads == set(SKIPPED), "a skipped command is no longer in the README: drop it from SKIPPED"


def test_every_readme_command_runs_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    models: dict[str, Path] = {}
    for alias, (family, hidden) in MODELS.items():
        bb = tiny_model(family, hidden=hidden, layers=4)
        bb.model.save_pretrained(tmp_path / "models" / alias)
        bb.tokenizer.save_pretrained(tmp_path / "models" / alias)
        models[alias] = tmp_path / "models" / alias
    (tmp_path / "data").mkdir()
    tasks = {name: _task_csv(tmp_path / "data" / f"{name}.csv", seed) for name, seed in TASKS.items()}
    work = tmp_path / "clone"  # a fresh folder: only what the README's commands create
    work.mkdir()
    monkeypatch.chdir(work)
    ran = 0
    for line, command in readme_commands(README.read_text(encoding="utf-8")):
        if _skip_reason(command) is not None:
            continue
        argv = _argv(command)
        assert argv[0] == "skillneurons", f"README.md:{line}: not a skillneurons command: {command}"
        tiny = _tiny(argv[1:], models, tasks)
        rc = main(tiny)
        err = capsys.readouterr().err
        assert rc == 0, f"README.md:{line}: exit {rc}: {command}\n{' '.join(tiny)}\n{err[-2000:]}"
        ran += 1
    assert ran >= 20
    assert os.path.isfile("runs/mr-neurons/report.html")


def test_commands_are_parsed_with_continuations_and_comments() -> None:
    text = (
        "x\n```bash\nskillneurons a --b c \\\n    --d 'e f'   # note\n# only a comment\n```\nskillneurons z\n"
    )
    assert readme_commands(text) == [(3, "skillneurons a --b c      --d 'e f'   # note")]
    assert _argv(readme_commands(text)[0][1]) == ["skillneurons", "a", "--b", "c", "--d", "e f"]
    assert re.match(r"set-up", _skip_reason("bash scripts/demo.sh # x") or "")
