"""Options of prompt transferability: the transfer matrix, the indicators (ON's reading included), the
cross-model projector (train and apply) and the TPT comparison. No torch here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from skillneurons.data.config import SPLIT_SEED_HELP
from skillneurons.errors import ConfigError
from skillneurons.options import option

__all__ = [
    "DEFAULT_INNER",
    "POSITIONS",
    "OnOptions",
    "ProjectApplyConfig",
    "ProjectTrainConfig",
    "TPTCompareConfig",
    "TransferMatrixConfig",
    "TransferabilityConfig",
    "parse_layers",
]

POSITIONS: tuple[str, ...] = ("read", "prompt", "prompt_mean")
SPLITS: tuple[str, ...] = ("train", "dev", "test")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
#: the projector's hidden width (the paper's)
DEFAULT_INNER = 768


def _check_split(split: str | None) -> None:
    if split is not None and split not in SPLITS:
        raise ConfigError(f"split {split!r} is unknown: use train, dev or test")


def parse_layers(text: str | Sequence[int] | None) -> list[int] | None:
    """``3:6`` (a window, end exclusive), ``0,2,5``, a list of layers, or None (all layers)."""
    if text is None:
        return None
    if not isinstance(text, str):
        return [int(x) for x in text]
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            layers = list(range(int(a), int(b)))
        else:
            layers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"--layers {text!r} is not a window 'A:B' or a list '0,1,2' of layer indices"
        ) from None
    if not layers:
        raise ConfigError(
            f"--layers {text!r} selects no layer: give a window 'A:B' with A < B, or a list '0,1,2'"
        )
    return layers


@dataclass
class TransferMatrixConfig:
    """How every source prompt is evaluated on every target task (``transfer-matrix``)."""

    split: str = option("test", "part of each target's split", choices=SPLITS)
    split_seed: int | None = option(None, SPLIT_SEED_HELP)
    batch_size: int = option(64, "evaluation batch size")
    precision: str = option("auto", "evaluation precision", choices=PRECISIONS)

    def __post_init__(self) -> None:
        _check_split(self.split)


@dataclass
class OnOptions:
    """How ON reads activated neurons (defaults: the original's)."""

    position: str = option(
        "read",
        "ON: the read (mask) slot, every soft token (aligned), or their mean",
        choices=POSITIONS,
        flag="--on-position",
    )
    texts: Sequence[str] = option(
        ("",),
        "ON: input text fed with the prompt (repeatable; activations averaged; default: empty)",
        flag="--on-input",
    )
    layers: Sequence[int] | None = option(
        None, "ON layer window 'A:B' (end exclusive) or list '0,1,2' (default: all)"
    )
    threshold: float = option(0.0, "ON: activated = activation > threshold")
    precision: str = option("auto", "ON: precision of the forward passes", choices=PRECISIONS, cli=False)

    def __post_init__(self) -> None:
        if isinstance(self.layers, str):
            self.layers = parse_layers(self.layers)
        if self.position not in POSITIONS:
            raise ConfigError(f"unknown ON position '{self.position}': use one of {', '.join(POSITIONS)}")
        if not self.texts:
            raise ConfigError("ON needs at least one input text (the original uses the empty text '')")
        if not math.isfinite(self.threshold):
            raise ConfigError(f"ON threshold {self.threshold} is not a finite number")
        if self.layers is not None and len(self.layers) == 0:
            raise ConfigError("the ON layer window is empty: give at least one layer (or None for all)")

    def describe(self) -> dict[str, object]:
        return {
            "position": self.position,
            "texts": list(self.texts),
            "layers": None if self.layers is None else list(self.layers),
            "threshold": self.threshold,
        }


@dataclass
class TransferabilityConfig:
    """Which pairs and skill-neuron sets the indicators use (``transferability``; ON's reading is
    :class:`OnOptions`)."""

    rho: float = option(0.02, "fraction defining the skill-neuron sets")
    per_layer: bool = option(
        True, "skill sets per layer (--global: the top fraction over all neurons)", flag="--global"
    )
    include_same_task: bool = option(
        False, "also correlate over pairs of one task (e.g. prompts of two seeds)"
    )
    min_margin: float | None = option(
        None,
        "leave out pairs with a prompt whose own accuracy beats its majority class by less (e.g. 0.05)",
    )


@dataclass
class ProjectTrainConfig:
    """The projector and its training run (``project train``; the optimisation is a
    :class:`~skillneurons.training.TrainConfig` with ``lr`` 1e-3, ``epochs`` 3, ``batch_size`` 32)."""

    inner: int = option(DEFAULT_INNER, "the projector's hidden width")
    head: str = option(
        "auto",
        "how the target model reads labels",
        choices=("auto", "label_words", "linear", "similarity"),
    )
    layout: str = option(
        "auto",
        "input layout of the projected prompts on the target model",
        choices=("auto", "slot_first", "prompt_first", "paper", "peft"),
    )
    template: str | None = option(None, "text template with {text} on the target model")
    max_length: int = option(128, "max sequence length incl. prompt")
    max_examples: int | None = option(None, "stratified subsample of the task before splitting")
    split_seed: int | None = option(None, "seed of the split (default: the source prompt's)")


@dataclass
class ProjectApplyConfig:
    """How a projected prompt is read and evaluated (``project apply``)."""

    head: str | None = option(
        None,
        "how the target model reads labels (default: the head the projector was trained through)",
        choices=("auto", "label_words", "linear", "similarity"),
    )
    split: str | None = option(
        "test",
        "evaluate on this part of the source run's split (none: skip)",
        choices=("train", "dev", "test", "none"),
    )
    batch_size: int = option(32, "evaluation batch size (the command line's default; the API's was 64)")
    precision: str = option("auto", "evaluation precision", choices=PRECISIONS)

    def __post_init__(self) -> None:
        if self.split == "none":
            self.split = None
        _check_split(self.split)


@dataclass
class TPTCompareConfig:
    """The dev accuracy runs are compared at (``tpt-compare``)."""

    threshold: float | None = option(
        None, "dev accuracy to reach (default: --fraction of the baseline's best)"
    )
    fraction: float = option(0.9, "share of the baseline's best dev accuracy used as the threshold")

    def __post_init__(self) -> None:
        if self.threshold is None and not 0 < self.fraction <= 1:
            raise ConfigError(f"fraction {self.fraction} is invalid: pass a value in (0, 1], e.g. 0.9")
