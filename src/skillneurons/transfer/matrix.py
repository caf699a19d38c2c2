"""Cross-task zero-shot prompt transfer (REFERENCE.md section 6).

Every source prompt is evaluated on every target task, reading the label with the TARGET's head
(its verbalizer: label words, similarity anchors or trained linear head) in the target's input
format (layout, template, max length), on the part (default: test) of the target run's own split.
``relative = accuracy / own`` where ``own`` is the target prompt's accuracy there. A source prompt
with another width (another model) is an error: project it first (:mod:`.projector`).

Tasks of one type share label words (sentiment: negative/positive), which is what makes reuse
meaningful; the result records per pair whether source and target heads are the same
(``same_head``) and whether they are the same task (``same_task``), so analyses can restrict to
those pairs. The computation is resumable: finished cells of an existing ``transfer_matrix.json``
with the same settings (backbone, split, precision) are reused, each prompt identified by the
sha256 of its tensor file: a prompt overwritten in place has its row and column recomputed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from skillneurons.backbones import Backbone, load_backbone
from skillneurons.backbones.config import BackboneOptions
from skillneurons.data import Task, load_task
from skillneurons.distributed import is_main
from skillneurons.errors import ArtifactError, ConfigError, DataError, SkillNeuronsError
from skillneurons.evidence import Estimate, accuracy_estimate
from skillneurons.prompts import PromptModel, SoftPrompt, load_prompt
from skillneurons.prompts.io import check_backbone, read_prompt_tensors
from skillneurons.results import Result
from skillneurons.rundir import RunDir
from skillneurons.training import evaluate
from skillneurons.transfer.config import TransferMatrixConfig
from skillneurons.transfer.sources import prompt_identity, require_soft_prompt

log = logging.getLogger(__name__)

__all__ = [
    "TransferMatrix",
    "TransferTarget",
    "load_target",
    "prompt_names",
    "run_transfer_matrix",
    "task_of",
    "transfer_accuracy",
    "transfer_matrix",
]


@dataclass
class TransferMatrix(Result):
    """``transfer_matrix.json``: every source prompt (rows) on every target task (columns).

    ``accuracy`` and ``relative`` are ``[S, T]`` (``relative = accuracy / own``), ``own`` ``[T]`` each
    target prompt on its own task (through the same transfer path), ``n_eval`` and ``majority``
    ``[T]`` the evaluated part's size and majority-class rate (chance level), ``same_task`` and
    ``same_head`` ``[S, T]``; ``source_ids``/``target_ids`` are content identities (sha256 of each
    prompt's tensor file) and ``settings`` the backbone, split and precision. A matrix read from an
    older file may lack the optional lists (then empty).
    """

    SCHEMA = "skillneurons.transfer_matrix"

    sources: list[str]
    targets: list[str]
    accuracy: list[list[float | None]]
    relative: list[list[float | None]]
    own: list[float | None]
    source_paths: list[str] = field(default_factory=list)
    target_paths: list[str] = field(default_factory=list)
    source_ids: list[str] = field(default_factory=list)
    target_ids: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    n_eval: list[int | None] = field(default_factory=list)
    majority: list[float | None] = field(default_factory=list)
    same_task: list[list[bool]] = field(default_factory=list)
    same_head: list[list[bool]] = field(default_factory=list)
    seconds: float = 0.0

    def accuracy_ci(self) -> list[list[Estimate | None]]:
        """``[S, T]`` Wilson 95% intervals of ``accuracy`` on each target's ``n_eval`` examples (None
        where a cell or its size is missing); written to the JSON as ``accuracy_ci``."""
        n = list(self.n_eval) + [None] * (len(self.targets) - len(self.n_eval))
        return [[accuracy_estimate(v, n[j]) for j, v in enumerate(row)] for row in self.accuracy]

    def own_ci(self) -> list[Estimate | None]:
        """``[T]`` Wilson 95% intervals of ``own`` (written as ``own_ci``)."""
        n = list(self.n_eval) + [None] * (len(self.targets) - len(self.n_eval))
        return [accuracy_estimate(v, n[j]) for j, v in enumerate(self.own)]

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["accuracy_ci"] = [[e.to_json() if e else None for e in row] for row in self.accuracy_ci()]
        out["own_ci"] = [e.to_json() if e else None for e in self.own_ci()]
        return out

    @classmethod
    def of(cls, matrix: TransferMatrix | Mapping[str, Any]) -> TransferMatrix:
        """``matrix`` itself, or the matrix of a mapping (a parsed ``transfer_matrix.json``)."""
        return (
            matrix if isinstance(matrix, TransferMatrix) else cls.from_json(dict(matrix), "transfer matrix")
        )


@dataclass
class TransferTarget:
    """A target task: its own prompt model (head, layout, template) and the part evaluated on."""

    name: str
    path: Path
    model: PromptModel
    manifest: dict[str, Any]
    part: Task


def prompt_names(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Display names: the task recorded in each prompt's manifest; where several prompts share a
    task, ``task/RUNFOLDER`` (e.g. ``mr/seed0``)."""
    tasks = [str(RunDir.of(p).task_record.get("name") or Path(p).parent.name) for p in paths]
    names = [t if tasks.count(t) == 1 else f"{t}/{Path(p).parent.name}" for t, p in zip(tasks, paths)]
    if len(set(names)) != len(names):
        names = [f"{n}#{i}" for i, n in enumerate(names)]
    return names


