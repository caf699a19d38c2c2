"""What a report is made of: the readers that find and load a run folder's results.

A **RUN_DIR** is any folder written by the package's runs, or one holding them:

* the demo's output (``runs/demo``): prompt-tuning runs in sub-folders (``seed0/``, ``seed1/`` ...,
  each with ``results.json``, ``history.json``, ``prompt.json``, ``split.json``) and a ``find``
  output in a sub-folder (``neurons/``);
* a ``find`` output (``skill_neurons.json``, ``scores_<i>.json``, ``summary.json``): its prompt-tuning
  runs are found through the prompt paths recorded in ``skill_neurons.json``;
* a ``tune`` output (``prompt.json`` / ``results.json`` / ``history.json``), with or without a
  ``neurons/`` sub-folder.

Besides these (the core, loaded by :func:`discover`), result JSON files of other experiments are
picked up from the folder tree (three levels deep) and from extra paths: each kind is recognised by
its *content* by a small predicate in :data:`RESULT_KINDS` (perturbation sweeps, cross-task
matrices, task similarity, pruning, transfer; the reading results: ``read train`` /
``read evaluate`` results by their schema, the DynSA cost and ablation benches by their keys). A
``read train`` folder is never a prompt-tuning run (:func:`is_read_dir`). A single result file may
be given instead of a folder: it is reported alone. Unknown JSON files are ignored; a file of a known
kind that cannot be read becomes a note in the report instead of an error. A folder holding only
such results (a ``perturb``, ``transfer-matrix`` or ``prune`` output) is reported on its own.

One report shows one (model, task): a folder of runs of several pairs is refused. Its tuning runs
are labelled by what differs between them (:func:`run_labels`: seed, method, head, ...; the folder
name when nothing recorded tells them apart).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from skillneurons.artifacts import load_artifact, load_manifest
from skillneurons.errors import ConfigError, SkillNeuronsError
from skillneurons.neurons.find import SkillNeurons
from skillneurons.neurons.ranking import per_prompt
from skillneurons.prompts.model import position_names
from skillneurons.report.views import (
    TRANSFER_MATRIX_KEYS,
    ArtifactInfo,
    BackboneInfo,
    DemoSummaryView,
    FindSummaryView,
    PromptRecord,
    TaskInfo,
)

log = logging.getLogger(__name__)

__all__ = [
    "READING_KINDS",
    "RESULT_KINDS",
    "NeuronsRun",
    "ReportData",
    "ResultFile",
    "TuneRun",
    "classify",
    "discover",
    "is_read_dir",
    "position_names",
    "read_json_quietly",
    "resolve_recorded",
    "run_labels",
]

#: JSON files that belong to the core artifacts (read by their own loaders, never classified)
_CORE_FILES = {"prompt.json", "checkpoint.json", "split.json", "history.json", "skill_neurons.json"}
#: files of saved models and tokenizers: never results
_SKIP_FILES = {
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "vocab.json",
    "pruning.json",
    "adapter_config.json",
}
_MAX_JSON_BYTES = 20 << 20
_SCAN_DEPTH = 3


def _read_json(path: Path) -> Any:
    """Parsed JSON, or None when missing/unreadable/too large (logged)."""
    try:
        if not path.is_file() or path.stat().st_size > _MAX_JSON_BYTES:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("skipping %s: %s", path, e)
        return None


def read_json_quietly(path: Path) -> Any:
    """A JSON file beside a result (e.g. a reader's manifest), or None when missing or unreadable."""
    return _read_json(path)


def _natural_key(path: Path) -> list[Any]:
    """``seed2`` before ``seed10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


# ----------------------------------------------------------------------------------------------------
# core: prompt-tuning runs


@dataclass
class TuneRun:
    """One prompt-tuning run folder (``skillneurons tune``): any of its files may be missing."""

    path: Path
    results: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = None
    prompt: dict[str, Any] | None = None  #: the prompt artifact's manifest
    history_from_checkpoint: bool = False

    @property
    def name(self) -> str:
        return self.path.name

    def get(self, key: str) -> Any:
        """``key`` from results.json, else from the prompt manifest."""
        for src in (self.results, self.prompt):
            if src and src.get(key) is not None:
                return src[key]
        return None

    @property
    def seed(self) -> Any:
        return self.get("seed")

    @property
    def prompt_path(self) -> Path | None:
        p = self.path / "prompt.safetensors"
        return p if p.is_file() and (self.path / "prompt.json").is_file() else None

    @property
    def sizes(self) -> dict[str, int] | None:
        if self.results and isinstance(self.results.get("sizes"), dict):
            return dict(self.results["sizes"])
        sizes = (self.prompt or {}).get("split", {}).get("sizes")
        if isinstance(sizes, list) and len(sizes) == 3:
            return dict(zip(("train", "dev", "test"), sizes))
        return None

    @property
    def backbone(self) -> BackboneInfo | None:
        b = (self.results or {}).get("model") or (self.prompt or {}).get("backbone") or {}
        return BackboneInfo.read(b) if isinstance(b, dict) and b else None

    # what the report shows of the run: results.json first, then the prompt's manifest
    @property
    def test_accuracy(self) -> float | None:
        v = self.get("test_accuracy")
        return v if isinstance(v, (int, float)) else None

    @property
    def dev_accuracy(self) -> Any:
        """The best dev accuracy of the run (the prompt's own when results.json is missing)."""
        return self.get("best_dev_accuracy") if self.results else (self.prompt or {}).get("dev_accuracy")

    @property
    def split_seed(self) -> Any:
        return self.get("split_seed")

    @property
    def steps(self) -> Any:
        return self.get("steps")

    @property
    def best_step(self) -> Any:
        return self.get("best_step")

    @property
    def train_seconds(self) -> Any:
        return self.get("train_seconds")

    def setting(self, key: str) -> str | None:
        """``prompt_length``, ``head`` or ``layout`` as shown (the head's type when only the manifest's
        head record is there)."""
        v = self.get(key)
        if v is not None and not isinstance(v, dict):
            return str(v)
        return None

    @property
    def head_type(self) -> str | None:
        return str((self.prompt or {}).get("head", {}).get("type")) if self.prompt else None

    @property
    def train_config(self) -> dict[str, Any] | None:
        cfg = self.get("train_config")
        return cfg if isinstance(cfg, dict) else None

    @property
    def task_info(self) -> TaskInfo | None:
        """The prompt manifest's task record (name, fingerprint, label names, source)."""
        rec = (self.prompt or {}).get("task")
        return TaskInfo.read(rec) if isinstance(rec, dict) else None

    @property
    def artifact(self) -> ArtifactInfo | None:
        """The prompt artifact's provenance (None without its manifest)."""
        return ArtifactInfo.read(self.prompt) if self.prompt else None

    @property
    def task_name(self) -> str | None:
        name = self.get("task")
        if isinstance(name, dict):
            name = name.get("name")
        return str(name) if name else None


#: what tells tuning runs apart, in label order: (label, how it is read from a run)
_RUN_TRAITS: tuple[tuple[str, Callable[[TuneRun], Any]], ...] = (
    ("method", lambda t: t.get("method") or "prompt"),
    ("seed", lambda t: t.seed),
    ("split seed", lambda t: t.split_seed),
    ("head", lambda t: t.head_type or t.setting("head")),
    ("layout", lambda t: t.setting("layout")),
    ("P", lambda t: t.setting("prompt_length")),
    ("lr", lambda t: (t.train_config or {}).get("lr")),
)


def run_labels(tunes: Sequence[TuneRun]) -> list[str]:
    """One distinct label per tuning run, naming what differs between them (``seed 1``, ``lora, seed
    0``); the folder name leads when those do not tell every run apart (or nothing differs)."""
    if len(tunes) == 1:
        t = tunes[0]
        return [f"seed {t.seed}" if t.seed is not None else t.name]
    differing = [(name, read) for name, read in _RUN_TRAITS if len({str(read(t)) for t in tunes}) > 1]
    traits = [
        ", ".join(
            str(read(t)) if name == "method" else f"{name} {read(t)}"
            for name, read in differing
            if read(t) is not None
        )
        for t in tunes
    ]
    if all(traits) and len(set(traits)) == len(traits):
        return traits
    names = [t.name for t in tunes]
    if len(set(names)) < len(names):
        names = [str(t.path) for t in tunes]
    return [f"{n}: {tr}" if tr else n for n, tr in zip(names, traits)]


def _is_tune_results(obj: Any) -> bool:
    return isinstance(obj, dict) and "best_dev_accuracy" in obj


def is_read_dir(path: Path) -> bool:
    """A ``read train`` run folder (its ``history.json`` and ``checkpoint.json`` are the reader's)."""
    if (path / "reader.json").is_file() or (path / "train_result.json").is_file():
        return True
    ck = _read_json(path / "checkpoint.json") if (path / "checkpoint.json").is_file() else None
    return isinstance(ck, dict) and ck.get("kind") == "read_checkpoint"


def is_tune_dir(path: Path) -> bool:
    """A prompt-tuning run folder (a pruned-model folder's ``results.json`` and a ``read train``
    folder do not count)."""
    if not path.is_dir() or is_read_dir(path):
        return False
    if any((path / f).is_file() for f in ("prompt.json", "history.json", "checkpoint.json")):
        return True
    return (path / "results.json").is_file() and _is_tune_results(_read_json(path / "results.json"))


def load_tune_run(path: Path) -> TuneRun:
    """A :class:`TuneRun` from its folder; the training history falls back to the checkpoint's
    (a run still in progress)."""
    run = TuneRun(path)
    res = _read_json(path / "results.json")
    run.results = res if _is_tune_results(res) else None
    man = _read_json(path / "prompt.json")
    run.prompt = man if isinstance(man, dict) and man.get("kind") == "prompt" else None
    hist = _read_json(path / "history.json")
    if not isinstance(hist, list):
        ck = _read_json(path / "checkpoint.json")
        hist = ck.get("history") if isinstance(ck, dict) else None
        run.history_from_checkpoint = isinstance(hist, list)
    run.history = [h for h in hist if isinstance(h, dict) and "step" in h] if isinstance(hist, list) else None
    return run


# ----------------------------------------------------------------------------------------------------
# core: skill neurons (a `find` output)


@dataclass
class NeuronsRun:
    """A ``find`` output folder, loaded (hash-checked, never unpickled)."""

    path: Path
    neurons: Any  #: skillneurons.neurons.find.SkillNeurons
    manifest: dict[str, Any]
    summary: FindSummaryView | None  #: summary.json (None when missing or empty)
    #: [P, L, T, N] per-prompt predictivity (max over subtasks), from scores_<i>; None without them
    per_position: Tensor | None = None
    #: [L, N] threshold-free AUROC predictivity, mean over prompts (when find ran with --auroc-bins)
    auroc: Tensor | None = None
    score_files: list[Path] = field(default_factory=list)

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.neurons.meta)

    @property
    def position_names(self) -> list[str]:
        return position_names(self.meta.get("layout"), int(self.meta.get("prompt_length") or 0))

    @property
    def prompts(self) -> list[PromptRecord]:
        """The prompts the neurons were found with, as recorded."""
        return [PromptRecord.read(p) for p in self.meta.get("prompts", [])]

    @property
    def task(self) -> str | None:
        t = self.meta.get("task")
        return str(t) if t else None

    @property
    def backbone(self) -> BackboneInfo | None:
        b = self.meta.get("backbone")
        return BackboneInfo.read(b) if isinstance(b, dict) else None

    @property
    def scheme(self) -> Any:
        return self.meta.get("scheme")

    @property
    def aggregation(self) -> Any:
        return self.meta.get("aggregation")

    @property
    def artifact(self) -> ArtifactInfo:
        return ArtifactInfo.read(self.manifest)

    def per_prompt_scores(self) -> Tensor | None:
        """[P, L, N]: each prompt's predictivity (max over positions and subtasks)."""
        return None if self.per_position is None else self.per_position.amax(2)


def load_neurons_run(path: Path) -> NeuronsRun:
    """Load ``skill_neurons.*`` (errors are one line: a corrupted core artifact is fatal) and, when
    present, the per-prompt ``scores_<i>`` files (skipped with a warning when unreadable)."""
    sn = SkillNeurons.load(path / "skill_neurons")
    man = load_manifest(path / "skill_neurons")
    summary = _read_json(path / "summary.json")
    run = NeuronsRun(
        path, sn, man, FindSummaryView.read(summary) if isinstance(summary, dict) and summary else None
    )
    subs = [s.name for s in sn.subtasks]
    preds: list[Tensor] = []
    aucs: list[Tensor] = []
    for f in sorted(path.glob("scores_*.json"), key=_natural_key):
        try:
            tensors, _ = load_artifact(f, kind="prompt_scores")
            pred = torch.stack([tensors[f"pred.{s}"].double() for s in subs]).amax(0)  # [L, T, N]
        except (SkillNeuronsError, KeyError) as e:
            log.warning("skipping %s: %s", f, e)
            continue
        if tuple(pred.shape[::2]) != (sn.n_layers, sn.d_ff):
            log.warning("skipping %s: shape %s does not match the skill neurons", f, tuple(pred.shape))
            continue
        preds.append(pred)
        run.score_files.append(f)
        if all(f"auroc.{s}" in tensors for s in subs):
            aucs.append(torch.stack([per_prompt(tensors[f"auroc.{s}"].double())[0] for s in subs]).amax(0))
    if preds and len({tuple(p.shape) for p in preds}) == 1:
        run.per_position = torch.stack(preds)
    if aucs and len(aucs) == len(preds):
        run.auroc = torch.stack(aucs).mean(0)
    return run


def is_neurons_dir(path: Path) -> bool:
    return (path / "skill_neurons.json").is_file()


def resolve_recorded(recorded: str, near: Path) -> Path | None:
    """A path recorded in an artifact (absolute, or relative to the working folder of the run that
    wrote it): tried as is, then relative to each ancestor of ``near``, then as a sibling folder."""
    p = Path(recorded)
    candidates = [p] if p.is_absolute() else [p, *(a / p for a in [near, *near.parents])]
    if len(p.parts) >= 2:
        candidates.append(near.parent / p.parent.name / p.name)
    for c in candidates:
        if c.is_file():
            return c
    return None


# ----------------------------------------------------------------------------------------------------
# optional results: one small predicate per kind. A new kind = a predicate here, a reader in
# skillneurons.report.views (LOADERS) and a section in skillneurons.report.render (RENDERERS), keyed
# by the same name.


def _matrix(x: Any) -> bool:
    return isinstance(x, list) and bool(x) and all(isinstance(r, list) for r in x)


def _is_perturb_sweep(d: Any, name: str) -> bool:
    pts = d.get("points")
    return (
        isinstance(pts, list)
        and bool(pts)
        and all(isinstance(p, dict) and "rho" in p and "skill" in p for p in pts)
    )


def _is_perturb_cross(d: Any, name: str) -> bool:
    return isinstance(d.get("tasks"), list) and _matrix(d.get("drop")) and _matrix(d.get("accuracy"))


def _is_similarity(d: Any, name: str) -> bool:
    return isinstance(d.get("tasks"), list) and _matrix(d.get("spearman"))


def _is_prune_bench(d: Any, name: str) -> bool:
    ents = d.get("entries")
    return isinstance(ents, list) and any(
        isinstance(e, dict) and isinstance(e.get("rows"), list) for e in ents
    )


def _is_prune_run(d: Any, name: str) -> bool:
    return isinstance(d.get("parameters"), dict) and "pruned_layers" in d


def _is_transfer(d: Any, name: str) -> bool:
    kind = str(d.get("kind", "")) + " " + name
    return "transfer" in kind.lower() and any(_matrix(d.get(k)) for k in TRANSFER_MATRIX_KEYS)


def _is_read_train(d: Any, name: str) -> bool:
    return d.get("schema") == "skillneurons.read_train"


def _is_read_eval(d: Any, name: str) -> bool:
    return d.get("schema") == "skillneurons.read_evaluation"


def _is_dynsan_cost(d: Any, name: str) -> bool:
    rows = d.get("rows")
    return (
        isinstance(rows, list)
        and bool(rows)
        and all(isinstance(r, dict) and {"level", "L", "K", "seconds_step"} <= r.keys() for r in rows)
    )


def _is_dynsan_ablation(d: Any, name: str) -> bool:
    table = d.get("table")
    by_table = isinstance(table, dict) and any(
        isinstance(v, dict) and "paired_vs_gate" in v for v in table.values()
    )
    return isinstance(d.get("rows"), list) and (by_table or "baseline_most_frequent_entity" in d)


#: the kinds of the reading (DynSAN) results
READING_KINDS = ("read_train", "read_eval", "dynsan_cost", "dynsan_ablation")

#: kind -> predicate(parsed JSON dict, file name); checked in this order, the first match wins
RESULT_KINDS: dict[str, Callable[[dict[str, Any], str], bool]] = {
    "perturb_sweep": _is_perturb_sweep,
    "perturb_cross": _is_perturb_cross,
    "similarity": _is_similarity,
    "prune_bench": _is_prune_bench,
    "prune_run": _is_prune_run,
    "transfer": _is_transfer,
    "read_train": _is_read_train,
    "read_eval": _is_read_eval,
    "dynsan_cost": _is_dynsan_cost,
    "dynsan_ablation": _is_dynsan_ablation,
}


def classify(data: Any, name: str = "") -> str | None:
    """The kind of a parsed result JSON (a key of :data:`RESULT_KINDS`), or None."""
    if not isinstance(data, dict):
        return None
    for kind, test in RESULT_KINDS.items():
        try:
            if test(data, name):
                return kind
        except (TypeError, AttributeError, ValueError):
            continue
    return None


@dataclass
class ResultFile:
    """A result JSON of another experiment, with its kind."""

    kind: str
    path: Path
    data: dict[str, Any]


def _json_files(root: Path, depth: int) -> Iterator[Path]:
    """``*.json`` under ``root`` down to ``depth`` levels, sorted, skipping hidden folders."""
    try:
        entries = sorted(root.iterdir(), key=_natural_key)
    except OSError:
        return
    for p in entries:
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix == ".json":
            yield p
        elif p.is_dir() and depth > 1:
            yield from _json_files(p, depth - 1)


def _strings(obj: Any, limit: int = 20000) -> Iterator[str]:
    stack = [obj]
    seen = 0
    while stack and seen < limit:
        x = stack.pop()
        seen += 1
        if isinstance(x, str):
            yield x
        elif isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)


