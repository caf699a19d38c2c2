"""Transferability indicators (Su et al., NAACL 2022; REFERENCE.md section 6) and how well they
predict the measured transfer.

Embedding similarity of two prompts ``p [P, d]`` and ``q [Q, d]``:

* ``E_avg = cos(mean_i p_i, mean_j q_j)``;
* ``E_tok`` aligned: ``mean_i cos(p_i, q_i)`` (needs P == Q); all pairs: ``mean_{i,j} cos(p_i, q_j)``.

Neuron overlap ``ON``: feed each prompt (in its own input format) with an input (default: the
empty text), record the neuron activations (the FFN down projection's input, ``skillneurons.
backbones.sites``) at a position (default: the read slot, i.e. the mask position), over a layer
window (default: all layers); a neuron is activated when its activation is ``> threshold``
(default 0). ``ON = |A n B| / sqrt(|A| |B|)`` (cosine of the two binary vectors).

Skill-neuron variants: ``skill_overlap`` is the same cosine between the two tasks' top-``rho``
skill-neuron sets (:meth:`SkillNeurons.mask`); ``ON_skill`` is ON restricted to the union of the two
tasks' skill neurons.

An indicator is judged by its Spearman (and Pearson) correlation with the measured relative
transfer over all (source, target) pairs with source != target (:func:`correlations`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor

from skillneurons import evidence
from skillneurons.artifacts import load_manifest
from skillneurons.backbones import Backbone, record_neurons
from skillneurons.backbones.sites import _layers
from skillneurons.errors import ArtifactError, ConfigError, DataError
from skillneurons.neurons.find import SkillNeurons
from skillneurons.neurons.ranking import overlap
from skillneurons.prompts import PromptModel, load_prompt
from skillneurons.prompts.io import read_prompt_tensors
from skillneurons.prompts.model import soft_columns
from skillneurons.results import Result
from skillneurons.rundir import RunDir
from skillneurons.training.trainer import autocast_context
from skillneurons.transfer.config import POSITIONS, OnOptions, TransferabilityConfig
from skillneurons.transfer.matrix import TransferMatrix, prompt_names
from skillneurons.transfer.sources import require_soft_prompt

__all__ = [
    "INDICATORS",
    "POSITIONS",
    "OnOptions",
    "TransferPair",
    "Transferability",
    "activated_neurons",
    "correlations",
    "e_avg",
    "e_tok",
    "find_neurons_for",
    "neuron_overlap",
    "pearson",
    "spearman",
    "transferability",
]


#: every indicator :func:`transferability` computes, in table order
INDICATORS = ("E_avg", "E_tok_aligned", "E_tok_all", "ON", "ON_skill", "skill_overlap")


# ----------------------------------------------------------------------------------------------------
# embedding similarity


def _vectors(p: Tensor) -> Tensor:
    if p.dim() != 2 or p.shape[0] < 1:
        raise ConfigError(f"a prompt is [length >= 1, hidden]; got shape {list(p.shape)}")
    return p.detach().to("cpu", torch.float64)


def _check_width(p: Tensor, q: Tensor) -> None:
    if p.shape[1] != q.shape[1]:
        raise ConfigError(
            f"prompts of widths {p.shape[1]} and {q.shape[1]} cannot be compared: compare prompts of "
            "one model "
            "(or project one of them first)"
        )


def e_avg(p: Tensor, q: Tensor) -> float:
    """Cosine similarity of the two prompts' mean vectors."""
    a, b = _vectors(p), _vectors(q)
    _check_width(a, b)
    return float(F.cosine_similarity(a.mean(0), b.mean(0), dim=0))


def e_tok(p: Tensor, q: Tensor, aligned: bool = True) -> float:
    """Token-wise cosine: aligned ``mean_i cos(p_i, q_i)`` (same lengths), or the mean over all
    ``(i, j)`` pairs of ``cos(p_i, q_j)``."""
    a, b = _vectors(p), _vectors(q)
    _check_width(a, b)
    if aligned:
        if a.shape[0] != b.shape[0]:
            raise ConfigError(
                f"aligned E_tok needs prompts of one length, got {a.shape[0]} and {b.shape[0]}: use the "
                "all-pairs variant"
            )
        return float(F.cosine_similarity(a, b, dim=1).mean())
    return float((F.normalize(a, dim=1) @ F.normalize(b, dim=1).T).mean())


