"""The report's loading layer: ONE reader per result type, turning a parsed result file into the data
its section draws (attributes, never string keys, in the sections and the figures).

Each ``*View.read(obj)`` is the only place that knows the JSON keys of its result type; it keeps the
report's tolerance of older or partial files (a missing value is ``None`` or the default shown). When
a result type gets its typed class (:class:`skillneurons.results.Result` with ``from_json``), its
reader here is the one place to change: the attribute names are the JSON keys.

=================  =========================================================================
view               JSON keys read
=================  =========================================================================
BackboneInfo       name, model_type, kind, num_layers, hidden_size, d_ff
TaskInfo           name, fingerprint, label_names, source (a prompt manifest's ``task``)
ArtifactInfo       sha256, skillneurons_version, created (of a manifest)
PromptRecord       prompt, dev_accuracy (a ``find`` artifact's ``prompts``)
HistoryPoint       step, dev_accuracy, train_loss, dev_loss (``history.json``)
FindSummaryView    top1_predictivity, top1pct_mean_predictivity, first_prompt{top1,
                   top1pct_mean}, controls{name: {top1, top1pct_mean}}, auroc_top1,
                   auroc_top1pct_mean, seed_stability{rho, jaccard_mean, overlap_mean}
DemoSummaryView    minutes, seeds
PerturbSweepView   mode, sigma, positions, task, n_eval, unperturbed, draws, per_layer,
                   points[{rho, neurons, skill, random{mean, ci95}}]; v2: sigma_scale,
                   unperturbed_ci, points[{skill_ci, paired, random_ci}]
PerturbCrossView   tasks, drop, mode, rho, unperturbed, random_control{drop, draws}; v2: drop_ci,
                   versus_random
SimilarityView     tasks, spearman, jaccard, chance_jaccard, rho; v2: spearman_ci
PruneBenchView     entries[{model, geometry, task, split, examples, rows[{variant, rho,
                   kept_per_pruned_layer, parameters_fraction, examples_per_s, speedup_median,
                   speedup_q1, speedup_q3, accuracy, accuracy_random_neurons, accuracy_retuned}]}]
PruneRunView       source_model, rho, pruned_layers, parameters{fraction, pruned, source},
                   accuracy_unpruned, accuracy_pruned, accuracy_retuned
TransferView       the first matrix of TRANSFER_MATRIX_KEYS, sources, targets, tasks, title
ReadTrainView      a ``skillneurons.read_train`` result (``read train``'s ``train_result.json``,
                   typed: :class:`~skillneurons.reading.results.ReadTrainResult`)
ReadEvalView       a ``skillneurons.read_evaluation`` result (``dev_result.json``, ``read evaluate``;
                   typed: :class:`~skillneurons.reading.results.ReadEvaluation`)
DynsanCostView     setting, machine, rows[{level, L, K, seconds_step, seconds_step_min,
                   counted_flops_step, saved_bytes, attention_saved_bytes, peak_bytes,
                   analytic_reference_flops}], ratios[{level, L, K, speedup,
                   counted_flops_ratio, saved_bytes_ratio, attention_bytes_ratio,
                   peak_bytes_ratio}], break_even_L{<level>_K<k>} (``bench/dynsan_cost.py``)
DynsanAblationView setting, task{name, encoded}, baseline_most_frequent_entity and
                   baseline_window_overlap{<name>: {n, em, em_ci, f1, f1_ci}},
                   table{<variant>: {em, f1: {mean, low, high, n}, steps,
                   paired_vs_gate{em_minus_gate, low, high, seeds}}}, rows[{variant, seed,
                   gates_dev[{block, auroc, selected_answer_share, answer_share, tokens}],
                   gate_statistic}] (``bench/dynsan_ablation.py``)
=================  =========================================================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skillneurons.errors import ArtifactError, SkillNeuronsError
from skillneurons.evidence import Estimate
from skillneurons.neurons.results import FindSummary, SubtaskFigures
from skillneurons.reading.results import ReadEvaluation, ReadTrainResult

__all__ = [
    "LOADERS",
    "TRANSFER_MATRIX_KEYS",
    "AblationRow",
    "ArtifactInfo",
    "BackboneInfo",
    "Baseline",
    "Control",
    "CostRatio",
    "CostRow",
    "DemoSummaryView",
    "DynsanAblationView",
    "DynsanCostView",
    "FindSummaryView",
    "GateRow",
    "HistoryPoint",
    "PerturbCrossView",
    "PerturbSweepView",
    "PromptRecord",
    "PruneBenchView",
    "PruneEntry",
    "PruneParameters",
    "PruneRow",
    "PruneRunView",
    "RandomControl",
    "RandomDraws",
    "ReadEvalView",
    "ReadPoint",
    "ReadTrainView",
    "SeedStability",
    "SimilarityView",
    "SweepPoint",
    "TaskInfo",
    "TransferView",
    "as_number",
]

#: the matrices a transfer result may hold, in the order the report looks for them
TRANSFER_MATRIX_KEYS = ("relative_accuracy", "relative", "accuracy", "matrix", "speedup")


def _dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def estimate(x: Any) -> Estimate | None:
    """An :class:`~skillneurons.evidence.Estimate` from its JSON (None when absent or malformed: a file
    of an older version has no intervals)."""
    if not isinstance(x, dict):
        return None
    try:
        return Estimate.from_json(x)
    except (KeyError, TypeError, ValueError, SkillNeuronsError):
        return None


def as_number(x: Any) -> float:
    """A number as float, anything else (None, bool, text) as NaN (what the figures draw as a gap)."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


