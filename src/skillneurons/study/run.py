"""The study runner: every (task, seed) prompt tuned, skill neurons found per task, perturbed,
compared across tasks, the transfer matrix and its indicators, one ``study.json`` and the report.

Each step writes into its own folder under the study's ``out``::

    tune/<task>/s<seed>/      prompt tuning (tune_prompt's run folder)
    find/<task>/              skill neurons of the task's prompts
    perturb/<task>/s<seed>-<mode>/   skill-vs-random sweep of one prompt
    similarity/  cross/<mode>/  transfer/  delta/<task>/<method>-s<seed>/
    study.json  report.html

and records ``step.json`` (its identity: the options and the content hashes of its inputs; its
result; its seconds) when it is done. A rerun reuses every finished step whose identity is
unchanged and computes the rest, so an interrupted study resumes where it stopped; a finished step
whose options or inputs changed is a one-line error (delete its folder, or give the study another
``out``). The whole study folder is locked while a study writes it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillneurons.artifacts import sha256_file
from skillneurons.backbones import Backbone, backbone_geometry, load_backbone
from skillneurons.data import Task, TaskSplits, load_task
from skillneurons.delta import delta_perturbation
from skillneurons.errors import ConfigError, SkillNeuronsError
from skillneurons.evidence import mean_over_seeds
from skillneurons.files import atomic_write_json, read_json
from skillneurons.neurons import check_find_memory
from skillneurons.neurons.config import FindConfig
from skillneurons.perturb import run_cross, run_similarity, run_sweep
from skillneurons.perturb.results import CrossResult, SimilarityResult
from skillneurons.report import write_report
from skillneurons.report.config import ReportConfig
from skillneurons.rundir import RunDir, make_splits
from skillneurons.runs import find_skill_neurons, tune_prompt
from skillneurons.runs.config import RunOptions
from skillneurons.study.config import StudySpec, TaskSpec
from skillneurons.study.figures import group_comparisons, indicator_spearman, prompt_figures, sweep_figures
from skillneurons.study.results import (
    StepRecord,
    StudyResult,
    TaskFigures,
)
from skillneurons.transfer import run_transfer_matrix, transferability
from skillneurons.transfer.config import parse_layers
from skillneurons.transfer.indicators import Transferability
from skillneurons.transfer.matrix import TransferMatrix

__all__ = ["STEP_FILE", "Step", "Study", "run_study"]

STEP_FILE = "step.json"


@dataclass
class Step:
    """One unit of work: its name, kind, folder, estimated forward tokens, and how to compute it;
    ``check`` (when set) refuses, before the study starts, a step that could not run (e.g. a find
    whose statistics would not fit in memory), so it is never found out after hours of tuning."""

    name: str
    kind: str
    folder: Path
    tokens: float
    identity: Callable[[], dict[str, Any]]
    compute: Callable[[], dict[str, Any]]
    result: dict[str, Any] | None = None
    check: Callable[[], None] | None = None


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: dataclasses.asdict(o) if _is_dc(o) else str(o)))


def _is_dc(o: Any) -> bool:
    return dataclasses.is_dataclass(o) and not isinstance(o, type)


#: FindConfig options added after studies were recorded, with the value those studies ran with: left
#: out of a find step's identity at that value, so a study recorded before them resumes
_FIND_ADDED = {"score": "accuracy"}
#: FindConfig options that decide where and in what pieces the statistics are computed, never their
#: values (bit-identical: tests/test_large_models.py): not part of a find step's identity
_FIND_PLACEMENT = ("stats_device", "position_chunk", "stats_memory_gb", "null_memory_gb")


def find_identity(cfg: FindConfig) -> dict[str, Any]:
    """A find step's options as recorded in its identity (:data:`_FIND_ADDED` at their old value and
    the placement options :data:`_FIND_PLACEMENT` left out)."""
    out = dataclasses.asdict(cfg)
    return {
        k: v
        for k, v in out.items()
        if k not in _FIND_PLACEMENT and not (k in _FIND_ADDED and v == _FIND_ADDED[k])
    }


def _digest(path: Path) -> str:
    return sha256_file(path.with_suffix(".safetensors"))


@dataclass
class Study:
    """A study spec bound to its folder, backbone and tasks (``backbone`` and ``tasks`` may be given,
    e.g. a tiny model in tests; else loaded from the spec's names)."""

    spec: StudySpec
    out: Path
    backbone: Backbone | None = None
    tasks: dict[str, Task] = field(default_factory=dict)
    progress: bool = True
    records: list[StepRecord] = field(default_factory=list)
    _geometry: tuple[int, list[int]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for t in self.spec.active_tasks:  # the data, checked before any model loads
            try:
                if t.name not in self.tasks:
                    self.tasks[t.name] = load_task(t.task)
                self.tasks[t.name].require_classes("training")
                t.run.fractions(len(self.tasks[t.name]))
            except SkillNeuronsError as e:
                raise type(e)(f"study spec [tasks.{t.name}]: {e}") from None

    # ---- the backbone, loaded on first use ----------------------------------------------------
    @property
    def bb(self) -> Backbone:
        if self.backbone is None:
            self.backbone = load_backbone(self.spec.model)
        return self.backbone

    def geometry(self) -> tuple[int, list[int]]:
        """``(layers, neurons per layer)`` of the backbone, read without loading its weights."""
        if self.backbone is not None:
            return self.backbone.num_layers, self.backbone.d_ff
        if self._geometry is None:
            self._geometry = backbone_geometry(self.spec.model)
        return self._geometry

    def split(self, t: TaskSpec, seed: int) -> TaskSplits:
        """The split the (task, seed) prompt is (or will be) tuned on: its run's ``split.json`` when
        tuned, else drawn as the tuning will draw it."""
        task = self.tasks[t.name]
        run = self._run_options(t)
        done = self.tune_dir(t.name, seed)
        fractions = run.fractions(len(task))
        return make_splits(
            task,
            run.split_seed_for(seed),
            done if (done / "split.json").is_file() else None,
            t.run.max_examples,
            fractions,
        )

    def _run_options(self, t: TaskSpec) -> RunOptions:
        """A task's run options with the study's split seed (one split per task, shared by its seeds)."""
        return dataclasses.replace(t.run, split_seed=self.spec.split_seed)

    @property
    def model_name(self) -> str:
        return self.backbone.name if self.backbone is not None else self.spec.model

    # ---- folders ---------------------------------------------------------------------------------
    def tune_dir(self, task: str, seed: int) -> Path:
        return self.out / "tune" / task / f"s{seed}"

    def prompt(self, task: str, seed: int) -> Path:
        return self.tune_dir(task, seed) / "prompt.safetensors"

    def neurons(self, task: str) -> Path:
        return self.out / "find" / task / "skill_neurons.safetensors"

    # ---- running a step --------------------------------------------------------------------------
    def done(self, step: Step) -> dict[str, Any] | None:
        """The recorded result of ``step`` when it is finished with the same identity; a finished step
        with another identity is a one-line error."""
        path = step.folder / STEP_FILE
        if not path.is_file():
            return None
        rec = read_json(path, "study step record")
        want = _plain(step.identity())
        have = rec.get("identity") if isinstance(rec, dict) else None
        if step.kind == "find" and isinstance(have, dict) and isinstance(have.get("find"), dict):
            # a placement option recorded by an older version (before it left the identity)
            have = {**have, "find": {k: v for k, v in have["find"].items() if k not in _FIND_PLACEMENT}}
        if have != want:
            keys = sorted(k for k in set(have or {}) | set(want) if (have or {}).get(k) != want.get(k))
            raise ConfigError(
                f"{step.folder} holds the step '{step.name}' made with other options or inputs (differing: "
                f"{', '.join(keys[:4])}): delete that folder to redo it, or give the study another out"
            )
        return dict(rec)

    def run(self, step: Step) -> dict[str, Any]:
        """``step``'s result: reused when finished, else computed and recorded."""
        rec = self.done(step)
        if rec is not None:
            self.records.append(StepRecord(step.name, step.kind, str(step.folder), False, rec["seconds"]))
            step.result = rec["result"]
            return step.result
        if self.progress:
            print(f"study: {step.name} ...", flush=True)
        start = time.perf_counter()
        result = step.compute()
        seconds = time.perf_counter() - start
        step.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            step.folder / STEP_FILE,
            {
                "step": step.name,
                "kind": step.kind,
                "identity": _plain(step.identity()),
                "tokens": step.tokens,
                "seconds": seconds,
                "result": result,
            },
        )
        self.records.append(StepRecord(step.name, step.kind, str(step.folder), True, seconds))
        if self.progress:
            print(f"study: {step.name} done in {seconds / 60:.1f} min", flush=True)
        step.result = result
        return result

    # ---- the steps -------------------------------------------------------------------------------
    def tune_step(self, t: TaskSpec, seed: int, method: str = "prompt") -> Step:
        task = self.tasks[t.name]
        delta = method != "prompt"
        train = self.spec.delta.train if delta and self.spec.delta else t.train
        cfg = dataclasses.replace(train, seed=seed)
        run = self._run_options(t)
        folder = self.out / "delta" / t.name / f"{method}-s{seed}" if delta else self.tune_dir(t.name, seed)

        def identity() -> dict[str, Any]:
            return {
                "model": self.model_name,
                "task": task.fingerprint(),
                "method": method,
                "prompt": t.prompt,
                "train": cfg,
                "run": {**dataclasses.asdict(run), "overwrite": None},
            }

        def compute() -> dict[str, Any]:
            res = tune_prompt(
                self.bb,
                task,
                folder,
                prompt=t.prompt,
                config=cfg,
                run=run,
                method=method,
                progress=self.progress,
            )
            return {"tune": res.to_json(), "history": read_json(folder / "history.json", "dev history")}

        tokens = tune_tokens(cfg, self.sizes(t), self.length(t))
        return Step(f"tune {method} {t.name} seed {seed}", "tune", folder, tokens, identity, compute)

    def find_step(self, t: TaskSpec) -> Step:
        prompts = [self.prompt(t.name, s) for s in t.seeds or self.spec.seeds]
        folder = self.neurons(t.name).parent
        cfg = self.spec.find

        def identity() -> dict[str, Any]:
            return {"prompts": [_digest(p) for p in prompts], "find": find_identity(cfg)}

        def compute() -> dict[str, Any]:
            found = find_skill_neurons(
                self.bb, prompts, self.tasks[t.name], folder, cfg, progress=self.progress
            )
            return found.summary.to_json()

        def check() -> None:  # the memory its statistics and null need, from the geometry alone
            layers, d_ff = self.geometry()
            dev = self.split(t, (t.seeds or self.spec.seeds)[0]).part("dev")
            n_classes = self.tasks[t.name].num_classes
            check_find_memory(cfg, layers, d_ff, t.prompt.prompt_length, dev.labels, n_classes, len(prompts))

        sizes, n = self.sizes(t), len(prompts) + (2 if cfg.controls else 0)
        tokens = n * (sizes["train"] + sizes["dev"]) * self.length(t)
        return Step(f"find {t.name}", "find", folder, tokens, identity, compute, check=check)

    def perturb_step(self, t: TaskSpec, seed: int, mode: str) -> Step:
        prompt, neurons = self.prompt(t.name, seed), self.neurons(t.name)
        cfg = self.spec.perturb.sweeps[mode]
        folder = self.out / "perturb" / t.name / f"s{seed}-{mode}"

        def identity() -> dict[str, Any]:
            return {"prompt": _digest(prompt), "neurons": _digest(neurons), "sweep": cfg}

        def compute() -> dict[str, Any]:
            res = run_sweep(prompt, neurons, folder, cfg, model=self.bb, task=self.tasks[t.name])
            return res.to_json()

        passes = 1 + sum(1 + cfg.draws for r in cfg.rho if r > 0)
        tokens = passes * self.sizes(t)["test"] * self.length(t)
        return Step(f"perturb {t.name} seed {seed} {mode}", "perturb", folder, tokens, identity, compute)

    def similarity_step(self) -> Step:
        tasks = [t.name for t in self.spec.active_tasks]
        paths = [self.neurons(n) for n in tasks]
        cfg = dataclasses.replace(self.spec.similarity, names=tuple(tasks))
        folder = self.out / "similarity"

        def identity() -> dict[str, Any]:
            return {"neurons": [_digest(p) for p in paths], "similarity": cfg}

        def compute() -> dict[str, Any]:
            return run_similarity(paths, folder, cfg).to_json()

        return Step("similarity", "similarity", folder, 0.0, identity, compute)

    def cross_step(self, mode: str) -> Step:
        active = self.spec.active_tasks
        seeds = {t.name: (t.seeds or self.spec.seeds)[0] for t in active}
        prompts = [self.prompt(t.name, seeds[t.name]) for t in active]
        neurons = [self.neurons(t.name) for t in active]
        cfg = self.spec.cross.configs[mode]
        folder = self.out / "cross" / mode

        def identity() -> dict[str, Any]:
            return {
                "prompts": [_digest(p) for p in prompts],
                "neurons": [_digest(p) for p in neurons],
                "cross": cfg,
            }

        def compute() -> dict[str, Any]:
            tasks = [self.tasks[t.name] for t in active]
            return run_cross(prompts, neurons, folder, cfg, model=self.bb, tasks=tasks).to_json()

        k = len(active)
        tokens = sum((k + cfg.draws) * self.sizes(t)["test"] * self.length(t) for t in active)
        return Step(f"cross-task perturbation {mode}", "cross", folder, tokens, identity, compute)

    def all_prompts(self) -> list[Path]:
        return [self.prompt(t.name, s) for t in self.spec.active_tasks for s in t.seeds or self.spec.seeds]

    def transfer_step(self) -> Step:
        prompts = self.all_prompts()
        cfg = self.spec.transfer.matrix
        folder = self.out / "transfer"

        def identity() -> dict[str, Any]:
            return {"prompts": [_digest(p) for p in prompts], "matrix": cfg}

        def compute() -> dict[str, Any]:
            tm = run_transfer_matrix(
                prompts, folder, cfg, model=self.bb, progress=self.progress, tasks=self.tasks
            )
            return tm.to_json()

        tokens = sum(
            len(prompts) * len(t.seeds or self.spec.seeds) * self.sizes(t)["test"] * self.length(t)
            for t in self.spec.active_tasks
        )
        return Step("transfer matrix", "transfer", folder, tokens, identity, compute)

    def indicators_step(self, matrix: Step, window: str | None = None) -> Step:
        prompts = self.all_prompts()
        tr = self.spec.transfer
        on = tr.on if window is None else dataclasses.replace(tr.on, layers=parse_layers(window))
        tag = "" if window is None else "-L" + window.replace(":", "-")
        folder = self.out / f"transferability{tag}"
        neurons = {
            str(self.prompt(t.name, s)): str(self.neurons(t.name))
            for t in self.spec.active_tasks
            for s in t.seeds or self.spec.seeds
        }

        def identity() -> dict[str, Any]:
            return {
                "prompts": [_digest(p) for p in prompts],
                "neurons": sorted({_digest(Path(p)) for p in neurons.values()}),
                "indicators": tr.indicators,
                "on": on,
                "matrix": matrix.identity(),
            }

        def compute() -> dict[str, Any]:
            tm = TransferMatrix.from_json(matrix.result, "transfer matrix")
            res = transferability(
                [str(p) for p in prompts], self.bb, tr.indicators, matrix=tm, neurons=neurons, on=on
            )
            res.save(folder / "transferability.json")
            return res.to_json()

        name = "transfer indicators" + (f" on layers {window}" if window else "")
        return Step(name, "indicators", folder, 0.0, identity, compute)

    def delta_perturb_step(self, t: TaskSpec, method: str, seed: int) -> Step:
        assert self.spec.delta is not None
        cfg = self.spec.delta.perturb
        model = self.out / "delta" / t.name / f"{method}-s{seed}" / "prompt.safetensors"
        neurons = self.neurons(t.name)
        folder = model.parent / "perturb"

        def identity() -> dict[str, Any]:
            return {"model": _digest(model), "neurons": _digest(neurons), "perturb": cfg}

        def compute() -> dict[str, Any]:
            res = delta_perturbation(neurons, [model], self.bb, cfg, task=self.tasks[t.name], out_dir=folder)
            return res.to_json()

        passes = 1 + sum(1 + cfg.draws for r in cfg.rhos if r > 0)
        tokens = passes * self.sizes(t)["test"] * self.length(t)
        return Step(
            f"delta-perturb {t.name} {method} seed {seed}", "delta", folder, tokens, identity, compute
        )

    # ---- sizes and lengths (for the cost model) -------------------------------------------------
    def sizes(self, t: TaskSpec) -> dict[str, int]:
        n = len(self.tasks[t.name])
        pool = min(n, t.run.max_examples) if t.run.max_examples else n
        fr = t.run.fractions(n) or (0.8, 0.1, 0.1)
        dev, test = round(fr[1] * pool), round(fr[2] * pool)
        return {"train": pool - dev - test, "dev": dev, "test": test}

    def length(self, t: TaskSpec) -> float:
        """Estimated tokens per example: words x 1.3 of the texts (a sample), the template and the
        prompt, capped at max_length."""
        task = self.tasks[t.name]
        texts = task.texts[:: max(1, len(task) // 500)]
        extra = t.prompt.prompt_length + 3 + len((t.prompt.template or "").split()) * 1.3
        per = [min(t.prompt.max_length, extra + 1.3 * len(x.split())) for x in texts]
        return sum(per) / max(len(per), 1)


def tune_tokens(cfg: Any, sizes: Mapping[str, int], length: float) -> float:
    """Forward tokens of a tuning run: training steps (a backward counts twice), dev evaluations and
    the test evaluation."""
    per_epoch = math.ceil(sizes["train"] / cfg.batch_size)
    steps = cfg.max_steps or math.ceil(cfg.epochs * per_epoch)
    evals = steps / (cfg.eval_every or max(1, per_epoch // 2))
    return (3 * steps * cfg.batch_size + evals * sizes["dev"] + sizes["test"]) * length


# ----------------------------------------------------------------------------------------------------
# the plan, the dry run and the whole study


def plan(study: Study) -> dict[str, list[Step]]:
    """Every step of the study, by stage, in the order they run."""
    spec = study.spec
    active = spec.active_tasks
    stages: dict[str, list[Step]] = {
        "tune": [study.tune_step(t, s) for t in active for s in t.seeds or spec.seeds],
        "find": [study.find_step(t) for t in active],
        "perturb": [
            study.perturb_step(t, s, m)
            for t in active
            for s in t.seeds or spec.seeds
            for m in spec.perturb.modes
        ]
        if spec.perturb.enabled
        else [],
        "similarity": [study.similarity_step()] if len(active) > 1 else [],
        "cross": [study.cross_step(m) for m in spec.cross.configs]
        if spec.cross.enabled and len(active) > 1
        else [],
        "transfer": [],
        "delta": [],
    }
    if spec.transfer.enabled and len(study.all_prompts()) > 1:
        matrix = study.transfer_step()
        stages["transfer"] = [matrix, study.indicators_step(matrix)]
        stages["transfer"] += [study.indicators_step(matrix, w) for w in spec.transfer.windows]
    if spec.delta is not None:
        by_name = {t.name: t for t in active}
        for name in spec.delta.tasks:  # seed by seed: a study stopped early has every method's first seeds
            for seed in spec.delta.seeds:
                for method in spec.delta.methods:
                    stages["delta"].append(study.tune_step(by_name[name], seed, method))
                    stages["delta"].append(study.delta_perturb_step(by_name[name], method, seed))
    return stages


def run_order(study: Study, stages: Mapping[str, list[Step]]) -> list[Step]:
    """Task by task (its prompts, its skill neurons, its sweeps), then the cross-task steps: a study
    stopped early holds whole tasks."""
    out: list[Step] = []
    for t in study.spec.active_tasks:
        out += [st for st in stages["tune"] if st.folder.parent.name == t.name]
        out += [st for st in stages["find"] if st.folder.name == t.name]
        out += [st for st in stages["perturb"] if st.folder.parent.name == t.name]
    return out + [st for k in ("similarity", "cross", "transfer", "delta") for st in stages[k]]


def _rate(steps: list[Step], default: float) -> tuple[float, str]:
    """Seconds per forward token: measured on the finished steps (tuning, finding, perturbing) when
    there are any, else the spec's rate."""
    secs = toks = 0.0
    for st in steps:
        path = st.folder / STEP_FILE
        if st.tokens > 0 and path.is_file():
            rec = read_json(path, "study step record")
            secs, toks = secs + float(rec.get("seconds", 0.0)), toks + float(rec.get("tokens", st.tokens))
    if toks > 0 and secs > 0:
        return secs / toks, f"measured on this study's finished steps ({secs / 60:.1f} min)"
    return default / 1000, "the spec's [cost] seconds_per_1k_tokens (no step of this study is finished yet)"


def check_plan(stages: Mapping[str, list[Step]]) -> None:
    """Every unfinished step's :attr:`Step.check`, before anything runs: the first refusal is a
    one-line error naming the step."""
    for st in (s for ss in stages.values() for s in ss):
        if st.check is None or (st.folder / STEP_FILE).is_file():
            continue
        try:
            st.check()
        except SkillNeuronsError as e:
            raise type(e)(f"study step '{st.name}' would be refused: {e}") from None


def describe_plan(study: Study) -> str:
    """The dry run: every step, whether it is finished, and the estimated minutes of those to do
    (a step that would be refused, e.g. a find that does not fit in memory, is an error here too)."""
    stages = plan(study)
    check_plan(stages)
    steps = [s for ss in stages.values() for s in ss]
    rate, how = _rate(steps, study.spec.cost.seconds_per_1k_tokens)
    lines = [f"study '{study.spec.name}' on {study.spec.model} -> {study.out}"]
    for t in study.spec.tasks:
        if t.excluded:
            lines.append(f"  task {t.name}: excluded ({t.exclude})")
            continue
        sz, tr = study.sizes(t), t.train
        sched = f"max_steps {tr.max_steps}" if tr.max_steps else f"{tr.epochs:g} epochs"
        lines.append(
            f"  task {t.name}: train {sz['train']}, dev {sz['dev']}, test {sz['test']}; max_length "
            f"{t.prompt.max_length} (~{study.length(t):.0f} tokens/example); {sched}, batch {tr.batch_size}, "
            f"lr {tr.lr:g}, eval every {tr.eval_every or 'half epoch'}"
        )
    todo_min = 0.0
    for stage, ss in stages.items():
        for st in ss:
            finished = (st.folder / STEP_FILE).is_file()
            minutes = st.tokens * rate / 60
            todo_min += 0.0 if finished else minutes
            state = "done" if finished else f"to do, ~{minutes:.1f} min"
            lines.append(f"  [{stage}] {st.name}: {state}")
    lines.append(
        f"  estimated time of the steps to do: {todo_min:.0f} min ({len(steps)} steps; rate "
        f"{rate * 1000:.3g} s per 1k forward tokens, {how}; a backward pass counts twice)"
    )
    return "\n".join(lines)


def run_study(
    spec: StudySpec,
    *,
    out: str | Path | None = None,
    backbone: Backbone | None = None,
    tasks: Mapping[str, Task] | None = None,
    dry_run: bool = False,
    report: bool = True,
    progress: bool = True,
    partial: bool = False,
) -> StudyResult | str:
    """Run (or resume) the study ``spec`` into ``out`` (default: the spec's) and return its
    :class:`StudyResult`, also written to ``OUT/study.json``; with ``dry_run``, the plan and its
    estimated cost as text (nothing is loaded but the data, nothing written); with ``partial``, the
    result of the steps finished so far, written to ``OUT/study.partial.json`` (nothing is computed,
    the missing parts stay empty; it also works while the study runs)."""
    study = Study(spec, Path(out or spec.out), backbone, dict(tasks or {}), progress)
    if dry_run:
        return describe_plan(study)
    start = time.perf_counter()
    if partial:  # reads only: no lock, so it works while the study runs; its own file
        stages = plan(study)
        for st in run_order(study, stages):
            if (rec := study.done(st)) is not None:
                st.result = rec["result"]
                study.records.append(StepRecord(st.name, st.kind, str(st.folder), False, rec["seconds"]))
        result = assemble(study, stages, time.perf_counter() - start)
        result.save(study.out / "study.partial.json")
        return result
    with RunDir(study.out).lock():
        stages = plan(study)
        check_plan(stages)
        atomic_write_json(study.out / "spec.json", _plain(spec))
        for st in run_order(study, stages):
            study.run(st)
        result = assemble(study, stages, time.perf_counter() - start)
        result.save(study.out / "study.json")
        if report:
            result.reports = write_reports(study, stages)
            result.save(study.out / "study.json")
    return result


def _task_figures(study: Study, t: TaskSpec, stages: Mapping[str, list[Step]]) -> TaskFigures:
    if t.excluded:
        return TaskFigures(t.name, t.task, excluded=t.exclude)
    task = study.tasks[t.name]
    tunes = [st.result for st in stages["tune"] if st.folder.parent.name == t.name and st.result]
    prompts = [prompt_figures(r["tune"], r["history"]) for r in tunes]
    find = next((st.result for st in stages["find"] if st.folder.name == t.name), None)
    sweeps: dict[str, list[dict[str, Any]]] = {}
    for st in stages["perturb"]:
        if st.folder.parent.name == t.name and st.result:
            sweeps.setdefault(str(st.result["mode"]), []).append(st.result)
    sizes = dict(tunes[0]["tune"]["sizes"]) if tunes else study.sizes(t)
    counts = [0] * task.num_classes
    if tunes:
        for i in RunDir.of(study.tune_dir(t.name, int(tunes[0]["tune"]["seed"]))).splits(task).test:
            counts[task.labels[i]] += 1
    return TaskFigures(
        name=t.name,
        task=t.task,
        classes=list(task.label_names),
        sizes=sizes,
        schedule={**dataclasses.asdict(t.train), "seed": None, "max_length": t.prompt.max_length},
        prompts=prompts,
        test_accuracy=mean_over_seeds([p.test_accuracy.value for p in prompts]) if prompts else None,
        majority=max(counts) / sum(counts) if sum(counts) else None,
        find=find,
        perturb=sweeps,
        sweep=[f for mode, ss in sweeps.items() for f in sweep_figures(mode, ss)],
    )


def assemble(study: Study, stages: Mapping[str, list[Step]], seconds: float) -> StudyResult:
    """The study's result from its finished steps."""
    spec = study.spec
    names = [t.name for t in spec.active_tasks]
    res = StudyResult(
        name=spec.name,
        model=study.bb.identity() if study.backbone is not None else {"name": spec.model},
        spec=_plain(spec),
        spec_file=spec.source,
        seeds=list(spec.seeds),
        tasks=[_task_figures(study, t, stages) for t in spec.tasks],
        groups=dict(spec.groups),
        steps=list(study.records),
        seconds=seconds,
    )
    if stages["similarity"] and stages["similarity"][0].result:
        sim = SimilarityResult.from_json(stages["similarity"][0].result, "similarity")
        res.similarity = sim.to_json()
        measures = {
            "spearman": sim.spearman,
            "spearman_layer_mean": sim.spearman_layer_mean,
            "jaccard": sim.jaccard,
        }
        res.similarity_groups = group_comparisons(names, measures, spec.groups)
    for st in (x for x in stages["cross"] if x.result):
        cross = CrossResult.from_json(st.result, "cross-task perturbation")
        res.cross[cross.mode] = cross.to_json()
        res.cross_groups += group_comparisons(
            names,
            {f"{cross.mode}:drop": cross.drop, f"{cross.mode}:relative_drop": cross.relative_drop},
            spec.groups,
            ordered=True,
        )
    if stages["transfer"] and all(st.result for st in stages["transfer"][:2]):
        matrix, indicators, *windows = stages["transfer"]
        res.transfer_matrix = matrix.result
        for w, st in zip(spec.transfer.windows, windows):
            res.indicator_windows[w] = indicator_spearman(
                st.result or {}, spec.transfer.indicators.include_same_task
            )
        ind = Transferability.from_json(indicators.result, "transferability")
        res.transferability = ind.to_json()
        res.indicator_spearman = indicator_spearman(
            res.transferability, spec.transfer.indicators.include_same_task
        )
    if stages["delta"]:
        res.delta = {st.name: st.result for st in stages["delta"] if st.kind == "delta" and st.result}
        by: dict[str, list[dict[str, Any]]] = {}
        for r in res.delta.values():
            for m in r.get("models") or []:
                by.setdefault(f"{r.get('task')}/{m['method']}", []).append(m)
        for key, models in by.items():
            mode = str(models[0]["settings"].get("mode", "zero"))
            res.delta_sweeps[key] = sweep_figures(mode, [m["sweep"] for m in models])
            res.delta_accuracy[key] = mean_over_seeds([float(m["sweep"]["unperturbed"]) for m in models])
    return res


def write_reports(study: Study, stages: Mapping[str, list[Step]]) -> list[str]:
    """One HTML report per task (``OUT/report-<task>.html``: its prompts, skill neurons, sweeps) with
    the cross-task results (similarity, cross-task perturbation, transfer) on every page."""
    shared = [st.folder / f for st in stages["similarity"] for f in ("similarity.json",)]
    shared += [st.folder / "perturb_cross.json" for st in stages["cross"]]
    shared += [
        st.folder / n
        for st in stages["transfer"][:2]
        for n in ("transfer_matrix.json", "transferability.json")
    ]
    out = []
    for t in study.spec.active_tasks:
        own = [
            st.folder / "perturb_sweep.json" for st in stages["perturb"] if st.folder.parent.name == t.name
        ]
        cfg = ReportConfig(
            run_dir=str(study.neurons(t.name).parent),
            out=str(study.out / f"report-{t.name}.html"),
            include=tuple(str(p) for p in [*own, *shared] if p.is_file()),
            examples=0,
        )
        out.append(str(write_report(cfg, task=study.tasks[t.name], progress=False)))
    return out