# ----------------------------------------------------------------------------------------------------
# activated neurons


@torch.no_grad()
def activated_neurons(model: PromptModel, options: OnOptions | None = None) -> Tensor:
    """Binary activation pattern ``[layers, positions, d_ff]`` (bool) of ``model``'s prompt (layers
    of a pruned model narrower than ``d_ff`` are padded with False).

    ``positions`` is 1 for ``read`` and ``prompt_mean``, P for ``prompt``. The activations are
    averaged over ``options.texts`` before thresholding.
    """
    o = options or OnOptions()
    bb = model.backbone
    layers = _layers(bb, o.layers)
    try:
        batch = model.encode(list(o.texts)).to(bb.device)
    except DataError:
        raise ConfigError(
            f"{bb.name}'s tokenizer gives no tokens for the ON input {list(o.texts)!r}: pass a non-empty text"
        ) from None
    was_training = model.training
    model.eval()
    with record_neurons(bb, layers) as rec, autocast_context(bb.device, o.precision):
        model.hidden_states(batch)
    model.train(was_training)
    rows = torch.arange(len(batch), device=batch.input_ids.device)
    out = []
    for layer in layers:
        acts = rec[layer].float()  # [B, seq, d_ff]
        if o.position == "read":
            a = acts[rows, batch.read_index].unsqueeze(1)  # [B, 1, d_ff]
        else:
            pos = model.prompt_positions(batch)
            pos = pos[:, soft_columns(model.layout, model.prompt.length)]  # the P soft tokens
            a = torch.gather(acts, 1, pos.unsqueeze(-1).expand(-1, -1, acts.shape[-1]))  # [B, P, d_ff]
            if o.position == "prompt_mean":
                a = a.mean(1, keepdim=True)
        out.append(a.mean(0) > o.threshold)
    width = max(x.shape[-1] for x in out)  # pruned layers are narrower: padded with never-active neurons
    return torch.stack([F.pad(x.to(torch.uint8), (0, width - x.shape[-1])).bool() for x in out]).cpu()


def neuron_overlap(a: Tensor, b: Tensor, within: Tensor | None = None) -> float:
    """``|A n B| / sqrt(|A| |B|)`` of two activation patterns of one shape (NaN if one is empty);
    with ``within`` (a bool mask broadcastable to them, e.g. ``[L, 1, N]`` skill neurons) only
    neurons inside it count."""
    if a.shape != b.shape:
        raise ConfigError(
            f"activation patterns of shapes {list(a.shape)} and {list(b.shape)} cannot be compared: "
            "use prompts of one model and length (or position='read')"
        )
    if within is not None:
        w = within.bool().expand_as(a)
        a, b = a.bool() & w, b.bool() & w
    return float(overlap(a, b).cosine)


# ----------------------------------------------------------------------------------------------------
# correlation


def _clean(x: Sequence[float | None], y: Sequence[float | None]) -> tuple[list[float], list[float]]:
    pairs = [
        (float(a), float(b))
        for a, b in zip(x, y, strict=True)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
    ]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _corr(
    fn: Any, x: Sequence[float | None], y: Sequence[float | None]
) -> tuple[float | None, float | None, int]:
    a, b = _clean(x, y)
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None, None, len(a)
    r = fn(a, b)
    return float(r.statistic), float(r.pvalue), len(a)


def spearman(x: Sequence[float | None], y: Sequence[float | None]) -> float | None:
    """Spearman rank correlation (average ranks for ties) over the pairs where both are finite;
    None with fewer than 3 pairs or a constant side."""
    return _corr(stats.spearmanr, x, y)[0]


def pearson(x: Sequence[float | None], y: Sequence[float | None]) -> float | None:
    """Pearson correlation over the pairs where both are finite (None as for :func:`spearman`)."""
    return _corr(stats.pearsonr, x, y)[0]


