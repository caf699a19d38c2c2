"""The prompt-tuned classifier: frozen backbone + soft prompt + head, with the input layout.

Layouts (REFERENCE.md sections 0-1):

* ``slot_first`` (the skill-neuron paper): ``[slot][p_1 .. p_P][text tokens with specials]``. The
  slot holds the frozen ``<mask>`` word embedding; the label is read at position 0. Needs
  bidirectional attention, so it is for encoders / masked LMs only.
* ``prompt_first`` (PEFT's layout): ``[p_1 .. p_P][text tokens]``. Encoders get a ``<mask>`` slot
  inserted at the end of the text (before its closing special token) and read there; causal LMs
  read at the last text token. In a causal LM the soft tokens then come before the text and cannot
  see it: their activations are the same for every example, so only the read position can hold
  skill neurons.
* ``prompt_last`` (causal LMs): ``[text tokens][p_1 .. p_P]``, read at ``p_P``. The soft tokens come
  after the text (each example's own length: the prompt follows its last real token, padding comes
  after the prompt), so every soft token sees the text, as in ``slot_first`` for encoders. Its P+1
  analysed positions are the last text token and the P soft tokens.

The text is truncated, never the prompt or the slot (first by characters, ``CHARS_PER_TOKEN`` per
token of room, so a huge line is not tokenised whole). Pairs are encoded by the tokenizer as real
pairs (separator and segment ids), never string-concatenated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from skillneurons.backbones import Backbone
from skillneurons.backbones.text import clip_chars, truncate_tokens
from skillneurons.errors import ConfigError, DataError
from skillneurons.prompts.heads import Head
from skillneurons.prompts.soft_prompt import SoftPrompt

Layout = Literal["slot_first", "prompt_first", "prompt_last"]
LAYOUT_ALIASES = {
    "paper": "slot_first",
    "peft": "prompt_first",
    "suffix": "prompt_last",
    "slot_first": "slot_first",
    "prompt_first": "prompt_first",
    "prompt_last": "prompt_last",
}


def position_names(layout: str | None, prompt_length: int) -> list[str]:
    """Names of the P+1 analysed positions of a layout (:meth:`PromptModel.prompt_positions`), as
    ``find`` prints them: ``slot, p1 .. pP`` (slot_first), ``p1 .. pP, read`` (prompt_first: read is
    the last text token or the inserted slot), ``end, p1 .. p(P-1), read`` (prompt_last: ``end`` is
    the last text token, ``read`` the last soft token)."""
    P = prompt_length
    if layout == "prompt_first":
        return [f"p{t + 1}" for t in range(P)] + ["read"]
    if layout == "prompt_last":
        return ["end"] + [f"p{t}" for t in range(1, P)] + ["read"]
    return ["slot"] + [f"p{t}" for t in range(1, P + 1)]


def soft_columns(layout: str | None, prompt_length: int) -> slice:
    """Which of the P+1 analysed positions are the P soft tokens."""
    return slice(0, prompt_length) if layout == "prompt_first" else slice(1, prompt_length + 1)


@dataclass
class Batch:
    """A tokenised batch. Positions in ``read_index`` count the prompt/slot prefix.

    Attributes:
        input_ids: ``[batch, text_len]`` text token ids (right-padded).
        attention_mask: ``[batch, text_len]``.
        token_type_ids: ``[batch, text_len]`` segment ids, or None.
        read_index: ``[batch]`` where the head reads, in the full sequence.
        labels: ``[batch]`` class indices, or None.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None
    read_index: torch.Tensor
    labels: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            mv(self.token_type_ids),
            self.read_index.to(device),
            mv(self.labels),
        )

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


