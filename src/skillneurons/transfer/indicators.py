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

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor

from skillneurons.artifacts import load_artifact, load_manifest
from skillneurons.backbones import Backbone, record_neurons
from skillneurons.backbones.sites import _layers
from skillneurons.errors import ArtifactError, ConfigError, DataError
from skillneurons.neurons.find import SkillNeurons
from skillneurons.neurons.ranking import overlap
from skillneurons.prompts import PromptModel, load_prompt
from skillneurons.training.trainer import autocast_context
from skillneurons.transfer.sources import require_soft_prompt

__all__ = [
    "INDICATORS",
    "OnOptions",
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

Position = Literal["read", "prompt", "prompt_mean"]
POSITIONS = ("read", "prompt", "prompt_mean")

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
            f"prompts of widths {p.shape[1]} and {q.shape[1]} cannot be compared: compare prompts of one model "
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
                f"aligned E_tok needs prompts of one length, got {a.shape[0]} and {b.shape[0]}: use the all-pairs variant"
            )
        return float(F.cosine_similarity(a, b, dim=1).mean())
    return float((F.normalize(a, dim=1) @ F.normalize(b, dim=1).T).mean())


# ----------------------------------------------------------------------------------------------------
# activated neurons


@dataclass
class OnOptions:
    """How ON reads activated neurons (defaults: the original's)."""

    position: Position = "read"  #: read slot (mask position); each soft token ("prompt"); their mean
    texts: Sequence[str] = ("",)  #: inputs fed with the prompt; activations averaged over them
    layers: Sequence[int] | None = None  #: layer window (default: all layers)
    threshold: float = 0.0  #: activated = activation > threshold
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.position not in POSITIONS:
            raise ConfigError(f"unknown ON position '{self.position}': use one of {', '.join(POSITIONS)}")
        if not self.texts:
            raise ConfigError("ON needs at least one input text (the original uses the empty text '')")
        if not math.isfinite(self.threshold):
            raise ConfigError(f"ON threshold {self.threshold} is not a finite number")
        if self.layers is not None and len(self.layers) == 0:
            raise ConfigError("the ON layer window is empty: give at least one layer (or None for all)")

    def describe(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "texts": list(self.texts),
            "layers": None if self.layers is None else list(self.layers),
            "threshold": self.threshold,
        }


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
            pos = pos[:, 1:] if model.layout == "slot_first" else pos[:, :-1]  # the P soft tokens
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


def correlations(indicator: Sequence[float | None], transfer: Sequence[float | None]) -> dict[str, Any]:
    """``{"spearman", "spearman_p", "pearson", "pearson_p", "n"}`` of an indicator against transfer."""
    s, sp, n = _corr(stats.spearmanr, indicator, transfer)
    p, pp, _ = _corr(stats.pearsonr, indicator, transfer)
    return {"spearman": s, "spearman_p": sp, "pearson": p, "pearson_p": pp, "n": n}


# ----------------------------------------------------------------------------------------------------
# all pairs