def correlations(
    indicator: Sequence[float | None], transfer: Sequence[float | None], *, seed: int = 0
) -> dict[str, Any]:
    """``{"spearman", "spearman_p", "pearson", "pearson_p", "n", "spearman_ci"}`` of an indicator
    against transfer. ``spearman_ci`` is :func:`skillneurons.evidence.spearman`'s estimate as JSON (a
    95% bootstrap interval over the pairs and a two-sided permutation p; pairs sharing a prompt are not
    independent, so read the interval as a lower bound), None where the correlation is undefined."""
    s, sp, n = _corr(stats.spearmanr, indicator, transfer)
    p, pp, _ = _corr(stats.pearsonr, indicator, transfer)
    est = None
    if s is not None:
        a, b = _clean(indicator, transfer)
        try:
            est = evidence.spearman(a, b, seed=seed).to_json()
        except ConfigError:
            est = None
    return {"spearman": s, "spearman_p": sp, "pearson": p, "pearson_p": pp, "n": n, "spearman_ci": est}


# ----------------------------------------------------------------------------------------------------
# all pairs


def find_neurons_for(prompt: str | os.PathLike[str]) -> Path | None:
    """The skill-neuron artifact of a prompt's task, looked up beside its run: ``RUN/neurons/`` or
    ``RUN/../neurons/`` (as ``skillneurons find --out`` is usually given), accepted only when it was
    found for the same task (fingerprint or name) on the same backbone."""
    p = Path(prompt)
    run = RunDir.of(p).require_kind("prompt", "delta")
    man, task = run.manifest, run.task_record
    for cand in (run.path / "neurons", run.path.parent / "neurons"):
        f = cand / "skill_neurons.json"
        if not f.is_file():
            continue
        meta = load_manifest(f, "skill_neurons").get("meta", {})
        if meta.get("task_fingerprint") and task.get("fingerprint"):
            same_task = meta["task_fingerprint"] == task["fingerprint"]
        else:
            same_task = meta.get("task") is not None and meta.get("task") == task.get("name")
        bb = meta.get("backbone", {})
        same_model = all(
            bb.get(k) == man.get("backbone", {}).get(k) for k in ("hidden_size", "num_layers", "model_type")
        )
        if same_task and same_model:
            return f.with_suffix(".safetensors")
    return None


@dataclass
class TransferPair(Result):
    """One ordered pair of prompts matched to a transfer-matrix cell: the measured transfer and every
    indicator (:data:`INDICATORS`; None where it is undefined for the pair)."""

    SCHEMA = "skillneurons.transfer_pair"

    source: str
    target: str
    same_task: bool
    same_head: bool | None
    accuracy: float | None
    relative: float | None
    learned: bool
    E_avg: float | None = None
    E_tok_aligned: float | None = None
    E_tok_all: float | None = None
    ON: float | None = None
    ON_skill: float | None = None
    skill_overlap: float | None = None


@dataclass
class Transferability(Result):
    """``transferability.json``: every indicator for every ordered pair of prompts and, given a
    transfer matrix, the pairs matched to its cells and the indicators' correlation with the measured
    relative transfer (``correlation``: indicator -> spearman/pearson/p-values/n; also over the pairs
    with the same head, ``correlation_same_head``). Without a matrix the matrix fields are None."""

    SCHEMA = "skillneurons.transferability"

    names: list[str]
    paths: list[str]
    backbone: dict[str, Any]
    on: dict[str, Any]
    rho: float
    per_layer: bool
    include_same_task: bool
    active_counts: list[int]
    neurons: list[str | None]
    indicators: dict[str, list[list[float | None]]]
    pairs: list[TransferPair] | None = None
    correlation: dict[str, dict[str, Any]] | None = None
    correlation_same_head: dict[str, dict[str, Any]] | None = None
    n_pairs: int | None = None
    min_margin: float | None = None


@dataclass
class _Node:
    name: str
    path: str
    weight: Tensor
    active: Tensor
    skill: Tensor | None = None  # [L', 1, N] bool, layer window applied
    meta: dict[str, Any] = field(default_factory=dict)


