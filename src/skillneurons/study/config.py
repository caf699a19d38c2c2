"""The study spec (``skillneurons study SPEC.toml``): which model, tasks, seeds and experiments, read
from TOML with :mod:`tomllib` and checked completely before any model loads. No torch here.

A spec is a TOML file::

    name = "minilm"
    model = "minilm"
    out = "runs/study-minilm"        # the study's folder (every step writes its own sub-folder)
    seeds = [0, 1, 2]
    split_seed = 0                   # one split per task, shared by its seeds

    [prompt]                         # PromptConfig fields (prompt_length, head, template, max_length...)
    [train]                          # TrainConfig fields, the default schedule of every task
    [tasks.mr]                       # one table per task: the task spec (default: the table's name),
    dev_size = 400                   #   part sizes, max_examples, max_length, template and any
    test_size = 400                  #   TrainConfig field (its own schedule)
    [tasks.pang_lee]
    exclude = "stayed at chance ..." # a task left out, with the measured reason (recorded, not run)
    [groups]                         # task -> group, for the within- vs between-group comparisons
    mr = "sentiment"
    [find]                           # FindConfig fields
    [perturb]                        # SweepConfig fields, modes = ["zero", "mean"]; enabled = false skips it
    [cross]                          # CrossPerturbConfig fields, modes; enabled = false skips it
    [similarity]                     # SimilarityConfig fields (rho, per_layer)
    [transfer]                       # enabled; [transfer.matrix] / .indicators / .on: their configs
    [delta]                          # optional: methods, seeds, tasks, lr, epochs, [delta.perturb]
    [cost]                           # seconds_per_1k_tokens: the dry run's rate until steps are timed
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from skillneurons.delta.config import METHOD_NAMES, DeltaPerturbConfig
from skillneurons.errors import ConfigError
from skillneurons.neurons.config import FindConfig
from skillneurons.perturb.config import MODES, CrossPerturbConfig, SimilarityConfig, SweepConfig
from skillneurons.prompts.config import PromptConfig
from skillneurons.runs.config import RunOptions
from skillneurons.training.config import TrainConfig
from skillneurons.transfer.config import OnOptions, TransferabilityConfig, TransferMatrixConfig, parse_layers

__all__ = [
    "CostSpec",
    "CrossSpec",
    "DeltaSpec",
    "PerturbSpec",
    "StudySpec",
    "TaskSpec",
    "TransferSpec",
    "load_spec",
]

C = TypeVar("C")

#: the keys of a task's table that are not TrainConfig fields
_TASK_KEYS = ("task", "exclude", "seeds", "dev_size", "test_size", "max_examples", "max_length", "template")


def build(cls: type[C], table: Any, where: str, **fixed: Any) -> C:
    """``cls(**table)`` with one-line errors naming the spec's section: an unknown key, a value of the
    wrong kind, or what the config's own checks refuse. TOML arrays become tuples where the field
    is a tuple."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"study spec [{where}] must be a table (key = value lines), not {table!r}")
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(names))
    if unknown:
        known = ", ".join(n for n in names if n not in fixed)
        raise ConfigError(f"study spec [{where}]: unknown key {unknown[0]!r} (known keys: {known})")
    kwargs = {}
    for key, value in table.items():
        if isinstance(value, list) and "tuple" in str(names[key].type):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**{**kwargs, **fixed})
    except ConfigError as e:
        raise ConfigError(f"study spec [{where}]: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"study spec [{where}]: {e}") from None


def _pop(table: dict[str, Any], key: str, kind: Any, where: str, default: Any = None) -> Any:
    """``table.pop(key)`` checked against ``kind`` (a type or tuple of types)."""
    if key not in table:
        return default
    value = table.pop(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise ConfigError(f"study spec [{where}]: {key} = {value!r} is not a {_kind_name(kind)}")
    return value


def _kinds(kind: Any) -> tuple[Any, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: Any) -> str:
    return " or ".join(k.__name__ for k in _kinds(kind))


@dataclass
class TaskSpec:
    """One task of the study: its data, part sizes, sequence length and training schedule."""

    name: str
    task: str
    run: RunOptions
    prompt: PromptConfig
    train: TrainConfig
    exclude: str | None = None
    #: this task's seeds (None: the study's)
    seeds: tuple[int, ...] | None = None

    @property
    def excluded(self) -> bool:
        return self.exclude is not None


@dataclass
class PerturbSpec:
    """The skill-vs-random sweep of every prompt, once per mode (``enabled = false`` skips them)."""

    modes: tuple[str, ...]
    sweeps: dict[str, SweepConfig]
    enabled: bool = True


@dataclass
class CrossSpec:
    """The cross-task perturbation matrix (first prompt of every task), once per mode."""

    enabled: bool
    configs: dict[str, CrossPerturbConfig]


@dataclass
class TransferSpec:
    """The cross-task transfer matrix of every prompt on every task, and the indicators."""

    enabled: bool
    matrix: TransferMatrixConfig
    indicators: TransferabilityConfig
    on: OnOptions
    #: ON (and the skill-neuron indicators) again on each layer window, e.g. ``"0:2"``
    windows: tuple[str, ...] = ()


@dataclass
class DeltaSpec:
    """Optional: the prompt-found skill neurons perturbed in models tuned by other methods."""

    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    tasks: tuple[str, ...]
    train: TrainConfig
    perturb: DeltaPerturbConfig


@dataclass
class CostSpec:
    """The dry run's cost model: seconds per 1,000 tokens through one forward pass (a backward pass
    counts twice), until finished steps give a measured rate."""

    seconds_per_1k_tokens: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.seconds_per_1k_tokens, bool) or not self.seconds_per_1k_tokens > 0:
            raise ConfigError("seconds_per_1k_tokens must be a positive number")


@dataclass
class StudySpec:
    """A whole study, checked: every table built into its config dataclass."""

    name: str
    model: str
    out: str
    seeds: tuple[int, ...]
    split_seed: int
    tasks: list[TaskSpec]
    groups: dict[str, str]
    find: FindConfig
    perturb: PerturbSpec
    cross: CrossSpec
    similarity: SimilarityConfig
    transfer: TransferSpec
    delta: DeltaSpec | None
    cost: CostSpec = field(default_factory=CostSpec)
    source: str | None = None

    @property
    def active_tasks(self) -> list[TaskSpec]:
        """The tasks that run (not excluded)."""
        return [t for t in self.tasks if not t.excluded]


def load_spec(path: str | Path) -> StudySpec:
    """Read and check a study spec file (one-line :class:`ConfigError` for any problem)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"study spec {p} is not a file: pass the path of a .toml spec")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"study spec {p} is not valid TOML ({e})") from None
    spec = parse_spec(data)
    spec.source = str(p)
    return spec


def parse_spec(data: Mapping[str, Any]) -> StudySpec:
    """A :class:`StudySpec` from a parsed TOML document."""
    top = dict(data)
    name = _pop(top, "name", str, "top level")
    model = _pop(top, "model", str, "top level")
    if not name or not model:
        raise ConfigError('study spec: give name = "..." and model = "..." at the top level')
    out = _pop(top, "out", str, "top level", f"runs/study-{name}")
    seeds = _pop(top, "seeds", list, "top level", [0])
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"study spec: seeds = {seeds!r} must be a non-empty list of integers >= 0")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"study spec: seeds = {seeds!r} repeat a seed: give each once")
    split_seed = _pop(top, "split_seed", int, "top level", 0)
    prompt = build(PromptConfig, top.pop("prompt", {}), "prompt")
    train_table = dict(top.pop("train", {}))
    build(TrainConfig, train_table, "train")  # checked alone too: its errors name [train]
    tasks = _tasks(top.pop("tasks", None), prompt, train_table)
    groups = _groups(top.pop("groups", {}), [t.name for t in tasks])
    find = build(FindConfig, top.pop("find", {}), "find")
    perturb = _perturb(dict(top.pop("perturb", {})))
    cross = _cross(dict(top.pop("cross", {})))
    similarity = build(SimilarityConfig, top.pop("similarity", {}), "similarity")
    transfer = _transfer(dict(top.pop("transfer", {})))
    delta = _delta(top.pop("delta", None), [t.name for t in tasks if not t.excluded], train_table)
    cost = build(CostSpec, top.pop("cost", {}), "cost")
    if top:
        raise ConfigError(
            f"study spec: unknown top-level key {sorted(top)[0]!r} (known: name, model, out, seeds, "
            "split_seed, prompt, train, tasks, groups, find, perturb, cross, similarity, transfer, delta, "
            "cost)"
        )
    return StudySpec(
        name,
        model,
        out,
        tuple(seeds),
        split_seed,
        tasks,
        groups,
        find,
        perturb,
        cross,
        similarity,
        transfer,
        delta,
        cost,
    )


def _tasks(tables: Any, prompt: PromptConfig, train: Mapping[str, Any]) -> list[TaskSpec]:
    if not isinstance(tables, Mapping) or not tables:
        raise ConfigError("study spec: no tasks: add a [tasks.NAME] table per task (e.g. [tasks.mr])")
    out = []
    for name, raw in tables.items():
        where = f"tasks.{name}"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"study spec [{where}] must be a table")
        t = dict(raw)
        task = _pop(t, "task", str, where, name)
        exclude = _pop(t, "exclude", str, where)
        seeds = _pop(t, "seeds", list, where)
        if seeds is not None and (
            not seeds
            or len(set(seeds)) != len(seeds)
            or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in seeds)
        ):
            raise ConfigError(f"study spec [{where}]: seeds = {seeds!r} must list distinct integers >= 0")
        run = build(
            RunOptions,
            {k: t.pop(k) for k in ("dev_size", "test_size", "max_examples") if k in t},
            where,
        )
        prompt_over = {k: t.pop(k) for k in ("max_length", "template") if k in t}
        task_prompt = dataclasses.replace(prompt, **prompt_over) if prompt_over else prompt
        if prompt_over:
            build(PromptConfig, {**dataclasses.asdict(prompt), **prompt_over}, where)
        try:
            task_train = build(TrainConfig, {**train, **t}, where)
        except ConfigError as e:
            if "unknown key" in str(e):
                key = str(e).split("'")[1]
                known = ", ".join((*_TASK_KEYS, *(f.name for f in dataclasses.fields(TrainConfig))))
                raise ConfigError(
                    f"study spec [{where}]: unknown key {key!r} (known keys: {known})"
                ) from None
            raise
        out.append(
            TaskSpec(
                name, task, run, task_prompt, task_train, exclude, None if seeds is None else tuple(seeds)
            )
        )
    if all(t.excluded for t in out):
        raise ConfigError("study spec: every task is excluded: keep at least one")
    return out


def _groups(table: Any, names: list[str]) -> dict[str, str]:
    if not isinstance(table, Mapping):
        raise ConfigError('study spec [groups] must be a table: task = "group"')
    for k, v in table.items():
        if k not in names:
            raise ConfigError(f"study spec [groups]: {k!r} is not one of the tasks ({', '.join(names)})")
        if not isinstance(v, str) or not v:
            raise ConfigError(f"study spec [groups]: {k} = {v!r} must name a group (a string)")
    return dict(table)


def _modes(table: dict[str, Any], where: str, default: list[str]) -> tuple[str, ...]:
    modes = _pop(table, "modes", list, where, default)
    if not modes or any(m not in MODES for m in modes) or len(set(modes)) != len(modes):
        raise ConfigError(
            f"study spec [{where}]: modes = {modes!r}: give distinct modes among {', '.join(MODES)}"
        )
    if "mode" in table:
        raise ConfigError(f"study spec [{where}]: use modes = [...] (a list), not mode")
    return tuple(modes)


def _perturb(table: dict[str, Any]) -> PerturbSpec:
    enabled = _pop(table, "enabled", bool, "perturb", True)
    modes = _modes(table, "perturb", ["zero"])
    return PerturbSpec(modes, {m: build(SweepConfig, table, "perturb", mode=m) for m in modes}, enabled)


def _cross(table: dict[str, Any]) -> CrossSpec:
    enabled = _pop(table, "enabled", bool, "cross", True)
    modes = _modes(table, "cross", ["zero"])
    return CrossSpec(enabled, {m: build(CrossPerturbConfig, table, "cross", mode=m) for m in modes})


def _transfer(table: dict[str, Any]) -> TransferSpec:
    enabled = _pop(table, "enabled", bool, "transfer", True)
    windows = _pop(table, "windows", list, "transfer", [])
    for w in windows:
        if not isinstance(w, str):
            raise ConfigError(
                f"study spec [transfer]: windows = {windows!r}: give layer windows as strings, '0:2'"
            )
        parse_layers(w)
    matrix = build(TransferMatrixConfig, table.pop("matrix", {}), "transfer.matrix")
    indicators = build(TransferabilityConfig, table.pop("indicators", {}), "transfer.indicators")
    on = build(OnOptions, table.pop("on", {}), "transfer.on")
    if table:
        raise ConfigError(
            f"study spec [transfer]: unknown key {sorted(table)[0]!r} "
            "(known: enabled, windows, matrix, indicators, on)"
        )
    return TransferSpec(enabled, matrix, indicators, on, tuple(windows))


def _delta(raw: Any, tasks: list[str], train: Mapping[str, Any]) -> DeltaSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError("study spec [delta] must be a table")
    t = dict(raw)
    methods = _pop(t, "methods", list, "delta", ["bitfit", "adapter", "lora"])
    bad = [m for m in methods if m not in METHOD_NAMES or m == "prompt"]
    if not methods or bad:
        raise ConfigError(f"study spec [delta]: methods = {methods!r}: use bitfit, adapter and/or lora")
    seeds = _pop(t, "seeds", list, "delta", [0, 1, 2])
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"study spec [delta]: seeds = {seeds!r} must be a list of integers >= 0")
    on = _pop(t, "tasks", list, "delta", tasks[:1])
    unknown = [x for x in on if x not in tasks]
    if not on or unknown:
        raise ConfigError(f"study spec [delta]: tasks = {on!r}: name tasks of the study ({', '.join(tasks)})")
    raw_perturb = t.pop("perturb", {})
    if isinstance(raw_perturb, Mapping) and "rho" in raw_perturb:  # [perturb]'s spelling, accepted here too
        if "rhos" in raw_perturb:
            raise ConfigError("study spec [delta.perturb]: give rho or rhos, not both")
        raw_perturb = {("rhos" if k == "rho" else k): v for k, v in raw_perturb.items()}
    perturb = build(DeltaPerturbConfig, raw_perturb, "delta.perturb")
    lr = _pop(t, "lr", (float, int), "delta", 3e-3)
    delta_train = build(TrainConfig, {**train, "lr": lr, **t}, "delta")
    return DeltaSpec(tuple(methods), tuple(seeds), tuple(on), delta_train, perturb)
