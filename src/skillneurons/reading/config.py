"""Options of the DynSAN reader (../shared/REFERENCE.md section 9) and of its training. No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from skillneurons.options import check_choice, check_range, option, require

__all__ = ["EMBEDDING_KINDS", "HEADS", "SELECTIONS", "ReadTrainConfig", "ReaderConfig"]

#: how a DynSA block picks the tokens that attend to each other
SELECTIONS = ("gate", "random", "random_nogate", "full")
#: the answer heads: extractive span, or multiple choice over candidates
HEADS = ("span", "choice")
#: what of the ``embeddings`` backbone embeds the tokens: its word-piece table, or its encoder's output
EMBEDDING_KINDS = ("table", "encoder")


@dataclass
class ReaderConfig:
    """The network (defaults: the paper's setting, D 128, 8 heads, K 256, 4 cross-passage blocks)."""

    dim: int = option(128, "model width D")
    heads: int = option(8, "attention heads per DynSA block (D must be a multiple)")
    top_k: int = option(256, "K: tokens each head selects (all tokens when a sequence has at most K)")
    blocks: int = option(4, "N: cross-passage DynSA blocks over the concatenated passages")
    passages: int = option(
        10,
        "passages per question the reader reads (the task's top-ranked ones; at most the task's --passages)",
        flag="--read-passages",
    )
    selection: Literal["gate", "random", "random_nogate", "full"] = option(
        "gate",
        "gate: top-K by the gate; random: K random tokens, gate kept; random_nogate: K random tokens, "
        "no gate; full: ordinary self-attention over all tokens",
        choices=SELECTIONS,
    )
    conv: bool = option(True, "the two depthwise-separable convolutions of every DynSA block")
    attention: bool = option(True, "the self-attention of every DynSA block (off: ablation)")
    cross: bool = option(True, "the cross-passage blocks (off: ablation)")
    beta: float = option(1e-5, "weight of the L1 gate regulariser beta * ||G||_1 (0 disables it)")
    dropout: float = option(0.1, "dropout rate")
    kernel: int = option(7, "width of the depthwise convolutions (odd)")
    head: Literal["span", "choice"] = option(
        "span", "span: start/end over all passage tokens; choice: sum over candidate mentions", choices=HEADS
    )
    max_answer_tokens: int = option(30, "longest answer span (tokens) the span head scores and decodes")
    embeddings: str = option(
        "minilm", "backbone whose frozen table or encoder embeds the tokens (an offline alias or a path)"
    )
    embeddings_kind: Literal["table", "encoder"] = option(
        "table",
        "table: the backbone's frozen word-piece table; encoder: its last hidden states, the question and "
        "each passage encoded separately (frozen, computed once per passage and cached in memory)",
        choices=EMBEDDING_KINDS,
    )
    max_question_tokens: int = option(64, "length cap of a question (word pieces)")
    max_passage_tokens: int = option(200, "length cap of one passage (word pieces)")
    truncate: bool = option(
        True, "truncate a question or passage over its cap (off: such an example is skipped and counted)"
    )

    def __post_init__(self) -> None:
        for name in ("dim", "heads", "top_k", "passages", "max_answer_tokens"):
            check_range(f"--{name.replace('_', '-')}", getattr(self, name), low=1)
        check_range("--blocks", self.blocks, low=0)
        require(self.dim % self.heads == 0, f"--dim {self.dim} is not a multiple of --heads {self.heads}")
        check_choice("--selection", self.selection, SELECTIONS)
        check_choice("--head", self.head, HEADS)
        check_choice("--embeddings-kind", self.embeddings_kind, EMBEDDING_KINDS)
        check_range("--beta", self.beta, low=0)
        check_range("--dropout", self.dropout, low=0, high=1, high_open=True)
        require(self.kernel >= 1 and self.kernel % 2 == 1, f"--kernel {self.kernel} must be odd and >= 1")
        check_range("--max-question-tokens", self.max_question_tokens, low=1)
        check_range("--max-passage-tokens", self.max_passage_tokens, low=1)


@dataclass
class ReadTrainConfig:
    """Optimisation of the reader (the paper's Adam, lr 1e-3, 500 warm-up steps, EMA 0.9999)."""

    steps: int = option(2000, "training steps")
    batch_size: int = option(32, "training batch size (questions)")
    eval_batch_size: int = option(32, "batch size of the dev and test evaluations")
    lr: float = option(1e-3, "Adam learning rate after warm-up")
    warmup_steps: int = option(500, "linear warm-up steps (then constant)")
    betas: tuple[float, float] = option((0.8, 0.999), "Adam betas (beta1, beta2)")
    ema: float = option(0.9999, "decay of the exponential moving average of the weights (0: no EMA)")
    grad_clip: float = option(5.0, "max global gradient norm (0 disables clipping)")
    eval_every: int = option(200, "steps between dev evaluations (and checkpoints)")
    seed: int = option(
        0, "seed of the weights, data order, dropout and random selection", flag="--train-seed"
    )
    precision: Literal["auto", "fp32", "bf16"] = option(
        "auto", "auto = bf16 autocast on CUDA, fp32 on CPU", choices=("auto", "fp32", "bf16")
    )
    time_budget: float | None = option(
        None, "stop after this many minutes of training (a checkpoint and a final evaluation are written)"
    )

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_batch_size", "eval_every"):
            check_range(f"--{name.replace('_', '-')}", getattr(self, name), low=1)
        check_range("--lr", self.lr, low=0, low_open=True)
        check_range("--warmup-steps", self.warmup_steps, low=0)
        check_range("--ema", self.ema, low=0, high=1, high_open=True)
        check_range("--grad-clip", self.grad_clip, low=0)
        check_choice("--precision", self.precision, ("auto", "fp32", "bf16"))
        if self.time_budget is not None:
            check_range("--time-budget", self.time_budget, low=0, low_open=True)
        self.betas = (float(self.betas[0]), float(self.betas[1]))
