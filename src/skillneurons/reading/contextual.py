"""The frozen-encoder embeddings of the reader (``ReaderConfig.embeddings_kind = "encoder"``).

The backbone named by ``ReaderConfig.embeddings`` (the offline MiniLM by default) encodes the question
and every passage of an encoded example separately, exactly as the reader reads it (its word pieces,
after the length cap, between the backbone's own special tokens, which are dropped again from the
output): its last hidden states, the model frozen and in eval mode, under ``torch.inference_mode`` (no
graph, no gradient), bf16 autocast on CUDA, in batches of sequences of similar length (longest first,
so padding is small; padding is masked by the attention mask). The vectors are computed once and kept on
the encoded examples (:class:`Vectors`, fp16 on the CPU): no training epoch or evaluation runs the
encoder again, and the reader never holds it.

Memory of the cache: ``2 * E * (Lq + Lp_1 + ... + Lp_P)`` bytes per question (fp16; E the encoder
width, 384 for MiniLM: 768 bytes a word piece, Lq and Lp_i the question's and passages' word pieces after
their caps). At the default caps (64 + 10 x 200) that is at most 1.6 MB a question; the 8,414 training
questions of ``bbc_cloze`` at 5 passages of <= 200 pieces hold at most about 6.7 GB.

Every vector set carries a key (:meth:`ContextEncoder.key`: a hash of the encoder's weights and
identity and of the length caps and truncation rule), so vectors of another model or other caps are
never mixed or reused silently: a batch mixing keys is refused, the trainer refuses train and dev
splits of different keys and its checkpoints record the key, and ``read evaluate`` refuses a reader
whose recorded key its embeddings no longer give.

Sequences longer than the encoder's position table (MiniLM: 512, two of them for [CLS] and [SEP]) are
refused with a one-line error before anything is encoded: the reader's caps (200 passage pieces by
default) are far below it, so no chunking is needed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import skillneurons.backbones as backbones  # lazy: loads the model library only when called
from skillneurons.errors import ConfigError, DataError
from skillneurons.reading.config import ReaderConfig
from skillneurons.training.trainer import autocast_context

__all__ = ["ContextEncoder", "Vectors", "fingerprint", "load_encoder"]

#: sequences per forward pass of the encoder
BATCH_SIZE = 64


@dataclass(frozen=True)
class Vectors:
    """The cached encoder vectors of one encoded example: ``question`` [Lq, E] and one [Lp_i, E] per
    passage (fp16, CPU), made by the encoder of ``key``."""

    key: str
    question: Tensor
    passages: tuple[Tensor, ...]


def fingerprint(tensors: Iterable[Tensor], extra: Any = None) -> str:
    """A hash of the bytes of ``tensors`` (and of the JSON of ``extra``): what a cache key compares."""
    h = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for t in tensors:
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(str((t.dtype, t.numel())).encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _specials(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a single sequence ([CLS], [SEP])."""
    enc = tokenizer("a", add_special_tokens=True, return_special_tokens_mask=True)
    ids, special = list(enc["input_ids"]), list(enc["special_tokens_mask"])
    content = [i for i, s in enumerate(special) if not s]
    if not content:
        raise DataError("the encoder's tokenizer gives no content token for 'a': it cannot encode passages")
    return ids[: content[0]], ids[content[-1] + 1 :]