# ----------------------------------------------------------------------------------------------------
# what the artifacts record (prompt and skill-neuron manifests, tuning results)


@dataclass
class BackboneInfo:
    """The backbone record of an artifact or a tuning result (``model`` / ``backbone``)."""

    name: Any = None
    model_type: Any = None
    kind: Any = None
    num_layers: Any = None
    hidden_size: Any = None
    d_ff: Any = None

    @classmethod
    def read(cls, obj: dict[str, Any]) -> BackboneInfo:
        keys = ("name", "model_type", "kind", "num_layers", "hidden_size", "d_ff")
        return cls(**{k: obj.get(k) for k in keys})


@dataclass
class TaskInfo:
    """The task record of a prompt artifact (``task``)."""

    name: Any = None
    fingerprint: Any = None
    label_names: list[str] = field(default_factory=list)
    source: Any = None

    @classmethod
    def read(cls, obj: dict[str, Any]) -> TaskInfo:
        names = obj.get("label_names")
        return cls(
            obj.get("name"),
            obj.get("fingerprint"),
            [str(n) for n in names] if isinstance(names, list) else [],
            obj.get("source"),
        )


@dataclass
class ArtifactInfo:
    """Provenance of a saved artifact: its hash, the version that wrote it and when."""

    sha256: str | None = None
    skillneurons_version: Any = None
    created: Any = None

    @classmethod
    def read(cls, manifest: dict[str, Any]) -> ArtifactInfo:
        sha = manifest.get("sha256")
        return cls(
            sha if isinstance(sha, str) else None,
            manifest.get("skillneurons_version"),
            manifest.get("created"),
        )


@dataclass
class PromptRecord:
    """A prompt that skill neurons were found with, as the ``find`` artifact records it."""

    prompt: str | None = None
    dev_accuracy: Any = None

    @classmethod
    def read(cls, obj: Any) -> PromptRecord:
        if not isinstance(obj, dict):
            return cls()
        return cls(str(obj["prompt"]) if obj.get("prompt") else None, obj.get("dev_accuracy"))


@dataclass
class HistoryPoint:
    """One evaluation of a tuning run's history (``history.json``)."""

    step: float
    dev_accuracy: Any = None
    train_loss: Any = None
    dev_loss: Any = None

    @classmethod
    def read_all(cls, history: Any) -> list[HistoryPoint]:
        """The evaluations with a numeric step, in file order."""
        return [
            cls(x["step"], x.get("dev_accuracy"), x.get("train_loss"), x.get("dev_loss"))
            for x in history
            if isinstance(x, dict) and isinstance(x.get("step"), (int, float))
        ]


# ----------------------------------------------------------------------------------------------------
# find