def load_target(
    path: str | os.PathLike[str],
    backbone: Backbone,
    *,
    name: str | None = None,
    split: str = "test",
    task: Task | None = None,
) -> TransferTarget:
    """Load a target prompt on ``backbone`` with the ``split`` part of its run's split."""
    p = Path(path)
    require_soft_prompt(p)
    model, man = load_prompt(p, backbone)
    if task is None:
        task = task_of(p, man)
    if split not in ("train", "dev", "test"):
        raise ConfigError(f"split {split!r} is unknown: use train, dev or test")
    part = RunDir.of(p).part(split, task)  # type: ignore[arg-type]
    model.eval()
    return TransferTarget(name or task.name, p, model, man, part)


def task_of(
    path: str | os.PathLike[str],
    manifest: dict[str, Any] | None = None,
    tasks: Mapping[str, Task] | None = None,
) -> Task:
    """The task a prompt was trained on (its run's :attr:`RunDir.task_record`): from ``tasks`` (by
    name), the task as its run loaded it (:meth:`RunDir.task`, when recorded), a built-in task of that
    name, or the data file recorded as its source."""
    run = RunDir.of(path)
    rec = run.task_record
    name, source = rec.get("name"), rec.get("source")
    if not name:
        raise DataError(f"{path} does not name its task: it cannot serve as a transfer target")
    if tasks and name in tasks:
        return tasks[name]
    if isinstance(rec.get("load"), dict):
        return run.task()
    try:
        return load_task(name)
    except SkillNeuronsError:
        if source and Path(str(source)).is_file():
            return load_task(str(source))
        raise DataError(
            f"task '{name}' of {path} is neither built in nor a readable file ({source}): "
            "pass the task (tasks=...)"
        ) from None


def _source_weight(path: str | os.PathLike[str], backbone: Backbone) -> tuple[torch.Tensor, dict[str, Any]]:
    require_soft_prompt(path)
    tensors, man = read_prompt_tensors(path)
    check_backbone(man.get("backbone", {}), backbone, what=f"source prompt {path}")
    if "prompt" not in tensors:
        raise ArtifactError(f"{path} holds no 'prompt' tensor: pass a prompt artifact")
    return tensors["prompt"], man


def transfer_accuracy(
    source: torch.Tensor | SoftPrompt,
    target: TransferTarget,
    *,
    batch_size: int = 64,
    precision: str = "auto",
    progress: bool = False,
) -> dict[str, float]:
    """Evaluate the prompt vectors ``source`` ``[P, hidden]`` with ``target``'s head and input format
    on ``target.part``: ``{"accuracy", "loss", "n"}``."""
    w = source.weight.detach() if isinstance(source, SoftPrompt) else source
    t = target.model
    bb = t.backbone
    if w.dim() != 2 or w.shape[1] != bb.hidden_size:
        raise ConfigError(
            f"a source prompt of shape {list(w.shape)} cannot run on {bb.name} (hidden size "
            f"{bb.hidden_size}): project it across models first (skillneurons project apply)"
        )
    model = PromptModel(
        bb, SoftPrompt(w), t.head, layout=t.layout, max_length=t.max_length, template=t.template
    )
    return evaluate(model, target.part, batch_size, precision=precision, progress=progress, desc="transfer")


