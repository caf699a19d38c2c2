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
from typing import Any, Literal

import torch
from torch import Tensor

from skillneurons.artifacts import load_artifact, load_manifest, save_artifact, sha256_file
from skillneurons.backbones import Backbone
from skillneurons.data import Task, TaskSplits, check_disjoint
from skillneurons.distributed import is_main
from skillneurons.errors import ArtifactError, ConfigError, DataError
from skillneurons.neurons.collect import Positions, baseline_pass, predictivity_pass
from skillneurons.neurons.ranking import (
    SkillRanking,
    Subtask,
    aggregate,
    decompose,
    overlap,
    per_prompt,
    quota_size,
    union_mask,
)
from skillneurons.neurons.stats import PredictivityStats
from skillneurons.prompts import PromptModel, SoftPrompt, load_prompt

log = logging.getLogger(__name__)

Scheme = Literal["one_vs_rest", "pairwise", "paper"]


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
                f"{path} lacks {e}: the skill-neuron artifact is incomplete; re-create it with `skillneurons find`"
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
) -> dict[str, Tensor]:
    """Both passes for one prompt: ``pred.<subtask>`` [L, T, N] at the prompt positions (and
    ``auroc.<subtask>`` with ``hist_bins``), ``baseline`` [L, T, N], ``token_mean`` [L, N] and
    ``class_counts`` [C] of the dev split. ``pooled`` adds the paper's text-token control from the SAME
    forward passes: ``pooled.pred.<subtask>`` [L, 2, N] (position 0: mean-pooled, 1: max-pooled)."""
    check_disjoint(train, dev, "prompt's training", "ranking (dev)")
    kinds: tuple[Positions, ...] = ("prompt", "pooled") if pooled else ("prompt",)
    base, token_mean = baseline_pass(
        model, train, positions=kinds, batch_size=batch_size, precision=precision, progress=progress
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
    )
    out = score_stats(stats["prompt"], subtasks, auroc=hist_bins is not None)
    if pooled:
        out.update({f"pooled.{k}": v for k, v in score_stats(stats["pooled"], subtasks).items()})
    prompt_stats = stats["prompt"]
    out.update(
        baseline=base["prompt"].mean().cpu(),
        token_mean=token_mean,
        class_counts=prompt_stats.class_counts.cpu(),
    )
    return out


def prompt_splits(prompt_path: Path, manifest: Mapping[str, Any], task: Task) -> TaskSplits:
    """The split a prompt was trained with: ``split.json`` next to it, else re-drawn from its seed."""
    saved = manifest.get("task", {})
    if saved.get("fingerprint") and saved["fingerprint"] != task.fingerprint():
        raise DataError(
            f"{prompt_path} was trained on other data (task '{saved.get('name')}') than the task given ('{task.name}', "
            f"{len(task)} examples): pass the task the prompt was trained on"
        )
    split_file = prompt_path.parent / str(manifest.get("split", {}).get("file", "split.json"))
    if split_file.is_file():
        return TaskSplits.load(task, split_file)
    seed = manifest.get("split", {}).get("seed")
    if seed is None:
        raise DataError(
            f"{prompt_path} records no split and has no split.json beside it: pass --dev-file data to rank on"
        )
    return task.split(int(seed))


# ----------------------------------------------------------------------------------------------------
# the chain


def _position_name(model: PromptModel, t: int) -> str:
    if model.layout == "slot_first":
        return "slot" if t == 0 else f"p{t}"
    return "read" if t == model.prompt.length else f"p{t + 1}"


def _top_fraction_mean(score: Tensor, rho: float = 0.01) -> float:
    flat = score.reshape(-1).double()
    k = max(1, round(rho * flat.numel()))
    return float(flat.topk(k).values.mean())


def _control_summary(
    pred: dict[str, Tensor], subtasks: Sequence[Subtask], t: int | None = None
) -> dict[str, float]:
    """Top-1 and mean of the top 1% of the control's [L, N] score (max over subtasks)."""
    per_sub = []
    for s in subtasks:
        p = pred[f"pred.{s.name}"]
        per_sub.append(p[:, t] if t is not None else per_prompt(p)[0])
    score = torch.stack(per_sub).amax(0)
    return {"top1": float(score.max()), "top1pct_mean": _top_fraction_mean(score)}