@dataclass
class Control:
    """Top-1 predictivity and the mean of the top 1% of a set of scores (a prompt, a control)."""

    top1: Any = None
    top1pct_mean: Any = None
    #: the first prompt minus this control, paired over the ranking examples (newer summaries)
    versus_top1: Estimate | None = None
    versus_top1pct: Estimate | None = None

    @classmethod
    def read(cls, obj: Any) -> Control:
        d = _dict(obj)
        return cls(
            d.get("top1"),
            d.get("top1pct_mean"),
            estimate(d.get("versus_top1")),
            estimate(d.get("versus_top1pct")),
        )


@dataclass
class SeedStability:
    rho: Any = None
    jaccard_mean: Any = None
    overlap_mean: Any = None


@dataclass
class FindSummaryView:
    """``summary.json`` of a ``find`` output."""

    top1_predictivity: Any = None
    top1pct_mean_predictivity: Any = None
    first_prompt: Control | None = None
    controls: dict[str, Control] = field(default_factory=dict)
    auroc_top1: Any = None
    auroc_top1pct_mean: Any = None
    seed_stability: SeedStability | None = None
    subtasks: list[SubtaskFigures] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    #: ``accuracy`` or ``balanced`` (``find --score``); summaries written before it: accuracy
    score: str = "accuracy"

    @classmethod
    def read(cls, obj: dict[str, Any]) -> FindSummaryView:
        st = obj.get("seed_stability")
        first = obj.get("first_prompt")
        subtasks = [
            SubtaskFigures(
                str(f.get("name")),
                bool(f.get("balanced")),
                f.get("prompt_accuracy"),
                float(f["top1"]),
                float(f["top1pct_mean"]),
            )
            for f in (obj.get("subtasks") or [])
            if isinstance(f, dict)
            and all(isinstance(f.get(k), (int, float)) for k in ("top1", "top1pct_mean"))
        ]
        return cls(
            subtasks=subtasks,
            flags=_find_flags(obj),
            score="balanced" if obj.get("score") == "balanced" else "accuracy",
            top1_predictivity=obj.get("top1_predictivity"),
            top1pct_mean_predictivity=obj.get("top1pct_mean_predictivity"),
            first_prompt=Control.read(first) if isinstance(first, dict) else None,
            controls={
                str(k): Control.read(c) for k, c in (obj.get("controls") or {}).items() if isinstance(c, dict)
            },
            auroc_top1=obj.get("auroc_top1"),
            auroc_top1pct_mean=obj.get("auroc_top1pct_mean"),
            seed_stability=(
                SeedStability(st.get("rho"), st.get("jaccard_mean"), st.get("overlap_mean"))
                if isinstance(st, dict)
                else None
            ),
        )


def _find_flags(obj: dict[str, Any]) -> list[str]:
    """The summary's recorded flags; for a summary written before they were recorded, recomputed."""
    flags = obj.get("flags")
    if isinstance(flags, list):
        return [str(f) for f in flags]
    try:
        return FindSummary.from_json(obj, "summary.json").check()
    except (ArtifactError, TypeError, ValueError, AttributeError):
        return []


@dataclass
class DemoSummaryView:
    """``summary.json`` of the demo (recognised by its ``minutes`` and ``seeds``)."""

    minutes: Any = None

    @staticmethod
    def matches(obj: Any) -> bool:
        return isinstance(obj, dict) and "minutes" in obj and "seeds" in obj

    @classmethod
    def read(cls, obj: dict[str, Any]) -> DemoSummaryView:
        return cls(obj.get("minutes"))


# ----------------------------------------------------------------------------------------------------
# perturbation


@dataclass
class RandomDraws:
    """The random-neuron control at one point: mean accuracy and its 95% interval (None: not recorded)."""

    mean: Any = None
    ci95: tuple[Any, Any] = (None, None)


@dataclass
class SweepPoint:
    rho: Any
    neurons: Any
    skill: Any
    random: RandomDraws
    skill_ci: Estimate | None = None  # v2 files: Wilson interval of the skill condition
    paired: Estimate | None = None  # v2 files: skill - random on the same examples, with p
    random_ci: Estimate | None = None  # v2 files: the random mean, bootstrap over examples and draws

    @property
    def gap(self) -> float | None:
        """Random mean minus skill-neuron accuracy (None when either is missing)."""
        if isinstance(self.random.mean, (int, float)) and isinstance(self.skill, (int, float)):
            return self.random.mean - self.skill
        return None


