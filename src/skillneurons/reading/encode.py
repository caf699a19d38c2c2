"""Reading examples as word-piece tensors for the reader, with the frozen table of a backbone, or with
its frozen encoder's vectors (``embeddings_kind = "encoder"``: :mod:`skillneurons.reading.contextual`,
computed here once per question and passage and kept on the examples).

Each question and each of its top ``ReaderConfig.passages`` passages are cut into the backbone's word
pieces (no special tokens). Answer occurrences are found on words (``reading.examples.find_answer_spans``,
SQuAD-normalised) and mapped to word pieces through the character offsets. An example that cannot be
read is skipped and counted by reason (``EncodedSplit.skipped``); a question or passage over its length
cap is truncated (the default) or, with ``truncate=False``, its example is skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

import skillneurons.backbones as backbones  # lazy: loads the model library only when called
from skillneurons.errors import ConfigError, DataError
from skillneurons.reading.config import ReaderConfig
from skillneurons.reading.contextual import ContextEncoder, Vectors
from skillneurons.reading.examples import ReadingExample, WordIndex, tokenize
from skillneurons.reading.metrics import normalize_answer
from skillneurons.reading.network import ReadBatch

__all__ = ["EncodedExample", "EncodedSplit", "collate", "encode_examples", "load_embeddings", "span_text"]

Span = tuple[int, int, int]  # (passage, first piece, last piece), inclusive


@dataclass
class EncodedExample:
    id: str
    question: list[int]
    passages: list[list[int]]
    offsets: list[list[tuple[int, int]]]  # the character span of every piece in its passage
    texts: tuple[str, ...]
    answers: tuple[str, ...]
    spans: list[Span] = field(default_factory=list)  # span head: every answer occurrence
    candidates: tuple[str, ...] = ()
    mentions: list[list[Span]] = field(default_factory=list)  # choice head: per candidate
    label: int = -1  # choice head: the index of the answer among the candidates (-1: none is)
    vectors: Vectors | None = None  # encoder embeddings: the cached encoder vectors

    def answerable(self, head: str) -> bool:
        """Whether a reader of these (read, truncated) passages can answer: an answer occurrence
        (span head), or the answer among the candidates and mentioned (choice head)."""
        return bool(self.spans) if head == "span" else self.label >= 0

    @property
    def length(self) -> int:
        """Word pieces of all passages together (the concatenated length L)."""
        return sum(map(len, self.passages))


@dataclass
class EncodedSplit:
    examples: list[EncodedExample]
    skipped: dict[str, int]  # reason -> count
    truncated: int = 0  # questions and passages cut to their cap
    unanswerable: int = 0  # kept for evaluation with no answer occurrence in the read passages


def load_embeddings(name: str) -> tuple[Any, Tensor]:
    """``(tokenizer, table [V, E])``: the tokenizer and the frozen input-embedding table of backbone
    ``name`` (an offline alias such as ``minilm``, or a path); the model itself is dropped."""
    bb = backbones.load_backbone(name, kind="encoder", device="cpu")
    if not getattr(bb.tokenizer, "is_fast", False):
        raise DataError(f"backbone '{name}' has no fast tokenizer (character offsets are needed)")
    return bb.tokenizer, bb.input_embeddings.weight.detach().float().clone()


class _Words:
    """One passage's words, their character starts and their :class:`WordIndex`: built once per
    passage, searched for every answer alias and candidate."""

    def __init__(self, text: str) -> None:
        self.words = tokenize(text)
        self.starts, pos = [], 0
        for w in self.words:
            pos = text.index(w, pos)
            self.starts.append(pos)
            pos += len(w)
        self.index = WordIndex(self.words)

    def char_spans(self, answer: str) -> list[tuple[int, int]]:
        """Character spans ``[start, end)`` of every word-aligned occurrence of ``answer``."""
        return [
            (self.starts[s], self.starts[e] + len(self.words[e]))
            for s, e in self.index.spans(tokenize(answer))
        ]


def _to_pieces(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    inside = [i for i, (a, b) in enumerate(offsets) if b > start and a < end]
    return (inside[0], inside[-1]) if inside else None


def _find(words: Sequence[_Words], offsets: list[list[tuple[int, int]]], texts: Sequence[str]) -> list[Span]:
    """Word-piece spans of every occurrence of any of ``texts`` in the (truncated) passages."""
    found: set[Span] = set()
    for p, (pw, offs) in enumerate(zip(words, offsets)):
        for t in texts:
            for cs, ce in pw.char_spans(t):
                pieces = _to_pieces(offs, cs, ce)
                if pieces is not None and offs[-1][1] >= ce:  # not cut off by the truncation
                    found.add((p, *pieces))
    return sorted(found)


def _pieces(tokenizer: Any, texts: list[str], cap: int, truncate: bool) -> tuple[list[Any], int] | None:
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    out, cut = [], 0
    for ids, offs in zip(enc["input_ids"], enc["offset_mapping"]):
        if len(ids) > cap:
            if not truncate:
                return None
            ids, offs, cut = ids[:cap], offs[:cap], cut + 1
        out.append((list(ids), [tuple(o) for o in offs]))
    return out, cut


def _encode_one(
    ex: ReadingExample, tokenizer: Any, c: ReaderConfig, keep_unanswerable: bool = False
) -> str | tuple[EncodedExample, int]:
    """The encoded example and its truncation count, or the reason it is skipped."""
    if not ex.question.strip():
        return "empty question"
    texts = [p for p in ex.passages if p.strip()][: c.passages]
    if not texts:
        return "no passages"
    if not ex.answers:
        return "no answer"
    q = _pieces(tokenizer, [ex.question], c.max_question_tokens, c.truncate)
    ps = _pieces(tokenizer, texts, c.max_passage_tokens, c.truncate)
    if q is None or ps is None:
        return "over the length cap (truncation off)"
    if not q[0][0][0]:
        return "empty question"
    out = EncodedExample(
        ex.id, q[0][0][0], [x[0] for x in ps[0]], [x[1] for x in ps[0]], tuple(texts), ex.answers
    )
    cut = q[1] + ps[1]
    passages = [p for p in out.passages if p]
    if len(passages) < len(out.passages):
        return "a passage with no word pieces"
    words = [_Words(t) for t in texts]
    if c.head == "span":
        out.spans = [s for s in _find(words, out.offsets, ex.answers) if s[2] - s[1] < c.max_answer_tokens]
        if not out.spans and not keep_unanswerable:
            return "answer not in the (truncated) passages"
        return out, cut
    out.candidates = ex.candidates
    out.mentions = [_find(words, out.offsets, [cand]) for cand in ex.candidates]
    gold = normalize_answer(ex.answers[0])
    hits = [i for i, cand in enumerate(ex.candidates) if normalize_answer(cand) == gold]
    problem = (
        "no candidates (choice head)"
        if not ex.candidates
        else "answer not among the candidates"
        if not hits
        else "answer candidate never mentioned in the (truncated) passages"
        if not out.mentions[hits[0]]
        else None
    )
    if problem is None:
        out.label = hits[0]
    elif not keep_unanswerable:
        return problem
    return out, cut  # label -1 when kept unanswerable: it scores 0


def encode_examples(
    examples: Sequence[ReadingExample],
    tokenizer: Any,
    config: ReaderConfig,
    *,
    keep_unanswerable: bool = False,
    encoder: ContextEncoder | None = None,
) -> EncodedSplit:
    """Encode ``examples``; the unreadable ones are skipped and counted by reason. With
    ``keep_unanswerable`` (evaluation), an extractive example whose answer is not in the passages the
    reader reads (fewer passages than the task's, truncation) is kept with no span, and a multiple-choice
    example whose answer is not among its candidates or not mentioned in those passages is kept with
    label -1: it scores 0, as it would for any reader of those passages, and is counted in
    ``EncodedSplit.unanswerable``. With
    ``config.embeddings_kind == "encoder"``, ``encoder`` (whose tokenizer ``tokenizer`` must be)
    encodes every kept question and passage once, in batches, into ``EncodedExample.vectors``."""
    if config.embeddings_kind == "encoder":
        _check_encoder(tokenizer, encoder, config)
    kept: list[EncodedExample] = []
    skipped: Counter[str] = Counter()
    truncated = 0
    for ex in examples:
        res = _encode_one(ex, tokenizer, config, keep_unanswerable)
        if isinstance(res, str):
            skipped[res] += 1
            continue
        assert isinstance(res, tuple)
        kept.append(res[0])
        truncated += res[1]
    if encoder is not None and config.embeddings_kind == "encoder" and kept:
        vectors = encoder.vectors([e.question for e in kept], [e.passages for e in kept], encoder.key(config))
        for e, v in zip(kept, vectors):
            e.vectors = v
    unanswerable = sum(1 for e in kept if not e.answerable(config.head))
    return EncodedSplit(kept, dict(sorted(skipped.items())), truncated, unanswerable)


def _check_encoder(tokenizer: Any, encoder: ContextEncoder | None, config: ReaderConfig) -> None:
    if encoder is None:
        raise ConfigError(
            "--embeddings-kind encoder needs the encoder: pass encoder=load_encoder(config.embeddings)"
        )
    if tokenizer is not encoder.tokenizer and tokenizer.get_vocab() != encoder.tokenizer.get_vocab():
        raise ConfigError(f"the tokenizer is not the one of encoder '{encoder.name}': use encoder.tokenizer")
    encoder.check(config)


def _collate_vectors(batch: Sequence[EncodedExample], out: ReadBatch) -> None:
    """The cached vectors as ``[B, Lq, E]`` and ``[B, P, Lp, E]`` fp16 tensors, zero on padding."""
    first = batch[0].vectors
    if first is None or any(e.vectors is None or e.vectors.key != first.key for e in batch):
        raise DataError(
            "a batch mixes examples with and without encoder vectors, or of different encoders: "
            "encode every split with the same encoder and caps"
        )
    b, lq = out.question.shape
    _, np_, lp = out.passages.shape
    width = first.question.shape[-1]
    qv = torch.zeros(b, lq, width, dtype=torch.float16)
    pv = torch.zeros(b, np_, lp, width, dtype=torch.float16)
    for i, e in enumerate(batch):
        assert e.vectors is not None
        qv[i, : len(e.question)] = e.vectors.question
        for j, v in enumerate(e.vectors.passages):
            pv[i, j, : v.shape[0]] = v
    out.question_vectors, out.passage_vectors, out.vectors_key = qv, pv, first.key


def collate(batch: Sequence[EncodedExample], head: str) -> ReadBatch:
    """Pad a batch: ``[B, Lq]`` questions, ``[B, P, Lp]`` passages (P, Lp: the batch's largest); spans and
    mentions index the concatenated ``P * Lp`` tokens. Examples with encoder vectors also give
    ``[B, Lq, E]`` / ``[B, P, Lp, E]`` fp16 vectors (zero on padding)."""
    if not batch:
        raise DataError("an empty batch: nothing to read")
    b = len(batch)
    lq = max(len(e.question) for e in batch)
    np_ = max(len(e.passages) for e in batch)
    lp = max(len(p) for e in batch for p in e.passages)
    q = torch.zeros(b, lq, dtype=torch.long)
    qm = torch.zeros(b, lq, dtype=torch.bool)
    ps = torch.zeros(b, np_, lp, dtype=torch.long)
    pm = torch.zeros(b, np_, lp, dtype=torch.bool)
    for i, e in enumerate(batch):
        q[i, : len(e.question)] = torch.tensor(e.question)
        qm[i, : len(e.question)] = True
        for j, p in enumerate(e.passages):
            ps[i, j, : len(p)] = torch.tensor(p)
            pm[i, j, : len(p)] = True
    out = ReadBatch(q, qm, ps, pm)
    if any(e.vectors is not None for e in batch):
        _collate_vectors(batch, out)
    if head == "span":
        s_max = max(1, max(len(e.spans) for e in batch))
        spans = torch.full((b, s_max, 2), -1, dtype=torch.long)
        for i, e in enumerate(batch):
            for k, (pi, s, t) in enumerate(e.spans):
                spans[i, k] = torch.tensor([pi * lp + s, pi * lp + t])
        out.spans = spans
    else:
        c_max = max(1, max(len(e.candidates) for e in batch))
        mentions = torch.zeros(b, c_max, np_ * lp, dtype=torch.bool)
        for i, e in enumerate(batch):
            for k, ms in enumerate(e.mentions):
                for pi, s, t in ms:
                    mentions[i, k, pi * lp + s : pi * lp + t + 1] = True
        out.mentions, out.label = mentions, torch.tensor([e.label for e in batch])
    return out


def span_text(example: EncodedExample, start: int, end: int, passage_len: int) -> str:
    """The passage text of the predicted concatenated-token span ``[start, end]`` (padded width
    ``passage_len`` per passage)."""
    p, s = divmod(start, passage_len)
    e = end - p * passage_len
    offs = example.offsets[p]
    if not 0 <= s <= e < len(offs):
        return ""
    return example.texts[p][offs[s][0] : offs[e][1]]
