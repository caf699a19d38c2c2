"""Training options: the optimisation settings of every training run. No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from skillneurons.errors import ConfigError
from skillneurons.options import option

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Optimisation settings (defaults: the paper's Adam betas, warm-up, clipping; a higher lr
    than its 1e-3 because short prompts on small models converge slowly at 1e-3)."""

    epochs: float = option(3.0, "passes over the training split (fractions allowed)")
    max_steps: int | None = option(None, "training steps; overrides --epochs when set")
    batch_size: int = option(32, "training batch size")
    eval_batch_size: int = option(64, "batch size of the dev and test evaluations")
    lr: float = option(3e-2, "learning rate of the prompt (or of a delta method's tensors)")
    head_lr: float | None = option(
        1e-3, "learning rate of the trainable head parameters (None: the same as --lr)"
    )
    optimizer: Literal["adamw", "adam"] = option("adamw", "optimizer", choices=("adamw", "adam"))
    betas: tuple[float, float] = option((0.9, 0.98), "Adam betas (beta1, beta2)")
    weight_decay: float = option(0.0, "weight decay")
    warmup_ratio: float = option(
        0.06, "linear warm-up over this fraction of the steps, then linear decay to 0"
    )
    grad_clip: float = option(1.0, "max global gradient norm (0 disables clipping)")
    batching: Literal["random", "bucketed"] = option(
        "random",
        "batch order: random (a seeded permutation per epoch), or bucketed (examples of similar token "
        "length batched together: each run of --bucket-batches batches' worth of the permutation is sorted "
        "by length and cut into batches, and the batches are shuffled; less padding per step)",
        choices=("random", "bucketed"),
    )
    bucket_batches: int = option(50, "bucketed batching: batches' worth of examples sorted together")
    eval_every: int | None = option(None, "steps between dev evaluations (default: twice per epoch)")
    patience: int | None = option(None, "early stopping: evaluations without improvement")
    seed: int = option(0, "training seed (prompt init, data order)")
    precision: Literal["auto", "fp32", "bf16"] = option(
        "auto", "auto = bf16 autocast on CUDA, fp32 on CPU", choices=("auto", "fp32", "bf16")
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("batch sizes must be >= 1")
        if self.lr <= 0 or (self.head_lr is not None and self.head_lr <= 0):
            raise ConfigError("learning rates must be > 0")
        if self.max_steps is None and self.epochs <= 0:
            raise ConfigError("epochs must be > 0 (or give max_steps)")
        if self.batching not in ("random", "bucketed"):
            raise ConfigError(f"unknown batching '{self.batching}': use random or bucketed")
        if self.bucket_batches < 1:
            raise ConfigError("bucket_batches must be >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("warmup_ratio must be in [0, 1)")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