def _settings_key(backbone: Backbone, split: str, precision: str) -> dict[str, Any]:
    return {"backbone": backbone.identity(), "split": split, "precision": precision}


_Cells = tuple[dict[tuple[str, str, str, str], float], dict[tuple[str, str], float]]


def _previous_cells(previous: TransferMatrix | Mapping[str, Any] | None, settings: dict[str, Any]) -> _Cells:
    """Finished cells of ``previous`` (same settings), keyed by (source path, its identity, target
    path, its identity), and the targets' own accuracies keyed by (path, identity)."""
    done: dict[tuple[str, str, str, str], float] = {}
    own_done: dict[tuple[str, str], float] = {}
    if not previous:
        return done, own_done
    prev = TransferMatrix.of(previous)
    if prev.settings != settings:
        return done, own_done
    p_src, p_tgt, p_sid, p_tid = prev.source_paths, prev.target_paths, prev.source_ids, prev.target_ids
    if len(p_sid) != len(p_src) or len(p_tid) != len(p_tgt):  # files without identities: recompute
        return done, own_done
    for i, sp in enumerate(p_src):
        for j, tp in enumerate(p_tgt):
            v = prev.accuracy[i][j]
            if v is not None:
                done[(sp, p_sid[i], tp, p_tid[j])] = float(v)
    own_done = {(tp, tid): float(v) for tp, tid, v in zip(p_tgt, p_tid, prev.own) if v is not None}
    return done, own_done


def _names(
    src_paths: list[str],
    tgt_paths: list[str],
    names: Sequence[str] | None,
    target_names: Sequence[str] | None,
    same: bool,
) -> tuple[list[str], list[str]]:
    src_names = list(names) if names is not None else prompt_names(src_paths)
    if target_names is not None:
        tgt_names = list(target_names)
    else:
        tgt_names = src_names if same else prompt_names(tgt_paths)
    if len(src_names) != len(src_paths) or len(tgt_names) != len(tgt_paths):
        raise ConfigError("give one name per prompt (--names)")
    return src_names, tgt_names


def transfer_matrix(
    sources: Sequence[str | os.PathLike[str]],
    backbone: Backbone,
    config: TransferMatrixConfig | None = None,
    *,
    targets: Sequence[str | os.PathLike[str]] | None = None,
    names: Sequence[str] | None = None,
    target_names: Sequence[str] | None = None,
    progress: bool = True,
    previous: TransferMatrix | Mapping[str, Any] | None = None,
    on_target_done: Callable[[TransferMatrix], None] | None = None,
    tasks: Mapping[str, Task] | None = None,
    **options: Any,
) -> TransferMatrix:
    """Accuracy of every source prompt on every target task (default targets: the sources).

    ``config`` (:class:`~skillneurons.transfer.config.TransferMatrixConfig`; ``options`` override its
    fields by name: ``split``, ``batch_size``, ``precision``). ``previous`` (an earlier result with
    the same settings) supplies cells already computed whose source and target files are unchanged;
    ``on_target_done(result_so_far)`` is called after every target column (checkpointing). ``tasks``
    (name -> :class:`Task`) supplies targets' tasks that are not built in or in a file.
    """
    c = dataclasses.replace(config or TransferMatrixConfig(), **options)
    if not sources:
        raise ConfigError("no source prompts given: pass at least one prompt artifact")
    src_paths = [str(p) for p in sources]
    tgt_paths = [str(p) for p in (targets if targets is not None else sources)]
    src_names, tgt_names = _names(src_paths, tgt_paths, names, target_names, targets is None)
    settings = _settings_key(backbone, c.split, c.precision)
    for p in dict.fromkeys(src_paths + tgt_paths):
        require_soft_prompt(p)
    ident = {p: prompt_identity(p) for p in dict.fromkeys(src_paths + tgt_paths)}
    done, own_done = _previous_cells(previous, settings)
    weights, smans = {}, {}
    for p in src_paths:
        weights[p], smans[p] = _source_weight(p, backbone)
    S, T = len(src_paths), len(tgt_paths)
    res = TransferMatrix(
        sources=src_names,
        targets=tgt_names,
        source_paths=src_paths,
        target_paths=tgt_paths,
        source_ids=[ident[p] for p in src_paths],
        target_ids=[ident[p] for p in tgt_paths],
        settings=settings,
        accuracy=[[None] * T for _ in range(S)],
        relative=[[None] * T for _ in range(S)],
        own=[None] * T,
        n_eval=[None] * T,
        majority=[None] * T,
        same_task=[[False] * T for _ in range(S)],
        same_head=[[False] * T for _ in range(S)],
        seconds=0.0,
    )
    start = time.perf_counter()
    bar = tqdm(total=S * T, desc="transfer matrix", disable=not progress or not is_main(), unit="pair")
    for j, tp in enumerate(tgt_paths):
        target = load_target(tp, backbone, name=tgt_names[j], split=c.split, task=task_of(tp, None, tasks))
        own = own_done.get((tp, ident[tp]))
        _fill_column(res, j, target, weights, smans, ident, done, own, c, bar)
        res.seconds = time.perf_counter() - start
        if on_target_done is not None:
            on_target_done(res)
    bar.close()
    return res


