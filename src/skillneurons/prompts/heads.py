"""Heads: how a class is read from the backbone's hidden state at the read position.

* :class:`LabelWordHead` - verbalizer through the model's own MLM / LM head, computed at the read
  position only (mask slot for masked LMs, last token for causal LMs). No trainable parameters.
* :class:`LinearHead` - a trainable linear layer on the read state (for encoders without an LM head).
* :class:`SimilarityHead` - cosine between the read state and the backbone's encodings of the label
  descriptions, times a fixed scale. No trainable parameters.

All heads map ``hidden [batch, hidden]`` to ``logits [batch, num_classes]`` and describe themselves
with :meth:`config` so a saved prompt can rebuild them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from skillneurons.backbones import Backbone
from skillneurons.errors import ArtifactError, ConfigError
from skillneurons.registry import Registry

HEAD_TYPES = ("label_words", "linear", "similarity", "kpt")


class Head(nn.Module):
    """Base class: ``forward(hidden [B, H]) -> logits [B, C]``."""

    kind: str = ""
    num_classes: int

    def config(self) -> dict[str, Any]:
        raise NotImplementedError


class LabelWordHead(Head):
    """Class score = mean over the class's label words of the word's LM-head logit.

    A word that splits into several tokens is scored by its first piece (the original default).
    """

    kind = "label_words"

    def __init__(self, backbone: Backbone, label_words: Sequence[Sequence[str]]) -> None:
        super().__init__()
        if not backbone.has_lm_head:
            raise ConfigError(
                f"{backbone.name} has no MLM/LM head, so label words cannot be scored: use --head linear or "
                "--head similarity"
            )
        self.backbone_ref = [backbone]  # not a submodule: the backbone is frozen and saved elsewhere
        self.label_words = [list(ws) for ws in label_words]
        ids, owner = [], []
        for c, words in enumerate(self.label_words):
            if not words:
                raise ConfigError(f"class {c} has no label words: give at least one word per class")
            for w in words:
                ids.append(backbone.token_ids(w)[0])
                owner.append(c)
        self.num_classes = len(self.label_words)
        self.register_buffer("token_ids", torch.tensor(ids), persistent=False)
        member = torch.zeros(self.num_classes, len(ids))
        member[torch.tensor(owner), torch.arange(len(ids))] = 1.0
        self.register_buffer("membership", member / member.sum(1, keepdim=True), persistent=False)

    token_ids: torch.Tensor
    membership: torch.Tensor

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        word_logits = self.backbone_ref[0].lm_logits(hidden, self.token_ids)  # [B, W]
        return word_logits.float() @ self.membership.T

    def config(self) -> dict[str, Any]:
        return {"type": self.kind, "label_words": self.label_words}


class LinearHead(Head):
    """A trainable ``Linear(hidden, num_classes)`` on the read state."""

    kind = "linear"

    def __init__(self, hidden_size: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.linear = nn.Linear(hidden_size, num_classes)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float())

    def config(self) -> dict[str, Any]:
        return {"type": self.kind, "num_classes": self.num_classes}


class SimilarityHead(Head):
    """``scale * cos(h_read, e_c)`` with ``e_c`` the backbone's mean-pooled encoding of class c's
    description (its label words joined), computed once without the prompt.

    The anchors are part of the trained head: a saved prompt stores them (``head_anchors``) and
    :meth:`set_anchors` puts them back, so the head stays the one the prompt was trained with when
    it is loaded on another (e.g. pruned) model of the same geometry."""

    kind = "similarity"

    def __init__(self, backbone: Backbone, descriptions: Sequence[str], scale: float = 20.0) -> None:
        super().__init__()
        self.descriptions = list(descriptions)
        self.scale = float(scale)
        self.num_classes = len(self.descriptions)
        self.register_buffer("anchors", self._encode(backbone, self.descriptions), persistent=False)

    @staticmethod
    @torch.no_grad()
    def _encode(backbone: Backbone, texts: Sequence[str]) -> torch.Tensor:
        enc = backbone.tokenizer(list(texts), padding=True, return_tensors="pt").to(backbone.device)
        emb = backbone.input_embeddings(enc["input_ids"])
        h = backbone.encoder_forward(emb, enc["attention_mask"]).float()
        m = enc["attention_mask"].unsqueeze(-1).float()
        return F.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    anchors: torch.Tensor

    def set_anchors(self, anchors: torch.Tensor) -> None:
        """Use ``anchors`` ``[classes, hidden]`` (a saved head's own) instead of the encoded ones."""
        if tuple(anchors.shape) != tuple(self.anchors.shape):
            raise ArtifactError(
                f"the saved similarity-head anchors have shape {tuple(anchors.shape)} but this head needs "
                f"{tuple(self.anchors.shape)} (classes x hidden): the prompt file is inconsistent; "
                "tune it again"
            )
        self.anchors = anchors.detach().to(device=self.anchors.device, dtype=torch.float32).clone()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(hidden.float(), dim=-1) @ self.anchors.T

    def config(self) -> dict[str, Any]:
        return {"type": self.kind, "descriptions": self.descriptions, "scale": self.scale}


@dataclass(frozen=True)
class HeadType:
    """How a head kind is built for a task (``build(backbone, label_words, scale)``) and rebuilt from
    the :meth:`Head.config` saved in a prompt artifact (``from_config(cfg, backbone)``)."""

    build: Callable[[Backbone, Sequence[Sequence[str]], float], Head]
    from_config: Callable[[dict[str, Any], Backbone], Head]


#: head kinds by name; a plugin adds one with ``HEADS.register(kind, HeadType(...))``
HEADS: Registry[HeadType] = Registry("head")
HEADS.register(
    "label_words",
    HeadType(
        lambda bb, words, scale: LabelWordHead(bb, words),
        lambda cfg, bb: LabelWordHead(bb, cfg["label_words"]),
    ),
)
HEADS.register(
    "linear",
    HeadType(
        lambda bb, words, scale: LinearHead(bb.hidden_size, len(words)),
        lambda cfg, bb: LinearHead(bb.hidden_size, int(cfg["num_classes"])),
    ),
)
HEADS.register(
    "similarity",
    HeadType(
        lambda bb, words, scale: SimilarityHead(bb, [" ".join(ws) for ws in words], scale=scale),
        lambda cfg, bb: SimilarityHead(bb, cfg["descriptions"], scale=float(cfg.get("scale", 20.0))),
    ),
)


def build_head(
    kind: str,
    backbone: Backbone,
    label_words: Sequence[Sequence[str]],
    *,
    scale: float = 20.0,
) -> Head:
    """Build a head of ``kind`` (``label_words``, ``linear``, ``similarity``, ``kpt``, or a registered
    kind; ``auto`` = label words when the backbone has an LM head, else similarity)."""
    if kind == "auto":
        kind = "label_words" if backbone.has_lm_head else "similarity"
    if kind not in HEADS:
        raise ConfigError(f"unknown head '{kind}': use one of auto, {', '.join(HEADS.names())}")
    return HEADS.get(kind).build(backbone, label_words, scale)


def head_from_config(cfg: dict[str, Any], backbone: Backbone) -> Head:
    """Rebuild a head from :meth:`Head.config` (weights of a linear head are loaded separately)."""
    kind = str(cfg.get("type"))
    if kind not in HEADS:
        raise ConfigError(
            f"unknown head type '{kind}' in the saved prompt: it was written by another version of "
            "skillneurons"
        )
    return HEADS.get(kind).from_config(cfg, backbone)
