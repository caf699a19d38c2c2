"""Label-word expansion by the tool itself: nearest neighbours of each class's seed words in the
model's input-embedding space (cosine), among whole-word tokens only.

A token is a *whole word* when it decodes to an alphabetic word ``w`` (at least ``min_chars``
letters; lower case unless ``lowercase=False``) and ``w`` as it appears inside a sentence
(:meth:`Backbone.token_ids`) is exactly that one token. Special and added tokens are excluded.
Each candidate goes to the class whose query it is closest to (so no word is shared), and each class
keeps its ``k`` best; the seed words stay first (the first is the anchor).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from skillneurons.backbones import Backbone
from skillneurons.errors import ConfigError


def whole_word_vocabulary(
    backbone: Backbone, *, min_chars: int = 3, lowercase: bool = True
) -> tuple[list[int], list[str]]:
    """``(token ids, words)`` of the tokens that are whole alphabetic words (see the module docstring)."""
    tok = backbone.tokenizer
    n = min(len(tok), int(backbone.input_embeddings.weight.shape[0]))
    special = set(tok.all_special_ids) | {int(i) for i in getattr(tok, "added_tokens_decoder", {})}
    ids = [i for i in range(n) if i not in special]
    decoded = tok.batch_decode([[i] for i in ids])
    cand: list[tuple[int, str]] = []
    for i, d in zip(ids, decoded, strict=True):
        w = d.strip()
        if len(w) >= min_chars and w.isalpha() and (not lowercase or w.islower()) and w == d.lstrip():
            cand.append((i, w))
    if not cand:
        return [], []
    prefix = "" if backbone._wordpiece else " "
    enc = tok([prefix + w for _, w in cand], add_special_tokens=False)["input_ids"]
    kept = [(i, w) for (i, w), e in zip(cand, enc, strict=True) if list(e) == [i]]
    return [i for i, _ in kept], [w for _, w in kept]


def _query(backbone: Backbone, words: Sequence[str]) -> torch.Tensor:
    """Unit vector of a class: the mean of its seed words' unit vectors (a word = mean of its pieces)."""
    emb = backbone.input_embeddings.weight.detach()
    vecs = [F.normalize(emb[backbone.token_ids(w)].float().mean(0), dim=0) for w in words]
    return F.normalize(torch.stack(vecs).mean(0), dim=0)


@torch.no_grad()
def nearest_words(
    backbone: Backbone,
    seeds: Sequence[Sequence[str]],
    k: int,
    *,
    min_chars: int = 3,
    lowercase: bool = True,
    chunk: int = 32768,
) -> list[list[tuple[str, float]]]:
    """Per class, up to ``k`` ``(word, cosine)`` neighbours of its seed words, best first.

    The query of a class is the normalised mean of its seeds' unit embeddings; a candidate is given
    to the class it is most similar to; words equal (case-insensitively) to any seed are skipped.
    """
    if k < 0:
        raise ConfigError(f"expansion size {k} is negative: give the number of words to add per class")
    if not seeds or any(not s for s in seeds):
        raise ConfigError(
            "expansion needs at least one seed word per class: give label words for every class"
        )
    ids, words = whole_word_vocabulary(backbone, min_chars=min_chars, lowercase=lowercase)
    if k == 0 or not ids:
        return [[] for _ in seeds]
    q = torch.stack([_query(backbone, s) for s in seeds])  # [C, H]
    emb = backbone.input_embeddings.weight.detach()
    sims = []
    for start in range(0, len(ids), chunk):
        rows = emb[torch.tensor(ids[start : start + chunk], device=emb.device)].float()
        sims.append(F.normalize(rows, dim=-1) @ q.to(rows.device).T)
    sim = torch.cat(sims).cpu()  # [N, C]
    best, owner = sim.max(1)
    taken = {w.casefold() for s in seeds for w in s}
    out: list[list[tuple[str, float]]] = []
    for c in range(len(seeds)):
        mine = torch.nonzero(owner == c).flatten()
        order = mine[torch.argsort(best[mine], descending=True, stable=True)]
        picked: list[tuple[str, float]] = []
        for j in order.tolist():
            w = words[j]
            if w.casefold() in taken:
                continue
            taken.add(w.casefold())
            picked.append((w, float(best[j])))
            if len(picked) == k:
                break
        out.append(picked)
    return out


def expand_label_words(
    backbone: Backbone,
    seeds: Sequence[Sequence[str]],
    k: int,
    *,
    min_chars: int = 3,
    lowercase: bool = True,
) -> list[list[str]]:
    """The seed words of every class followed by up to ``k`` nearest whole-word neighbours
    (see :func:`nearest_words`)."""
    near = nearest_words(backbone, seeds, k, min_chars=min_chars, lowercase=lowercase)
    return [[*dict.fromkeys(s), *(w for w, _ in n)] for s, n in zip(seeds, near, strict=True)]
