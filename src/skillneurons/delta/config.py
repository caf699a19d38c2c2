"""Options of delta tuning: the method names (``tune --method``) and the ``delta-perturb`` experiment.
No torch here; each method's own options are in ``delta/<method>/config.py``."""

from __future__ import annotations

from dataclasses import dataclass

from skillneurons.data.config import SPLIT_SEED_HELP
from skillneurons.options import option, parse_floats

__all__ = ["METHOD_NAMES", "DeltaPerturbConfig"]

#: the tuning methods, ``prompt`` included (the plain prompt model)
METHOD_NAMES: tuple[str, ...] = ("prompt", "bitfit", "adapter", "lora")


@dataclass
class DeltaPerturbConfig:
    """How prompt-found skill neurons are perturbed in each tuned model (``delta-perturb``): the
    options of :func:`skillneurons.perturb.perturbation_sweep` with this experiment's defaults
    (zeroing, at all positions: a delta model has no soft prompt)."""

    rhos: tuple[float, ...] = option(
        (0.0, 0.01, 0.02, 0.05),
        "comma-separated fractions (default 0,0.01,0.02,0.05)",
        flag="--rho",
        metavar="RHO,RHO",
    )
    draws: int = option(5, "random-control draws per fraction (k)")
    mode: str = option(
        "zero",
        "gaussian: a + eps, eps ~ N(0, sigma^2); zero: 0; mean: the neuron's mean activation",
        choices=("gaussian", "zero", "mean"),
    )
    sigma: float = option(
        0.1, "standard deviation of the gaussian noise (in units of each neuron's train std by default)"
    )
    sigma_scale: str = option(
        "neuron_std",
        "neuron_std: eps_i ~ N(0, (sigma * std_i)^2), std_i neuron i's activation std on the train split; "
        "absolute: eps ~ N(0, sigma^2)",
        choices=("neuron_std", "absolute"),
    )
    std_examples: int = option(
        0, "train examples for the per-neuron std of --sigma-scale neuron_std (0: the whole train split)"
    )
    seed: int = option(0, "seed of the noise and of the random control")
    positions: str = option(
        "all",
        "perturb at every position, or only at the prompt positions (read slot + soft tokens)",
        choices=("all", "prompt"),
    )
    layers: tuple[int, ...] | None = option(None, "comma-separated layers to perturb (default: all)")
    per_layer: bool = option(
        True,
        "the same quota in every layer (--global: the top fraction over all neurons instead)",
        flag="--global",
    )
    split: str = option(
        "test", "part of each model's run split to evaluate on", choices=("train", "dev", "test")
    )
    split_seed: int | None = option(None, SPLIT_SEED_HELP)
    batch_size: int = option(64, "evaluation batch size")
    precision: str = option("auto", "evaluation precision", choices=("auto", "fp32", "bf16"))

    def __post_init__(self) -> None:
        if isinstance(self.rhos, str | int | float):
            self.rhos = tuple(parse_floats(self.rhos, "--rho"))
        else:
            self.rhos = tuple(float(r) for r in self.rhos)
        if self.layers is not None:
            self.layers = tuple(int(x) for x in self.layers)
        # mode, positions, draws, split are checked by the sweep / the run loader (their messages)

    def sweep_options(self) -> dict[str, object]:
        """The keyword arguments of :func:`~skillneurons.perturb.perturbation_sweep` (but the neurons'
        fractions, the mode, draws and positions, passed by name)."""
        return {
            "sigma": self.sigma,
            "sigma_scale": self.sigma_scale,
            "std_examples": self.std_examples,
            "seed": self.seed,
            "layers": None if self.layers is None else list(self.layers),
            "per_layer": self.per_layer,
            "batch_size": self.batch_size,
            "precision": self.precision,
        }