def _refers_to(data: Any, root: Path, digests: set[str]) -> bool:
    """True when a result JSON names a file inside ``root`` or the SHA-256 of one of its artifacts."""
    root = root.resolve()
    for s in _strings(data):
        if s in digests:
            return True
        if ("/" in s or os.sep in s) and len(s) < 4096:
            try:
                if Path(s).resolve().is_relative_to(root):
                    return True
            except (OSError, ValueError):
                continue
    return False


# ----------------------------------------------------------------------------------------------------
# everything together


@dataclass
class ReportData:
    """Everything found for one report."""

    root: Path
    tunes: list[TuneRun] = field(default_factory=list)
    neurons: NeuronsRun | None = None
    results: list[ResultFile] = field(default_factory=list)
    demo_summary: DemoSummaryView | None = None
    notes: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[ResultFile]:
        return [r for r in self.results if r.kind == kind]

    @property
    def reading_only(self) -> bool:
        """Reading (DynSAN) results and nothing else: no prompt, neurons or other experiment."""
        return (
            self.neurons is None
            and not self.tunes
            and bool(self.results)
            and all(r.kind in READING_KINDS for r in self.results)
        )

    @property
    def backbone(self) -> BackboneInfo:
        """The backbone of the skill neurons, else of the first tuning run that records one, else the
        model a result records (a folder of results only)."""
        if self.neurons is not None and self.neurons.backbone is not None:
            return self.neurons.backbone
        for t in self.tunes:
            if t.backbone is not None:
                return t.backbone
        for r in self.results:
            if isinstance(r.data.get("backbone"), dict):
                return BackboneInfo.read(r.data["backbone"])
        return BackboneInfo(name=self._recorded("model", "source_model"))

    @property
    def task_name(self) -> str | None:
        if self.neurons is not None and self.neurons.task:
            return self.neurons.task
        tuned = next((t.task_name for t in self.tunes if t.task_name), None)
        return tuned or self._recorded("task")

    def _recorded(self, *keys: str) -> str | None:
        """The first string a result records under one of ``keys``."""
        for r in self.results:
            for k in keys:
                v = r.data.get(k)
                if isinstance(v, str) and v:
                    return v
        return None


