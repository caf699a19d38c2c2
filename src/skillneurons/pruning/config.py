"""Options of skill-neuron pruning (``skillneurons prune``). No torch here.

The re-tuning options are the ``prune`` command's (one epoch by default; the library's
``TrainConfig`` defaults to three): :func:`~skillneurons.pruning.run.prune_model` builds the
``TrainConfig`` of ``--retune`` from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from skillneurons.data.config import SPLIT_SEED_HELP
from skillneurons.errors import ConfigError
from skillneurons.options import option

__all__ = ["PruneConfig"]

SPLITS = ("train", "dev", "test")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class PruneConfig:
    """Which neurons are kept, where the prompt is evaluated, and how it is re-tuned."""

    rho: float = option(0.02, "fraction of neurons kept per pruned layer (default 0.02)")
    first_layer: int | None = option(
        None, "prune layers [N, L) (default L // 4: the original kept 3 of 12 layers whole)", metavar="N"
    )
    layers: tuple[int, ...] | None = option(
        None, "comma-separated layers to prune, instead of --first-layer", metavar="L,L"
    )
    global_selection: bool = option(
        False,
        "select the top rho of all neurons instead of rho of every layer",
        flag="--global",
        aliases=("--global-selection",),
    )
    split: str = option("test", "split part to evaluate on", choices=SPLITS)
    split_seed: int | None = option(None, SPLIT_SEED_HELP)
    retune: bool = option(False, "re-tune --prompt on the pruned model (OUT/retuned/)")
    epochs: float = option(1.0, "--retune: epochs")
    max_steps: int | None = option(None, "--retune: steps (overrides --epochs)")
    batch_size: int = option(32, "--retune: training batch size")
    lr: float = option(3e-2, "--retune: learning rate of the prompt")
    seed: int = option(0, "--retune: training seed")
    precision: str = option("auto", "--retune: autocast precision", choices=PRECISIONS)
    eval_batch_size: int = option(64, "batch size of the accuracy evaluations")

    def __post_init__(self) -> None:
        rho = self.rho
        if isinstance(rho, bool) or not isinstance(rho, int | float) or not 0.0 <= float(rho) <= 1.0:
            raise ConfigError(f"rho={rho!r} is invalid: pass a fraction between 0 and 1 (e.g. 0.02 for 2%)")
        if self.split not in SPLITS:
            raise ConfigError(f"split {self.split!r} is unknown: use train, dev or test")
        if self.layers is not None:
            self.layers = tuple(int(x) for x in self.layers)
        if self.eval_batch_size < 1:
            raise ConfigError("--eval-batch-size must be >= 1")

    @property
    def per_layer(self) -> bool:
        """The original's equal quota per layer (``not global_selection``)."""
        return not self.global_selection