@dataclass
class PerturbSweepView:
    """A perturbation sweep (``perturb``): accuracy vs perturbed fraction, skill vs random neurons."""

    points: list[SweepPoint]
    mode: Any = "?"
    sigma: Any = None
    positions: Any = "all"
    task: Any = "?"
    n_eval: Any = "?"
    unperturbed: Any = None
    draws: Any = None
    per_layer: Any = True
    sigma_scale: Any = None
    unperturbed_ci: Estimate | None = None

    @classmethod
    def read(cls, obj: dict[str, Any]) -> PerturbSweepView:
        points = []
        for p in obj["points"]:
            rnd = _dict(p.get("random"))
            ci = rnd.get("ci95")
            points.append(
                SweepPoint(
                    p.get("rho"),
                    p.get("neurons"),
                    p.get("skill"),
                    RandomDraws(
                        rnd.get("mean"),
                        (ci[0], ci[1]) if isinstance(ci, list) and len(ci) == 2 else (None, None),
                    ),
                    estimate(p.get("skill_ci")),
                    estimate(p.get("paired")),
                    estimate(p.get("random_ci")),
                )
            )
        return cls(
            points=points,
            mode=obj.get("mode", "?"),
            sigma=obj.get("sigma"),
            positions=obj.get("positions", "all"),
            task=obj.get("task", "?"),
            n_eval=obj.get("n_eval", "?"),
            unperturbed=obj.get("unperturbed"),
            draws=obj.get("draws"),
            per_layer=obj.get("per_layer", True),
            sigma_scale=obj.get("sigma_scale"),
            unperturbed_ci=estimate(obj.get("unperturbed_ci")),
        )

    def sorted_points(self) -> list[SweepPoint]:
        return sorted(self.points, key=lambda p: as_number(p.rho))


@dataclass
class RandomControl:
    """The cross-task matrix's control row: the drop when as many random neurons are perturbed."""

    drop: list[Any]
    draws: Any = "?"


@dataclass
class PerturbCrossView:
    """A cross-task perturbation matrix (``cross-perturb``)."""

    tasks: list[str]
    drop: list[list[Any]]
    mode: Any = "?"
    rho: Any = None
    unperturbed: list[Any] | None = None
    random_control: RandomControl | None = None
    drop_ci: list[list[Estimate | None]] | None = None  # v2 files: paired intervals of the drops
    versus_random: list[list[Estimate | None]] | None = None  # v2: cell - column's random control

    @classmethod
    def read(cls, obj: dict[str, Any]) -> PerturbCrossView:
        tasks = [str(t) for t in obj["tasks"]]
        ctrl = obj.get("random_control")
        control = None
        if isinstance(ctrl, dict) and isinstance(ctrl.get("drop"), list) and len(ctrl["drop"]) == len(tasks):
            control = RandomControl(list(ctrl["drop"]), ctrl.get("draws", "?"))
        unperturbed = obj.get("unperturbed")
        return cls(
            tasks=tasks,
            drop=[list(row) for row in obj["drop"]],
            mode=obj.get("mode", "?"),
            rho=obj.get("rho"),
            unperturbed=list(unperturbed) if isinstance(unperturbed, list) else None,
            random_control=control,
            drop_ci=_estimates(obj.get("drop_ci"), len(tasks)),
            versus_random=_estimates(obj.get("versus_random"), len(tasks)),
        )


def _estimates(m: Any, size: int) -> list[list[Estimate | None]] | None:
    """A ``[size, size]`` matrix of estimates (None unless the file holds one of that shape)."""
    if (
        not isinstance(m, list)
        or len(m) != size
        or not all(isinstance(r, list) and len(r) == size for r in m)
    ):
        return None
    return [[estimate(v) for v in row] for row in m]