def _invalid(root: Path, why: str) -> ConfigError:
    return ConfigError(
        f"{root} {why}: pass a folder written by `skillneurons demo`, `tune`, `find`, `perturb`, "
        "`transfer-matrix`, `prune` or `read train` (or a folder holding them), or a result JSON"
    )


def discover(run_dir: str | os.PathLike[str], include: Sequence[str | os.PathLike[str]] = ()) -> ReportData:
    """Find and load everything a report of ``run_dir`` can show (see the module docstring).

    ``include``: more result JSON files (always shown when their kind is known) or folders (their
    files that refer to this run: a path inside ``run_dir`` or the hash of one of its artifacts).
    Raises a one-line :class:`ConfigError` when ``run_dir`` is missing or holds no run.
    """
    root = Path(run_dir)
    if not root.exists():
        raise _invalid(root, "does not exist")
    if root.is_file():
        return _discover_file(root, include)
    if not root.is_dir():
        raise _invalid(root, "is not a folder")
    data = ReportData(root)
    subdirs = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_natural_key
    )
    _find_neurons(data, subdirs)
    data.tunes = [load_tune_run(p) for p in _tune_dirs(data, subdirs)]
    _check_one_model_and_task(data)
    demo = _read_json(root / "summary.json")
    if DemoSummaryView.matches(demo):
        data.demo_summary = DemoSummaryView.read(demo)
    _collect_results(data, include)
    if data.neurons is None and not data.tunes and not data.results:
        raise _invalid(
            root,
            "holds no run (no prompt.json, results.json, history.json or skill_neurons.json) and no "
            "result this report shows",
        )
    return data