class PromptModel(nn.Module):
    """``logits = head(hidden_at_read(backbone([slot] + prompt + text)))``.

    Only ``prompt`` and ``head`` hold trainable parameters; the backbone is frozen and is not a
    registered submodule (so ``state_dict()``/``parameters()`` are exactly the trainable state).
    """

    def __init__(
        self,
        backbone: Backbone,
        prompt: SoftPrompt,
        head: Head,
        *,
        layout: str = "auto",
        max_length: int = 128,
        template: str | None = None,
    ) -> None:
        super().__init__()
        if prompt.hidden_size != backbone.hidden_size:
            raise ConfigError(
                f"the prompt has width {prompt.hidden_size} but {backbone.name} has hidden size "
                f"{backbone.hidden_size}: "
                "use a prompt trained on this model, or project it across models (skillneurons transfer)"
            )
        if layout == "auto":
            layout = "prompt_first" if backbone.is_causal else "slot_first"
        if layout not in LAYOUT_ALIASES:
            raise ConfigError(
                f"unknown layout '{layout}': use slot_first (paper), prompt_first (peft), prompt_last "
                "(causal LMs) or auto"
            )
        self.layout: Layout = LAYOUT_ALIASES[layout]  # type: ignore[assignment]
        if self.layout == "slot_first" and backbone.is_causal:
            raise ConfigError(
                "layout slot_first reads at position 0, which a causal LM cannot condition on: use --layout "
                "prompt_last or prompt_first"
            )
        if self.layout == "prompt_last" and not backbone.is_causal:
            raise ConfigError(
                "layout prompt_last reads at the last soft token, which only a causal LM predicts from: use "
                "--layout slot_first or prompt_first for an encoder"
            )
        if template is not None and "{text}" not in template:
            raise ConfigError(
                f"template {template!r} has no '{{text}}' placeholder: write e.g. '{{text}} It was'"
            )
        self._backbone = [backbone]  # kept out of the module tree: frozen, never saved with the prompt
        self.prompt = prompt
        self.head = head
        self.template = template
        self.slot_id = self._slot_token_id(backbone)
        self.max_length = int(max_length)
        if self.max_length <= self.prefix_length + 2:
            raise ConfigError(
                f"max_length {self.max_length} leaves no room for text after the {self.prefix_length}-token "
                "prefix: raise --max-length"
            )
        #: tokens of the template filled with an empty text (special tokens included)
        self.template_overhead = (
            len(backbone.tokenizer(template.format(text=""))["input_ids"]) if template is not None else 0
        )
        if template is not None and self._text_room(pair=False) < 4:
            raise ConfigError(
                f"max_length {self.max_length} leaves no room for text after the {self.prefix_length}-token "
                f"prefix and the {self.template_overhead}-token template: raise --max-length"
            )
        self.to(backbone.device)  # prompt and head live where the backbone's embeddings are

    # ---- structure -------------------------------------------------------------------------
    @property
    def backbone(self) -> Backbone:
        return self._backbone[0]

    @property
    def prefix_length(self) -> int:
        """Positions the layout adds to the text: slot + prompt (slot_first) or the prompt (before the
        text in prompt_first, after it in prompt_last)."""
        return self.prompt.length + (1 if self.layout == "slot_first" else 0)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @staticmethod
    def _slot_token_id(backbone: Backbone) -> int | None:
        if backbone.is_causal:
            return None
        tok = backbone.tokenizer
        for cand in (
            tok.mask_token_id,
            tok.convert_tokens_to_ids("<extra_id_0>") if "<extra_id_0>" in tok.get_vocab() else None,
            tok.unk_token_id,
        ):
            if isinstance(cand, int):
                return cand
        raise ConfigError(
            f"{backbone.name}'s tokenizer has no mask or unk token to hold the read slot: use a causal layout"
        )

    # ---- encoding --------------------------------------------------------------------------
    def encode(
        self, texts: Sequence[str], texts_b: Sequence[str] | None = None, labels: Sequence[int] | None = None
    ) -> Batch:
        """Tokenise a batch (right padding, text truncated to fit ``max_length`` with the prefix; each
        text is first cut to ``CHARS_PER_TOKEN`` characters per token of room, see
        :mod:`skillneurons.backbones.text`)."""
        if not len(texts):
            raise DataError("cannot encode an empty batch: the split has no examples")
        tok = self.backbone.tokenizer
        insert_slot = self.layout == "prompt_first" and self.slot_id is not None
        room = self.max_length - self.prefix_length - (1 if insert_slot else 0)
        texts = clip_chars(texts, room)  # a huge line costs what a normal one does (backbones.text)
        if self.template:
            texts = self._fill_template(texts, pair=texts_b is not None)
        enc = tok(
            texts,
            clip_chars(texts_b, room) if texts_b is not None else None,
            truncation="only_second" if self.template and texts_b is not None else True,
            max_length=room,
            padding=True,
            return_tensors="pt",
        )
        ids, mask = enc["input_ids"], enc["attention_mask"]
        tt = enc.get("token_type_ids")
        if tt is not None and getattr(self.backbone.config, "type_vocab_size", 2) < 2:
            tt = None
        lengths = mask.sum(1)
        if (lengths == 0).any():
            raise DataError("an example has no tokens after tokenisation: drop empty texts from the data")
        if insert_slot:
            assert self.slot_id is not None
            ids, mask, tt, slot_pos = _insert_slot(
                ids, mask, tt, lengths, self.slot_id, set(tok.all_special_ids), int(tok.pad_token_id or 0)
            )
            read = slot_pos + self.prefix_length
        elif self.layout == "prompt_first":
            read = lengths - 1 + self.prefix_length
        elif self.layout == "prompt_last":
            read = lengths + self.prompt.length - 1
        else:
            read = torch.zeros_like(lengths)
        lab = torch.as_tensor(list(labels), dtype=torch.long) if labels is not None else None
        return Batch(ids, mask, tt, read, lab)

    def _text_room(self, *, pair: bool) -> int:
        room = (
            self.max_length
            - self.prefix_length
            - (1 if self.layout == "prompt_first" and self.slot_id is not None else 0)
        )
        return (room // 2 if pair else room) - self.template_overhead

    def _fill_template(self, texts: Sequence[str], *, pair: bool) -> list[str]:
        """The texts filled into the template, each cut first so that the filled string fits:
        truncation shortens the text, never the template (whose end is where a causal LM reads). A
        text that fits is unchanged; one that does not is cut to the room the template leaves, less 2
        tokens of slack for merges at its boundaries, and cut again by any tokens the filled string
        still has too many (in a pair task each first text gets half the room, the second the rest)."""
        budget = self._text_room(pair=pair)
        if budget < 4:
            raise ConfigError(
                f"max_length {self.max_length} leaves {max(budget, 0)} tokens for a text after the "
                f"{self.prefix_length}-token prefix and the {self.template_overhead}-token template"
                f"{' (half the room, a pair task)' if pair else ''}: raise --max-length"
            )
        assert self.template is not None
        tok = self.backbone.tokenizer
        limit = budget + self.template_overhead  # tokens of a filled text, special tokens included
        counts = [len(ids) for ids in tok(list(texts), add_special_tokens=False)["input_ids"]]
        keep = {i: budget - 2 for i, n in enumerate(counts) if n > budget}
        cut = list(texts)
        for _attempt in range(4):
            for i, n in keep.items():
                cut[i] = truncate_tokens(tok, [texts[i]], n)[0]
            filled = [self.template.format(text=t) for t in cut]
            lengths = [len(ids) for ids in tok(filled)["input_ids"]]
            over = {i: n - limit for i, n in enumerate(lengths) if n > limit}
            if not over:
                return filled
            for i, extra in over.items():
                keep[i] = min(keep.get(i, counts[i]), counts[i]) - extra
                if keep[i] < 1:
                    raise DataError(
                        f"a text cannot be cut to fit the template {self.template!r} in {limit} tokens: "
                        "raise --max-length"
                    )
        raise DataError(
            f"a text could not be cut to fit the template {self.template!r} in {limit} tokens (its "
            "tokens change when cut): raise --max-length"
        )

    # ---- running ---------------------------------------------------------------------------
    def embed(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """``(inputs_embeds [B, prefix+S, H], attention_mask [B, prefix+S], extra kwargs)``."""
        bb = self.backbone
        emb = bb.input_embeddings
        text = emb(batch.input_ids)
        b = text.shape[0]
        if self.layout == "prompt_last":
            return self._embed_after(batch, text)
        parts = []
        if self.layout == "slot_first":
            assert self.slot_id is not None
            slot = emb(torch.full((b, 1), self.slot_id, device=text.device, dtype=torch.long))
            parts.append(slot)
        parts.append(self.prompt().to(text.dtype).unsqueeze(0).expand(b, -1, -1))
        parts.append(text)
        x = torch.cat(parts, dim=1)
        mask = self.sequence_mask(batch).to(batch.attention_mask.dtype)
        extra: dict[str, Any] = {}
        if batch.token_type_ids is not None:
            zeros = batch.token_type_ids.new_zeros(b, self.prefix_length)
            extra["token_type_ids"] = torch.cat([zeros, batch.token_type_ids], dim=1)
        return x, mask, extra

    def _embed_after(
        self, batch: Batch, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """prompt_last: each row's prompt placed right after its own last text token, by one gather
        from ``[text, prompt]`` (the padding moves behind the prompt)."""
        b, S, H = text.shape
        P = self.prompt.length
        prompt = self.prompt().to(text.dtype).unsqueeze(0).expand(b, -1, -1)
        n = batch.attention_mask.sum(1, keepdim=True)  # [B, 1] real text tokens
        j = torch.arange(S + P, device=text.device).unsqueeze(0)  # [1, S+P]
        index = torch.where(j < n, j, torch.where(j < n + P, S + j - n, j - P))  # [B, S+P]
        x = torch.gather(torch.cat([text, prompt], 1), 1, index.unsqueeze(-1).expand(-1, -1, H))
        mask = self.sequence_mask(batch).to(batch.attention_mask.dtype)
        extra: dict[str, Any] = {}
        if batch.token_type_ids is not None:
            tt = torch.cat(
                [batch.token_type_ids, torch.zeros_like(batch.token_type_ids[:, :1]).expand(-1, P)], 1
            )
            extra["token_type_ids"] = torch.gather(tt, 1, index)
        return x, mask, extra

    def sequence_mask(self, batch: Batch) -> torch.Tensor:
        """``[batch, prefix+seq]`` bool: True at every real position (slot, prompt and text; not
        padding)."""
        if self.layout == "prompt_last":  # each row's text, then its prompt, then the padding
            n = batch.attention_mask.sum(1, keepdim=True)
            j = torch.arange(batch.input_ids.shape[1] + self.prefix_length, device=n.device)
            return j.unsqueeze(0) < n + self.prefix_length
        ones = torch.ones(len(batch), self.prefix_length, dtype=torch.bool, device=batch.input_ids.device)
        return torch.cat([ones, batch.attention_mask.bool()], 1)

    def hidden_states(self, batch: Batch) -> torch.Tensor:
        """Last hidden states ``[batch, prefix+seq, hidden]``."""
        x, mask, extra = self.embed(batch)
        return self.backbone.encoder_forward(x, mask, **extra)

    def read_hidden(self, batch: Batch) -> torch.Tensor:
        """Hidden state at each example's read position, ``[batch, hidden]``."""
        h = self.hidden_states(batch)
        return h[torch.arange(h.shape[0], device=h.device), batch.read_index]

    def forward(self, batch: Batch) -> torch.Tensor:
        """Class logits ``[batch, num_classes]`` (LM head computed at the read position only)."""
        return self.head(self.read_hidden(batch))

    # ---- positions for neuron analysis -----------------------------------------------------
    def prompt_positions(self, batch: Batch) -> torch.Tensor:
        """``[batch, P+1]`` sequence positions analysed as "prompt positions": the read slot and
        the P prompt tokens (slot_first: 0..P; prompt_first: 0..P-1 and the read index; prompt_last:
        the last text token and the P prompt tokens after it, the last of them the read index); named
        by :func:`position_names`."""
        b = len(batch)
        p = self.prompt.length
        dev = batch.input_ids.device
        if self.layout == "slot_first":
            return torch.arange(p + 1, device=dev).unsqueeze(0).expand(b, -1)
        if self.layout == "prompt_last":
            n = batch.attention_mask.sum(1, keepdim=True)
            return n - 1 + torch.arange(p + 1, device=dev).unsqueeze(0)
        return torch.cat(
            [torch.arange(p, device=dev).unsqueeze(0).expand(b, -1), batch.read_index.unsqueeze(1)], 1
        )

    def text_mask(self, batch: Batch) -> torch.Tensor:
        """``[batch, prefix+seq]`` bool: True at real text tokens (not prompt, slot, or padding)."""
        if self.layout == "prompt_last":
            pad = torch.zeros(len(batch), self.prefix_length, dtype=torch.bool, device=batch.input_ids.device)
            return torch.cat([batch.attention_mask.bool(), pad], 1)
        m = torch.cat(
            [
                torch.zeros(len(batch), self.prefix_length, dtype=torch.bool, device=batch.input_ids.device),
                batch.attention_mask.bool(),
            ],
            1,
        )
        if self.layout == "prompt_first" and self.slot_id is not None:
            m[torch.arange(len(batch)), batch.read_index] = False
        return m


def _insert_slot(
    ids: torch.Tensor,
    mask: torch.Tensor,
    tt: torch.Tensor | None,
    lengths: torch.Tensor,
    slot_id: int,
    special: set[int],
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Insert ``slot_id`` before each row's closing special token (or after its last token)."""
    b, s = ids.shape
    last = ids[torch.arange(b), lengths - 1]
    closing = torch.tensor([int(t) in special for t in last.tolist()])
    pos = torch.where(closing, lengths - 1, lengths)
    cols = torch.arange(s + 1).unsqueeze(0)
    src = cols - (cols > pos.unsqueeze(1)).long()  # shift right after the slot
    src = src.clamp(max=s - 1)
    gather = lambda t: torch.gather(t, 1, src)  # noqa: E731
    new_ids = gather(ids)
    new_ids[torch.arange(b), pos] = slot_id
    new_mask = gather(mask)
    new_mask[torch.arange(b), pos] = 1
    valid = cols < (lengths + 1).unsqueeze(1)
    new_mask = new_mask * valid
    new_ids = torch.where(valid, new_ids, ids.new_tensor(pad_id))
    new_tt = None
    if tt is not None:
        new_tt = gather(tt) * valid
    return new_ids, new_mask, new_tt, pos
