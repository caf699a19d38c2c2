"""Options of bottleneck adapters (``tune --method adapter``). No torch here."""

from __future__ import annotations

from dataclasses import dataclass

from skillneurons.errors import ConfigError
from skillneurons.options import option

__all__ = ["ACTIVATION_NAMES", "PLACEMENTS", "AdapterConfig"]

PLACEMENTS: tuple[str, ...] = ("pfeiffer", "houlsby")
#: the bottleneck non-linearities (``swish`` is ``silu``; the command line offers the first four)
ACTIVATION_NAMES: tuple[str, ...] = ("relu", "gelu", "silu", "swish", "tanh")


@dataclass
class AdapterConfig:
    """Bottleneck adapters in every block (see :class:`~skillneurons.delta.adapter.model.Adapters`)."""

    placement: str = option(
        "pfeiffer",
        "adapter: after the FFN (pfeiffer) or after attention and FFN (houlsby)",
        choices=PLACEMENTS,
        flag="--adapter-placement",
    )
    reduction: float = option(16.0, "adapter: hidden size / bottleneck width", flag="--adapter-reduction")
    activation: str = option(
        "relu",
        "adapter: bottleneck non-linearity",
        choices=("relu", "gelu", "silu", "tanh"),
        flag="--adapter-activation",
    )
    init_std: float = option(0.02, "adapter: std of the down projection's initial weights", cli=False)

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ConfigError(f"unknown adapter placement '{self.placement}': use pfeiffer or houlsby")
        if self.activation not in ACTIVATION_NAMES:
            raise ConfigError(
                f"unknown adapter activation '{self.activation}': use one of {', '.join(ACTIVATION_NAMES)}"
            )
        if not float(self.reduction) > 0 or not float(self.init_std) >= 0:
            raise ConfigError(
                f"adapter reduction {self.reduction} / init_std {self.init_std} invalid: "
                "pass a reduction > 0 and init_std >= 0"
            )
