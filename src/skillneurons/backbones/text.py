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

__all__ = ["CHARS_PER_TOKEN", "clip_chars"]

#: characters kept per token of room, before tokenising
CHARS_PER_TOKEN = 32


def clip_chars(texts: Sequence[str], max_tokens: int) -> list[str]:
    """``texts``, each cut to ``max_tokens * CHARS_PER_TOKEN`` characters."""
    cap = max(1, int(max_tokens)) * CHARS_PER_TOKEN
    return [t if len(t) <= cap else t[:cap] for t in texts]