def _discover_file(path: Path, include: Sequence[str | os.PathLike[str]]) -> ReportData:
    """A result file given instead of a folder: that file (and ``include``) alone."""
    obj = _read_json(path)
    kind = classify(obj, path.name)
    if kind is None:
        raise _invalid(path, "is not a folder, nor a result file this report shows")
    data = ReportData(path, results=[ResultFile(kind, path, obj)])
    _collect_results(data, include, scan=False)
    return data


def _check_one_model_and_task(data: ReportData) -> None:
    """One report shows one model on one task: a folder of unrelated runs (several (model, task) pairs
    among its tuning runs and skill neurons) is refused, naming the pairs and their folders."""
    groups: dict[tuple[str, str], list[str]] = {}
    runs: list[tuple[BackboneInfo | None, str | None, Path]] = [
        (t.backbone, t.task_name, t.path) for t in data.tunes
    ]
    if data.neurons is not None:
        runs.append((data.neurons.backbone, data.neurons.task, data.neurons.path))
    for backbone, task, path in runs:
        model = backbone.name if backbone is not None and backbone.name else None
        if model is None or task is None:
            continue  # nothing recorded to group by
        name = path.name if path != data.root else "."
        groups.setdefault((str(model), str(task)), []).append(name)
    if len(groups) > 1:
        listed = "; ".join(f"{m} on {t}: {', '.join(names)}" for (m, t), names in sorted(groups.items()))
        example = next(iter(sorted(groups.values())))[0]
        raise ConfigError(
            f"{data.root} holds runs of {len(groups)} different (model, task) pairs ({listed}): a report "
            "shows "
            f"one model on one task; report each folder on its own (e.g. `skillneurons report "
            f"{data.root / example}`), or move the runs of one (model, task) into a folder of their own"
        )