@dataclass
class SimilarityView:
    """Task similarity from skill neurons (``similarity``)."""

    tasks: list[str]
    spearman: list[list[Any]]
    jaccard: list[list[Any]] | None = None
    chance_jaccard: list[list[Any]] = field(default_factory=list)
    rho: Any = None
    spearman_ci: list[list[Estimate | None]] | None = None  # v2 files

    @classmethod
    def read(cls, obj: dict[str, Any]) -> SimilarityView:
        jaccard = obj.get("jaccard")
        tasks = [str(t) for t in obj["tasks"]]
        return cls(
            tasks=tasks,
            spearman=obj["spearman"],
            jaccard=jaccard if isinstance(jaccard, list) else None,
            chance_jaccard=obj.get("chance_jaccard") or [],
            rho=obj.get("rho"),
            spearman_ci=_estimates(obj.get("spearman_ci"), len(tasks)),
        )

    def chance_mean(self) -> float | None:
        """Mean chance Jaccard off the diagonal (None when not recorded)."""
        chance = [
            v
            for i, row in enumerate(self.chance_jaccard)
            for j, v in enumerate(row)
            if i != j and isinstance(v, (int, float))
        ]
        return sum(chance) / len(chance) if chance else None


# ----------------------------------------------------------------------------------------------------
# pruning


@dataclass
class PruneRow:
    """One model of a pruning benchmark (the unpruned one, or one kept fraction)."""

    variant: Any = ""
    rho: Any = None
    kept_per_pruned_layer: Any = None
    parameters_fraction: Any = None
    examples_per_s: Any = None
    speedup_median: Any = None
    speedup_q1: Any = None  #: the median when not recorded
    speedup_q3: Any = None  #: the median when not recorded
    accuracy: Any = None
    accuracy_random_neurons: Any = None
    accuracy_retuned: Any = None

    @classmethod
    def read(cls, x: dict[str, Any]) -> PruneRow:
        med = x.get("speedup_median")
        return cls(
            variant=x.get("variant", ""),
            rho=x.get("rho"),
            kept_per_pruned_layer=x.get("kept_per_pruned_layer"),
            parameters_fraction=x.get("parameters_fraction"),
            examples_per_s=x.get("examples_per_s"),
            speedup_median=med,
            speedup_q1=x.get("speedup_q1", med),
            speedup_q3=x.get("speedup_q3", med),
            accuracy=x.get("accuracy"),
            accuracy_random_neurons=x.get("accuracy_random_neurons"),
            accuracy_retuned=x.get("accuracy_retuned"),
        )


@dataclass
class PruneEntry:
    """One model and task of a pruning benchmark, with its rows."""

    rows: list[PruneRow]
    model: Any = "?"
    geometry: Any = "?"
    task: Any = "?"
    split: Any = ""
    examples: Any = "?"

    def timed_rows(self) -> list[PruneRow]:
        """The rows with a numeric kept fraction, by kept fraction (what the figure draws)."""
        rows = [r for r in self.rows if isinstance(r.rho, (int, float))]
        rows.sort(key=lambda r: r.rho)
        return rows


@dataclass
class PruneBenchView:
    """A pruning benchmark (``bench/prune_speed.py``)."""

    entries: list[PruneEntry]

    @classmethod
    def read(cls, obj: dict[str, Any]) -> PruneBenchView:
        entries = [
            PruneEntry(
                rows=[PruneRow.read(x) for x in e["rows"] if isinstance(x, dict)],
                model=e.get("model", "?"),
                geometry=e.get("geometry", "?"),
                task=e.get("task", "?"),
                split=e.get("split", ""),
                examples=e.get("examples", "?"),
            )
            for e in obj.get("entries", [])
            if isinstance(e, dict) and isinstance(e.get("rows"), list)
        ]
        return cls(entries)


@dataclass
class PruneParameters:
    """Parameter counts of a pruned model: ``fraction`` = ``pruned`` / ``source``."""

    fraction: Any = None
    pruned: Any = None
    source: Any = None


