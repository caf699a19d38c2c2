"""The HTML report: rendered from a tiny real run (tune two seeds, find), checked as text and in
headless Chromium (loads without console errors or network, every section present, data shown as
text and never as markup, the sortable table sorts, a screenshot is produced)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from browser import Chromium, PageCheck, collect, find_chromium
from conftest import separable_task
from skillneurons.backbones import record_neurons
from skillneurons.data import Task
from skillneurons.errors import ConfigError, SkillNeuronsError
from skillneurons.report import ReportConfig, discover, write_report
from skillneurons.report.discovery import classify
from skillneurons.report.examples import top_activating
from skillneurons.runs import find_skill_neurons, tune_prompt
from skillneurons.testing import tiny_model
from skillneurons.training import TrainConfig
from skillneurons.training.trainer import encode_examples, iterate_batches

XSS = "<script>alert(1)</script>"
EVIL_NAME = '<img src=x onerror="alert(2)">'
CORE_SECTIONS = ["overview", "skill-neurons", "training", "layers", "map", "positions", "top-neurons"]
EXTRA_SECTIONS = ["perturbation", "cross-task", "similarity", "pruning", "transfer"]


def _hostile_task() -> Task:
    """The separable tiny task, every text carrying markup, the task name too."""
    base = separable_task(64)
    texts = tuple(f"{t} {XSS} & more" if i % 2 else f'{XSS} "{t}"' for i, t in enumerate(base.texts))
    return Task(
        name="tiny-<b>sentiment</b>",
        texts=texts,
        labels=base.labels,
        label_names=base.label_names,
        label_words=base.label_words,
        source="tests",
    )


def _extra_results(root: Path, tasks: list[str]) -> None:
    """Results of the other experiments, in their JSON shapes (perturbation, similarity, pruning,
    transfer)."""
    pts = [
        {
            "rho": r,
            "neurons": int(r * 96),
            "skill": 0.9 - 2 * r,
            "random": {
                "mean": 0.9 - r / 2,
                "std": 0.01,
                "ci95": [0.88 - r / 2, 0.92 - r / 2],
                "n": 3,
                "values": [0.9, 0.9, 0.9],
            },
        }
        for r in (0.0, 0.05, 0.1, 0.2)
    ]
    T = len(tasks)
    files: dict[str, Any] = {
        "perturb/perturb_sweep.json": {
            "task": EVIL_NAME,
            "n_eval": 20,
            "model": "tiny-bert",
            "mode": "gaussian",
            "sigma": 0.1,
            "positions": "all",
            "per_layer": True,
            "draws": 3,
            "unperturbed": 0.9,
            "points": pts,
        },
        "perturb/perturb_cross.json": {
            "tasks": tasks,
            "rho": 0.05,
            "mode": "zero",
            "unperturbed": [0.9] * T,
            "accuracy": [[0.8] * T] * T,
            "drop": [[0.1 * (i == j) for j in range(T)] for i in range(T)],
            "random_control": {"draws": 3, "drop": [0.01] * T},
        },
        "perturb/similarity.json": {
            "tasks": tasks,
            "rho": 0.02,
            "spearman": [[1.0 if i == j else 0.3 for j in range(T)] for i in range(T)],
            "jaccard": [[1.0 if i == j else 0.1 for j in range(T)] for i in range(T)],
            "chance_jaccard": [[0.01] * T] * T,
        },
        "prune/prune_speed.json": {
            "entries": [
                {
                    "model": "tiny-bert",
                    "geometry": "2 x 48",
                    "task": EVIL_NAME,
                    "split": "test",
                    "examples": 20,
                    "rows": [
                        {
                            "variant": "unpruned",
                            "rho": 1.0,
                            "kept_per_pruned_layer": 48,
                            "parameters_fraction": 1.0,
                            "examples_per_s": 10.0,
                            "speedup_median": 1.0,
                            "speedup_q1": 1.0,
                            "speedup_q3": 1.0,
                            "accuracy": 0.9,
                        },
                        {
                            "variant": "rho=0.1",
                            "rho": 0.1,
                            "kept_per_pruned_layer": 5,
                            "parameters_fraction": 0.8,
                            "examples_per_s": 14.0,
                            "speedup_median": 1.4,
                            "speedup_q1": 1.3,
                            "speedup_q3": 1.5,
                            "accuracy": 0.85,
                            "accuracy_random_neurons": 0.6,
                        },
                    ],
                }
            ]
        },
        "pruned/results.json": {
            "pruned_model": "x",
            "source_model": EVIL_NAME,
            "rho": 0.1,
            "pruned_layers": [1],
            "parameters": {"source": 100, "pruned": 80, "fraction": 0.8},
            "accuracy_unpruned": 0.9,
            "accuracy_pruned": 0.85,
        },
        "transfer/transfer.json": {
            "kind": "transfer",
            "sources": tasks,
            "targets": tasks,
            "relative_accuracy": [[1.0 if i == j else 0.7 for j in range(T)] for i in range(T)],
        },
    }
    for name, obj in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(json.dumps(obj))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A demo-shaped run folder: seed0/, seed1/ (tune), neurons/ (find), plus other experiments' results."""
    root = tmp_path_factory.mktemp("report") / "demo"
    bb = tiny_model("bert")
    task = _hostile_task()
    prompts = []
    for seed in (0, 1):
        cfg = TrainConfig(max_steps=6, batch_size=8, eval_every=2, seed=seed)
        res = tune_prompt(
            bb,
            task,
            root / f"seed{seed}",
            prompt_length=4,
            max_length=48,
            split_seed=0,
            config=cfg,
            progress=False,
        )
        prompts.append(res["prompt"])
    find_skill_neurons(bb, prompts, task, root / "neurons", auroc_bins=8, batch_size=16, progress=False)
    _extra_results(root, [EVIL_NAME, "other"])
    config = ReportConfig(run_dir=root, out=root / "report.html", top=6, examples=2, sample=None)
    path = write_report(config, backbone=bb, task=task)
    return {"root": root, "bb": bb, "task": task, "path": path, "html": path.read_text(encoding="utf-8")}