def _find_neurons(data: ReportData, subdirs: list[Path]) -> None:
    """The skill neurons of the run: the folder itself, else its ``neurons/`` (or first) sub-folder."""
    root = data.root
    neuron_dirs = [root] if is_neurons_dir(root) else [p for p in subdirs if is_neurons_dir(p)]
    if neuron_dirs:
        pick = next((p for p in neuron_dirs if p.name == "neurons"), neuron_dirs[0])
        data.neurons = load_neurons_run(pick)
        for other in neuron_dirs:
            if other != pick:
                data.notes.append(f"{other} also holds skill neurons: report it separately")


def _tune_dirs(data: ReportData, subdirs: list[Path]) -> list[Path]:
    """The tuning runs: the folder and its sub-folders, else (a ``find`` output) the recorded prompts'."""
    root = data.root
    tune_dirs = ([root] if is_tune_dir(root) else []) + [p for p in subdirs if is_tune_dir(p)]
    if not tune_dirs and data.neurons is not None:  # a `find` output: follow the recorded prompts
        for info in data.neurons.prompts:
            recorded = info.prompt
            found = resolve_recorded(str(recorded), data.neurons.path) if recorded else None
            if found is not None and found.parent not in tune_dirs:
                tune_dirs.append(found.parent)
            elif found is None and recorded:
                data.notes.append(
                    f"prompt-tuning run of {recorded} not found: its training curve is left out"
                )
    return tune_dirs


