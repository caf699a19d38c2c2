"""Options of the perturbation experiments (``perturb``, ``cross-perturb``, ``similarity``). No torch.

The commands differ in their defaults (kept as they are): the sweep perturbs the fractions
:data:`DEFAULT_RHOS` with 5 random draws, the cross-task matrix ``rho`` 0.05 with 3 draws, and the
similarity's skill sets are the top 0.02.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skillneurons.data.config import SPLIT_SEED_HELP
from skillneurons.errors import ConfigError
from skillneurons.options import check_range, option

__all__ = [
    "DEFAULT_RHOS",
    "MODES",
    "POSITIONS",
    "SIGMA_SCALES",
    "SPLITS",
    "CrossPerturbConfig",
    "PerturbConfig",
    "SimilarityConfig",
    "SweepConfig",
]

MODES: tuple[str, ...] = ("gaussian", "zero", "mean")
POSITIONS: tuple[str, ...] = ("all", "prompt")
SPLITS: tuple[str, ...] = ("train", "dev", "test")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
SIGMA_SCALES: tuple[str, ...] = ("neuron_std", "absolute")
DEFAULT_RHOS: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.10, 0.15, 0.20)


def _check_rho(r: Any) -> None:
    if isinstance(r, bool) or not isinstance(r, int | float) or not 0 <= r <= 1:
        raise ConfigError(f"rho={r!r} is invalid: pass fractions between 0 and 1 (e.g. 0.02 for 2%)")


def _check_draws(draws: Any) -> None:
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 0:
        raise ConfigError(f"draws={draws!r} is invalid: pass a non-negative number of random draws")


@dataclass
class PerturbConfig:
    """How neurons are perturbed and where the prompt is evaluated (shared by the experiments)."""

    mode: str = option(
        "gaussian",
        "gaussian: a + eps, eps ~ N(0, sigma^2); zero: 0; mean: the neuron's mean activation",
        choices=MODES,
    )
    sigma: float = option(
        0.1, "standard deviation of the gaussian noise (in units of each neuron's train std by default)"
    )
    sigma_scale: str = option(
        "neuron_std",
        "neuron_std: eps_i ~ N(0, (sigma * std_i)^2), std_i neuron i's activation std on the train split; "
        "absolute: eps ~ N(0, sigma^2)",
        choices=SIGMA_SCALES,
    )
    std_examples: int = option(
        0, "train examples for the per-neuron std of --sigma-scale neuron_std (0: the whole train split)"
    )
    seed: int = option(0, "seed of the noise and of the random control")
    positions: str = option(
        "all",
        "perturb at every position, or only at the prompt positions (read slot + soft tokens)",
        choices=POSITIONS,
    )
    layers: tuple[int, ...] | None = option(
        None, "comma-separated layers to perturb (default: all)", metavar="L,L"
    )
    per_layer: bool = option(
        True,
        "select the same quota in every layer (--global: the top fraction over all neurons)",
        flag="--global",
    )
    split: str = option("test", "part of each prompt's run split to evaluate on", choices=SPLITS)
    split_seed: int | None = option(None, SPLIT_SEED_HELP)
    batch_size: int = option(64, "evaluation batch size")
    precision: str = option(
        "auto", "autocast precision (auto: bf16 on CUDA, fp32 elsewhere)", choices=PRECISIONS
    )

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"perturbation mode {self.mode!r} is unknown: use one of {', '.join(MODES)}")
        if self.positions not in POSITIONS:
            raise ConfigError(f"positions {self.positions!r} are unknown: use 'all' or 'prompt'")
        if self.split not in SPLITS:
            raise ConfigError(f"split {self.split!r} is unknown: use train, dev or test")
        check_range("--sigma", self.sigma, low=0.0)
        if self.sigma_scale not in SIGMA_SCALES:
            raise ConfigError(f"sigma scale {self.sigma_scale!r} is unknown: use neuron_std or absolute")
        if (
            isinstance(self.std_examples, bool)
            or not isinstance(self.std_examples, int)
            or self.std_examples < 0
        ):
            raise ConfigError(
                f"std_examples={self.std_examples!r} is invalid: pass 0 (all) or a positive count"
            )
        if self.layers is not None:
            self.layers = tuple(int(x) for x in self.layers)

    @property
    def scaled(self) -> bool:
        """True when the gaussian noise is in units of each neuron's train std."""
        return self.mode == "gaussian" and self.sigma_scale == "neuron_std"

    def settings(self) -> dict[str, Any]:
        """How the neurons were perturbed, as recorded in every experiment's result."""
        return {
            "mode": self.mode,
            "sigma": self.sigma if self.mode == "gaussian" else None,
            "sigma_scale": self.sigma_scale if self.mode == "gaussian" else None,
            "positions": self.positions,
            "layers": list(self.layers) if self.layers is not None else None,
            "per_layer": self.per_layer,
            "seed": self.seed,
        }


@dataclass
class SweepConfig(PerturbConfig):
    """``perturb``: accuracy vs the perturbed fraction, skill neurons against random neurons."""

    rho: tuple[float, ...] = option(
        DEFAULT_RHOS,
        "comma-separated fractions of neurons perturbed (default 0,0.01,0.02,0.05,0.1,0.15,0.2)",
        metavar="RHOS",
    )
    draws: int = option(5, "random-control draws per fraction (k)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.rho, int | float) and not isinstance(self.rho, bool):
            self.rho = (self.rho,)
        if not self.rho:
            raise ConfigError("no fractions given: pass at least one rho, e.g. 0,0.01,0.05")
        for r in self.rho:
            _check_rho(r)
        self.rho = tuple(self.rho)
        _check_draws(self.draws)


@dataclass
class CrossPerturbConfig(PerturbConfig):
    """``cross-perturb``: task A's skill neurons perturbed while task B's prompt is evaluated."""

    rho: float = option(0.05, "fraction of skill neurons perturbed")
    draws: int = option(3, "random-control draws per evaluated task")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_rho(self.rho)
        _check_draws(self.draws)


@dataclass
class SimilarityConfig:
    """``similarity``: Spearman correlation of neuron predictivity and skill-set overlap between tasks."""

    rho: float = option(0.02, "fraction defining the skill sets for the overlap")
    per_layer: bool = option(
        True, "skill sets per layer (--global: the top fraction over all neurons)", flag="--global"
    )
    names: tuple[str, ...] | None = option(
        None, "comma-separated task names (default: recorded in the artifacts)", metavar="A,B"
    )
    draws: int = option(
        500,
        "bootstrap resamples (over neurons) and permutations of each pair's Spearman interval and p "
        "(0: none)",
    )
    seed: int = option(0, "seed of the bootstrap and the permutations")
    plot: bool = option(True, "write the heatmaps", cli=False)
    name: str = option("similarity", "stem of the output files (NAME.json, NAME_*.png)", cli=False)

    def __post_init__(self) -> None:
        if isinstance(self.rho, bool) or not isinstance(self.rho, int | float) or not 0.0 <= self.rho <= 1.0:
            raise ConfigError(
                f"rho={self.rho!r} is invalid: pass a fraction between 0 and 1 (e.g. 0.02 for 2%)"
            )
        _check_draws(self.draws)
        if self.names is not None:
            self.names = tuple(self.names)