def find_skill_neurons(
    backbone: Backbone,
    prompts: Sequence[str | os.PathLike[str]],
    task: Task,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    scheme: Scheme = "one_vs_rest",
    how: Literal["mean", "min"] = "mean",
    auroc_bins: int | None = None,
    controls: bool = True,
    hand_written: str | None = None,
    batch_size: int = 64,
    precision: str = "auto",
    top_k: int = 10,
    rho: float = 0.01,
    progress: bool = True,
) -> dict[str, Any]:
    """Rank the skill neurons of ``task`` from trained ``prompts`` (one per seed).

    Args:
        backbone: the frozen model the prompts were trained on.
        prompts: prompt artifacts (``RUN/prompt.safetensors``), each with its ``split.json`` beside it.
        task: the task the prompts were trained on (checked by fingerprint).
        out_dir: where ``skill_neurons.*``, per-prompt ``scores_<i>.*`` and ``summary.json`` go.
        scheme: decomposition of a multi-class task into binary subtasks.
        how: aggregation over prompts, ``mean`` (paper) or ``min``.
        auroc_bins: also compute the threshold-free AUROC predictivity with this many histogram bins.
        controls: also score the paper's controls on the first prompt: mean/max-pooled text tokens,
            a random prompt and a hand-written prompt (``hand_written``, default: a task description).
        top_k, rho: size of the printed top list, and the fraction whose per-layer distribution and
            mean score are reported.

    Returns:
        ``{"neurons": SkillNeurons, "summary": dict, "text": str}``.
    """
    if not prompts:
        raise ConfigError("no prompts given: pass at least one trained prompt (RUN/prompt.safetensors)")
    quota_size(rho, 1)  # validate every option before the first (long) pass
    if auroc_bins is not None and (isinstance(auroc_bins, bool) or auroc_bins < 1):
        raise ConfigError(f"--auroc-bins {auroc_bins} is invalid: give a positive number of bins (e.g. 64)")
    if top_k < 0 or batch_size < 1:
        raise ConfigError("--top must be >= 0 and --batch-size >= 1")
    for p in prompts:
        load_manifest(p, "prompt")
    out = Path(out_dir) if out_dir is not None else None
    subtasks = decompose(task.num_classes, scheme)
    per_prompt_scores: list[dict[str, Tensor]] = []
    infos: list[dict[str, Any]] = []
    first_model: PromptModel | None = None
    first_split: TaskSplits | None = None
    for i, p in enumerate(prompts):
        path = Path(p)
        man = load_manifest(path, "prompt")
        model, man = load_prompt(path, backbone)
        splits = prompt_splits(path, man, task)
        if i == 0:
            first_model, first_split = model, splits
        digest = sha256_file(path.with_suffix(".safetensors"))
        cache = out / f"scores_{i}" if out is not None else None
        scores = None
        if cache is not None and cache.with_suffix(".json").is_file():
            tensors, cman = load_artifact(cache, kind="prompt_scores")
            if (
                cman.get("prompt_sha256") == digest
                and cman.get("scheme") == scheme
                and cman.get("auroc_bins") == auroc_bins
                and (cman.get("pooled", False) or not (controls and i == 0))
            ):
                scores = tensors
                log.info("reusing the scores of %s from %s", path, cache)
        if scores is None:
            if progress and is_main():
                print(f"find: scoring prompt {i + 1}/{len(prompts)} ({path})")
            scores = score_prompt(
                model,
                splits.part("train"),
                splits.part("dev"),
                subtasks,
                pooled=controls and i == 0,
                hist_bins=auroc_bins,
                batch_size=batch_size,
                precision=precision,
                progress=progress,
            )
            if cache is not None and is_main():
                save_artifact(
                    cache,
                    scores,
                    kind="prompt_scores",
                    manifest={
                        "prompt": str(path),
                        "prompt_sha256": digest,
                        "scheme": scheme,
                        "auroc_bins": auroc_bins,
                        "pooled": controls and i == 0,
                        "task": task.name,
                        "split_seed": splits.seed,
                        "backbone": backbone.identity(),
                    },
                )
        per_prompt_scores.append(scores)
        infos.append(
            {
                "prompt": str(path),
                "seed": man.get("seed"),
                "split_seed": splits.seed,
                "dev_accuracy": man.get("dev_accuracy"),
                "dev_size": len(splits.dev),
            }
        )
    assert first_model is not None and first_split is not None

    rankings, best_position = {}, {}
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
        "scheme": scheme,
        "aggregation": how,
        "prompts": infos,
        "layout": first_model.layout,
        "prompt_length": first_model.prompt.length,
    }
    neurons = SkillNeurons(subtasks, rankings, best_position, token_mean, meta)

    summary: dict[str, Any] = {
        "task": task.name,
        "model": backbone.name,
        "num_prompts": len(prompts),
        "aggregation": how,
        "scheme": scheme,
        "prompts": infos,
    }
    combined = neurons.scores()
    summary["top1_predictivity"] = float(combined.max())
    summary["top1pct_mean_predictivity"] = _top_fraction_mean(combined, rho)
    summary["top"] = [
        {
            "subtask": s,
            "layer": layer,
            "index": idx,
            "score": sc,
            "position": _position_name(first_model, pos),
        }
        for s, layer, idx, sc, pos in neurons.top(top_k)
    ]
    mask = neurons.mask(rho, per_layer=False)
    summary["layer_distribution"] = {"rho": rho, "counts": mask.sum(1).tolist()}
    if auroc_bins is not None:
        auc = torch.stack(
            [
                torch.stack([per_prompt(sc[f"auroc.{s.name}"])[0] for sc in per_prompt_scores]).mean(0)
                for s in subtasks
            ]
        ).amax(0)
        summary["auroc_top1"] = float(auc.max())
        summary["auroc_top1pct_mean"] = _top_fraction_mean(auc, rho)
    if len(per_prompt_scores) > 1:
        masks = []
        for sc in per_prompt_scores:
            r = {s.name: SkillRanking(per_prompt(sc[f"pred.{s.name}"])[0]) for s in subtasks}
            masks.append(union_mask([r[s.name] for s in subtasks], rho, per_layer=False))
        pairs = [overlap(masks[a], masks[b]) for a in range(len(masks)) for b in range(a + 1, len(masks))]
        summary["seed_stability"] = {
            "rho": rho,
            "jaccard_mean": sum(o.jaccard for o in pairs) / len(pairs),
            "overlap_mean": sum(o.intersection / max(o.size_a, 1) for o in pairs) / len(pairs),
        }
    if controls:
        # the controls are scored on the first prompt's split: compare them with that prompt alone
        summary["first_prompt"] = _control_summary(per_prompt_scores[0], subtasks)
        summary["controls"] = _controls(
            first_model,
            first_split,
            task,
            subtasks,
            per_prompt_scores[0],
            hand_written,
            batch_size,
            precision,
            progress,
        )
    if out is not None and is_main():
        neurons.save(out / "skill_neurons", manifest={"summary_file": "summary.json"})
        from skillneurons.artifacts import atomic_write_json

        atomic_write_json(out / "summary.json", summary)
    return {"neurons": neurons, "summary": summary, "text": format_summary(summary)}


