"""``read train`` and ``read evaluate`` as library calls: load a reading task, encode it with the frozen
word-piece table or the frozen encoder, train or evaluate a DynSAN reader, write typed results."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch

from skillneurons.artifacts import load_manifest
from skillneurons.backbones.loading import default_device
from skillneurons.errors import ConfigError, DataError
from skillneurons.reading import cloze, metrics
from skillneurons.reading.config import ReaderConfig, ReadTrainConfig
from skillneurons.reading.contextual import ContextEncoder, fingerprint, load_encoder
from skillneurons.reading.data import load_reading_task
from skillneurons.reading.data_config import CLOZE_TASK, ReadDataConfig
from skillneurons.reading.encode import EncodedSplit, encode_examples, load_embeddings
from skillneurons.reading.examples import ReadingExample, WordIndex, tokenize
from skillneurons.reading.gates import GATE_STATISTIC, GateRecorder
from skillneurons.reading.network import Reader
from skillneurons.reading.results import ReadEvaluation, ReadTrainResult
from skillneurons.reading.train import ReaderTrainer, Scored, evaluate_reader, load_reader

__all__ = [
    "evaluate_saved_reader",
    "evaluation_of",
    "most_frequent_entity",
    "train_reader",
    "window_overlap_entity",
]


def _head_for(kind: str) -> Literal["span", "choice"]:
    return "choice" if kind == "choice" else "span"


def evaluation_of(
    split: str, head: str, scored: Scored, encoded: EncodedSplit, seed: int = 0
) -> ReadEvaluation:
    """The typed result of an evaluation (means with 95% bootstrap intervals over the examples)."""
    em_ci, f1_ci = metrics.bootstrap_ci(scored.em, seed=seed), metrics.bootstrap_ci(scored.f1, seed=seed)
    n = len(scored.em)
    return ReadEvaluation(
        split=split,
        head=head,
        n=n,
        em=sum(scored.em) / n,
        em_low=em_ci[0],
        em_high=em_ci[1],
        f1=sum(scored.f1) / n,
        f1_low=f1_ci[0],
        f1_high=f1_ci[1],
        loss=scored.loss,
        skipped=encoded.skipped,
        truncated=encoded.truncated,
        unanswerable=encoded.unanswerable,
    )


def _embeddings(
    reader: ReaderConfig, device: torch.device
) -> tuple[Any, torch.Tensor | int, ContextEncoder | None, str]:
    """``(tokenizer, the table or the encoder's width, the encoder or None, the embeddings key)``; the
    encoder's length limit is checked against the caps before anything is encoded."""
    if reader.embeddings_kind == "encoder":
        encoder = load_encoder(reader.embeddings, device)
        encoder.check(reader)
        return encoder.tokenizer, encoder.width, encoder, encoder.key(reader)
    tokenizer, table = load_embeddings(reader.embeddings)
    return tokenizer, table, None, fingerprint([table])


def train_reader(
    data: ReadDataConfig,
    reader: ReaderConfig,
    train: ReadTrainConfig,
    out: str | Path,
    *,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> tuple[ReadTrainResult, ReadEvaluation]:
    """Train a reader on ``data``'s task into ``out`` (checkpoint, best ``reader.*``, ``history.json``,
    ``train_result.json``) and evaluate the best (EMA) reader on dev: ``dev_result.json``."""
    splits = load_reading_task(data.task, data)
    reader = replace(reader, head=_head_for(splits.kind()))
    dev_ = torch.device(device) if device is not None else default_device()
    tokenizer, table, encoder, key = _embeddings(reader, dev_)
    enc_train = encode_examples(splits.train, tokenizer, reader, encoder=encoder)
    enc_dev = encode_examples(splits.dev, tokenizer, reader, keep_unanswerable=True, encoder=encoder)
    encoder = None  # the vectors are cached on the examples: the encoder is not needed any more
    torch.manual_seed(train.seed)
    model = Reader(reader, table).to(dev_)
    out = Path(out)
    manifest = {
        "task": data.task,
        "data": data.cloze_options(),
        "candidates": data.candidates,
        "embeddings": reader.embeddings,
        "embeddings_kind": reader.embeddings_kind,
        "embeddings_key": key,
    }
    trainer = ReaderTrainer(model, enc_train, enc_dev, train, out, manifest=manifest, progress=progress)
    began = time.perf_counter()
    state = trainer.fit()
    seconds = time.perf_counter() - began
    best, _ = load_reader(out / "reader", table)
    best.to(dev_)
    scored = evaluate_reader(best, enc_dev.examples, train.eval_batch_size, precision=train.precision)
    dev_eval = evaluation_of("dev", reader.head, scored, enc_dev)
    dev_eval.seconds = seconds
    result = ReadTrainResult(
        best_dev_em=state.best,
        best_dev_f1=state.best_f1,
        best_step=state.best_step,
        steps=state.step,
        resumed_from=trainer.resumed_from,
        seconds=seconds,
        n_train=len(enc_train.examples),
        n_dev=len(enc_dev.examples),
        parameters=sum(p.numel() for p in model.parameters()),
        skipped_train=enc_train.skipped,
        skipped_dev=enc_dev.skipped,
        stopped_by_time=trainer.stopped_by_time,
        history=state.history,
    )
    result.save(out / "train_result.json")
    dev_eval.save(out / "dev_result.json")
    return result, dev_eval


def evaluate_saved_reader(
    path: str | Path,
    data: ReadDataConfig,
    split: str = "dev",
    *,
    gates: bool = False,
    batch_size: int = 32,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> ReadEvaluation:
    """EM / F1 (or accuracy) of the reader saved at ``path`` on ``split`` of ``data``'s task; with
    ``gates``, each head's gate AUROC for answer tokens (the answer occurrences, or the answer
    candidate's mentions)."""
    man = load_manifest(path, kind="reader")
    trained_with = man.get("candidates")
    if data.task.strip() == CLOZE_TASK and trained_with is not None and trained_with != data.candidates:
        raise ConfigError(
            f"{path} was trained with --candidates {trained_with}: evaluate it on {CLOZE_TASK} with "
            f"--candidates {trained_with}"
        )
    name = man.get("embeddings") or man.get("reader", {}).get("embeddings")
    if not name:
        raise DataError(f"{path} does not name its embeddings: re-create it with `read train`")
    dev_ = torch.device(device) if device is not None else default_device()
    kind = man.get("embeddings_kind") or man.get("reader", {}).get("embeddings_kind", "table")
    try:
        settings = ReaderConfig(**{**man.get("reader", {}), "embeddings": name, "embeddings_kind": kind})
    except TypeError as e:
        raise DataError(f"{path} has no valid reader settings ({e}): re-create it with `read train`") from e
    tokenizer, table, encoder, key = _embeddings(settings, dev_)
    recorded = man.get("embeddings_key")
    if recorded is not None and recorded != key:
        raise ConfigError(
            f"{path} was trained on {kind} embeddings of '{name}' with key {recorded}, but '{name}' now "
            f"gives {key} (another model, or other length caps): evaluate with the embeddings it was "
            "trained on, or re-train it"
        )
    model, _ = load_reader(path, table)
    model.to(dev_)
    splits = load_reading_task(data.task, data)
    if _head_for(splits.kind()) != model.config.head:
        raise ConfigError(
            f"the reader has a {model.config.head} head but task '{data.task}' is {splits.kind()}"
        )
    encoded = encode_examples(
        splits.split(split), tokenizer, model.config, keep_unanswerable=True, encoder=encoder
    )
    encoder = None
    recorder = GateRecorder(model) if gates else None
    began = time.perf_counter()
    try:
        scored = evaluate_reader(model, encoded.examples, batch_size, on_batch=recorder, progress=progress)
    finally:
        if recorder is not None:
            recorder.close()
    result = evaluation_of(split, model.config.head, scored, encoded)
    result.seconds = time.perf_counter() - began
    if recorder is not None:
        result.gates = recorder.result()
        result.gate_statistic = f"{GATE_STATISTIC}; error bound {recorder.error_bound():.2g}"
    return result


def most_frequent_entity(examples: Sequence[ReadingExample], seed: int = 0) -> dict[str, Any]:
    """The most-frequent-candidate baseline of a cloze task: the candidates are the passages' entities
    by the cloze construction's own rule (:func:`~skillneurons.reading.cloze.entity_candidates`, its
    name statistics taken from these passages), minus those in the question; the answer is the most
    frequent one. EM / F1 with 95% bootstrap intervals."""
    if not examples:
        raise DataError("no examples for the baseline")
    guesses = [cands[0] if cands else "" for cands in cloze.entity_candidates(examples)]
    return _scored_guesses(examples, guesses, seed)


def window_overlap_entity(
    examples: Sequence[ReadingExample], window: int = 10, seed: int = 0
) -> dict[str, Any]:
    """A word-distance baseline (after Hermann et al. 2015): each of the passages' entity candidates
    (:func:`~skillneurons.reading.cloze.entity_candidates`) scores, over its mentions, 1 plus the number
    of distinct question words (SQuAD-normalised; stop-words and the placeholder left out) within
    ``window`` words either side of the mention; the best-scoring candidate is the guess (ties: the
    more frequent). What lexical context alone gives beyond frequency. EM / F1 with 95% intervals."""
    if not examples:
        raise DataError("no examples for the baseline")
    if window < 1:
        raise ConfigError(f"window {window} must be >= 1")
    guesses = []
    for ex, cands in zip(examples, cloze.entity_candidates(examples)):
        asked = {t for t in _norm(ex.question) if t not in cloze.STOP_WORDS and t != "placeholder"}
        indexes = [WordIndex(tokenize(p)) for p in ex.passages]
        best, best_score = "", 0
        for cand in cands:  # most frequent first: a later one must score strictly more
            score = 0
            for idx in indexes:
                starts, m = idx.positions(tokenize(cand))
                for j in starts:
                    near = set(idx.norm[max(0, j - window) : j]) | set(idx.norm[j + m : j + m + window])
                    score += 1 + len(near & asked)
            if score > best_score:
                best, best_score = cand, score
        guesses.append(best)
    return _scored_guesses(examples, guesses, seed)


def _norm(text: str) -> list[str]:
    """The SQuAD-normalised words of ``text``, the empty ones (punctuation, articles) left out."""
    return [w for w in (metrics.normalize_token(t) for t in tokenize(text)) if w]


def _scored_guesses(examples: Sequence[ReadingExample], guesses: Sequence[str], seed: int) -> dict[str, Any]:
    em = [metrics.exact_match(g, ex.answers) for g, ex in zip(guesses, examples)]
    f1 = [metrics.f1(g, ex.answers) for g, ex in zip(guesses, examples)]
    return {
        "n": len(em),
        "em": sum(em) / len(em),
        "em_ci": list(metrics.bootstrap_ci(em, seed=seed)),
        "f1": sum(f1) / len(f1),
        "f1_ci": list(metrics.bootstrap_ci(f1, seed=seed)),
    }