def _collect_results(
    data: ReportData, include: Sequence[str | os.PathLike[str]], *, scan: bool = True
) -> None:
    """The other experiments' results: in the folder tree (``scan``), then from ``include``."""
    root = data.root
    seen: set[Path] = {r.path.resolve() for r in data.results}

    def add(path: Path, explicit: bool, related: Callable[[Any], bool] | None) -> None:
        rp = path.resolve()
        if (
            rp in seen
            or path.name in _CORE_FILES
            or path.name in _SKIP_FILES
            or path.name.startswith("scores_")
        ):
            return
        seen.add(rp)
        obj = _read_json(path)
        kind = classify(obj, path.name)
        if kind is None:
            if explicit:
                data.notes.append(f"{path}: not a result this report knows how to show")
            return
        if related is not None and not related(obj):
            return
        data.results.append(ResultFile(kind, path, obj))

    for f in _json_files(root, _SCAN_DEPTH) if scan else ():
        add(f, explicit=False, related=None)
    digests = _artifact_digests(data)
    for inc in include:
        p = Path(inc)
        if p.is_file():
            add(p, explicit=True, related=None)
        elif p.is_dir():
            for f in _json_files(p, _SCAN_DEPTH):
                add(f, explicit=False, related=lambda obj: _refers_to(obj, root, digests))
        else:
            raise ConfigError(f"--include {p} does not exist: pass result JSON files or folders holding them")


def _artifact_digests(data: ReportData) -> set[str]:
    """SHA-256 of the run's artifacts, as recorded in their manifests (no file is re-hashed)."""
    infos = [t.artifact for t in data.tunes]
    if data.neurons is not None:
        infos.append(data.neurons.artifact)
    return {a.sha256 for a in infos if a is not None and a.sha256 is not None}
