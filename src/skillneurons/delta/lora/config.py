"""Options of LoRA (``tune --method lora``). No torch here."""

from __future__ import annotations

from dataclasses import dataclass

from skillneurons.errors import ConfigError
from skillneurons.options import option

__all__ = ["LoraConfig"]


@dataclass
class LoraConfig:
    """Low-rank adapters on projections of every block (see :class:`~skillneurons.delta.lora.model.LoRA`).

    ``targets`` may be given as a comma-separated string (the command line's spelling); it is kept as
    a tuple of module paths inside a block, ``None`` (or empty) meaning the registry's query and value
    projections.
    """

    r: int = option(8, "lora: rank", flag="--lora-r")
    alpha: float = option(16.0, "lora: scale numerator (update = alpha/r * BA)", flag="--lora-alpha")
    dropout: float = option(
        0.0,
        "lora: dropout on the LoRA branch (only 0: training steps are deterministic)",
        flag="--lora-dropout",
    )
    targets: tuple[str, ...] | None = option(
        None,
        "lora: comma-separated module paths inside a block (default: attention query and value)",
        flag="--lora-targets",
        metavar="PATH,PATH",
    )

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            self.targets = tuple(t.strip() for t in self.targets.split(",") if t.strip()) or None
        elif self.targets is not None:
            self.targets = tuple(self.targets)
        r, alpha, dropout = self.r, self.alpha, self.dropout
        if (
            isinstance(r, bool)
            or not isinstance(r, int)
            or r < 1
            or not float(alpha) > 0
            or not 0 <= dropout < 1
        ):
            raise ConfigError(
                f"LoRA r={r!r}, alpha={alpha!r}, dropout={dropout!r} invalid: "
                "pass an integer r >= 1, alpha > 0 and dropout in [0, 1)"
            )
        if dropout:
            raise ConfigError(
                f"LoRA dropout {dropout!r} is not supported: the backbone runs in eval mode and training "
                "steps are deterministic (exact resume); pass dropout 0 (--lora-dropout 0)"
            )