def _controls(
    model: PromptModel,
    splits: TaskSplits,
    task: Task,
    subtasks: Sequence[Subtask],
    first: Mapping[str, Tensor],
    hand_written: str | None,
    batch_size: int,
    precision: str,
    progress: bool,
) -> dict[str, dict[str, float]]:
    """The paper's controls, scored like the trained prompt on the same split: the pooled text tokens
    (from the first prompt's own passes), a random prompt and a hand-written prompt."""
    train, dev = splits.part("train"), splits.part("dev")
    kw: dict[str, Any] = dict(batch_size=batch_size, precision=precision, progress=progress)
    out: dict[str, dict[str, float]] = {}
    pooled = {k.removeprefix("pooled."): v for k, v in first.items() if k.startswith("pooled.")}
    out["text_mean_pooled"] = _control_summary(pooled, subtasks, t=0)
    out["text_max_pooled"] = _control_summary(pooled, subtasks, t=1)
    bb = model.backbone
    gen = torch.Generator().manual_seed(1234)
    text = hand_written or (f"Classify this text as {' or '.join(w[0] for w in task.label_words)}.")
    for name, prompt in (
        ("random_prompt", SoftPrompt.create(bb, model.prompt.length, "normal", generator=gen)),
        ("hand_written_prompt", SoftPrompt.create(bb, model.prompt.length, "text", text=text)),
    ):
        other = PromptModel(
            bb, prompt, model.head, layout=model.layout, max_length=model.max_length, template=model.template
        )
        out[name] = _control_summary(score_prompt(other, train, dev, subtasks, **kw), subtasks)
    return out


def format_summary(summary: Mapping[str, Any]) -> str:
    """A readable multi-line report of :func:`find_skill_neurons`' summary."""
    lines = [
        f"skill neurons of {summary['model']} on {summary['task']}: {summary['num_prompts']} prompt(s), "
        f"{summary['aggregation']} over prompts, subtasks by {summary['scheme']}",
    ]
    accs = [p.get("dev_accuracy") for p in summary["prompts"] if p.get("dev_accuracy") is not None]
    if accs:
        lines.append("  prompt dev accuracy: " + ", ".join(f"{a:.4f}" for a in accs))
    lines.append(
        f"  top-1 predictivity {summary['top1_predictivity']:.4f}; mean of the top 1% "
        f"{summary['top1pct_mean_predictivity']:.4f}"
    )
    if "auroc_top1" in summary:
        lines.append(
            f"  threshold-free (AUROC) predictivity: top-1 {summary['auroc_top1']:.4f}, top 1% "
            f"{summary['auroc_top1pct_mean']:.4f}"
        )
    lines.append("  rank  subtask      layer  neuron  position  predictivity")
    for r, t in enumerate(summary["top"], 1):
        lines.append(
            f"  {r:4d}  {t['subtask']:11s} {t['layer']:6d} {t['index']:7d}  {t['position']:>8s}  {t['score']:.4f}"
        )
    dist = summary["layer_distribution"]
    lines.append(
        f"  top {dist['rho']:.0%} per layer: " + " ".join(f"L{i}:{c}" for i, c in enumerate(dist["counts"]))
    )
    if "seed_stability" in summary:
        st = summary["seed_stability"]
        lines.append(
            f"  seed stability of the top {st['rho']:.0%}: mean pairwise Jaccard {st['jaccard_mean']:.3f}, "
            f"overlap {st['overlap_mean']:.3f}"
        )
    if "first_prompt" in summary:
        c = summary["first_prompt"]
        lines.append(
            f"  first trained prompt alone          top-1 {c['top1']:.4f}, top 1% {c['top1pct_mean']:.4f}"
        )
    for name, c in summary.get("controls", {}).items():
        lines.append(f"  control {name:20s} top-1 {c['top1']:.4f}, top 1% {c['top1pct_mean']:.4f}")
    return "\n".join(lines)
