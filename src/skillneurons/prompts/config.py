"""Prompt options: what builds a prompt model for a task (length, initialisation, head, layout,
template, sequence length). No torch here."""

from __future__ import annotations

from dataclasses import dataclass

from skillneurons.errors import ConfigError
from skillneurons.options import check_range, option

__all__ = ["HEAD_CHOICES", "INIT_CHOICES", "LAYOUT_CHOICES", "PromptConfig"]

INIT_CHOICES = ("normal", "vocab", "text")
HEAD_CHOICES = ("auto", "label_words", "linear", "similarity")
LAYOUT_CHOICES = ("auto", "slot_first", "prompt_first", "prompt_last", "paper", "peft", "suffix")


@dataclass
class PromptConfig:
    """A soft prompt, its head and its input layout. ``prompt_length >= 1`` is checked where a prompt
    is created (a method that tunes no prompt leaves it unused)."""

    prompt_length: int = option(20, "number of soft prompt tokens P")
    init: str = option("normal", "prompt initialisation", choices=INIT_CHOICES)
    init_text: str | None = option(None, "text for --init text")
    head: str = option(
        "auto",
        "how labels are read (auto: label words through the LM head when the model has one, else similarity)",
        choices=HEAD_CHOICES,
    )
    layout: str = option(
        "auto",
        "input layout (auto: slot_first = paper for encoders, prompt_first = peft for causal LMs; "
        "prompt_last = suffix puts a causal LM's prompt after the text, where it sees it)",
        choices=LAYOUT_CHOICES,
    )
    template: str | None = option(
        None, "text template with {text}, e.g. '{text} Overall it was' (useful for causal LMs)"
    )
    max_length: int = option(128, "max sequence length incl. prompt (text is truncated)")

    def __post_init__(self) -> None:
        if self.init not in INIT_CHOICES:
            raise ConfigError(f"unknown prompt init '{self.init}': use normal, vocab or text")
        if self.init == "text" and not self.init_text:
            raise ConfigError(
                "init='text' needs a text: pass --init-text 'Classify the sentiment of this review'"
            )
        if self.layout not in LAYOUT_CHOICES:
            raise ConfigError(
                f"unknown layout '{self.layout}': use slot_first (paper), prompt_first (peft), prompt_last "
                "(causal LMs) or auto"
            )
        if self.template is not None and "{text}" not in self.template:
            raise ConfigError(
                f"template {self.template!r} has no '{{text}}' placeholder: write e.g. '{{text}} It was'"
            )
        check_range("max_length", self.max_length, low=1)
