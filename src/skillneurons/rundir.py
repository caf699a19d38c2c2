"""A run folder and what it answers: manifest, kind, backbone, task and split, one rule each.

Every command and function that takes a run or an artifact opens it with :class:`RunDir`, so "the
backbone of this run", "the task of this run" and "the split of this run" are resolved in one place
with one error text each::

    run = RunDir.of("runs/mr-s0/prompt.safetensors")   # or the folder itself
    run.kind                  # "prompt", "delta", "neurons", "projector", "pruned", ...
    bb = run.backbone()       # the recorded model (or an override), loaded with BackboneOptions
    task = run.task()         # the recorded task (or the one given, checked against the record)
    dev = run.part("dev")     # split.json beside the artifact, else the recorded seed; never a default

Rules:

* **backbone**: the override when given, else ``manifest["backbone"]["name"]``; an artifact that
  records none is a one-line error asking for ``--model``.
* **task**: the task given (a :class:`~skillneurons.data.Task`, its classes matched to the recorded
  label names by name, never by position), else the recorded one (its load spec when recorded: a
  file by its path and column options; else a built-in by its name); none recorded, a moved file, or
  a file recorded by name only is a one-line error asking for ``--task``.
* **split**: ``split.json`` beside the artifact when present; else the recorded split seed (and
  max_examples) re-drawn, checked against the recorded sizes; else (an imported artifact records
  none) the seed given (``--split-seed``); none of these is a one-line error naming ``--task`` and
  ``--split-seed``. A seed given for an artifact whose split is recorded must be that split's.
  The split of a run is only defined on the run's own data: another task is refused (evaluating on
  other data draws that task's split from :attr:`split_seed` explicitly, see :meth:`split_of`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skillneurons import data  # its exports load on first use: no numpy until a task is read
from skillneurons.artifacts import artifact_paths, load_manifest
from skillneurons.backbones.config import BackboneOptions
from skillneurons.data.config import TaskOptions
from skillneurons.distributed import is_main
from skillneurons.errors import ArtifactError, ConfigError, DataError
from skillneurons.files import atomic_write_json, read_json

# the data package (numpy) is imported where a task or a split is loaded: opening a run and reading
# its manifest, as a command's input checks do, loads no numpy and no torch

if TYPE_CHECKING:
    from skillneurons.backbones import Backbone
    from skillneurons.data import Task, TaskSplits
    from skillneurons.data.task import SplitName

__all__ = ["ARTIFACT_FILES", "IDENTITY_FILE", "RunDir", "make_splits", "open_together", "run_manifest"]

#: the primary artifact of a folder, by the file that marks it (first match wins)
ARTIFACT_FILES: tuple[tuple[str, str], ...] = (
    ("prompt.json", "prompt"),
    ("skill_neurons.json", "skill_neurons"),
    ("projector.json", "projector"),
    ("pruning.json", "pruned"),
)


#: the options that define a run folder's result (written before any other file of the run)
IDENTITY_FILE = "run.json"
_LOCK = ".skillneurons.lock"


class RunDir:
    """A run folder (``path``) and, when it holds one, its primary artifact (``artifact``)."""

    def __init__(self, path: str | os.PathLike[str], artifact: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path)
        self.artifact: Path | None = Path(artifact) if artifact is not None else None

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> RunDir:
        """The run of an artifact path (``RUN/prompt.safetensors``, with or without suffix) or of a
        run folder; a path that is neither is a one-line error."""
        p = Path(path)
        if p.is_dir():
            for name, _ in ARTIFACT_FILES:
                if (p / name).is_file():
                    return cls(p, p / name if name != "pruning.json" else None)
            return cls(p)
        tfile, mfile = artifact_paths(p)
        if mfile.is_file() or tfile.is_file():
            return cls(p.parent, tfile)
        raise ArtifactError(f"{p} is neither a run folder nor an artifact: check the path")

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}, artifact={str(self.artifact) if self.artifact else None!r})"

    # ---- writing a run: one writer, one identity ------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[RunDir]:
        """Hold the folder's lock while writing it; a second writer gets a one-line error naming the
        holder's pid (the lock is released when the holder exits, however it exits)."""
        from filelock import FileLock, Timeout

        self.path.mkdir(parents=True, exist_ok=True)
        owner = self.path / f"{_LOCK}.pid"
        lock = FileLock(str(self.path / _LOCK), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            pid = owner.read_text().strip() if owner.is_file() else "?"
            raise ConfigError(
                f"{self.path} is being written by another skillneurons process (pid {pid}): wait for it to "
                "finish, or pass another --out"
            ) from None
        try:
            owner.write_text(f"{os.getpid()}\n")
            yield self
        finally:
            owner.unlink(missing_ok=True)
            lock.release()

    def check_identity(self, identity: Mapping[str, Any], *, overwrite: bool = False) -> None:
        """Tie the folder to ``identity`` (every option that changes the run's result): the first call
        records it in ``run.json``; a later run with another identity is a one-line error naming the
        options that differ (``overwrite`` removes the old run's files instead). Call it before writing
        anything else."""
        path = self.path / IDENTITY_FILE
        want = json.loads(json.dumps(dict(identity), default=str))
        if path.is_file() and not overwrite:
            have = read_json(path, "run identity")
            if isinstance(have, dict) and have != want:
                diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
                shown = ", ".join(f"{k} ({have.get(k)!r} -> {want.get(k)!r})" for k in diff[:4])
                raise ConfigError(
                    f"{self.path} holds a different run (other options: "
                    f"{shown}{' ...' if len(diff) > 4 else ''}); "
                    "pass --overwrite to replace it, or another --out"
                )
        elif overwrite and self.path.is_dir():
            for f in self.path.iterdir():
                if f.is_file() and not f.name.startswith(_LOCK):
                    f.unlink()
        atomic_write_json(path, want)

    # ---- what the artifact records ---------------------------------------------------------
    @cached_property
    def manifest(self) -> dict[str, Any]:
        """The primary artifact's manifest (for a pruned model folder: its ``pruning.json``)."""
        if self.artifact is None:
            if (self.path / "pruning.json").is_file():
                data = read_json(self.path / "pruning.json", "pruning record")
                return data if isinstance(data, dict) else {}
            raise ArtifactError(
                f"{self.path} holds no skillneurons artifact (prompt.json, skill_neurons.json, ...)"
            )
        return load_manifest(self.artifact)

    @property
    def kind(self) -> str:
        """``prompt`` (a soft prompt), ``delta`` (BitFit/adapter/LoRA), ``pruned``, or the artifact's
        own kind (``skill_neurons``, ``projector``, ...)."""
        if self.artifact is None:
            return "pruned" if (self.path / "pruning.json").is_file() else "folder"
        kind = str(self.manifest.get("kind"))
        if kind == "prompt" and self.manifest.get("method", "prompt") != "prompt":
            return "delta"
        return kind

    def require_kind(self, *kinds: str) -> RunDir:
        """This run, or a one-line error when its kind is not one of ``kinds``."""
        if self.kind not in kinds:
            raise ArtifactError(
                f"{self.artifact or self.path} holds a '{self.kind}' artifact, not {' or '.join(kinds)}: "
                f"pass a {kinds[0]} artifact"
            )
        return self

    # ---- backbone ------------------------------------------------------------------------------
    @property
    def backbone_name(self) -> str:
        """The recorded model id or path."""
        name = (self.manifest.get("backbone") or {}).get("name")
        if not name:
            raise ArtifactError(f"{self.artifact or self.path} records no backbone: pass --model")
        return str(name)

    def backbone(self, override: str | None = None, options: BackboneOptions | None = None) -> Backbone:
        """Load ``override`` when given, else the recorded backbone, with ``options``."""
        return (options or BackboneOptions()).load(override or self.backbone_name)

    # ---- task ----------------------------------------------------------------------------------
    @property
    def task_record(self) -> dict[str, Any]:
        """What the artifact records about its task (name, fingerprint, label names, source, load spec)."""
        rec = self.manifest.get("task")
        if isinstance(rec, str):  # skill-neuron artifacts record the task name only
            return {"name": rec}
        return dict(rec) if isinstance(rec, dict) else {}

    def task(self, given: Task | None = None) -> Task:
        """``given`` when passed (its classes matched to the recorded ones by name: :meth:`classes_of`),
        else the recorded task, loaded again as it was loaded for the run."""
        if given is not None:
            return self.classes_of(given)
        rec = self.task_record
        spec = rec.get("load")
        if isinstance(spec, dict) and spec.get("spec"):
            path = Path(str(spec["spec"]))
            if path.is_absolute() and not path.exists():
                raise DataError(
                    f"{self.artifact or self.path} was tuned on the data file {path}, which is not there any "
                    "more: pass its new path as "
                    f"{TaskOptions.from_load_spec({**spec, 'spec': 'PATH'}).flags()}"
                )
            return data.load_task(**spec)
        if not rec.get("name"):
            raise DataError(
                f"{self.artifact or self.path} records no task: pass --task (and its column options)"
            )
        source = str(rec.get("source") or "")
        if source and not source.startswith("builtin:"):  # a file or hf: dataset, recorded by name only
            raise DataError(
                f"{self.artifact or self.path} records its task '{rec['name']}' (from {source}) but not how "
                "it "
                "was read: pass --task with that data and its column options"
            )
        return data.load_task(str(rec["name"]))

    def classes_of(self, task: Task) -> Task:
        """``task`` with the run's classes, in the run's order, matched by name (never by position);
        a task with a class the run does not have is a one-line error saying how to map it."""
        names = self.task_record.get("label_names")
        if not isinstance(names, list) or not names or list(task.label_names) == names:
            return task
        if set(task.label_names) <= set(names):
            return task.with_classes(names)
        mapping = ",".join(f"{n}=DATA_LABEL" for n in names)
        raise DataError(
            f"{self.artifact or self.path} was tuned on the classes ({', '.join(names)}) but task "
            f"'{task.name}' has ({', '.join(task.label_names)}): classes are matched by name, never by "
            f"position; name each of the prompt's classes by its label in the data with --label-names "
            f"{mapping} (integer labels in this order: --label-names {','.join(names)})"
        )

    # ---- split ---------------------------------------------------------------------------------
    @property
    def split_record(self) -> dict[str, Any]:
        rec = self.manifest.get("split")
        return dict(rec) if isinstance(rec, dict) else {}

    @property
    def split_seed(self) -> int:
        """The recorded split seed; a one-line error when the artifact records none."""
        return self.seed_of_split(None)

    def seed_of_split(self, given: int | None) -> int:
        """The split seed: the recorded one (``given``, when not None, must equal it), else ``given``;
        neither is a one-line error naming the flags to add."""
        seed = self.split_record.get("seed")
        if seed is None and given is None:
            raise DataError(
                f"{self.artifact or self.path} records no split seed and has no split.json beside it (e.g. "
                "an "
                "imported prompt): pass --task TASK and --split-seed SEED to say which examples to use"
            )
        if seed is not None and given is not None and int(given) != int(seed):
            raise ConfigError(
                f"{self.artifact or self.path} records split seed {seed}, not --split-seed {given}: drop "
                "--split-seed (the recorded split is used)"
            )
        return int(seed if seed is not None else given)  # type: ignore[arg-type]

    @property
    def split_file(self) -> Path:
        return self.path / str(self.split_record.get("file") or "split.json")

    def splits(self, task: Task | None = None, seed: int | None = None) -> TaskSplits:
        """The run's train/dev/test split of its own data (``task`` defaults to :meth:`task`); ``seed``
        is the split seed of an artifact that records none (an imported one)."""
        t = self.task(task)
        fp = self.task_record.get("fingerprint")
        if fp and fp != t.fingerprint():
            raise DataError(
                f"{self.artifact or self.path} was made on other data (task "
                f"'{self.task_record.get('name')}') "
                f"than the task given ('{t.name}', {len(t)} examples): pass the task it was trained on"
            )
        if self.split_file.is_file():
            loaded = data.TaskSplits.load(t, self.split_file)
            if seed is not None and seed != loaded.seed:
                raise ConfigError(
                    f"{self.split_file} holds the split of seed {loaded.seed}, not --split-seed {seed}: drop "
                    "--split-seed (the run's split is used)"
                )
            return loaded
        rec = self.split_record
        max_examples = rec.get("max_examples")
        use = self.seed_of_split(seed)
        fractions = rec.get("fractions") or (0.8, 0.1, 0.1)
        splits = t.split(use, fractions, max_examples=None if max_examples is None else int(max_examples))
        sizes = rec.get("sizes")
        if isinstance(sizes, list) and list(sizes) != [len(splits.train), len(splits.dev), len(splits.test)]:
            raise DataError(
                f"{self.artifact or self.path}: re-drawing its split from seed {use} gives sizes "
                f"{[len(splits.train), len(splits.dev), len(splits.test)]}, not the recorded {sizes}: "
                f"copy its split.json beside it"
            )
        return splits

    def split_of(self, task: Task, seed: int | None = None) -> TaskSplits:
        """The split of ``task``: the run's own split for its own data, else ``task`` split with the run's
        seed, or ``seed`` (evaluating a prompt on other data)."""
        fp = self.task_record.get("fingerprint")
        if not fp or fp == task.fingerprint():
            return self.splits(task, seed)
        return task.split(seed if seed is not None else self.split_seed)

    def part(self, name: SplitName, task: Task | None = None, seed: int | None = None) -> Task:
        """Part ``name`` (train/dev/test) of the run's split (``seed``: see :meth:`splits`)."""
        return self.splits(task, seed).part(name)


#: what must agree between artifacts used together: the backbone they were made on
_GEOMETRY = ("name", "model_type", "num_layers", "hidden_size", "d_ff", "vocab_size")


def open_together(
    paths: Sequence[str | os.PathLike[str]], *kinds: str, same_task: bool = True
) -> list[RunDir]:
    """Open artifacts that one command uses together (the prompts of one ``find``): each must be of one
    of ``kinds``, all must record the same backbone and, with ``same_task``, the same task (by
    fingerprint, else by name; artifacts that record none, e.g. imported ones, take the task given).
    A mixed list is a one-line error naming two artifacts that differ, before any of them is used."""
    runs = [RunDir.of(p).require_kind(*kinds) for p in paths]
    if not runs:
        return runs
    first = runs[0]
    want = {k: (first.manifest.get("backbone") or {}).get(k) for k in _GEOMETRY}
    for run in runs[1:]:
        have = {k: (run.manifest.get("backbone") or {}).get(k) for k in _GEOMETRY}
        diff = [k for k in _GEOMETRY if want[k] is not None and have[k] is not None and want[k] != have[k]]
        if diff:
            raise ArtifactError(
                f"{first.artifact} and {run.artifact} were made on different backbones ({diff[0]} "
                f"{want[diff[0]]!r} vs {have[diff[0]]!r}): pass artifacts of one model"
            )
        if same_task and _task_key(first) and _task_key(run) and _task_key(first) != _task_key(run):
            raise DataError(
                f"{first.artifact} and {run.artifact} were trained on different tasks "
                f"('{first.task_record.get('name')}' vs '{run.task_record.get('name')}'): pass prompts of "
                "one task (one command per task)"
            )
    return runs


def _task_key(run: RunDir) -> str | None:
    rec = run.task_record
    key = rec.get("fingerprint") or rec.get("name")
    return None if key is None else str(key)


def make_splits(
    task: Task,
    seed: int,
    out_dir: Path | None,
    max_examples: int | None = None,
    fractions: Sequence[float] | None = None,
) -> TaskSplits:
    """The run's split: loaded from ``out_dir/split.json`` when present (resume), else drawn from
    ``seed`` (train/dev/test ``fractions``, default 80/10/10) and saved there."""
    path = out_dir / "split.json" if out_dir else None
    if path is not None and path.is_file():
        return data.TaskSplits.load(task, path)
    if fractions is None:
        splits = task.split(seed, max_examples=max_examples)
    else:
        splits = task.split(seed, fractions, max_examples=max_examples)
    if path is not None and is_main():
        splits.save(path)
    return splits


def run_manifest(task: Task, splits: TaskSplits) -> dict[str, Any]:
    """What a run's saved model records about its data: the task (name, content fingerprint, label
    names in class order, source, and how it was loaded: :attr:`~skillneurons.data.Task.load_spec`)
    and the split (seed, sizes, the ``split.json`` beside it)."""
    sizes = [len(splits.part(name)) for name in ("train", "dev", "test")]  # type: ignore[arg-type]
    record: dict[str, Any] = {
        "name": task.name,
        "fingerprint": task.fingerprint(),
        "label_names": list(task.label_names),
        "source": task.source,
    }
    if task.load_spec is not None:  # how to load it again (a file: its path, columns, options)
        record["load"] = dict(task.load_spec)
    return {
        "task": record,
        "split": {
            "seed": splits.seed,
            "sizes": sizes,
            "file": "split.json",
            "max_examples": splits.max_examples,
            **({"fractions": list(splits.fractions)} if tuple(splits.fractions) != (0.8, 0.1, 0.1) else {}),
        },
    }