@dataclass
class PruneRunView:
    """The record of one pruned model (``prune``'s ``results.json``)."""

    pruned_layers: Any = None
    rho: Any = None
    parameters: PruneParameters = field(default_factory=PruneParameters)
    source_model: Any = "model"
    accuracy_unpruned: Any = None
    accuracy_pruned: Any = None
    accuracy_retuned: Any = None

    @classmethod
    def read(cls, obj: dict[str, Any]) -> PruneRunView:
        p = obj.get("parameters", {})
        return cls(
            pruned_layers=obj.get("pruned_layers"),
            rho=obj.get("rho"),
            parameters=PruneParameters(**{k: p.get(k) for k in ("fraction", "pruned", "source")}),
            source_model=obj.get("source_model", "model"),
            accuracy_unpruned=obj.get("accuracy_unpruned"),
            accuracy_pruned=obj.get("accuracy_pruned"),
            accuracy_retuned=obj.get("accuracy_retuned"),
        )

    def accuracies(self) -> list[tuple[str, Any]]:
        """``(label, accuracy)`` of the recorded accuracies."""
        pairs = (
            ("accuracy, unpruned", self.accuracy_unpruned),
            ("accuracy, pruned", self.accuracy_pruned),
            ("accuracy, prompt re-tuned", self.accuracy_retuned),
        )
        return [(lab, v) for lab, v in pairs if v is not None]


# ----------------------------------------------------------------------------------------------------
# transfer


@dataclass
class TransferView:
    """A transfer matrix: a source prompt (rows) used on a target task (columns)."""

    key: str  #: which of TRANSFER_MATRIX_KEYS the matrix is
    matrix: list[list[Any]]
    sources: list[str]
    targets: list[str]
    title: str

    @classmethod
    def read(cls, obj: dict[str, Any]) -> TransferView:
        key = next(k for k in TRANSFER_MATRIX_KEYS if isinstance(obj.get(k), list))
        m = obj[key]
        return cls(
            key=key,
            matrix=m,
            sources=[str(x) for x in (obj.get("sources") or obj.get("tasks") or range(len(m)))],
            targets=[str(x) for x in (obj.get("targets") or obj.get("tasks") or range(len(m[0])))],
            title=str(obj.get("title") or key.replace("_", " ")),
        )


# ----------------------------------------------------------------------------------------------------
# reading (DynSAN): `read train` / `read evaluate` results, bench/dynsan_cost.py, bench/dynsan_ablation.py


def _typed(cls: Any, obj: dict[str, Any], what: str) -> Any:
    """A typed result from its JSON; a file that does not match is a ValueError (the report notes it)."""
    try:
        return cls.from_json(obj, what)
    except ArtifactError as e:
        raise ValueError(str(e)) from e


def _interval(value: Any, lo: Any, hi: Any, n: Any, method: str) -> Estimate | None:
    """An :class:`Estimate` of recorded figures (None unless the value is a finite number; the interval
    is dropped when its bounds are not)."""
    v = as_number(value)
    if math.isnan(v) or math.isinf(v):
        return None
    a, b = as_number(lo), as_number(hi)
    ok = math.isfinite(a) and math.isfinite(b)
    return Estimate(v, a if ok else None, b if ok else None, int(n) if isinstance(n, int) else 0, method)


@dataclass
class ReadPoint:
    """One evaluation of a reader's training history."""

    step: float
    dev_em: Any = None
    dev_f1: Any = None
    train_loss: Any = None
    dev_loss: Any = None

    @classmethod
    def read_all(cls, history: Any) -> list[ReadPoint]:
        """The evaluations with a numeric step, in file order."""
        keys = ("dev_em", "dev_f1", "train_loss", "dev_loss")
        return [
            cls(x["step"], *(x.get(k) for k in keys))
            for x in (history if isinstance(history, list) else [])
            if isinstance(x, dict) and isinstance(x.get("step"), (int, float))
        ]


@dataclass
class ReadTrainView:
    """A reader's training (``train_result.json``): the best dev EM, where, and the history."""

    result: ReadTrainResult
    history: list[ReadPoint]

    @classmethod
    def read(cls, obj: dict[str, Any]) -> ReadTrainView:
        res = _typed(ReadTrainResult, obj, "the read train result")
        return cls(res, ReadPoint.read_all(res.history))


