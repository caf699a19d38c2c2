"""BitFit (Ben Zaken et al., 2022): tune only the bias terms of the frozen backbone.

Each bias ``b`` of the transformer body (linear layers, GPT-2's ``Conv1D``, layer norms; the unused
pooler excluded) gets a trainable offset ``delta`` initialised at zero and added to the module's
output while the method is attached. Since a bias is added last in each of those modules,
``module(x) + delta`` is exactly the module with bias ``b + delta``: training ``delta`` is training the
bias, and the backbone's own tensors are never written (so one backbone can serve several tuned
models). The FFN up-projection bias is a bias like any other and is tuned (as in BitFit); the neuron
WEIGHTS stay frozen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from skillneurons.backbones import Backbone
from skillneurons.delta.bitfit.config import BitFitConfig
from skillneurons.delta.methods import DeltaMethod, output_hooks
from skillneurons.errors import ConfigError

__all__ = ["BIAS_MODULES", "BitFit", "bias_modules"]

#: module types whose bias is added to the output's last dimension
BIAS_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, nn.LayerNorm, Conv1D)


def bias_modules(backbone: Backbone) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every module of the transformer body (``model.base_model``, the pooler
    excluded) that carries a bias BitFit tunes."""
    body = backbone.model.base_model
    out = []
    for name, m in body.named_modules():
        parts = name.split(".")
        if parts[0] == "pooler":  # encoders' pooler: never read by the heads
            continue
        if any(p.startswith("lora_") for p in parts):  # another method's tensors (a LoRA in the model)
            continue
        b = getattr(m, "bias", None)
        if isinstance(m, BIAS_MODULES) and isinstance(b, nn.Parameter):
            out.append((name, m))
    return out


def _canonical(name: str) -> str:
    """The module's name without PEFT wrappers (``query.base_layer`` -> ``query``): the same keys
    whether or not a LoRA was injected into the shared backbone."""
    return ".".join(p for p in name.split(".") if p != "base_layer")


class BitFit(DeltaMethod):
    """Bias-only tuning. No options (``config``, a :class:`BitFitConfig`, is empty)."""

    name = "bitfit"

    def __init__(self, backbone: Backbone, config: BitFitConfig | None = None) -> None:
        super().__init__(backbone)
        found = bias_modules(backbone)
        if not found:
            raise ConfigError(
                f"{backbone.name} ({backbone.config.model_type}) has no bias terms, so BitFit has nothing "
                "to tune: use --method lora or --method adapter"
            )
        self.module_names = [_canonical(n) for n, _ in found]
        zeros = {n: torch.zeros_like(m.bias, dtype=torch.float32) for n, m in found}  # type: ignore[arg-type]
        self.biases = nn.ParameterDict({_key(_canonical(n)): nn.Parameter(z) for n, z in zeros.items()})

    def options(self) -> dict[str, object]:
        return {}

    def _install(self) -> list[Callable[[], None]]:
        def hooks() -> Iterator[tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]]:
            for n, m in bias_modules(self.backbone):  # resolved now: a LoRA may have wrapped a module since
                delta = self.biases[_key(_canonical(n))]

                def add(y: torch.Tensor, d: nn.Parameter = delta) -> torch.Tensor:
                    return y + d.to(y.dtype)

                yield m, add

        return output_hooks(hooks())


def _key(name: str) -> str:
    return name.replace(".", "__")
