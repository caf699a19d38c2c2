"""LoRA (Hu et al., 2022) through PEFT: low-rank updates ``W + (alpha / r) B A`` of chosen projections.

PEFT's :func:`peft.inject_adapter_in_model` wraps each target module in a ``peft`` LoRA layer
(``A`` Kaiming-uniform, ``B`` zero: the tuned model starts exactly at the backbone). Each
:class:`LoRA` instance injects its own named adapter and keeps the wrapped layers switched off
except inside :meth:`~skillneurons.delta.methods.DeltaMethod.attached`, so a shared backbone
behaves as the plain pre-trained model everywhere else; :meth:`LoRA.release` deletes the adapter
and unwraps layers left without adapters.

Default targets: the attention query and value projections of every block
(``FFNSpec.attn_query`` / ``attn_value``; GPT-2's fused ``attn.c_attn``). The FFN up/gate/down
matrices are refused as targets: a low-rank update there changes the neuron weights this package
keeps frozen (and the down projection's input is the neuron site).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from skillneurons.backbones import Backbone
from skillneurons.delta.lora.config import LoraConfig
from skillneurons.delta.methods import DeltaMethod
from skillneurons.errors import ConfigError

__all__ = ["LoRA", "lora_layers_active"]

_names = itertools.count()


class LoRA(DeltaMethod):
    """Low-rank adapters on projections of every block.

    Args:
        backbone: the frozen backbone.
        config: a :class:`LoraConfig`: ``r`` the rank; ``alpha`` the scale numerator (the update is
            ``alpha / r * B A``); ``dropout`` must be 0 (kept for PEFT parity and old manifests: the
            backbone runs in eval mode and every training step is a pure function of the seed and
            step, exact resume, so dropout on the LoRA branch is refused rather than silently
            ignored); ``targets`` module paths inside a block (e.g. ``["attention.self.query",
            "attention.self.key"]``), default the registry's query and value projections.
    """

    name = "lora"

    def __init__(self, backbone: Backbone, config: LoraConfig | None = None) -> None:
        super().__init__(backbone)
        from peft import LoraConfig as PeftLoraConfig
        from peft import inject_adapter_in_model

        config = config or LoraConfig()
        paths = _target_paths(backbone, config.targets)
        self.r, self.alpha, self.dropout = int(config.r), float(config.alpha), float(config.dropout)
        self.targets = paths
        self.adapter_name = f"skillneurons_lora_{next(_names)}"
        full, conv = _target_modules(backbone, paths)
        kw: dict[str, Any] = {"lora_alpha": self.alpha}  # typed int in PEFT; a float scales the same
        cfg = PeftLoraConfig(
            r=self.r,
            lora_dropout=self.dropout,
            target_modules=list(full.values()),
            fan_in_fan_out=conv,
            bias="none",
            **kw,
        )
        # "Already found a peft_config attribute": several adapters in one model, on purpose
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inject_adapter_in_model(cfg, backbone.model, adapter_name=self.adapter_name)
        self._full = full
        self.layers = nn.ModuleDict()
        for key, name in full.items():
            w = backbone.model.get_submodule(name)
            a, b = cast(nn.ModuleDict, w.lora_A), cast(nn.ModuleDict, w.lora_B)
            # PEFT gives A/B the backbone's dtype (bf16 under --dtype bfloat16); train them in float32
            # like the other methods' tensors (PEFT's forward casts the input to A's dtype and back)
            a[self.adapter_name].float()
            b[self.adapter_name].float()
            self.layers[key] = nn.ModuleDict({"A": a[self.adapter_name], "B": b[self.adapter_name]})
        self._switch(False)
        for param in self.parameters():
            param.requires_grad_(True)

    def options(self) -> dict[str, object]:
        return {"r": self.r, "alpha": self.alpha, "dropout": self.dropout, "targets": list(self.targets)}

    def _wrapped(self) -> list[nn.Module]:
        return [self.backbone.model.get_submodule(n) for n in self._full.values()]

    def _switch(self, on: bool) -> None:
        """Turn the wrapped layers on (this adapter active) or off; requires_grad flags, which PEFT's
        switches rewrite, are restored."""
        layers = self._wrapped()
        flags = [(p, p.requires_grad) for m in layers for p in m.parameters()]
        for m in layers:
            m.enable_adapters(on)  # type: ignore[operator]
            if on:
                m.set_adapter(self.adapter_name)  # type: ignore[operator]
        for p, f in flags:
            p.requires_grad_(f)

    def _install(self) -> list[Callable[[], None]]:
        try:
            self._switch(True)
        except BaseException:  # switched on part-way: leave the backbone plain
            self._switch(False)
            raise
        return [lambda: self._switch(False)]

    def release(self) -> None:
        if not self._full:
            return
        model = self.backbone.model
        for name in self._full.values():
            m = model.get_submodule(name)
            if self.adapter_name in getattr(m, "lora_A", {}):
                with warnings.catch_warnings():  # "was active which is now deleted": switched off anyway
                    warnings.simplefilter("ignore")
                    m.delete_adapter(self.adapter_name)  # type: ignore[operator]
            if not len(m.lora_A):  # type: ignore[arg-type]
                parent, _, attr = name.rpartition(".")
                setattr(model.get_submodule(parent), attr, m.get_base_layer())  # type: ignore[operator]
        cfgs = getattr(model, "peft_config", None)
        if isinstance(cfgs, dict):
            cfgs.pop(self.adapter_name, None)
        self._full = {}
        self.layers = nn.ModuleDict()


def _target_paths(backbone: Backbone, targets: Sequence[str] | None) -> list[str]:
    """The module paths inside a block that LoRA wraps: ``targets``, else the registry's query and
    value projections; FFN matrices are refused."""
    spec = backbone.spec
    paths = list(dict.fromkeys(targets if targets else [p for p in (spec.attn_query, spec.attn_value) if p]))
    if not paths:
        raise ConfigError(
            f"the architecture registry does not know {backbone.config.model_type}'s attention query/value "
            "projections: pass LoRA targets (--lora-targets PATH,PATH, paths inside a block)"
        )
    ffn = {p for p in (spec.up, spec.down, spec.gate) if p}
    bad = [p for p in paths if p in ffn]
    if bad:
        raise ConfigError(
            f"LoRA target {bad[0]!r} is an FFN matrix: a low-rank update there changes the neuron weights "
            "(and the down projection's input is the neuron site); target attention projections instead"
        )
    return paths


def _target_modules(backbone: Backbone, paths: Sequence[str]) -> tuple[dict[str, str], bool]:
    """``({key: module name from the top model}, whether they are GPT-2 Conv1D layers)`` for ``paths``
    in every block; a missing or non-linear module is a one-line error."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    full: dict[str, str] = {}  # key -> module name from the top model
    conv = []
    for layer, block in enumerate(backbone.blocks):
        for i, p in enumerate(paths):
            try:
                m = block.get_submodule(p)
            except AttributeError:
                raise ConfigError(
                    f"block {layer} of {backbone.name} has no module {p!r}: "
                    "pass LoRA targets that exist in every block"
                ) from None
            base = m.get_base_layer() if isinstance(m, BaseTunerLayer) else m
            if not isinstance(base, (nn.Linear, Conv1D)):
                raise ConfigError(
                    f"LoRA target {p!r} is a {type(base).__name__}, not a linear layer: pass linear "
                    "projections"
                )
            conv.append(isinstance(base, Conv1D))
            full[f"{layer}_{i}"] = f"{backbone.layers_path}.{layer}.{p}"
    if len(set(conv)) > 1:
        raise ConfigError("LoRA targets mix Linear and GPT-2 Conv1D layers: target one kind at a time")
    return full, conv[0]


def lora_layers_active(model: torch.nn.Module) -> list[str]:
    """Names of PEFT-wrapped layers currently switched on (tests / debugging)."""
    return [
        n
        for n, m in model.named_modules()
        if hasattr(m, "lora_A") and not getattr(m, "disable_adapters", True)
    ]