class ContextEncoder:
    """A frozen backbone that turns word-piece sequences into their last hidden states.

    ``calls`` counts the encoder's forward passes (the cache is computed once: tests count them)."""

    def __init__(self, backbone: Any, *, device: str | torch.device | None = None) -> None:
        if not getattr(backbone.tokenizer, "is_fast", False):
            raise DataError(
                f"backbone '{backbone.name}' has no fast tokenizer (character offsets are needed)"
            )
        self.name = str(backbone.name)
        self.model = backbone.model
        self.model.requires_grad_(False)
        self.model.eval()
        self.tokenizer = backbone.tokenizer
        self.width = int(backbone.hidden_size)
        self.max_positions: int | None = getattr(backbone.config, "max_position_embeddings", None)
        self.prefix, self.suffix = _specials(self.tokenizer)
        identity = {k: v for k, v in backbone.identity().items() if k != "name"}
        self.fingerprint = fingerprint(self.model.state_dict().values(), [identity, self.prefix, self.suffix])
        if device is not None:
            self.model.to(device)
        self.pad = int(self.tokenizer.pad_token_id or 0)
        self.calls = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def key(self, config: ReaderConfig) -> str:
        """The cache key of vectors made for ``config``'s length caps and truncation rule."""
        caps = [config.max_question_tokens, config.max_passage_tokens, config.truncate]
        return fingerprint([], [self.fingerprint, caps])

    def check(self, config: ReaderConfig) -> None:
        """A one-line ConfigError when ``config``'s caps (plus the special tokens) exceed the positions."""
        if self.max_positions is None:
            return
        extra = len(self.prefix) + len(self.suffix)
        for flag, cap in (
            ("--max-question-tokens", config.max_question_tokens),
            ("--max-passage-tokens", config.max_passage_tokens),
        ):
            if cap + extra > self.max_positions:
                raise ConfigError(
                    f"{flag} {cap} plus {extra} special tokens exceeds the {self.max_positions} positions of "
                    f"encoder '{self.name}': use at most {self.max_positions - extra}"
                )

    def encode(self, sequences: Sequence[Sequence[int]], batch_size: int = BATCH_SIZE) -> list[Tensor]:
        """The last hidden states [len(ids), E] (fp16, CPU) of every word-piece sequence ``ids``, each
        encoded alone between the backbone's special tokens (which are dropped from the output)."""
        extra = len(self.prefix) + len(self.suffix)
        longest = max((len(s) for s in sequences), default=0)
        if self.max_positions is not None and longest + extra > self.max_positions:
            raise ConfigError(
                f"a sequence of {longest} word pieces plus {extra} special tokens exceeds the "
                f"{self.max_positions} positions of encoder '{self.name}': lower the length caps"
            )
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        out: list[Tensor | None] = [None] * len(sequences)
        device, start = self.device, len(self.prefix)
        with torch.inference_mode(), autocast_context(device):
            for b in range(0, len(order), batch_size):
                chunk = order[b : b + batch_size]
                width = len(sequences[chunk[0]]) + extra
                ids = torch.full((len(chunk), width), self.pad, dtype=torch.long)
                mask = torch.zeros(len(chunk), width, dtype=torch.long)
                for r, i in enumerate(chunk):
                    row = [*self.prefix, *sequences[i], *self.suffix]
                    ids[r, : len(row)] = torch.tensor(row)
                    mask[r, : len(row)] = 1
                hidden = self.model.base_model(input_ids=ids.to(device), attention_mask=mask.to(device))[0]
                self.calls += 1
                for r, i in enumerate(chunk):
                    piece = hidden[r, start : start + len(sequences[i])]
                    out[i] = piece.to(device="cpu", dtype=torch.float16).clone()
        return [t for t in out if t is not None]

    def vectors(
        self, questions: Sequence[Sequence[int]], passages: Sequence[Sequence[Sequence[int]]], key: str
    ) -> list[Vectors]:
        """:class:`Vectors` of every example (its question ids and passages' ids), one encoding pass."""
        flat = [seq for q, ps in zip(questions, passages) for seq in (q, *ps)]
        encoded = iter(self.encode(flat))
        return [Vectors(key, next(encoded), tuple(next(encoded) for _ in ps)) for ps in passages]


def load_encoder(name: str, device: str | torch.device | None = None) -> ContextEncoder:
    """The frozen encoder of backbone ``name`` (an offline alias such as ``minilm``, or a path), on
    ``device`` (default: CUDA when present)."""
    bb = backbones.load_backbone(name, kind="encoder", device="cpu")
    dev = torch.device(device) if device is not None else backbones.default_device()
    return ContextEncoder(bb, device=dev)
