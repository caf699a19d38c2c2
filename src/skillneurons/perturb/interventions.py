"""Interventions at the neuron site (REFERENCE.md section 3): edit chosen neurons during the forward pass.

With ``m`` the neuron mask (1 = perturbed) and ``a`` the activation at the neuron site (the input of
the FFN down projection, ``[batch, seq, d_ff]``):

* ``gaussian``: ``a + m * eps``, ``eps ~ N(0, sigma^2)``, one draw per example and neuron (the same
  ``eps[b, i]`` at every perturbed position of example ``b``), from a generator seeded by ``seed``
  when the context is entered, so the same seed, data and batch size give the same result; with a
  per-neuron ``scale`` ``s`` (:func:`~skillneurons.perturb.scale.neuron_std`), ``eps_i ~ N(0, (sigma
  s_i)^2)`` (the same standard normal draws times ``sigma * s_i``);
* ``zero``: ``(1 - m) * a``;
* ``mean``: ``(1 - m) * a + m * a_bar`` with ``a_bar`` a per-neuron constant ``[L, N]``
  (``SkillNeurons.token_mean``: the mean over all real tokens of the prompt's train split).

Options restrict the edit to some ``layers`` and to the ``positions`` ``"all"`` or ``"prompt"``
(the P+1 prompt positions of :meth:`PromptModel.prompt_positions`: the read slot and the soft
tokens). Every neuron, position and layer not chosen keeps its activation bit for bit.

:func:`perturbed` is a context manager over :func:`~skillneurons.backbones.sites.neuron_hooks`; it
composes with evaluation of any model that runs the backbone (a prompt model, or any other tuned
model that keeps the FFN weights frozen, given as its :class:`Backbone`), and always removes its
hooks::

    with perturbed(model, Perturbation("zero", neurons.mask(0.05))):
        acc = evaluate(model, test)["accuracy"]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import Tensor

from skillneurons.backbones.loading import Backbone
from skillneurons.backbones.masks import NeuronMask, as_rows, layer_indices, shape_text
from skillneurons.backbones.sites import neuron_hooks
from skillneurons.errors import ConfigError
from skillneurons.perturb.config import MODES, POSITIONS

Mode = Literal["gaussian", "zero", "mean"]
PositionsChoice = Literal["all", "prompt"]

__all__ = ["MODES", "POSITIONS", "Perturbation", "perturbed"]


@dataclass(frozen=True, eq=False)
class Perturbation:
    """What to perturb and how.

    Args:
        mode: ``gaussian``, ``zero`` or ``mean`` (module docstring).
        mask: [L, N] bool, True = perturbed neuron (or a sequence of L 1-D masks when layer widths
            differ). Typically ``SkillNeurons.mask(rho)`` or a random control of the same size.
        sigma: standard deviation of the gaussian noise.
        seed: seed of the noise generator (gaussian).
        layers: perturb only these layers (negative indices count from the end); None = all.
        positions: ``all`` sequence positions, or only the ``prompt`` positions (needs a prompt model).
        baseline: [L, N] per-neuron constant ``a_bar`` for ``mean`` (``SkillNeurons.token_mean``);
            a :class:`~skillneurons.neurons.find.SkillNeurons` is accepted and its ``token_mean`` used.
        scale: [L, N] non-negative per-neuron unit of the gaussian noise (the neuron's std on the train
            split: sigma is then relative to it); None = absolute sigma.
    """

    mode: Mode
    mask: Any
    sigma: float = 0.1
    seed: int = 0
    layers: Sequence[int] | None = None
    positions: PositionsChoice = "all"
    baseline: Any = None
    scale: Any = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"perturbation mode {self.mode!r} is unknown: use one of {', '.join(MODES)}")
        if self.positions not in POSITIONS:
            raise ConfigError(f"positions {self.positions!r} are unknown: use 'all' or 'prompt'")
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float)) or not self.sigma >= 0:
            raise ConfigError(f"sigma={self.sigma!r} is invalid: pass a non-negative standard deviation")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed={self.seed!r} is invalid: pass an integer")
        mask = as_rows(self.mask, "perturbation mask", torch.bool)
        object.__setattr__(self, "mask", mask)
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        base = getattr(self.baseline, "token_mean", self.baseline)
        if self.mode == "mean":
            if base is None:
                raise ConfigError(
                    "mode 'mean' needs the per-neuron means: pass baseline=neurons.token_mean (or the "
                    "SkillNeurons)"
                )
            rows = as_rows(base, "mean baseline", torch.float64)
            if [r.shape for r in rows] != [m.shape for m in mask]:
                raise ConfigError(
                    f"the mean baseline has shape {shape_text(rows)} but the mask has {shape_text(mask)}: "
                    "pass the token_mean of the same model's skill neurons"
                )
            object.__setattr__(self, "baseline", rows)
        else:
            object.__setattr__(self, "baseline", None)
        self._check_scale(mask)

    def _check_scale(self, mask: Sequence[Tensor]) -> None:
        if self.mode != "gaussian" or self.scale is None:
            object.__setattr__(self, "scale", None)
            return
        rows = as_rows(self.scale, "noise scale", torch.float64)
        if [r.shape for r in rows] != [m.shape for m in mask]:
            raise ConfigError(
                f"the noise scale has shape {shape_text(rows)} but the mask has {shape_text(mask)}: "
                "pass the per-neuron std of the same model"
            )
        if any(not bool(torch.isfinite(r).all()) or bool((r < 0).any()) for r in rows):
            raise ConfigError("the noise scale holds negative or non-finite values: pass per-neuron stds")
        object.__setattr__(self, "scale", rows)

    @property
    def masks(self) -> tuple[Tensor, ...]:
        """The L per-layer bool masks (CPU)."""
        return cast(tuple[Tensor, ...], self.mask)

    def count(self) -> list[int]:
        """Perturbed neurons per layer (before the ``layers`` restriction)."""
        return [int(m.sum()) for m in self.masks]

    def check(self, backbone: Backbone) -> list[int]:
        """ConfigError unless the mask fits ``backbone``; returns the layers that get a hook."""
        NeuronMask(self.masks).check_fits(backbone.d_ff, backbone.name)
        out = layer_indices(self.layers, backbone.num_layers, model=backbone.name)
        return sorted({layer for layer in out if bool(self.masks[layer].any())})


def _resolve_target(target: Any) -> tuple[Backbone, Any]:
    """``(backbone, prompt_model or None)`` from a PromptModel-like object or a Backbone."""
    if isinstance(target, Backbone):
        return target, None
    bb = getattr(target, "backbone", None)
    if isinstance(bb, Backbone):
        return bb, target
    raise ConfigError(
        f"cannot perturb a {type(target).__name__}: pass a PromptModel or the Backbone of the tuned model"
    )


class _Editor:
    """Hook body: edits the chosen neurons of each hooked layer."""

    def __init__(self, p: Perturbation, backbone: Backbone, model: Any) -> None:
        self.p = p
        self.model = model
        self.gen = torch.Generator().manual_seed(p.seed) if p.mode == "gaussian" else None
        self.device_cache: dict[tuple[int, torch.device, torch.dtype, bool], Tensor] = {}
        self.pos_mask: Tensor | None = None  # [B, S] bool for positions="prompt", set per batch

    def _on(self, kind: int, layer: int, rows: Sequence[Tensor], acts: Tensor, dtype: torch.dtype) -> Tensor:
        # keyed by inference mode too: a tensor made under inference_mode must not meet autograd
        key = (kind * 1_000_000 + layer, acts.device, dtype, torch.is_inference_mode_enabled())
        t = self.device_cache.get(key)
        if t is None:
            t = rows[layer].to(device=acts.device, dtype=dtype)
            self.device_cache[key] = t
        return t

    def __call__(self, layer: int, acts: Tensor) -> Tensor:
        m = self._on(0, layer, self.p.masks, acts, torch.bool)
        b, s, n = acts.shape
        sel = m.view(1, 1, n)
        if self.p.positions == "prompt":
            pm = self.pos_mask
            if pm is None or pm.shape != (b, s):
                raise ConfigError(
                    "positions='prompt' needs the forward pass to run through the PromptModel given to "
                    "perturbed(): "
                    "call model(batch) or model.hidden_states(batch)"
                )
            sel = sel & pm.unsqueeze(-1)
        if self.p.mode == "zero":
            new = torch.zeros((), dtype=acts.dtype, device=acts.device)
        elif self.p.mode == "mean":
            assert self.p.baseline is not None
            new = self._on(1, layer, self.p.baseline, acts, acts.dtype).view(1, 1, n)
        else:
            assert self.gen is not None
            eps = torch.randn(b, n, generator=self.gen, dtype=torch.float32) * float(self.p.sigma)
            eps = eps.to(device=acts.device)
            if self.p.scale is not None:
                eps = eps * self._on(2, layer, self.p.scale, acts, torch.float32)
            new = acts + eps.to(dtype=acts.dtype).unsqueeze(1)
        return torch.where(sel, new, acts)

    def set_batch(self, batch: Any, seq_len: int) -> None:
        idx = self.model.prompt_positions(batch)  # [B, P+1]
        pm = torch.zeros(idx.shape[0], seq_len, dtype=torch.bool, device=idx.device)
        pm.scatter_(1, idx, True)
        self.pos_mask = pm


@contextmanager
def _watch_batches(model: Any, editor: _Editor) -> Iterator[None]:
    """Route every batch the prompt model embeds to the editor (for prompt positions)."""
    original: Callable[..., Any] = model.embed
    had_own = "embed" in vars(model)
    previous = vars(model).get("embed")

    def embed(batch: Any, *args: Any, **kwargs: Any) -> Any:
        out = original(batch, *args, **kwargs)
        editor.set_batch(batch, int(out[0].shape[1]))
        return out

    object.__setattr__(model, "embed", embed)
    try:
        yield
    finally:
        if had_own:
            object.__setattr__(model, "embed", previous)
        else:
            del model.__dict__["embed"]


@contextmanager
def perturbed(
    target: Any, perturbation: Perturbation | None = None, **options: Any
) -> Iterator[Perturbation]:
    """Apply ``perturbation`` (or ``Perturbation(**options)``) to every forward pass inside the block.

    Args:
        target: a :class:`~skillneurons.prompts.PromptModel` (any layout), or the :class:`Backbone` of
            any other tuned model (then only ``positions="all"``).
        perturbation: what to perturb; alternatively give its fields as keyword arguments.

    Yields the perturbation. The hooks (and the batch watcher for prompt positions) are removed on
    exit, even when the block raises. Perturbations nest (the inner one edits the outer one's output).
    """
    if perturbation is None:
        if "mode" not in options or "mask" not in options:
            raise ConfigError("perturbed() needs a Perturbation, or mode= and mask= keyword arguments")
        perturbation = Perturbation(**options)
    elif options:
        raise ConfigError("pass either a Perturbation or its fields as keyword arguments, not both")
    if not isinstance(perturbation, Perturbation):
        raise ConfigError(f"perturbation is a {type(perturbation).__name__}: pass a Perturbation")
    backbone, model = _resolve_target(target)
    layers = perturbation.check(backbone)
    if perturbation.positions == "prompt" and (model is None or not hasattr(model, "prompt_positions")):
        raise ConfigError(
            "positions='prompt' needs the prompt model (it knows where the prompt is): pass the PromptModel, "
            "or use positions='all'"
        )
    editor = _Editor(perturbation, backbone, model)
    if not layers:  # nothing selected: the forward pass is untouched
        yield perturbation
        return
    if perturbation.positions == "prompt":
        with _watch_batches(model, editor), neuron_hooks(backbone, editor, layers):
            yield perturbation
    else:
        with neuron_hooks(backbone, editor, layers):
            yield perturbation