def test_report_is_one_self_contained_file_with_data_escaped(run: dict[str, Any]) -> None:
    page = run["html"]
    for sid in CORE_SECTIONS + EXTRA_SECTIONS:
        assert f'<section id="{sid}">' in page, sid
    assert page.count("<script") == 1  # the page's own (sorting) script, nothing from the data
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in page
    assert "tiny-&lt;b&gt;sentiment&lt;/b&gt;" in page
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert page.count('src="data:image/png;base64,') >= 10
    assert "default-src &#x27;none&#x27;" in page  # CSP: nothing may be fetched, no script but the page's own


def test_report_in_headless_chromium(run: dict[str, Any], tmp_path: Path) -> None:
    exe = find_chromium()
    if exe is None:
        pytest.skip("Chromium not found: install it (apt-get install chromium) or set SKILLNEURONS_CHROMIUM")
    shot = tmp_path / "report.png"
    check = PageCheck()
    with Chromium(exe, width=1280, height=900) as c:
        c.open(
            run["path"].resolve().as_uri(),
            init_script="window.__alerts = []; "
            "window.alert = function (m) { window.__alerts.push(String(m)); };",
        )
        check.text = c.evaluate("document.body.innerText")
        assert c.evaluate("window.__alerts.length") == 0
        assert c.evaluate("document.scripts.length") == 1
        for sid in CORE_SECTIONS + EXTRA_SECTIONS:
            assert c.evaluate(f"document.getElementById({sid!r}).getBoundingClientRect().height > 40"), sid
        # every figure decoded (a broken data URI would have naturalWidth 0)
        assert c.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 100)")
        # the data is text: the hostile strings are rendered verbatim, not parsed
        assert c.evaluate("document.querySelectorAll('td.exs .tx').length") > 0
        texts = c.evaluate("Array.from(document.querySelectorAll('td.exs .tx')).map(e => e.textContent)")
        assert any(XSS in t for t in texts)
        assert c.evaluate("document.querySelectorAll('main img:not(.fig)').length") == 0
        # clicking a header sorts the top-neuron table
        col = (
            "Array.from(document.querySelectorAll('#top-neurons tbody tr'))"
            ".map(r => Number(r.cells[2].dataset.sort))"
        )
        c.evaluate("document.querySelectorAll('#top-neurons th')[2].click()")
        first = c.evaluate(col)
        assert first == sorted(first, reverse=True)
        c.evaluate("document.querySelectorAll('#top-neurons th')[2].click()")
        assert c.evaluate(col) == sorted(first)
        c.screenshot(shot, full_page=True, max_height=4000)
        collect(c.events, check)
    assert check.console_errors == [], check.console_errors
    assert check.console == [], check.console
    assert check.remote_requests == [], check.remote_requests
    assert XSS in check.text and EVIL_NAME in check.text and "tiny-<b>sentiment</b>" in check.text
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_sections_appear_only_when_their_data_exists(run: dict[str, Any], tmp_path: Path) -> None:
    root: Path = run["root"]
    # a `find` output folder alone: its tuning runs are found through the recorded prompt paths
    out = write_report(ReportConfig(run_dir=root / "neurons", out=tmp_path / "find.html", examples=0))
    page = out.read_text()
    for sid in CORE_SECTIONS:
        assert f'<section id="{sid}">' in page, sid
    for sid in EXTRA_SECTIONS:
        assert f'<section id="{sid}">' not in page, sid
    assert "dev examples that activate it most" not in page  # --examples 0: no model loaded
    # one `tune` folder: run metadata and curves only
    page = write_report(ReportConfig(run_dir=root / "seed0", out=tmp_path / "tune.html")).read_text()
    assert '<section id="training">' in page and '<section id="overview">' in page
    assert '<section id="top-neurons">' not in page and '<section id="map">' not in page
    # a results folder passed with --include contributes only the files that refer to this run
    extra = tmp_path / "bench"
    extra.mkdir()
    sweep = json.loads((root / "perturb" / "perturb_sweep.json").read_text())
    (extra / "mine.json").write_text(
        json.dumps({**sweep, "prompt": str(root / "seed0" / "prompt.safetensors")})
    )
    (extra / "other.json").write_text(json.dumps({**sweep, "prompt": "/elsewhere/prompt.safetensors"}))
    data = discover(root / "seed0", include=[extra])
    assert [r.path.name for r in data.results] == ["mine.json"]


