"""Finding skill neurons of trained prompts: the whole chain of REFERENCE.md section 2.

:func:`find_skill_neurons` takes one or several trained prompts (seeds) of a task and returns a
:class:`SkillNeurons`: the full ranking of every (layer, neuron) per binary subtask, the position
where each neuron is most predictive, and every neuron's mean activation (for perturbation and
pruning). Per prompt it runs pass 1 on the prompt's TRAIN split and pass 2 on its DEV split (checked
disjoint from the training examples), both streaming; per-prompt scores are saved as they are made,
so an interrupted run resumes with the prompts not yet scored.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from skillneurons.artifacts import load_artifact, load_manifest, save_artifact, sha256_file
from skillneurons.backbones import Backbone
from skillneurons.data import Task, TaskSplits, check_disjoint, stratified_sample
from skillneurons.distributed import is_main
from skillneurons.errors import ArtifactError, ConfigError
from skillneurons.evidence import paired_difference, permutation_p, wilson, z_score
from skillneurons.neurons.collect import Positions, baseline_pass, predictivity_pass, stats_device
from skillneurons.neurons.config import FindConfig
from skillneurons.neurons.crossfit import (
    PromptFolds,
    SetFigures,
    heldout_selection,
    prompt_folds,
    set_figures,
)
from skillneurons.neurons.paired import Scorer, check_examples, heldout_examples
from skillneurons.neurons.ranking import (
    SkillRanking,
    Subtask,
    aggregate,
    balanced_accuracy,
    decompose,
    overlap,
    per_prompt,
    prediction_accuracy,
    union_mask,
)
from skillneurons.neurons.results import (
    ControlScore,
    FindSummary,
    LayerDistribution,
    NullFigures,
    PromptInfo,
    SeedStability,
    SetEvidence,
    StatFigures,
    SubtaskFigures,
    TopNeuron,
)
from skillneurons.neurons.stats import FoldPlan, PredictivityStats, find_stats_bytes, null_counts_bytes
from skillneurons.options import configure
from skillneurons.prompts import PromptModel, SoftPrompt, load_prompt
from skillneurons.prompts.model import position_names
from skillneurons.rundir import RunDir, open_together

log = logging.getLogger(__name__)


@dataclass
class SkillNeurons:
    """Skill-neuron rankings of one task on one backbone (aggregated over prompts).

    Attributes:
        subtasks: the binary subtasks (one for a 2-class task).
        rankings: ``{subtask name: SkillRanking}``, scores [L, N] (predictivity, max over positions,
            aggregated over prompts).
        best_position: ``{subtask name: [L, N] int64}``, the prompt position where the neuron is most
            predictive (on the predictivity averaged over prompts).
        token_mean: [L, N] float64, mean activation over all real tokens of the train split(s); the
            constant a removed neuron is replaced by (pruning) or set to (mean perturbation).
        meta: provenance (model identity, task, prompts, seeds, aggregation, ...).
    """

    subtasks: list[Subtask]
    rankings: dict[str, SkillRanking]
    best_position: dict[str, Tensor]
    token_mean: Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return int(self.token_mean.shape[0])

    @property
    def d_ff(self) -> int:
        return int(self.token_mean.shape[1])

    def mask(self, rho: float, per_layer: bool = True) -> Tensor:
        """[L, N] bool: the top fraction ``rho`` (per layer, or globally), the union over subtasks
        with the quota split between them (:func:`~skillneurons.neurons.ranking.union_mask`)."""
        return union_mask([self.rankings[s.name] for s in self.subtasks], rho, per_layer)

    def scores(self) -> Tensor:
        """[L, N] one score per neuron: the subtask's scores, or their maximum over subtasks."""
        return torch.stack([r.scores for r in self.rankings.values()]).amax(0)

    def top(self, k: int) -> list[tuple[str, int, int, float, int]]:
        """The ``k`` best neurons of every subtask as ``(subtask, layer, index, score, position)``."""
        out = []
        for s in self.subtasks:
            pos = self.best_position[s.name]
            out += [
                (s.name, layer, i, score, int(pos[layer, i]))
                for layer, i, score in self.rankings[s.name].top(k)
            ]
        return out

    def save(self, path: str | os.PathLike[str], manifest: Mapping[str, Any] | None = None) -> Path:
        tensors: dict[str, Tensor] = {"token_mean": self.token_mean}
        for s in self.subtasks:
            tensors[f"scores.{s.name}"] = self.rankings[s.name].scores
            tensors[f"best_position.{s.name}"] = self.best_position[s.name]
        subs = [
            {
                "name": s.name,
                "positive": list(s.positive),
                "negative": list(s.negative),
                "balanced": s.balanced,
            }
            for s in self.subtasks
        ]
        return save_artifact(
            path,
            tensors,
            kind="skill_neurons",
            manifest={
                "n_layers": self.n_layers,
                "d_ff": self.d_ff,
                "subtasks": subs,
                "meta": self.meta,
                **dict(manifest or {}),
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SkillNeurons:
        tensors, man = load_artifact(path, kind="skill_neurons")
        try:
            subtasks = [
                Subtask(tuple(s["positive"]), tuple(s["negative"]), s["name"], bool(s["balanced"]))
                for s in man["subtasks"]
            ]
            rankings = {s.name: SkillRanking(tensors[f"scores.{s.name}"]) for s in subtasks}
            best = {s.name: tensors[f"best_position.{s.name}"] for s in subtasks}
            return cls(subtasks, rankings, best, tensors["token_mean"].double(), dict(man.get("meta", {})))
        except KeyError as e:
            raise ArtifactError(
                f"{path} lacks {e}: the skill-neuron artifact is incomplete; re-create it with `skillneurons "
                "find`"
            ) from None


# ----------------------------------------------------------------------------------------------------
# scoring one prompt


def score_stats(
    stats: PredictivityStats, subtasks: Sequence[Subtask], auroc: bool = False
) -> dict[str, Tensor]:
    """``{"pred.<subtask>": [L, T, N]}`` (and ``"auroc.<subtask>"``) from pass-2 statistics."""
    out = {}
    for s in subtasks:
        out[f"pred.{s.name}"] = stats.predictivity(s.positive, s.negative, balanced=s.balanced)
        if auroc:
            out[f"auroc.{s.name}"] = stats.auroc_predictivity(s.positive, s.negative, balanced=s.balanced)
    return out


def score_prompt(
    model: PromptModel,
    train: Task,
    dev: Task,
    subtasks: Sequence[Subtask],
    *,
    pooled: bool = False,
    hist_bins: int | None = None,
    batch_size: int = 64,
    precision: str = "auto",
    progress: bool = False,
    label: str = "",
    plan: FoldPlan | None = None,
    heldout_null: bool = True,
    baseline_examples: int | None = None,
    baseline_stop: float | None = None,
    seed: int = 0,
    stats_device: str = "auto",
    position_chunk: int | None = None,
    paired_rho: float | None = None,
) -> dict[str, Tensor]:
    """Both passes for one prompt: ``pred.<subtask>`` [L, T, N] at the prompt positions (and
    ``auroc.<subtask>`` with ``hist_bins``), ``baseline`` [L, T, N], ``token_mean`` [L, N],
    ``class_counts`` [C] of the dev split and ``confusion`` [C, C] (true x predicted: the prompt
    model's own dev predictions, from the same passes). ``pooled`` adds the paper's text-token control
    from the SAME forward passes: ``pooled.pred.<subtask>`` [L, 2, N] (position 0: mean-pooled, 1:
    max-pooled). ``label`` names the passes on the progress bars. With a ``plan`` (:class:`FoldPlan`
    of ``dev``), also the cross-fitting reductions (:class:`~skillneurons.neurons.crossfit.PromptFolds`)
    under ``cf.*`` (and ``pooled.cf0.*``, ``pooled.cf1.*``), null included. ``baseline_examples`` /
    ``baseline_stop``: pass 1 on a seeded stratified sample / stopped adaptively (``FindConfig``);
    ``baseline_count`` says how many train examples it saw. ``stats_device`` (``auto``, ``cpu``,
    ``model``) and ``position_chunk`` say where the statistics live and how many positions are
    compared at a time; neither changes a bit of the result. ``paired_rho`` (with a ``plan``): a
    third pass over ``dev`` gives each example's part in the held-out top-1 and top-``paired_rho``
    figures, ``cf.examples_top1`` / ``cf.examples_topk`` [n] float64 (and ``pooled.cf{t}.*``), for
    paired comparisons with other scorers of the same examples (:mod:`~skillneurons.neurons.paired`)."""
    check_disjoint(train, dev, "prompt's training", "ranking (dev)")
    kinds: tuple[Positions, ...] = ("prompt", "pooled") if pooled else ("prompt",)
    base, token_mean = baseline_pass(
        model,
        _baseline_examples(train, baseline_examples, baseline_stop, seed),
        positions=kinds,
        batch_size=batch_size,
        precision=precision,
        progress=progress,
        label=label,
        stop_fraction=baseline_stop,
        stats_on=stats_device,
        position_chunk=position_chunk,
    )
    device = model.backbone.device
    classes = max(dev.num_classes, model.num_classes)
    confusion = torch.zeros(
        classes, classes, dtype=torch.float64, device=device if device.type != "mps" else "cpu"
    )
    stats = predictivity_pass(
        model,
        dev,
        base,
        positions=kinds,
        batch_size=batch_size,
        hist_bins=hist_bins,
        precision=precision,
        progress=progress,
        label=label,
        confusion=confusion,
        plan=plan,
        heldout_null=heldout_null,
        position_chunk=position_chunk,
    )
    out = score_stats(stats["prompt"], subtasks, auroc=hist_bins is not None)
    opts = dict(batch_size=batch_size, precision=precision, progress=progress, stats_device=stats_device)
    if pooled:
        out.update({f"pooled.{k}": v for k, v in score_stats(stats["pooled"], subtasks).items()})
    if plan is not None:
        out.update(_fold_tensors(model, dev, plan, subtasks, stats, base, pooled, paired_rho, label, opts))
    prompt_stats = stats["prompt"]
    out.update(
        baseline=base["prompt"].mean().cpu(),
        token_mean=token_mean,
        class_counts=prompt_stats.class_counts.cpu(),
        baseline_count=torch.tensor(base["prompt"].count, dtype=torch.int64),
        confusion=confusion.cpu(),
    )
    return out


def _fold_tensors(
    model: PromptModel,
    dev: Task,
    plan: FoldPlan,
    subtasks: Sequence[Subtask],
    stats: Mapping[str, Any],
    base: Mapping[str, Any],
    pooled: bool,
    paired_rho: float | None,
    label: str,
    opts: Mapping[str, Any],
) -> dict[str, Tensor]:
    """The cross-fitting reductions ``cf.*`` (and ``pooled.cf{t}.*``), with the paired pass's
    per-example parts when ``paired_rho`` is given."""
    folds: dict[str, tuple[PromptFolds, Positions, int]] = {
        "cf.": (prompt_folds(stats["prompt"].crossfit, subtasks), "prompt", 0)
    }
    if pooled:
        for t in range(2):
            cf = prompt_folds(stats["pooled"].crossfit, subtasks, slice(t, t + 1))
            folds[f"pooled.cf{t}."] = (cf, "pooled", t)
    if paired_rho is not None:
        _paired_pass(model, dev, plan, subtasks, folds, base, paired_rho, opts, label)
    out: dict[str, Tensor] = {}
    for prefix, (cf, _, _) in folds.items():
        out.update(cf.tensors(prefix))
    return out


def _paired_pass(
    model: PromptModel,
    dev: Task,
    plan: FoldPlan,
    subtasks: Sequence[Subtask],
    folds: Mapping[str, tuple[PromptFolds, Positions, int]],
    base: Mapping[str, Any],
    rho: float,
    options: Mapping[str, Any],
    label: str,
) -> None:
    """Fill every fold reduction's ``examples_top1`` / ``examples_topk`` from one more pass over ``dev``
    (``options``: batch_size, precision, progress, stats_device). Parts that disagree with the counts
    (:func:`~skillneurons.neurons.paired.check_examples`) are withheld with a warning: the paired
    comparisons are then absent, never wrong."""
    scorers = [
        Scorer(kind, t, heldout_selection(cf, rho), base[kind].mean().cpu().to(torch.float64))
        for cf, kind, t in folds.values()
    ]
    res = heldout_examples(
        model,
        dev,
        plan,
        scorers,
        subtasks,
        batch_size=options["batch_size"],
        precision=options["precision"],
        progress=options["progress"],
        desc="pass 3 (dev, paired)" + (f", {label}" if label else ""),
        out_device=stats_device(model, options["stats_device"]),
    )
    for (prefix, (cf, _, _)), sc, (e1, ek) in zip(folds.items(), scorers, res, strict=True):
        try:
            check_examples(cf, sc.selection, e1, ek, f"{label or 'prompt'} {prefix.rstrip('.')}")
        except RuntimeError as err:
            log.warning("%s", err)
            continue
        cf.examples_top1, cf.examples_topk = e1, ek


def _baseline_examples(train: Task, limit: int | None, stop: float | None, seed: int) -> Task:
    """The train examples of pass 1: all in their order (the default), a seeded stratified sample of
    ``limit``, and, for the adaptive stop, in a seeded random order."""
    if limit is None and stop is None:
        return train
    rng = np.random.default_rng(seed)
    idx = np.arange(len(train)) if limit is None else stratified_sample(train.labels, limit, rng)
    if stop is not None:
        idx = rng.permutation(idx)
    return train.subset(idx.tolist())


def prompt_splits(prompt_path: Path, manifest: Mapping[str, Any], task: Task) -> TaskSplits:
    """The split a prompt was trained with (deprecated: use ``RunDir.of(prompt_path).splits(task)``;
    ``manifest`` is read from the artifact again)."""
    return RunDir.of(prompt_path).splits(task)


# ----------------------------------------------------------------------------------------------------
# the chain


def _position_name(model: PromptModel, t: int) -> str:
    return position_names(model.layout, model.prompt.length)[t]


def _top_fraction_mean(score: Tensor, rho: float = 0.01) -> float:
    flat = score.reshape(-1).double()
    k = max(1, round(rho * flat.numel()))
    return float(flat.topk(k).values.mean())


@dataclass
class FindResult:
    """What :func:`find_skill_neurons` returns: the rankings, the summary and its printed text."""

    neurons: SkillNeurons
    summary: FindSummary
    text: str

    def __getitem__(self, key: str) -> Any:
        """Deprecated: the former dict result's keys (``"summary"`` in its JSON form)."""
        if key == "summary":
            return self.summary.to_json()
        if key not in ("neurons", "text"):
            raise KeyError(key)
        return getattr(self, key)


#: keyword spellings of the former signature
_FIND_ALIASES = {"how": "aggregate", "top_k": "top"}


def find_skill_neurons(
    backbone: Backbone,
    prompts: Sequence[str | os.PathLike[str]],
    task: Task,
    out_dir: str | os.PathLike[str] | None = None,
    config: FindConfig | None = None,
    *,
    progress: bool = True,
    **options: Any,
) -> FindResult:
    """Rank the skill neurons of ``task`` from trained ``prompts`` (one per seed).

    Args:
        backbone: the frozen model the prompts were trained on.
        prompts: prompt artifacts (``RUN/prompt.safetensors``), each with its ``split.json`` beside it.
        task: the task the prompts were trained on (checked by fingerprint).
        out_dir: where ``skill_neurons.*``, per-prompt ``scores_<i>.*`` and ``summary.json`` go.
        config: the :class:`FindConfig` (scheme, aggregation, AUROC bins, controls, ...); ``options``
            replace its fields by name (``how`` and ``top_k`` are accepted for ``aggregate``/``top``).

    Returns:
        A :class:`FindResult` (``neurons``, ``summary``, ``text``).
    """
    cfg = configure(FindConfig, config, options, _FIND_ALIASES)  # every option checked before a pass
    if not prompts:
        raise ConfigError("no prompts given: pass at least one trained prompt (RUN/prompt.safetensors)")
    for p in prompts:
        load_manifest(p, "prompt")
    task.require_classes("ranking")
    # a mixed list (a delta model, another backbone, another task) and every prompt's split are
    # checked before the first prompt is scored
    splits = [run.splits(task, cfg.split_seed) for run in open_together(prompts, "prompt")]
    out = Path(out_dir) if out_dir is not None else None
    subtasks = decompose(task.num_classes, cfg.scheme, cfg.score)  # type: ignore[arg-type]
    scored = [
        _score_one(backbone, Path(p), i, len(prompts), task, subtasks, cfg, out, progress, splits[i])
        for i, p in enumerate(prompts)
    ]
    per_prompt_scores = [s for s, _, _ in scored]
    infos = [info for _, info, _ in scored]
    first_model, first_split = scored[0][2]
    neurons = _aggregate(backbone, task, subtasks, per_prompt_scores, infos, first_model, cfg)
    summary = _summarize(backbone, task, neurons, subtasks, per_prompt_scores, infos, first_model, cfg)
    ev = _evidence([PromptFolds.from_tensors(sc, "cf.") for sc in per_prompt_scores], cfg, infos, subtasks)
    summary.evidence = ev
    summary.top1_predictivity, summary.top1pct_mean_predictivity = ev.top1.heldout, ev.top1pct.heldout
    if cfg.controls:
        # the controls are scored on the first prompt's split: compare them with that prompt alone
        summary.first_prompt = _control_score(
            [PromptFolds.from_tensors(per_prompt_scores[0], "cf.")], cfg, infos[:1], subtasks
        )
        summary.controls = _controls(
            first_model, first_split, task, subtasks, per_prompt_scores[0], cfg, infos[0], progress
        )
    summary.flags = summary.check()
    if out is not None and is_main():
        neurons.save(out / "skill_neurons", manifest={"summary_file": "summary.json"})
        summary.save(out / "summary.json")
    return FindResult(neurons, summary, format_summary(summary))


def _score_one(
    backbone: Backbone,
    path: Path,
    i: int,
    n: int,
    task: Task,
    subtasks: Sequence[Subtask],
    cfg: FindConfig,
    out: Path | None,
    progress: bool,
    splits: TaskSplits,
) -> tuple[dict[str, Tensor], PromptInfo, tuple[PromptModel, TaskSplits]]:
    """Score prompt ``i`` on its run's ``splits`` (or reuse its saved scores): ``(scores, info, (model,
    split))``."""
    model, man = load_prompt(path, backbone)
    pooled = cfg.controls and i == 0
    dev = splits.part("dev")
    plan = _plan(cfg, dev.labels, dev.num_classes)
    geometry = (model.backbone.num_layers, model.prompt.length + 1, max(model.backbone.d_ff))
    _check_memory(cfg, geometry, plan, n, len(subtasks))
    digest = sha256_file(path.with_suffix(".safetensors"))
    cache = out / f"scores_{i}" if out is not None else None
    scores = None
    if cache is not None and cache.with_suffix(".json").is_file():
        tensors, cman = load_artifact(cache, kind="prompt_scores")
        if (
            cman.get("prompt_sha256") == digest
            and cman.get("scheme") == cfg.scheme
            and cman.get("score", "accuracy") == cfg.score
            and cman.get("auroc_bins") == cfg.auroc_bins
            and (cman.get("pooled", False) or not pooled)
            and cman.get("crossfit") == _crossfit_key(cfg)
            and "confusion" in tensors
            and (not pooled or ("cf.examples_top1" in tensors and cman.get("paired_rho") == cfg.rho))
        ):
            scores = tensors
            log.info("reusing the scores of %s from %s", path, cache)
    if scores is None:
        if progress and is_main():
            print(f"find: scoring prompt {i + 1}/{n} ({path})")
        scores = score_prompt(
            model,
            splits.part("train"),
            splits.part("dev"),
            subtasks,
            pooled=pooled,
            hist_bins=cfg.auroc_bins,
            batch_size=cfg.batch_size,
            precision=cfg.precision,
            progress=progress,
            label=f"prompt {i + 1}/{n}" + (" + text-token controls" if pooled else ""),
            plan=plan,
            heldout_null=cfg.heldout_null,
            baseline_examples=cfg.baseline_examples,
            baseline_stop=cfg.baseline_stop,
            seed=cfg.seed,
            stats_device=cfg.stats_device,
            position_chunk=cfg.position_chunk,
            paired_rho=cfg.rho if pooled else None,
        )
        if cache is not None and is_main():
            save_artifact(
                cache,
                scores,
                kind="prompt_scores",
                manifest={
                    "prompt": str(path),
                    "prompt_sha256": digest,
                    "scheme": cfg.scheme,
                    "score": cfg.score,
                    "auroc_bins": cfg.auroc_bins,
                    "pooled": pooled,
                    "crossfit": _crossfit_key(cfg),
                    "paired_rho": cfg.rho if pooled else None,
                    "task": task.name,
                    "split_seed": splits.seed,
                    "backbone": backbone.identity(),
                },
            )
    conf = scores["confusion"]
    info = PromptInfo(
        str(path),
        man.get("seed"),
        splits.seed,
        man.get("dev_accuracy"),
        len(splits.dev),
        task.num_classes,
        balanced_accuracy(conf),
        {s.name: a for s in subtasks if (a := prediction_accuracy(conf, s)) is not None},
        [int(c) for c in conf.sum(1).tolist()],
    )
    return scores, info, (model, splits)


def _aggregate(
    backbone: Backbone,
    task: Task,
    subtasks: Sequence[Subtask],
    per_prompt_scores: Sequence[Mapping[str, Tensor]],
    infos: Sequence[PromptInfo],
    first_model: PromptModel,
    cfg: FindConfig,
) -> SkillNeurons:
    """The rankings over prompts, best positions and token means, as :class:`SkillNeurons`."""
    rankings, best_position = {}, {}
    how: Any = cfg.aggregate
    for s in subtasks:
        key = f"pred.{s.name}"
        rankings[s.name] = SkillRanking(
            aggregate([per_prompt(sc[key])[0] for sc in per_prompt_scores], how), meta={"subtask": s.name}
        )
        mean_pred = torch.stack([sc[key] for sc in per_prompt_scores]).mean(0)
        best_position[s.name] = per_prompt(mean_pred)[1]
    token_mean = torch.stack([sc["token_mean"].double() for sc in per_prompt_scores]).mean(0)
    meta = {
        "backbone": backbone.identity(),
        "task": task.name,
        "task_fingerprint": task.fingerprint(),
        "scheme": cfg.scheme,
        "score": cfg.score,
        "aggregation": cfg.aggregate,
        "prompts": [vars(i).copy() for i in infos],
        "layout": first_model.layout,
        "prompt_length": first_model.prompt.length,
    }
    return SkillNeurons(list(subtasks), rankings, best_position, token_mean, meta)


def _summarize(
    backbone: Backbone,
    task: Task,
    neurons: SkillNeurons,
    subtasks: Sequence[Subtask],
    per_prompt_scores: Sequence[Mapping[str, Tensor]],
    infos: Sequence[PromptInfo],
    first_model: PromptModel,
    cfg: FindConfig,
) -> FindSummary:
    """The summary but the controls: top neurons, layer distribution, AUROC and seed stability."""
    rho = cfg.rho
    combined = neurons.scores()
    summary = FindSummary(
        task=task.name,
        model=backbone.name,
        num_prompts=len(per_prompt_scores),
        aggregation=cfg.aggregate,
        scheme=cfg.scheme,
        score=cfg.score,
        prompts=list(infos),
        top1_predictivity=float(combined.max()),
        top1pct_mean_predictivity=_top_fraction_mean(combined, rho),
        top=[
            TopNeuron(s, layer, idx, sc, _position_name(first_model, pos))
            for s, layer, idx, sc, pos in neurons.top(cfg.top)
        ],
        layer_distribution=LayerDistribution(rho, neurons.mask(rho, per_layer=False).sum(1).tolist()),
        subtasks=[_subtask_figures(s, neurons, infos, rho) for s in subtasks],
        text_blind_positions=first_model.prompt.length
        if backbone.is_causal and first_model.layout == "prompt_first"
        else None,
    )
    if cfg.auroc_bins is not None:
        auc = torch.stack(
            [
                torch.stack([per_prompt(sc[f"auroc.{s.name}"])[0] for sc in per_prompt_scores]).mean(0)
                for s in subtasks
            ]
        ).amax(0)
        summary.auroc_top1 = float(auc.max())
        summary.auroc_top1pct_mean = _top_fraction_mean(auc, rho)
    if len(per_prompt_scores) > 1:
        masks = []
        for sc in per_prompt_scores:
            r = {s.name: SkillRanking(per_prompt(sc[f"pred.{s.name}"])[0]) for s in subtasks}
            masks.append(union_mask([r[s.name] for s in subtasks], rho, per_layer=False))
        pairs = [overlap(masks[a], masks[b]) for a in range(len(masks)) for b in range(a + 1, len(masks))]
        summary.seed_stability = SeedStability(
            rho,
            sum(o.jaccard for o in pairs) / len(pairs),
            sum(o.intersection / max(o.size_a, 1) for o in pairs) / len(pairs),
        )
    return summary


def _subtask_figures(
    s: Subtask, neurons: SkillNeurons, infos: Sequence[PromptInfo], rho: float
) -> SubtaskFigures:
    """The subtask's best predictivity beside the prompts' own accuracy on it (mean over prompts)."""
    accs = [i.subtask_accuracy[s.name] for i in infos if i.subtask_accuracy and s.name in i.subtask_accuracy]
    sc = neurons.rankings[s.name].scores
    return SubtaskFigures(
        s.name,
        s.balanced,
        sum(accs) / len(accs) if accs else None,
        float(sc.max()),
        _top_fraction_mean(sc, rho),
    )


def _controls(
    model: PromptModel,
    splits: TaskSplits,
    task: Task,
    subtasks: Sequence[Subtask],
    first: Mapping[str, Tensor],
    cfg: FindConfig,
    info: PromptInfo,
    progress: bool,
) -> dict[str, ControlScore]:
    """The paper's controls, scored like the trained prompt on the same split (same folds and label
    permutations): the pooled text tokens (from the first prompt's own passes), a random prompt and a
    hand-written prompt."""
    train, dev = splits.part("train"), splits.part("dev")
    kw: dict[str, Any] = dict(
        batch_size=cfg.batch_size,
        precision=cfg.precision,
        progress=progress,
        plan=_plan(cfg, dev.labels, dev.num_classes),
        heldout_null=cfg.heldout_null,
        baseline_examples=cfg.baseline_examples,
        baseline_stop=cfg.baseline_stop,
        seed=cfg.seed,
        stats_device=cfg.stats_device,
        position_chunk=cfg.position_chunk,
        paired_rho=cfg.rho,
    )
    out: dict[str, ControlScore] = {}
    first_folds = PromptFolds.from_tensors(first, "cf.")
    ref = first_folds if _parts_agree(first_folds, cfg.rho) else None  # checked once for all controls
    for t, name in enumerate(("text_mean_pooled", "text_max_pooled")):
        cf = PromptFolds.from_tensors(first, f"pooled.cf{t}.")
        out[name] = _control_score([cf], cfg, [info], subtasks, ref)
    bb = model.backbone
    gen = torch.Generator().manual_seed(1234)
    text = cfg.hand_written or (f"Classify this text as {' or '.join(w[0] for w in task.label_words)}.")
    for name, prompt in (
        ("random_prompt", SoftPrompt.create(bb, model.prompt.length, "normal", generator=gen)),
        ("hand_written_prompt", SoftPrompt.create(bb, model.prompt.length, "text", text=text)),
    ):
        other = PromptModel(
            bb, prompt, model.head, layout=model.layout, max_length=model.max_length, template=model.template
        )
        label = f"control: {name.replace('_', ' ')}"
        sc = score_prompt(other, train, dev, subtasks, **kw, label=label)
        out[name] = _control_score([PromptFolds.from_tensors(sc, "cf.")], cfg, [info], subtasks, ref)
    return out


# ----------------------------------------------------------------------------------------------------
# held-out figures and the permutation null


def _crossfit_key(cfg: FindConfig) -> dict[str, Any]:
    """What a cached prompt score depends on beyond the older keys: folds, null, pass-1 sample."""
    return {
        "folds": cfg.folds,
        "permutations": cfg.permutations,
        "seed": cfg.seed,
        "heldout_null": cfg.heldout_null,
        "baseline_examples": cfg.baseline_examples,
        "baseline_stop": cfg.baseline_stop,
        "version": 1,
    }


def _plan(cfg: FindConfig, labels: Sequence[int], num_classes: int) -> FoldPlan:
    """The folds and permutations of a ranking split (its ``labels``): ``cfg.folds`` folds, or as many
    as its smallest class has examples (every fold holds every class; the summary records the folds
    used)."""
    smallest = min(np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).tolist())
    folds = min(cfg.folds, smallest) if smallest >= 2 else cfg.folds  # < 2: FoldPlan.make refuses
    if folds < cfg.folds:
        log.warning(
            "cross-fitting with %d folds: the smallest class has %d ranking examples", folds, smallest
        )
    return FoldPlan.make(list(labels), num_classes, folds, cfg.permutations, cfg.seed)


def null_memory_bytes(
    cfg: FindConfig, n_layers: int, n_positions: int, d_ff: int, plan: FoldPlan, prompts: int, subtasks: int
) -> int:
    """Bytes the permutation null needs at most: its counts in pass 2 (prompt positions and, with the
    controls, the 2 pooled positions: :func:`~skillneurons.neurons.stats.null_counts_bytes`) plus,
    kept until the summary for each of the ``prompts`` and the 3 controls, the reductions
    ``R * S * L * N * 8`` (in-sample) and ``2 * R * F * S * L * N * 4`` (held-out null)."""
    R, F, C = cfg.permutations, cfg.folds, plan.num_classes
    largest = max(plan.fold_sizes()) if cfg.heldout_null else plan.size
    counts = null_counts_bytes(R, F, C, n_layers, n_positions, d_ff, largest, cfg.heldout_null)
    if cfg.controls:
        counts += null_counts_bytes(R, F, C, n_layers, 2, d_ff, largest, cfg.heldout_null)
    per_prompt = R * subtasks * n_layers * d_ff * (8 + (8 * F if cfg.heldout_null else 0))
    return counts + per_prompt * (prompts + (3 if cfg.controls else 0))


#: ``(layers, positions, neurons)``: the geometry the memory checks need (neurons: the widest layer's)
Geometry = tuple[int, int, int]


def check_find_memory(
    cfg: FindConfig,
    n_layers: int,
    d_ff: Sequence[int],
    prompt_length: int,
    dev_labels: Sequence[int],
    num_classes: int,
    prompts: int,
) -> None:
    """The memory checks :func:`find_skill_neurons` makes before its first pass, made from the
    geometry alone (the backbone's ``n_layers`` and per-layer ``d_ff``, the prompt's length, the
    ranking split's labels, the number of prompts), e.g. by a study before it tunes the prompts:
    a ConfigError naming the fix when the permutation null would exceed ``--null-memory-gb`` or the
    statistics ``--stats-memory-gb``."""
    plan = _plan(cfg, dev_labels, num_classes)
    subtasks = len(decompose(num_classes, cfg.scheme, cfg.score))  # type: ignore[arg-type]
    _check_memory(cfg, (n_layers, prompt_length + 1, max(d_ff)), plan, prompts, subtasks)


def _check_memory(cfg: FindConfig, geometry: Geometry, plan: FoldPlan, prompts: int, subtasks: int) -> None:
    """The permutation null's cap, then the whole statistics' cap (each a ConfigError naming its fix)."""
    _check_null_memory(cfg, geometry, plan, prompts, subtasks)
    _check_stats_memory(cfg, geometry, plan, prompts, subtasks)


def _check_null_memory(
    cfg: FindConfig, geometry: Geometry, plan: FoldPlan, prompts: int, subtasks: int
) -> None:
    """ConfigError naming a smaller ``--permutations`` when the null would exceed ``--null-memory-gb``."""
    if cfg.permutations == 0:
        return
    L, T, N = geometry
    need = null_memory_bytes(cfg, L, T, N, plan, prompts, subtasks)
    cap = cfg.null_memory_gb * 1e9
    if need > cap:
        fits = int(cfg.permutations * cap / need)
        hint = f"--permutations {fits}" if fits >= 1 else "--permutations 0"
        raise ConfigError(
            f"the permutation null needs {need / 1e9:.2f} GB (R={cfg.permutations}, {cfg.folds} folds, "
            f"{L} layers x {N} neurons x {T} positions) > --null-memory-gb "
            f"{cfg.null_memory_gb:g}: use {hint}, --no-heldout-null or a larger --null-memory-gb"
        )


def find_memory_bytes(
    cfg: FindConfig, n_layers: int, n_positions: int, d_ff: int, plan: FoldPlan, prompts: int, subtasks: int
) -> tuple[int, dict[str, int]]:
    """``(peak bytes, its breakdown)`` of a whole find: the first prompt's passes (with the pooled
    controls: :func:`~skillneurons.neurons.stats.find_stats_bytes`), or a later prompt's or a
    control's passes on top of the reductions kept from the prompts before it, whichever is more."""
    kw: dict[str, Any] = dict(
        hist_bins=cfg.auroc_bins,
        folds=plan.folds,
        permutations=cfg.permutations,
        heldout_null=cfg.heldout_null,
        batch_size=cfg.batch_size,
        subtasks=subtasks,
        position_chunk=cfg.position_chunk,
    )
    geometry = (n_layers, n_positions, d_ff, plan.num_classes, plan.size)
    first = find_stats_bytes(*geometry, pooled=cfg.controls, **kw)
    later = find_stats_bytes(*geometry, **kw)
    kept = first["reductions"] + later["reductions"] * (prompts - 1 if cfg.controls else prompts - 2)
    if not cfg.controls and prompts < 2:
        return first["total"], first
    need = max(first["total"], kept + later["total"])
    return need, first if need == first["total"] else {**later, "kept": kept, "total": need}


def _check_stats_memory(
    cfg: FindConfig, geometry: Geometry, plan: FoldPlan, prompts: int, subtasks: int
) -> None:
    """ConfigError naming the largest parts and their fixes when the find's statistics would need
    more than ``--stats-memory-gb``."""
    L, T, N = geometry
    need, parts = find_memory_bytes(cfg, L, T, N, plan, prompts, subtasks)
    cap = cfg.stats_memory_gb * 1e9
    if need <= cap:
        return
    fixes = {
        "null": "--permutations or --no-heldout-null",
        "reductions": "--permutations",
        "kept": "fewer prompts per find",
        "batch": "a smaller --batch-size",
        "histograms": "fewer --auroc-bins",
    }
    big = sorted((k for k in parts if k != "total"), key=lambda k: -parts[k])[:3]
    raise ConfigError(
        f"find's statistics need {need / 1e9:.2f} GB at their peak ("
        + ", ".join(f"{k} {parts[k] / 1e9:.2f}" for k in big)
        + f"; {L} layers x {N} neurons x {T} positions) > --stats-memory-gb {cfg.stats_memory_gb:g}: "
        f"use {'; '.join(dict.fromkeys(fixes[k] for k in big if k in fixes)) or 'fewer positions'}, "
        "or a larger --stats-memory-gb"
    )


def _null(observed: float, null: Any) -> NullFigures | None:
    if null is None or len(null) == 0:
        return None
    sd = float(null.std(ddof=1)) if len(null) > 1 else 0.0
    return NullFigures(
        len(null), float(null.mean()), sd, permutation_p(observed, null), z_score(observed, null)
    )


def _stat(heldout: float, in_sample: float, null_ho: Any, null_in: Any, n: int) -> StatFigures:
    ci = wilson(min(max(heldout * n, 0.0), n), n)  # type: ignore[arg-type]
    assert ci.lo is not None and ci.hi is not None
    return StatFigures(
        heldout, ci.lo, ci.hi, n, in_sample, _null(heldout, null_ho), _null(in_sample, null_in)
    )


def interval_examples(info: PromptInfo, subtasks: Sequence[Subtask]) -> int:
    """The number of examples a predictivity's Wilson interval rests on: the ranking split's size for
    plain accuracy; for a balanced subtask (the mean of its two sides' rates, ``n_pos`` and ``n_neg``
    examples) the ``n`` of a plain accuracy with the same variance at a common rate,
    ``4 n_pos n_neg / (n_pos + n_neg)`` (the size itself when the sides are equal, fewer when they are
    not: 256 of 400 for one class of five against the rest); the smallest over the subtasks."""
    counts = info.class_counts
    n = info.dev_size
    if not counts:
        return n
    for s in subtasks:
        if s.balanced:
            pos, neg = sum(counts[c] for c in s.positive), sum(counts[c] for c in s.negative)
            if pos and neg:
                n = min(n, int(4 * pos * neg // (pos + neg)))
    return max(n, 1)


def _evidence(
    folds: Sequence[PromptFolds], cfg: FindConfig, infos: Sequence[PromptInfo], subtasks: Sequence[Subtask]
) -> SetEvidence:
    """Held-out (Wilson interval over the fewest ranking examples of the prompts,
    :func:`interval_examples`) and in-sample figures of a set of prompts, each against its permutation
    null."""
    n = min(interval_examples(i, subtasks) for i in infos)
    f: SetFigures = set_figures(folds, cfg.aggregate, cfg.rho)
    return SetEvidence(
        int(folds[0].train.shape[0]),
        _stat(f.ho_top1, f.in_top1, f.null_ho_top1, f.null_in_top1, n),
        _stat(f.ho_topk, f.in_topk, f.null_ho_topk, f.null_in_topk, n),
    )


def _parts_agree(folds: PromptFolds, rho: float) -> bool:
    """Whether ``folds``' per-example parts (cached, perhaps) are those of its held-out figures at
    ``rho``: absent parts, or parts of another selection, give no paired comparison (a warning)."""
    if folds.examples_top1 is None or folds.examples_topk is None or folds.position is None:
        return False
    try:
        check_examples(
            folds, heldout_selection(folds, rho), folds.examples_top1, folds.examples_topk, "cached"
        )
    except RuntimeError as err:
        log.warning("%s", err)
        return False
    return True


def _control_score(
    folds: Sequence[PromptFolds],
    cfg: FindConfig,
    infos: Sequence[PromptInfo],
    subtasks: Sequence[Subtask],
    reference: PromptFolds | None = None,
) -> ControlScore:
    """A control's figures; with the ``reference`` (the first prompt's folds, already checked by
    :func:`_parts_agree`), the prompt minus the control, paired over the ranking examples, where the
    control's per-example parts agree with its figures too."""
    ev = _evidence(folds, cfg, infos, subtasks)
    out = ControlScore(ev.top1.heldout, ev.top1pct.heldout, ev)
    if reference is not None and len(folds) == 1 and _parts_agree(folds[0], cfg.rho):
        for attr, field in (("examples_top1", "versus_top1"), ("examples_topk", "versus_top1pct")):
            a, b = getattr(reference, attr), getattr(folds[0], attr)
            setattr(out, field, paired_difference(a.numpy(), b.numpy(), seed=cfg.seed))
    return out


def format_summary(summary: FindSummary) -> str:
    """A readable multi-line report of :func:`find_skill_neurons`' summary: every figure says what it
    is, the neurons' predictivity stands beside the prompts' own accuracy on the same binary subtask,
    and what makes the figures untrustworthy is flagged (``!``)."""
    if not isinstance(summary, FindSummary):
        summary = FindSummary.from_json(summary, "summary")
    s = summary
    lines = [
        f"skill neurons of {s.model} on {s.task}: {s.num_prompts} prompt(s), "
        f"{s.aggregation} over prompts, subtasks by {s.scheme}",
    ]
    lines += _prompt_lines(s)
    if s.score == "balanced":
        lines.append(
            "  predictivity: the BALANCED accuracy of ONE neuron's activation, thresholded at its train "
            "mean, on a binary subtask (the mean of the two sides' rates; max(bal, 1 - bal); 0.5 = chance)"
        )
    else:
        lines.append(
            "  predictivity: the accuracy of ONE neuron's activation, thresholded at its train mean, on a "
            "binary subtask (max(acc, 1 - acc); 0.5 = chance on balanced labels)"
        )
    lines += _evidence_lines(s)
    if s.subtasks:
        lines.append(
            "  subtask      weighting  top-1 neuron  top 1% mean  the prompts' own accuracy on it (in-sample)"
        )
        for f in s.subtasks:
            own = f"{f.prompt_accuracy:.4f}" if f.prompt_accuracy is not None else "n/a"
            weighting = "balanced" if f.balanced else "plain"
            lines.append(f"  {f.name:11s}  {weighting:9s}  {f.top1:12.4f}  {f.top1pct_mean:11.4f}  {own}")
    if s.auroc_top1 is not None:
        lines.append(
            f"  threshold-free (AUROC) predictivity: top-1 {s.auroc_top1:.4f}, top 1% "
            f"{s.auroc_top1pct_mean:.4f}"
        )
    lines.append("  rank  subtask      layer  neuron  position  predictivity (in-sample)")
    for r, t in enumerate(s.top, 1):
        lines.append(f"  {r:4d}  {t.subtask:11s} {t.layer:6d} {t.index:7d}  {t.position:>8s}  {t.score:.4f}")
    dist = s.layer_distribution
    if dist is not None:
        lines.append(
            f"  where the global top {dist.rho:.0%} lie (one ranking over all layers, not a per-layer "
            "quota): " + " ".join(f"L{i}:{c}" for i, c in enumerate(dist.counts))
        )
    if s.seed_stability is not None:
        st = s.seed_stability
        lines.append(
            f"  seed stability of the top {st.rho:.0%}: mean pairwise Jaccard {st.jaccard_mean:.3f}, "
            f"overlap {st.overlap_mean:.3f}"
        )
    kind = "held-out" if s.evidence is not None else "in-sample"
    if s.first_prompt is not None or s.controls:
        lines.append(f"  {kind} figures against the controls (same split, folds and permutations):")
    if s.first_prompt is not None:
        lines.append(_control_line("first trained prompt alone", s.first_prompt))
    for name, c in (s.controls or {}).items():
        lines.append(_control_line(f"control {name}", c))
    flags = s.flags if s.flags is not None else s.check()
    lines += [f"  ! {f}" for f in flags]
    return "\n".join(lines)


def _null_text(null: NullFigures | None) -> str:
    return f"  {null.format()}" if null is not None else ""


def _evidence_lines(s: FindSummary) -> list[str]:
    """The headline: held-out top-1 and top-1% predictivity with their intervals, the in-sample
    figures beside them, and the permutation nulls (a version-1 summary: the in-sample figures)."""
    ev = s.evidence
    if ev is None:
        return [
            f"  top-1 predictivity {s.top1_predictivity:.4f} (in-sample: selected and measured on the same "
            f"examples); mean of the top 1% {s.top1pct_mean_predictivity:.4f}"
        ]
    out = [
        f"  held-out: neurons selected on {ev.folds - 1} of {ev.folds} folds of the ranking examples, "
        "measured on the remaining one in the direction selected (cross-fitting; 95% Wilson intervals)"
    ]
    for what, st in (("top-1 predictivity", ev.top1), ("top-1% mean predictivity", ev.top1pct)):
        out.append(
            f"  {what} (held-out) {st.interval()}{_null_text(st.null)}\n"
            f"      in-sample (selected and measured on the same examples) {st.in_sample:.3f}"
            f"{_null_text(st.in_sample_null)}"
        )
    return out


def _control_line(name: str, c: ControlScore) -> str:
    ev = c.evidence
    if ev is None:
        return f"  {name:34s} top-1 {c.top1:.4f}, top 1% {c.top1pct_mean:.4f}"
    judged = ev.top1.decisive_null()
    p = f", top-1 p={judged[1].p:.4f} ({judged[0]} null)" if judged is not None else ""
    line = (
        f"  {name:34s} top-1 {ev.top1.interval()}, top 1% {ev.top1pct.interval()}"
        f"  (in-sample {ev.top1.in_sample:.3f}, {ev.top1pct.in_sample:.3f}){p}"
    )
    if c.versus_top1 is not None and c.versus_top1pct is not None:
        line += (
            f"\n      first prompt minus it, paired over the examples: top-1 "
            f"{c.versus_top1.format(3, p=True)}, top 1% {c.versus_top1pct.format(3, p=True)}"
        )
    return line


def _prompt_lines(s: FindSummary) -> list[str]:
    """The prompts' own dev accuracy, over all classes (plain and balanced, with chance)."""
    accs = [p.dev_accuracy for p in s.prompts if p.dev_accuracy is not None]
    if not accs:
        return []
    classes = next((p.num_classes for p in s.prompts if p.num_classes), None)
    over = f" over all {classes} classes" if classes else ""
    line = f"  the prompts' own dev accuracy{over}: " + ", ".join(f"{a:.4f}" for a in accs)
    bal = [p.balanced_accuracy for p in s.prompts if p.balanced_accuracy is not None]
    if bal and classes:
        line += f" (balanced: {', '.join(f'{a:.4f}' for a in bal)}; chance {1 / classes:.4f})"
    return [line]
