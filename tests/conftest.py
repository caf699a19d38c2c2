"""Shared fixtures: tiny random backbones of every family and a small separable task."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

from skillneurons.testing import FAMILIES, tiny_model  # noqa: E402

ALL_FAMILIES = sorted(FAMILIES)
LM_FAMILIES = [f for f in ALL_FAMILIES if f != "t5"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT saved as a Hugging Face folder (for commands that take a model path)."""
    d = tmp_path_factory.mktemp("tiny-bert")
    bb = tiny_model("bert")
    bb.model.save_pretrained(d)
    bb.tokenizer.save_pretrained(d)
    return d


@pytest.fixture(params=ALL_FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def separable_task(n: int = 48, seed: int = 0, pair: bool = False):  # type: ignore[no-untyped-def]
    """A sentiment-like task whose label is decided by which words occur (linearly separable)."""
    from skillneurons.data import Task

    g = torch.Generator().manual_seed(seed)
    pos, neg, filler = (
        ["good", "great", "love", "best"],
        ["bad", "awful", "hate", "worst"],
        ["the", "movie", "plot", "was", "it"],
    )
    texts, labels = [], []
    for i in range(n):
        y = i % 2
        words = [filler[int(j)] for j in torch.randint(len(filler), (4,), generator=g)]
        cue = (pos if y else neg)[int(torch.randint(4, (1,), generator=g))]
        words.insert(int(torch.randint(5, (1,), generator=g)), cue)
        texts.append(" ".join(words))
        labels.append(y)
    texts_b = tuple("it was " + t.split()[0] for t in texts) if pair else None
    return Task(
        name="tiny-sentiment",
        texts=tuple(texts),
        labels=tuple(labels),
        label_names=("negative", "positive"),
        label_words=(("negative", "bad"), ("positive", "good")),
        texts_b=texts_b,
        source="tests",
    )


__all__ = ["ALL_FAMILIES", "LM_FAMILIES", "separable_task", "tiny_model"]


def tiny_reader_config(**kw):  # type: ignore[no-untyped-def]
    """A DynSAN ``ReaderConfig`` of test size (D 16, 2 heads, K 8, one block, 3 passages of <= 12
    word pieces), with ``kw`` overriding any field."""
    from skillneurons.reading.config import ReaderConfig

    base = {"dim": 16, "heads": 2, "top_k": 8, "blocks": 1, "passages": 3, "max_passage_tokens": 12}
    return ReaderConfig(**{**base, **kw})