def test_result_kinds_are_recognised_by_content(run: dict[str, Any]) -> None:
    data = discover(run["root"])
    kinds = sorted(r.kind for r in data.results)
    assert kinds == ["perturb_cross", "perturb_sweep", "prune_bench", "prune_run", "similarity", "transfer"]
    assert (
        classify({"points": []}) is None
        and classify([1, 2]) is None
        and classify({"best_dev_accuracy": 1}) is None
    )
    assert [t.name for t in data.tunes] == ["seed0", "seed1"] and data.neurons is not None
    assert data.neurons.per_position is not None and data.neurons.auroc is not None


def test_missing_or_invalid_run_dir_is_a_one_line_error(tmp_path: Path) -> None:
    for bad in (tmp_path / "missing", tmp_path):
        with pytest.raises(ConfigError) as e:
            write_report(bad)
        assert "\n" not in str(e.value) and "skillneurons demo" in str(e.value)
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        write_report(tmp_path / "f.txt")
    # the same through the command line
    from skillneurons.cli.report import COMMANDS

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    for cmd in COMMANDS:
        cmd.add_arguments(p := sub.add_parser(cmd.name))
        p.set_defaults(fn=cmd.run)
    args = parser.parse_args(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r.html")])
    with pytest.raises(SkillNeuronsError):
        args.fn(args)


def test_report_command_include_is_repeatable_and_takes_several(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--include A --include B`` (the old repeatable flag) and ``--include A B`` both collect every path,
    kept as given; the backbone options reach the report."""
    import skillneurons.report.render as render
    from skillneurons.cli.report import COMMANDS

    seen: dict[str, Any] = {}

    def fake_write_report(config: ReportConfig, **kw: Any) -> Path:
        seen.update(config=config, **kw)
        return tmp_path / "r.html"

    monkeypatch.setattr(render, "write_report", fake_write_report)
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    for cmd in COMMANDS:
        cmd.add_arguments(p := sub.add_parser(cmd.name))
        p.set_defaults(fn=cmd.run)
    for argv, include in (
        (["--include", "a", "--include", "b,c"], ("a", "b,c")),
        (["--include", "a", "b", "--include", "c"], ("a", "b", "c")),
        ([], ()),
    ):
        args = parser.parse_args(["report", str(tmp_path), *argv, "--dtype", "bfloat16"])
        assert args.fn(args) == 0
        assert seen["config"].include == include and seen["backbone_options"].dtype == "bfloat16"
    assert "report written to" in capsys.readouterr().out


def test_top_activating_equals_stored_activations() -> None:
    """The streaming top-k and class means equal those of fully stored activations."""
    from skillneurons.prompts import PromptModel, SoftPrompt, build_head

    bb = tiny_model("bert")
    torch.manual_seed(0)
    pm = PromptModel(
        bb,
        SoftPrompt.create(bb, 3, "normal", std=0.5),
        build_head("auto", bb, [["bad"], ["good"]]),
        max_length=24,
    )
    task = separable_task(23, seed=3)
    picks = [(0, 5, 0), (1, 17, 2), (1, 3, 3), (0, 40, 1)]
    got = top_activating(pm, task, picks, k=4, batch_size=5)
    acts = []
    with torch.no_grad():
        for idx in iterate_batches(task, 7):
            batch = encode_examples(pm, task, idx)
            with record_neurons(bb) as rec:
                pm.hidden_states(batch)
            pos = pm.prompt_positions(batch)
            acts.append(
                torch.stack([rec[layer][torch.arange(len(idx)), pos[:, t], i] for layer, i, t in picks], 1)
            )
    a = torch.cat(acts).double()  # [n, picks]
    labels = torch.tensor(task.labels)
    for m, ne in enumerate(got):
        top = a[:, m].topk(4)
        assert [i for i, _ in ne.top] == top.indices.tolist()
        assert [v for _, v in ne.top] == pytest.approx(top.values.tolist(), abs=1e-5)
        for c in range(2):
            assert ne.class_mean[c] == pytest.approx(float(a[labels == c, m].mean()), abs=1e-5)


def test_report_config_is_torch_free_validated_and_the_assets_are_package_data() -> None:
    import subprocess
    import sys
    from importlib import resources

    code = (
        "import sys, skillneurons.report.config; print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    for bad in ({"top": -1}, {"examples": -1}, {"sample": 0}, {"batch_size": 0}):
        with pytest.raises(ConfigError) as e:
            ReportConfig(run_dir="runs/demo", **bad)
        assert "\n" not in str(e.value)
    assert ReportConfig(run_dir=Path("a"), include=[Path("b")]).include == ("b",)
    assets = resources.files("skillneurons.report") / "assets"
    assert "table.sortable" in (assets / "report.css").read_text()
    assert "sortBy" in (assets / "report.js").read_text()


def test_report_shows_the_comparable_accuracy_and_the_flags(run: dict[str, Any]) -> None:
    """#17 item 6: the report draws the neurons' subtask predictivity beside the prompts' own accuracy
    on the same subtask, and flags what makes the figures untrustworthy (here: too few dev examples)."""
    page = run["html"]
    assert "Neurons vs the prompts' own accuracy, per binary subtask" in page
    assert '<p class="flag">Warning: too few to rank:' in page
    # the score find used (--score): summaries written before it read as accuracy
    from skillneurons.report.views import FindSummaryView

    assert "(max(acc, 1 - acc), 0.5 = chance on balanced labels)" in page
    assert FindSummaryView.read({}).score == "accuracy"
    assert FindSummaryView.read({"score": "balanced"}).score == "balanced"


def test_report_refuses_a_folder_of_runs_of_several_models_or_tasks(
    run: dict[str, Any], tmp_path: Path
) -> None:
    """#17 (smaller things): ``report DIR`` on a folder of unrelated runs mixed their tasks under one
    title; a folder whose runs are of several (model, task) pairs is now refused in one line naming
    the pairs and their folders, before any model load (one (model, task) still reports)."""
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(run["root"] / "seed0", root / "a-s0")
    shutil.copytree(run["root"] / "seed1", root / "a-s1")
    shutil.copytree(run["root"] / "seed0", root / "b-s0")
    for name in ("results.json", "prompt.json"):
        f = root / "b-s0" / name
        if f.is_file():
            obj = json.loads(f.read_text())
            if isinstance(obj.get("task"), dict):
                obj["task"]["name"] = "fine_food"
            else:
                obj["task"] = "fine_food"
            f.write_text(json.dumps(obj))
    assert [t.name for t in discover(root / "a-s0").tunes] == ["a-s0"]
    with pytest.raises(ConfigError) as e:
        write_report(ReportConfig(run_dir=root, out=tmp_path / "r.html", examples=0))
    msg = str(e.value)
    assert "holds runs of 2 different (model, task) pairs" in msg and "\n" not in msg
    assert "tiny-bert on fine_food: b-s0" in msg and f"tiny-bert on {run['task'].name}: a-s0, a-s1" in msg
    assert not (tmp_path / "r.html").exists()
    shutil.rmtree(root / "b-s0")
    assert write_report(ReportConfig(run_dir=root, out=tmp_path / "r.html", examples=0)).is_file()


def test_runs_are_labelled_by_what_differs(
    run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#17 (smaller things): the curves of a folder of runs were all labelled "seed 0"; each run is now
    labelled by what differs between the runs (seed, method, ...), else by its folder name."""
    import shutil

    from skillneurons.report import plots
    from skillneurons.report.discovery import TuneRun, run_labels

    def tune(name: str, **res: Any) -> TuneRun:
        return TuneRun(Path("runs") / name, results={"best_dev_accuracy": 0.5, **res})

    assert run_labels([tune("a", seed=0), tune("b", seed=1)]) == ["seed 0", "seed 1"]
    assert run_labels([tune("a", seed=0, method="lora"), tune("b", seed=0)]) == ["lora", "prompt"]
    same = [tune(f"lr-{i}", seed=0) for i in range(30)]
    assert run_labels(same) == [f"lr-{i}" for i in range(30)]
    mixed = [tune("x", seed=0), tune("y", seed=0), tune("z", seed=1)]
    assert run_labels(mixed) == ["x: seed 0", "y: seed 0", "z: seed 1"]
    assert run_labels([tune("only", seed=3)]) == ["seed 3"]
    # in the report: two copies of one seed-0 run get their folder names, not two "seed 0"
    root = tmp_path / "runs"
    shutil.copytree(run["root"] / "seed0", root / "lr-small")
    shutil.copytree(run["root"] / "seed0", root / "lr-large")
    seen: list[str] = []
    real = plots.training_curves
    monkeypatch.setattr(
        plots, "training_curves", lambda curves: (seen.extend(c.label for c in curves), real(curves))[1]
    )
    write_report(ReportConfig(run_dir=root, out=tmp_path / "r.html", examples=0))
    assert seen == ["lr-large", "lr-small"]


def test_a_result_folder_is_reported_directly(run: dict[str, Any], tmp_path: Path) -> None:
    """#17 (smaller things): ``report`` takes a perturbation, transfer or pruning output folder itself
    (it wanted their parent); a folder with neither runs nor results is still refused."""
    root: Path = run["root"]
    for folder, sections in {
        "perturb": ["perturbation", "cross-task", "similarity"],
        "transfer": ["transfer"],
        "pruned": ["pruning"],
        "prune": ["pruning"],
    }.items():
        page = write_report(ReportConfig(run_dir=root / folder, out=tmp_path / f"{folder}.html")).read_text()
        for sid in sections:
            assert f'<section id="{sid}">' in page, (folder, sid)
        assert '<section id="training">' not in page and '<section id="map">' not in page
    title = write_report(ReportConfig(run_dir=root / "perturb", out=tmp_path / "t.html")).read_text()
    assert "tiny-bert" in title
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.json").write_text("{}")
    with pytest.raises(ConfigError, match="no result this report shows"):
        write_report(tmp_path / "empty")


def test_the_discover_function_is_not_shadowed_by_a_submodule() -> None:
    """``from skillneurons.report import discover`` is the function whatever was imported before it
    (the module holding it was also named ``discover``: once imported, the package attribute was the
    module, so the result depended on the import order)."""
    import subprocess
    import sys

    code = (
        "import skillneurons.report.render, skillneurons.report.discovery\n"
        "from skillneurons.report import discover\n"
        "assert callable(discover) and discover.__module__ == 'skillneurons.report.discovery', discover\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
