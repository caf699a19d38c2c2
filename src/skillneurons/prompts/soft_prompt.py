"""Soft prompts: P trainable vectors in the backbone's input-embedding space."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from skillneurons.backbones import Backbone
from skillneurons.errors import ConfigError

PromptInit = Literal["normal", "vocab", "text"]


class SoftPrompt(nn.Module):
    """``P`` trainable prompt vectors, ``weight: [P, hidden]``.

    Vectors live in the space of ``backbone.input_embeddings(ids)`` (which already includes any
    embedding scaling, e.g. Gemma's), so text and vocabulary initialisations are comparable.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        if weight.dim() != 2 or weight.shape[0] < 1:
            raise ConfigError(f"a soft prompt is [length >= 1, hidden]; got shape {list(weight.shape)}")
        self.weight = nn.Parameter(weight.detach().clone().float())

    @property
    def length(self) -> int:
        return int(self.weight.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.weight.shape[1])

    def forward(self) -> torch.Tensor:
        return self.weight

    @classmethod
    def create(
        cls,
        backbone: Backbone,
        length: int,
        init: PromptInit = "normal",
        *,
        std: float = 0.03,
        text: str | None = None,
        generator: torch.Generator | None = None,
    ) -> SoftPrompt:
        """Initialise a prompt of ``length`` vectors.

        ``"normal"``: N(0, std^2) (the paper: std 0.03). ``"vocab"``: embeddings of tokens sampled
        uniformly from the vocabulary (special tokens excluded). ``"text"``: the embeddings of
        ``text``, repeated/truncated to ``length`` (as PEFT's TEXT init).
        """
        if length < 1:
            raise ConfigError(f"prompt length must be >= 1, got {length}")
        emb = backbone.input_embeddings
        vocab, hidden = emb.weight.shape
        dev = emb.weight.device
        if init == "normal":
            w = torch.randn(length, hidden, generator=generator) * std
        elif init == "vocab":
            special = set(backbone.tokenizer.all_special_ids)
            pool = torch.tensor([i for i in range(vocab) if i not in special])
            ids = pool[torch.randint(len(pool), (length,), generator=generator)]
            with torch.no_grad():
                w = emb(ids.to(dev)).float().cpu()
        elif init == "text":
            if not text:
                raise ConfigError(
                    "init='text' needs a text: pass --init-text 'Classify the sentiment of this review'"
                )
            ids = backbone.tokenizer(text, add_special_tokens=False)["input_ids"]
            if not ids:
                raise ConfigError(f"init text {text!r} has no tokens: give a non-empty text")
            ids = (ids * (length // len(ids) + 1))[:length]
            with torch.no_grad():
                w = emb(torch.tensor(ids, device=dev)).float().cpu()
        else:
            raise ConfigError(f"unknown prompt init '{init}': use normal, vocab or text")
        return cls(w)