@dataclass
class GateRow:
    """One block's gate AUROC for "token in a gold answer" (one value per head)."""

    block: str
    auroc: list[float]
    selected_answer_share: list[float]
    answer_share: Any = None
    tokens: Any = None
    variant: str = ""  #: the ablation variant (ablation files)
    seed: Any = None

    @classmethod
    def read(cls, x: Any, variant: str = "", seed: Any = None) -> GateRow | None:
        if not isinstance(x, dict) or not isinstance(x.get("auroc"), list):
            return None
        share = x.get("selected_answer_share")
        return cls(
            str(x.get("block", "?")),
            [as_number(a) for a in x["auroc"]],
            [as_number(a) for a in share] if isinstance(share, list) else [],
            x.get("answer_share"),
            x.get("tokens"),
            variant,
            seed,
        )


@dataclass
class ReadEvalView:
    """A reader's evaluation on a split (``dev_result.json``, ``read evaluate --out``)."""

    result: ReadEvaluation
    em: Estimate | None
    f1: Estimate | None
    gates: list[GateRow]

    @classmethod
    def read(cls, obj: dict[str, Any]) -> ReadEvalView:
        r = _typed(ReadEvaluation, obj, "the read evaluation")
        gates = [GateRow.read(g.__dict__ if not isinstance(g, dict) else g) for g in r.gates]
        return cls(
            r,
            _interval(r.em, r.em_low, r.em_high, r.n, "bootstrap"),
            _interval(r.f1, r.f1_low, r.f1_high, r.n, "bootstrap"),
            [g for g in gates if g is not None],
        )


@dataclass
class CostRow:
    """One measured (level, L, variant) of the cost bench; ``K`` None: full self-attention."""

    level: str
    L: float
    K: Any = None
    seconds_step: Any = None
    seconds_step_min: Any = None
    counted_flops_step: Any = None
    saved_bytes: Any = None
    attention_saved_bytes: Any = None
    peak_bytes: Any = None
    analytic_reference_flops: Any = None

    @property
    def variant(self) -> str:
        return "full attention" if self.K is None else f"DynSA K={self.K}"


@dataclass
class CostRatio:
    """DynSA at (level, L, K) against full attention at the same (level, L)."""

    level: str
    L: float
    K: Any
    speedup: Any = None
    counted_flops_ratio: Any = None
    saved_bytes_ratio: Any = None
    attention_bytes_ratio: Any = None
    peak_bytes_ratio: Any = None


_COST_ROW_KEYS = tuple(f for f in CostRow.__dataclass_fields__ if f not in ("level", "L"))
_COST_RATIO_KEYS = tuple(f for f in CostRatio.__dataclass_fields__ if f not in ("level", "L", "K"))


@dataclass
class DynsanCostView:
    """The cost of DynSA vs full attention as the length L grows (``bench/dynsan_cost.py``)."""

    rows: list[CostRow]
    ratios: list[CostRatio]
    #: (level, K) -> the L where DynSA's step time equals full attention's (None: no crossing)
    break_even: dict[tuple[str, Any], float | None] = field(default_factory=dict)
    setting: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, obj: dict[str, Any]) -> DynsanCostView:
        rows = [
            CostRow(str(r["level"]), r["L"], *(r.get(k) for k in _COST_ROW_KEYS))
            for r in obj["rows"]
            if isinstance(r, dict) and isinstance(r.get("L"), (int, float))
        ]
        ratios = [
            CostRatio(str(r["level"]), r["L"], r.get("K"), *(r.get(k) for k in _COST_RATIO_KEYS))
            for r in obj.get("ratios") or []
            if isinstance(r, dict) and isinstance(r.get("L"), (int, float))
        ]
        even: dict[tuple[str, Any], float | None] = {}
        for key, v in _dict(obj.get("break_even_L")).items():
            m = re.fullmatch(r"(.+)_K(\d+)", str(key))
            if m:
                even[(m[1], int(m[2]))] = float(v) if isinstance(v, (int, float)) else None
        return cls(rows, ratios, even, _dict(obj.get("setting")), _dict(obj.get("machine")))

    def levels(self) -> list[str]:
        return list(dict.fromkeys(r.level for r in self.rows))

    def series(self, level: str) -> dict[str, list[CostRow]]:
        """``{variant: its rows by L}`` of one level, full attention first."""
        out: dict[str, list[CostRow]] = {}
        rows = sorted((r for r in self.rows if r.level == level), key=lambda r: (r.K is not None, r.K or 0))
        for r in rows:
            out.setdefault(r.variant, []).append(r)
        return {k: sorted(v, key=lambda r: r.L) for k, v in out.items()}

    def ratio(self, row: CostRow) -> CostRatio | None:
        return next((q for q in self.ratios if (q.level, q.L, q.K) == (row.level, row.L, row.K)), None)