def transferability(
    prompts: Sequence[str | os.PathLike[str]],
    backbone: Backbone,
    config: TransferabilityConfig | None = None,
    *,
    matrix: TransferMatrix | Mapping[str, Any] | None = None,
    names: Sequence[str] | None = None,
    neurons: Mapping[str, str | os.PathLike[str] | SkillNeurons | None] | None = None,
    on: OnOptions | None = None,
    **options: Any,
) -> Transferability:
    """Every indicator for every ordered pair of ``prompts`` and, given a transfer ``matrix``
    (:func:`~skillneurons.transfer.matrix.transfer_matrix`'s result or its parsed JSON), its
    correlation with the measured relative transfer.

    ``config`` (:class:`~skillneurons.transfer.config.TransferabilityConfig`; ``options`` override
    its fields by name: ``rho``, ``per_layer``, ``include_same_task``, ``min_margin``) and ``on``
    (how ON reads activated neurons). Pairs are matched to matrix cells by prompt path (resolved),
    else by name. The correlation uses pairs with source != target, and by default leaves out pairs
    of the same task (another seed of the target's own prompt; ``include_same_task`` keeps them).
    With ``min_margin``, pairs are also left out when the source's or the target's own prompt (as a
    matrix target) does not beat its majority-class rate by that margin: a prompt that never learned
    makes relative transfer meaningless (its ratio has a chance-level denominator). ``neurons`` maps
    a prompt path to its task's skill neurons (an artifact path or :class:`SkillNeurons`); missing
    entries are looked up with :func:`find_neurons_for`, and pairs without skill neurons get None for
    the skill-neuron indicators.
    """
    c = dataclasses.replace(config or TransferabilityConfig(), **options)
    if len(prompts) < 2:
        raise ConfigError("transferability compares prompts: pass at least two prompt artifacts")
    on = on or OnOptions()
    paths = [str(p) for p in prompts]
    if names is None:
        names = prompt_names(paths)
    if len(names) != len(paths):
        raise ConfigError("give one name per prompt (--names)")
    for path in paths:  # delta-tuned artifacts have no soft prompt: refuse before loading anything
        require_soft_prompt(path)
    layer_idx = _layers(backbone, on.layers)
    given = dict(neurons or {})
    nodes = [
        _node(name, path, backbone, on, given.get(path), c, layer_idx) for name, path in zip(names, paths)
    ]
    ind = _indicators(nodes)
    res = Transferability(
        names=list(names),
        paths=paths,
        backbone=backbone.identity(),
        on=on.describe(),
        rho=c.rho,
        per_layer=c.per_layer,
        include_same_task=c.include_same_task,
        active_counts=[int(x.active.sum()) for x in nodes],
        neurons=[x.meta.get("neurons") for x in nodes],
        indicators=ind,
    )
    if matrix is not None:
        tm = TransferMatrix.of(matrix)
        res.pairs, res.correlation, res.correlation_same_head, res.n_pairs = _against_matrix(
            nodes, ind, tm, c.include_same_task, c.min_margin
        )
        res.min_margin = c.min_margin
    return res


def _node(
    name: str,
    path: str,
    backbone: Backbone,
    on: OnOptions,
    src: str | os.PathLike[str] | SkillNeurons | None,
    c: TransferabilityConfig,
    layer_idx: Any,
) -> _Node:
    """A prompt's vectors, activated neurons and (when found) skill-neuron set."""
    tensors, man = read_prompt_tensors(path)
    pm, man = load_prompt(path, backbone)
    node = _Node(name, path, tensors["prompt"], activated_neurons(pm, on), meta={"task": man.get("task", {})})
    if src is None:
        src = find_neurons_for(path)
    if src is not None:
        sn = src if isinstance(src, SkillNeurons) else SkillNeurons.load(src)
        if (sn.n_layers, sn.d_ff) != (backbone.num_layers, max(backbone.d_ff)):
            raise ArtifactError(
                f"the skill neurons for {path} are [{sn.n_layers}, {sn.d_ff}] but {backbone.name} has "
                f"[{backbone.num_layers}, {max(backbone.d_ff)}]: pass skill neurons found on this model"
            )
        node.skill = sn.mask(c.rho, per_layer=c.per_layer)[layer_idx].unsqueeze(1)
        node.meta["neurons"] = str(src) if not isinstance(src, SkillNeurons) else "given"
    return node