def find_neurons_for(prompt: str | os.PathLike[str]) -> Path | None:
    """The skill-neuron artifact of a prompt's task, looked up beside its run: ``RUN/neurons/`` or
    ``RUN/../neurons/`` (as ``skillneurons find --out`` is usually given), accepted only when it was
    found for the same task (fingerprint or name) on the same backbone."""
    p = Path(prompt)
    man = load_manifest(p, "prompt")
    task = man.get("task", {})
    for cand in (p.parent / "neurons", p.parent.parent / "neurons"):
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
    *,
    matrix: Mapping[str, Any] | None = None,
    names: Sequence[str] | None = None,
    neurons: Mapping[str, str | os.PathLike[str] | SkillNeurons | None] | None = None,
    on: OnOptions | None = None,
    rho: float = 0.02,
    per_layer: bool = True,
    include_same_task: bool = False,
    min_margin: float | None = None,
) -> dict[str, Any]:
    """Every indicator for every ordered pair of ``prompts`` and, given a transfer ``matrix``
    (:func:`~skillneurons.transfer.matrix.transfer_matrix`'s result), its correlation with the
    measured relative transfer.

    Pairs are matched to matrix cells by prompt path (resolved), else by name. The correlation uses
    pairs with source != target, and by default leaves out pairs of the same task (another seed of
    the target's own prompt; ``include_same_task`` keeps them). With ``min_margin``, pairs are also
    left out when the source's or the target's own prompt (as a matrix target) does not beat its
    majority-class rate by that margin: a prompt that never learned makes relative transfer
    meaningless (its ratio has a chance-level denominator). ``neurons`` maps a prompt path to
    its task's skill neurons (an artifact path or :class:`SkillNeurons`); missing entries are looked
    up with :func:`find_neurons_for`, and pairs without skill neurons get None for the skill-neuron
    indicators. Returns a JSON-able dict with ``names``, ``paths``, ``indicators`` (name -> [N, N]),
    ``pairs`` (one row per ordered pair: indicators and measured transfer) and ``correlation``
    (indicator -> spearman/pearson/p-values/n).
    """
    if len(prompts) < 2:
        raise ConfigError("transferability compares prompts: pass at least two prompt artifacts")
    on = on or OnOptions()
    paths = [str(p) for p in prompts]
    if names is None:
        from skillneurons.transfer.matrix import prompt_names

        names = prompt_names(paths)
    if len(names) != len(paths):
        raise ConfigError("give one name per prompt (--names)")
    layer_idx = _layers(backbone, on.layers)
    neurons = dict(neurons or {})
    nodes: list[_Node] = []
    for path in paths:  # delta-tuned artifacts have no soft prompt: refuse before loading anything
        require_soft_prompt(path)
    for name, path in zip(names, paths):
        tensors, man = load_artifact(path, kind="prompt")
        pm, man = load_prompt(path, backbone)
        node = _Node(
            name, path, tensors["prompt"], activated_neurons(pm, on), meta={"task": man.get("task", {})}
        )
        src = neurons.get(path)
        if src is None:
            src = find_neurons_for(path)
        if src is not None:
            sn = src if isinstance(src, SkillNeurons) else SkillNeurons.load(src)
            if (sn.n_layers, sn.d_ff) != (backbone.num_layers, max(backbone.d_ff)):
                raise ArtifactError(
                    f"the skill neurons for {path} are [{sn.n_layers}, {sn.d_ff}] but {backbone.name} has "
                    f"[{backbone.num_layers}, {max(backbone.d_ff)}]: pass skill neurons found on this model"
                )
            node.skill = sn.mask(rho, per_layer=per_layer)[layer_idx].unsqueeze(1)
            node.meta["neurons"] = str(src) if not isinstance(src, SkillNeurons) else "given"
        nodes.append(node)
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
    res: dict[str, Any] = {
        "names": list(names),
        "paths": paths,
        "backbone": backbone.identity(),
        "on": on.describe(),
        "rho": rho,
        "per_layer": per_layer,
        "include_same_task": include_same_task,
        "active_counts": [int(x.active.sum()) for x in nodes],
        "neurons": [x.meta.get("neurons") for x in nodes],
        "indicators": ind,
    }
    if matrix is not None:
        res.update(_against_matrix(nodes, ind, matrix, include_same_task, min_margin))
        res["min_margin"] = min_margin
    return res


def _none_if_nan(x: float) -> float | None:
    return None if x != x else x


def _against_matrix(
    nodes: Sequence[_Node],
    ind: Mapping[str, list[list[float | None]]],
    matrix: Mapping[str, Any],
    include_same_task: bool,
    min_margin: float | None = None,
) -> dict[str, Any]:
    def index(paths_key: str, names_key: str) -> dict[int, int]:
        by_path = {str(Path(p).resolve()): k for k, p in enumerate(matrix.get(paths_key, []))}
        by_name = {nm: k for k, nm in enumerate(matrix.get(names_key, []))}
        out = {}
        for i, node in enumerate(nodes):
            k = by_path.get(str(Path(node.path).resolve()), by_name.get(node.name))
            if k is not None:
                out[i] = k
        return out

    rows, cols = index("source_paths", "sources"), index("target_paths", "targets")
    if not rows or not cols:
        raise ConfigError(
            "none of the prompts appear in the transfer matrix (matched by path or name): pass the prompts the matrix was computed for"
        )
    learned: dict[int, bool] = {}
    for i, c in cols.items():
        own, maj = matrix["own"][c], matrix.get("majority", [None] * (c + 1))[c]
        learned[i] = min_margin is None or own is None or maj is None or own - maj >= min_margin
    pairs = []
    for i, a in enumerate(nodes):
        for j, b in enumerate(nodes):
            if i == j or i not in rows or j not in cols:
                continue
            r, c = rows[i], cols[j]
            same_task = bool(matrix["same_task"][r][c]) if "same_task" in matrix else False
            pairs.append(
                {
                    "source": a.name,
                    "target": b.name,
                    "same_task": same_task,
                    "same_head": bool(matrix.get("same_head", [[False]])[r][c])
                    if "same_head" in matrix
                    else None,
                    "accuracy": matrix["accuracy"][r][c],
                    "relative": matrix["relative"][r][c],
                    "learned": learned.get(i, True) and learned.get(j, True),
                    **{k: ind[k][i][j] for k in INDICATORS},
                }
            )
    used = [p for p in pairs if (include_same_task or not p["same_task"]) and p["learned"]]
    corr = {k: correlations([p[k] for p in used], [p["relative"] for p in used]) for k in INDICATORS}
    shared = [p for p in used if p["same_head"]]
    corr_shared = {
        k: correlations([p[k] for p in shared], [p["relative"] for p in shared]) for k in INDICATORS
    }
    return {"pairs": pairs, "correlation": corr, "correlation_same_head": corr_shared, "n_pairs": len(used)}