@dataclass
class AblationRow:
    """One variant of the ablation: test EM / F1 over seeds (t intervals) and EM minus the gate
    reader's on the same questions (paired bootstrap)."""

    variant: str
    em: Estimate | None
    f1: Estimate | None
    steps: list[Any]
    paired: Estimate | None = None
    paired_seeds: list[Any] = field(default_factory=list)


@dataclass
class Baseline:
    """The most-frequent-entity baseline on one reading of the test set."""

    name: str
    em: Estimate | None
    f1: Estimate | None


def _seed_estimate(x: Any) -> Estimate | None:
    d = _dict(x)
    return _interval(d.get("mean"), d.get("low"), d.get("high"), d.get("n"), "t")


def _ci_estimate(d: dict[str, Any], key: str) -> Estimate | None:
    ci = d.get(f"{key}_ci")
    lo, hi = (ci[0], ci[1]) if isinstance(ci, list) and len(ci) == 2 else (None, None)
    return _interval(d.get(key), lo, hi, d.get("n"), "bootstrap")


@dataclass
class DynsanAblationView:
    """The DynSAN ablation table (``bench/dynsan_ablation.py``)."""

    rows: list[AblationRow]
    baselines: list[Baseline]
    gates: list[GateRow]
    gate_statistic: str = ""
    task: Any = "?"
    n_test: Any = None
    runs: int = 0
    setting: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, obj: dict[str, Any]) -> DynsanAblationView:
        task = _dict(obj.get("task"))
        n_test = _dict(task.get("encoded")).get("test")
        rows = []
        for name, t in _dict(obj.get("table")).items():
            t = _dict(t)
            pv = t.get("paired_vs_gate")
            paired = None
            if isinstance(pv, dict):
                paired = _interval(pv.get("em_minus_gate"), pv.get("low"), pv.get("high"), n_test, "paired")
            steps = t.get("steps")
            rows.append(
                AblationRow(
                    str(name),
                    _seed_estimate(t.get("em")),
                    _seed_estimate(t.get("f1")),
                    list(steps) if isinstance(steps, list) else [],
                    paired,
                    list(_dict(pv).get("seeds") or []),
                )
            )
        baselines = [
            Baseline(
                str(k) if kind == "most_frequent_entity" else f"{kind}: {k}",
                _ci_estimate(_dict(v), "em"),
                _ci_estimate(_dict(v), "f1"),
            )
            for kind in ("most_frequent_entity", "window_overlap")
            for k, v in _dict(obj.get(f"baseline_{kind}")).items()
            if isinstance(v, dict)
        ]
        runs = [r for r in obj.get("rows") or [] if isinstance(r, dict)]
        gates = [
            g
            for r in runs
            for g in (
                GateRow.read(x, str(r.get("variant", "?")), r.get("seed")) for x in r.get("gates_dev") or []
            )
            if g is not None
        ]
        stat = next((str(r["gate_statistic"]) for r in runs if r.get("gate_statistic")), "")
        return cls(
            rows, baselines, gates, stat, task.get("name", "?"), n_test, len(runs), _dict(obj.get("setting"))
        )


#: result kind (see :data:`skillneurons.report.discovery.RESULT_KINDS`) -> its reader
LOADERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "perturb_sweep": PerturbSweepView.read,
    "perturb_cross": PerturbCrossView.read,
    "similarity": SimilarityView.read,
    "prune_bench": PruneBenchView.read,
    "prune_run": PruneRunView.read,
    "transfer": TransferView.read,
    "read_train": ReadTrainView.read,
    "read_eval": ReadEvalView.read,
    "dynsan_cost": DynsanCostView.read,
    "dynsan_ablation": DynsanAblationView.read,
}
