"""Texts before tokenisation: a character cap derived from the token budget.

A text is cut to ``max_tokens * CHARS_PER_TOKEN`` characters before it reaches the tokenizer, which
truncates it to ``max_tokens`` tokens afterwards: a huge line (a 25 MB review) then costs what a
normal one does, instead of being tokenised whole to keep its first tokens. No token of a real
vocabulary spans 32 characters, so the cap never changes which tokens are kept, except for text
whose tokens average more than 32 characters each (e.g. a WordPiece ``[UNK]`` standing for a longer
word), which is cut at the cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["CHARS_PER_TOKEN", "clip_chars", "truncate_tokens"]

#: characters kept per token of room, before tokenising
CHARS_PER_TOKEN = 32


def clip_chars(texts: Sequence[str], max_tokens: int) -> list[str]:
    """``texts``, each cut to ``max_tokens * CHARS_PER_TOKEN`` characters."""
    cap = max(1, int(max_tokens)) * CHARS_PER_TOKEN
    return [t if len(t) <= cap else t[:cap] for t in texts]


def truncate_tokens(tokenizer: Any, texts: Sequence[str], room: int) -> list[str]:
    """``texts``, each cut (as text) to its first ``room`` tokens of ``tokenizer`` (no special tokens).

    A text of fewer than ``room`` tokens comes back unchanged. With a fast tokenizer the cut is at the
    end character of the last kept token (its offset mapping), so the kept text is the original's
    prefix, byte for byte; a slow tokenizer decodes the kept ids. Used to shorten the text alone
    before it is filled into a template, so that truncation never cuts the template.
    """
    room = max(1, int(room))
    if tokenizer.is_fast:
        enc = tokenizer(
            list(texts),
            add_special_tokens=False,
            truncation=True,
            max_length=room,
            return_offsets_mapping=True,
        )
        out = []
        for t, ids, offs in zip(texts, enc["input_ids"], enc["offset_mapping"], strict=True):
            out.append(t if len(ids) < room or not offs else t[: offs[-1][1]])
        return out
    ids_all = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [
        t if len(ids) <= room else str(tokenizer.decode(ids[:room]))
        for t, ids in zip(texts, ids_all, strict=True)
    ]
