"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021), implemented here.

An adapter maps a sub-layer output ``h`` to ``h + W_up act(W_down h + b_down) + b_up`` (bottleneck
width ``hidden / reduction``). ``W_up`` and ``b_up`` start at zero, so the tuned model starts exactly
at the frozen backbone; ``W_down ~ N(0, init_std^2)``. Placements, as forward hooks on the modules
named by the architecture registry (:class:`~skillneurons.backbones.FFNSpec`), i.e. on the sub-layer
output before the residual connection and its layer norm:

* ``pfeiffer``: one adapter per block, on the FFN output (the output of the down projection);
* ``houlsby``: two per block, on the self-attention output projection (``FFNSpec.attn_out``) and
  on the FFN output.

The FFN adapter sits after the neuron site (the input of the down projection), so a perturbation of
neurons flows through it like through the rest of the model. The ``adapters`` package (AdapterHub)
is not used: its 1.3.0 release pins ``transformers~=4.57.6`` and this package runs on transformers 5.
Pfeiffer's placement here keeps the Houlsby wiring (adapter on the sub-layer output, before the
residual) and differs from AdapterHub's only in its layer-norm arrangement.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from skillneurons.backbones import Backbone
from skillneurons.delta.adapter.config import PLACEMENTS, AdapterConfig
from skillneurons.delta.methods import DeltaMethod, output_hooks
from skillneurons.errors import ConfigError

__all__ = ["ACTIVATIONS", "PLACEMENTS", "Adapters", "Bottleneck"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
}


class Bottleneck(nn.Module):
    """``h -> h + up(act(down(h)))``, computed in float32 and returned in ``h``'s dtype."""

    def __init__(self, width: int, bottleneck: int, activation: str, init_std: float) -> None:
        super().__init__()
        self.down = nn.Linear(width, bottleneck)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, width)
        nn.init.normal_(self.down.weight, std=init_std)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = self.up(self.act(self.down(h.to(self.down.weight.dtype))))
        return h + y.to(h.dtype)


class Adapters(DeltaMethod):
    """Bottleneck adapters in every block.

    Args:
        backbone: the frozen backbone.
        config: an :class:`AdapterConfig`: ``placement`` ``pfeiffer`` (after the FFN) or ``houlsby``
            (after attention and after the FFN); ``reduction`` hidden size / bottleneck width (16:
            AdapterHub's default for both placements); ``activation`` ``relu`` (default), ``gelu``,
            ``silu``/``swish`` or ``tanh``; ``init_std`` the down projection's initial weights' std.
    """

    name = "adapter"

    def __init__(self, backbone: Backbone, config: AdapterConfig | None = None) -> None:
        super().__init__(backbone)
        config = config or AdapterConfig()
        placement, reduction, activation = config.placement, config.reduction, config.activation
        spec = backbone.spec
        if placement == "houlsby" and not spec.attn_out:
            raise ConfigError(
                f"the architecture registry does not know {backbone.config.model_type}'s attention output "
                "projection, which Houlsby adapters need: declare FFNSpec(attn_out=...) with "
                "register_architecture, or use placement pfeiffer"
            )
        self.placement, self.reduction, self.activation = placement, float(reduction), activation
        self.init_std = float(config.init_std)
        width = backbone.hidden_size
        self.bottleneck = max(1, round(width / self.reduction))
        self.sites: list[tuple[int, str, str]] = []  # (layer, key, module path inside the block)
        for layer in range(backbone.num_layers):
            if placement == "houlsby":
                assert spec.attn_out is not None
                self.sites.append((layer, f"{layer}_attn", spec.attn_out))
            self.sites.append((layer, f"{layer}_ffn", spec.down))
        self.adapters = nn.ModuleDict(
            {key: Bottleneck(width, self.bottleneck, activation, self.init_std) for _, key, _ in self.sites}
        )

    def options(self) -> dict[str, object]:
        return {
            "placement": self.placement,
            "reduction": self.reduction,
            "activation": self.activation,
            "init_std": self.init_std,
        }

    def _install(self) -> list[Callable[[], None]]:
        bb = self.backbone
        return output_hooks(
            (bb.blocks[layer].get_submodule(path), self.adapters[key]) for layer, key, path in self.sites
        )
