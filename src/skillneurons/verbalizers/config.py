"""Options of the verbalizers: how a tuned prompt reads its label (``tune --verbalizer ...``) and the
zero-shot ``kpt-evaluate`` command. No torch here."""

from __future__ import annotations

from dataclasses import dataclass

from skillneurons.errors import ConfigError
from skillneurons.options import option

__all__ = ["VERBALIZERS", "KPTEvalConfig", "VerbalizerConfig"]

VERBALIZERS: tuple[str, ...] = ("single", "kpt")


def _check_verbalizer(name: str) -> None:
    if name not in VERBALIZERS:
        raise ConfigError(f"unknown verbalizer '{name}': use single or kpt")


@dataclass
class VerbalizerConfig:
    """The verbalizer of a tuned prompt: one label word per class through the head chosen by
    ``--head``, or a knowledgeable verbalizer (KPT: many words per class, refined on 200 unlabelled
    training texts before tuning, with learned per-word weights)."""

    verbalizer: str = option(
        "single",
        "label words through the LM head: one word per class, or a knowledgeable verbalizer (KPT)",
        choices=VERBALIZERS,
    )
    words: str | None = option(None, "kpt: label-word file ('class: w1, w2' lines or JSON)")
    expand: int = option(0, "kpt: add this many embedding neighbours per class")
    calibrate: bool = option(False, "kpt: divide by the contextual prior")
    relevance: bool = option(False, "kpt: also apply the relevance refinement")
    contexts: int = option(200, "kpt: unlabelled training texts the verbalizer is refined on", cli=False)

    def __post_init__(self) -> None:
        _check_verbalizer(self.verbalizer)

    @property
    def is_kpt(self) -> bool:
        return self.verbalizer == "kpt"


@dataclass
class KPTEvalConfig:
    """Zero-shot classification through the model's MLM/LM head with a hand-written template
    (``kpt-evaluate``). The task is split (seeded, stratified) into unlabelled contexts (for the prior,
    refinement and calibration; their labels are never read) and test examples."""

    verbalizer: str = option(
        "kpt",
        "single: each class's first label word; kpt: all words, refined",
        choices=VERBALIZERS,
    )
    calibrate: bool = option(
        True, "contextual calibration: divide by the prior over the contexts (default on)"
    )
    words: str | None = option(
        None, "label-word file: 'class: w1, w2' per line, one line per class in order, or JSON"
    )
    expand: int = option(0, "add this many embedding neighbours (whole-word tokens) per class")
    template: str | None = option(
        None,
        "with {text} (and {mask} for masked LMs), e.g. 'A {mask} news: {text}' or "
        "'{text} This topic is about'",
    )
    multi_token: str = option(
        "first",
        "score a word of several tokens by its first piece (default), or mean/max over pieces",
        choices=("first", "mean", "max"),
    )
    cutoff: float = option(
        0.5,
        "frequency refinement: drop words whose tokens rank in this lowest fraction of the prior (0: off)",
    )
    cutoff_scope: str = option(
        "vocab",
        "rank the prior over the whole vocabulary (original KPT) or over the label words",
        choices=("vocab", "words"),
    )
    keep_shared: bool = option(False, "keep words that occur in several classes")
    relevance: bool = option(False, "relevance refinement against each class's anchor word")
    max_examples: int | None = option(None, "stratified subsample of the test part")
    prior_examples: int = option(200, "unlabelled contexts for the prior")
    test_fraction: float = option(0.2, "share of the task held out for testing")
    contexts_split: str | None = option(
        None,
        "take the contexts from this split of the same hf: dataset (e.g. train) and test on all of "
        "--hf-split",
    )
    split_seed: int = option(0, "seed of the contexts/test split")
    max_length: int = option(128, "tokens per example (the text is truncated)")
    batch_size: int = option(16, "batch size of the forward passes")

    def __post_init__(self) -> None:
        _check_verbalizer(self.verbalizer)