def _fill_column(
    res: TransferMatrix,
    j: int,
    target: TransferTarget,
    weights: Mapping[str, torch.Tensor],
    smans: Mapping[str, dict[str, Any]],
    ident: Mapping[str, str],
    done: Mapping[tuple[str, str, str, str], float],
    own: float | None,
    c: TransferMatrixConfig,
    bar: Any,
) -> None:
    """Column ``j`` of ``res``: every source prompt on ``target`` (cells in ``done`` reused)."""
    tp = res.target_paths[j]
    labels = torch.tensor(target.part.labels)
    res.n_eval[j] = len(target.part)
    res.majority[j] = float(torch.bincount(labels).max()) / len(labels)
    tw, _ = _source_weight(tp, target.model.backbone)
    if own is None:
        own = float(transfer_accuracy(tw, target, batch_size=c.batch_size, precision=c.precision)["accuracy"])
    res.own[j] = own
    for i, sp in enumerate(res.source_paths):
        sman = smans[sp]
        res.same_task[i][j] = (sman.get("task") or {}).get("fingerprint") == (
            target.manifest.get("task") or {}
        ).get("fingerprint")
        res.same_head[i][j] = sman.get("head") == target.manifest.get("head")
        if sman.get("layout") != target.model.layout:
            log.warning(
                "%s was trained with layout %s; evaluated in the target's layout %s",
                sp,
                sman.get("layout"),
                target.model.layout,
            )
        key = (sp, ident[sp], tp, ident[tp])
        if key in done:
            a = done[key]
        elif Path(sp).resolve() == Path(tp).resolve():
            a = own
        else:
            acc = transfer_accuracy(weights[sp], target, batch_size=c.batch_size, precision=c.precision)
            a = float(acc["accuracy"])
        res.accuracy[i][j] = a
        res.relative[i][j] = a / own if own > 0 else None
        bar.update(1)


def run_transfer_matrix(
    sources: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    config: TransferMatrixConfig | None = None,
    *,
    model: str | Backbone | None = None,
    backbone_options: BackboneOptions | None = None,
    targets: Sequence[str | os.PathLike[str]] | None = None,
    names: Sequence[str] | None = None,
    progress: bool = True,
    tasks: Mapping[str, Task] | None = None,
    **options: Any,
) -> TransferMatrix:
    """:func:`transfer_matrix` written to ``OUT/transfer_matrix.json`` after every target column
    (an interrupted run resumes from it); the backbone defaults to the first prompt's (loaded with
    ``backbone_options``)."""
    out = Path(out_dir)
    if isinstance(model, Backbone):
        bb = model
    else:
        name = model or RunDir.of(sources[0]).backbone_name
        bb = backbone_options.load(name) if backbone_options is not None else load_backbone(name)
    path = out / "transfer_matrix.json"
    previous = TransferMatrix.load(path) if path.is_file() else None

    def save(res: TransferMatrix) -> None:
        if is_main():
            out.mkdir(parents=True, exist_ok=True)
            res.save(path)

    res = transfer_matrix(
        sources,
        bb,
        config,
        targets=targets,
        names=names,
        progress=progress,
        previous=previous,
        on_target_done=save,
        tasks=tasks,
        **options,
    )
    save(res)
    return res