def _indicators(nodes: Sequence[_Node]) -> dict[str, list[list[float | None]]]:
    """Every indicator ``[N, N]`` over ``nodes`` (None where undefined)."""
    n = len(nodes)
    ind: dict[str, list[list[float | None]]] = {k: [[None] * n for _ in range(n)] for k in INDICATORS}
    for i, a in enumerate(nodes):
        for j, b in enumerate(nodes):
            ind["E_avg"][i][j] = e_avg(a.weight, b.weight)
            ind["E_tok_all"][i][j] = e_tok(a.weight, b.weight, aligned=False)
            if a.weight.shape[0] == b.weight.shape[0]:
                ind["E_tok_aligned"][i][j] = e_tok(a.weight, b.weight)
            if a.active.shape == b.active.shape:
                ind["ON"][i][j] = _none_if_nan(neuron_overlap(a.active, b.active))
                if a.skill is not None and b.skill is not None:
                    ind["ON_skill"][i][j] = _none_if_nan(
                        neuron_overlap(a.active, b.active, a.skill | b.skill)
                    )
            if a.skill is not None and b.skill is not None:
                ind["skill_overlap"][i][j] = _none_if_nan(neuron_overlap(a.skill, b.skill))
    return ind


def _none_if_nan(x: float) -> float | None:
    return None if x != x else x


def _against_matrix(
    nodes: Sequence[_Node],
    ind: Mapping[str, list[list[float | None]]],
    matrix: TransferMatrix,
    include_same_task: bool,
    min_margin: float | None = None,
) -> tuple[list[TransferPair], dict[str, Any], dict[str, Any], int]:
    """``(pairs, correlation, correlation over same-head pairs, pairs used)``."""

    def index(paths: Sequence[str], names: Sequence[str]) -> dict[int, int]:
        by_path = {str(Path(p).resolve()): k for k, p in enumerate(paths)}
        by_name = {nm: k for k, nm in enumerate(names)}
        out = {}
        for i, node in enumerate(nodes):
            k = by_path.get(str(Path(node.path).resolve()), by_name.get(node.name))
            if k is not None:
                out[i] = k
        return out

    rows = index(matrix.source_paths, matrix.sources)
    cols = index(matrix.target_paths, matrix.targets)
    if not rows or not cols:
        raise ConfigError(
            "none of the prompts appear in the transfer matrix (matched by path or name): "
            "pass the prompts the matrix was computed for"
        )
    majority = matrix.majority or [None] * (max(cols.values()) + 1)
    learned: dict[int, bool] = {}
    for i, col in cols.items():
        own, maj = matrix.own[col], majority[col]
        learned[i] = min_margin is None or own is None or maj is None or own - maj >= min_margin
    pairs = []
    for i, a in enumerate(nodes):
        for j, b in enumerate(nodes):
            if i == j or i not in rows or j not in cols:
                continue
            r, col = rows[i], cols[j]
            pairs.append(
                TransferPair(
                    source=a.name,
                    target=b.name,
                    same_task=bool(matrix.same_task[r][col]) if matrix.same_task else False,
                    same_head=bool(matrix.same_head[r][col]) if matrix.same_head else None,
                    accuracy=matrix.accuracy[r][col],
                    relative=matrix.relative[r][col],
                    learned=learned.get(i, True) and learned.get(j, True),
                    **{k: ind[k][i][j] for k in INDICATORS},
                )
            )
    used = [p for p in pairs if (include_same_task or not p.same_task) and p.learned]
    shared = [p for p in used if p.same_head]
    return pairs, _correlate(used), _correlate(shared), len(used)


def _correlate(pairs: Sequence[TransferPair]) -> dict[str, Any]:
    return {k: correlations([getattr(p, k) for p in pairs], [p.relative for p in pairs]) for k in INDICATORS}
