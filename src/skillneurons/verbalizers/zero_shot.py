"""Zero-shot classification with a verbalizer and a hand-written template, no soft prompt.

A soft prompt has at least one vector, so zero-shot reading does not go through
:class:`~skillneurons.prompts.PromptModel`: :class:`TemplateReader` fills a text template and reads
the backbone's last hidden state at the verbalizer position - the ``{mask}`` slot of a masked LM,
the last token of a causal LM (the template ends where the label word would follow). Only the text
is truncated, never the template.

:func:`zero_shot_evaluate` is the whole run (what ``skillneurons kpt-evaluate`` does): split the
task, take ~200 unlabelled training texts as contexts, build the single-word or knowledgeable
verbalizer, refine and calibrate it on the contexts, and measure accuracy on held-out examples.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from skillneurons.artifacts import atomic_write_json
from skillneurons.backbones import Backbone, load_backbone
from skillneurons.backbones.text import clip_chars, truncate_tokens
from skillneurons.data import Task, load_task, stratified_sample
from skillneurons.errors import ConfigError, DataError
from skillneurons.prompts.model import PromptModel
from skillneurons.verbalizers.config import KPTEvalConfig
from skillneurons.verbalizers.expand import expand_label_words
from skillneurons.verbalizers.kpt import KnowledgeableHead
from skillneurons.verbalizers.words import WordSource, base_label_words, check_kpt_words

log = logging.getLogger(__name__)

#: default templates: masked LMs read the {mask} slot, causal LMs the token after the template
DEFAULT_TEMPLATES = {"masked_lm": "{text} It was {mask}.", "causal_lm": "{text} It was"}


class TemplateReader:
    """Read the verbalizer-position hidden state of texts filled into a template.

    Args:
        backbone: a masked or causal LM.
        template: with ``{text}`` (and ``{text_b}`` for pair tasks); masked LMs need one ``{mask}``,
            causal LMs read the last token (a trailing ``{mask}`` is dropped, any other is refused).
            Default: :data:`DEFAULT_TEMPLATES`.
        max_length: tokens per example; the text (each text of a pair: half the room) is cut to fit.
    """

    def __init__(self, backbone: Backbone, template: str | None = None, max_length: int = 128) -> None:
        if backbone.kind not in DEFAULT_TEMPLATES:
            raise ConfigError(
                f"{backbone.name} has no MLM/LM head, so it cannot fill a template: load a masked or "
                "causal LM"
            )
        self.backbone = backbone
        tok = backbone.tokenizer
        t = template or DEFAULT_TEMPLATES[backbone.kind]
        if "{text}" not in t:
            raise ConfigError(
                f"template {t!r} has no '{{text}}' placeholder: write e.g. '{{text}} It was {{mask}}.'"
            )
        if backbone.is_causal:
            stripped = t.rstrip()
            if stripped.endswith("{mask}"):
                stripped = stripped[: -len("{mask}")].rstrip()
            if "{mask}" in stripped:
                raise ConfigError(
                    f"template {t!r} puts {{mask}} inside the text, but a causal LM only predicts the "
                    "next word: "
                    "end the template where the label word goes, e.g. '{text} It was'"
                )
            t = stripped
            self.mask_token = ""
        else:
            if t.count("{mask}") != 1 or tok.mask_token is None:
                raise ConfigError(
                    f"template {t!r} needs exactly one {{mask}} for the masked LM {backbone.name}, e.g. "
                    f"'{{text}} It was {{mask}}.'"
                )
            self.mask_token = str(tok.mask_token)
        try:
            t.format(text="", text_b="", mask="")
        except (KeyError, IndexError, ValueError):
            raise ConfigError(
                f"template {t!r} has an unknown placeholder: use {{text}}, {{text_b}}, {{mask}} (write "
                f"literal braces as {{{{ }}}})"
            ) from None
        self.template = t
        self.pair = "{text_b}" in t
        self.mask_after_text = "{mask}" in t and t.index("{mask}") > t.index("{text}")
        self.max_length = int(max_length)
        overhead = len(tok(self._fill("", "" if self.pair else None))["input_ids"])
        self.room = self.max_length - overhead - 2  # 2 tokens of slack for merges at the boundaries
        if self.room < 2:
            raise ConfigError(
                f"max_length {self.max_length} leaves no room for text after the {overhead}-token "
                "template: raise --max-length"
            )

    def _fill(self, text: str, text_b: str | None) -> str:
        return self.template.format(text=text, text_b=text_b or "", mask=self.mask_token)

    def encode(
        self, texts: Sequence[str], texts_b: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input_ids [B, S], attention_mask [B, S], read_index [B])`` (right padding)."""
        if not len(texts):
            raise DataError("cannot encode an empty batch: the split has no examples")
        if texts_b is not None and not self.pair:
            raise ConfigError(
                f"this is a pair task but template {self.template!r} has no {{text_b}}: write e.g. "
                f"'{{text}} ? {{mask}}, {{text_b}}'"
            )
        if self.pair and texts_b is None:
            raise ConfigError(
                f"template {self.template!r} uses {{text_b}} but the task has single texts: drop it"
            )
        tok = self.backbone.tokenizer
        room = self.room // 2 if texts_b is not None else self.room
        a = truncate_tokens(
            tok, clip_chars(texts, room), room
        )  # by characters first: skillneurons.backbones.text
        b = truncate_tokens(tok, clip_chars(texts_b, room), room) if texts_b is not None else [None] * len(a)
        filled = [self._fill(x, y) for x, y in zip(a, b, strict=True)]
        enc = tok(filled, padding=True, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        lengths = mask.sum(1)
        if self.backbone.is_causal:
            read = lengths - 1
        else:
            hits = ids == tok.mask_token_id
            if not bool(hits.any(1).all()):
                raise DataError("an example lost its mask slot when tokenised: check the template")
            pos = torch.arange(ids.shape[1]).expand_as(ids)
            read = (
                torch.where(hits, pos, -1).amax(1)
                if self.mask_after_text
                else torch.where(hits, pos, ids.shape[1]).amin(1)
            )
        return ids, mask, read

    def read_hidden(self, texts: Sequence[str], texts_b: Sequence[str] | None = None) -> torch.Tensor:
        """``[B, H]`` last hidden state at each example's read position."""
        ids, mask, read = self.encode(texts, texts_b)
        bb = self.backbone
        dev = bb.device
        ids, mask, read = ids.to(dev), mask.to(dev), read.to(dev)
        h = bb.encoder_forward(bb.input_embeddings(ids), mask)
        return h[torch.arange(h.shape[0], device=dev), read]

    @torch.inference_mode()
    def hidden_batches(
        self, task: Task, batch_size: int = 16, *, progress: bool = False, desc: str = "read"
    ) -> Iterator[torch.Tensor]:
        """Read states of every example of ``task`` (labels unused), ``[b, H]`` per batch."""
        bar = tqdm(total=len(task), desc=desc, disable=not progress, leave=False, unit="ex")
        for i in range(0, len(task), batch_size):
            j = min(i + batch_size, len(task))
            tb = task.texts_b[i:j] if task.texts_b is not None else None
            yield self.read_hidden(task.texts[i:j], tb)
            bar.update(j - i)
        bar.close()


@torch.inference_mode()
def prompt_hidden_batches(model: PromptModel, task: Task, batch_size: int = 16) -> Iterator[torch.Tensor]:
    """Read states of ``task``'s examples through a prompt model (for refining a head used in tuning)."""
    for i in range(0, len(task), batch_size):
        j = min(i + batch_size, len(task))
        tb = list(task.texts_b[i:j]) if task.texts_b is not None else None
        yield model.read_hidden(model.encode(list(task.texts[i:j]), tb).to(model.backbone.device))


def read_states(
    reader: TemplateReader, task: Task, batch_size: int = 16, *, progress: bool = False, desc: str = "read"
) -> torch.Tensor:
    """All read states of ``task``, ``[N, H]`` (on the backbone's device)."""
    return torch.cat(list(reader.hidden_batches(task, batch_size, progress=progress, desc=desc)))


# ---- data -----------------------------------------------------------------------------------------
def unlabelled_contexts(task: Task, n: int = 200, seed: int = 0) -> Task:
    """``n`` examples of ``task`` in a seeded random order (their labels are never read)."""
    order = np.random.default_rng(seed).permutation(len(task))[: max(1, int(n))]
    return task.subset(order.tolist())


def zero_shot_parts(
    task: Task,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    max_examples: int | None = None,
    prior_examples: int = 200,
) -> tuple[Task, Task]:
    """``(contexts, test)``: a seeded stratified split of ``task`` into an unlabelled part (whose first
    ``prior_examples`` texts, in a seeded random order, are the contexts; labels are never used) and
    a test part (a stratified subsample of ``max_examples`` when given). The two never overlap."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test fraction {test_fraction} must be in (0, 1)")
    splits = task.split(seed, fractions=(1.0 - test_fraction, 0.0, test_fraction))
    test = splits.part("test")
    rng = np.random.default_rng(seed)
    if max_examples is not None and max_examples < len(test):
        test = test.subset(stratified_sample(test.labels, int(max_examples), rng).tolist())
    return unlabelled_contexts(splits.part("train"), prior_examples, seed), test


# ---- verbalizers ----------------------------------------------------------------------------------
def verbalizer_words(
    backbone: Backbone,
    task: Task,
    *,
    verbalizer: str = "kpt",
    words: WordSource | None = None,
    expand: int = 0,
) -> list[list[str]]:
    """Label words per class: from ``words`` (file, mapping, lists) or the task's label words, plus
    ``expand`` embedding neighbours per class for ``kpt``; ``single`` keeps each class's first word."""
    if verbalizer not in ("single", "kpt"):
        raise ConfigError(f"unknown verbalizer '{verbalizer}': use single or kpt")
    base = base_label_words(words, task.label_names, task.label_words)
    if verbalizer == "single":
        return [[ws[0]] for ws in base]
    return expand_label_words(backbone, base, expand) if expand else base


def build_kpt_head(
    backbone: Backbone,
    label_words: Sequence[Sequence[str]],
    contexts: Task | None = None,
    *,
    template: str | None = None,
    max_length: int = 128,
    batch_size: int = 16,
    multi_token: str = "first",
    calibrate: bool = True,
    aggregate: str = "mean",
    refine: bool = True,
    cutoff: float = 0.5,
    scope: str = "vocab",
    drop_shared: bool = True,
    relevance: bool = False,
    progress: bool = False,
) -> KnowledgeableHead:
    """A knowledgeable verbalizer head, refined and calibrated on unlabelled ``contexts`` read through
    ``template`` (no prompt). Without contexts it is unrefined and uncalibrated (``calibrate`` is
    then refused). ``refine=False`` only sets the prior (the single-word baseline)."""
    head = KnowledgeableHead(
        backbone, label_words, multi_token=multi_token, calibrate=calibrate, aggregate=aggregate
    )
    if contexts is None:
        if calibrate:
            raise ConfigError("calibration needs unlabelled contexts: pass some texts, or calibrate=False")
        return head
    reader = TemplateReader(backbone, template, max_length)
    stats = head.context_stats(
        reader.hidden_batches(contexts, batch_size, progress=progress, desc="contexts")
    )
    if refine:
        head.refine(stats, cutoff=cutoff, scope=scope, drop_shared=drop_shared, relevance=relevance)
    else:
        head.set_prior(stats)
    return head


def refine_in_prompt_model(
    model: PromptModel,
    contexts: Task,
    *,
    batch_size: int = 16,
    cutoff: float = 0.5,
    scope: str = "vocab",
    drop_shared: bool = True,
    relevance: bool = False,
) -> dict[str, Any]:
    """Refine (and set the prior of) the :class:`KnowledgeableHead` of a prompt model on unlabelled
    ``contexts`` read through the model as it is now (its initial prompt, before tuning). Call it
    before building the :class:`~skillneurons.training.Trainer`: refinement replaces the head's word
    weights. Returns the refinement report."""
    head = model.head
    if not isinstance(head, KnowledgeableHead):
        raise ConfigError(
            f"the prompt model's head is '{head.kind}', not kpt: build it with a KnowledgeableHead"
        )
    stats = head.context_stats(prompt_hidden_batches(model, contexts, batch_size))
    return head.refine(stats, cutoff=cutoff, scope=scope, drop_shared=drop_shared, relevance=relevance)


@torch.inference_mode()
def head_accuracy(
    head: KnowledgeableHead, hidden: torch.Tensor, labels: Sequence[int], batch_size: int = 256
) -> dict[str, Any]:
    """Accuracy of ``head`` on read states ``hidden [N, H]``, with the share of predictions per class
    (a badly calibrated verbalizer predicts one class for most inputs)."""
    preds = torch.cat(
        [head(hidden[i : i + batch_size]).argmax(-1).cpu() for i in range(0, len(hidden), batch_size)]
    )
    y = torch.as_tensor(list(labels))
    share = torch.bincount(preds, minlength=head.num_classes).float() / len(y)
    recall = [
        float((preds[y == c] == c).float().mean()) if bool((y == c).any()) else None
        for c in range(head.num_classes)
    ]
    return {
        "accuracy": float((preds == y).float().mean()),
        "n": len(y),
        "predicted_share": share.tolist(),
        "recall": recall,
    }


def zero_shot_evaluate(
    model: str | Backbone,
    task: str | Task,
    config: KPTEvalConfig | None = None,
    *,
    contexts_task: Task | None = None,
    progress: bool = True,
    out: str | os.PathLike[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Zero-shot accuracy of a single-word or knowledgeable verbalizer (see the module docstring).

    ``config`` (:class:`~skillneurons.verbalizers.config.KPTEvalConfig`; ``options`` override its
    fields by name): ``single`` reads each class's first word (calibrated by the same contextual prior
    when ``calibrate``); ``kpt`` uses all words (file, task label words, ``expand`` neighbours),
    refined on the contexts. The contexts are ``prior_examples`` texts of ``contexts_task`` when given
    (e.g. the training split of a Hub dataset: the whole ``task`` is then the test set, subsampled to
    ``max_examples``), else of the non-test part of ``task`` (:func:`zero_shot_parts`). Returns the
    results dict (also written to ``out`` as JSON when given).
    """
    t0 = time.perf_counter()
    c = dataclasses.replace(config or KPTEvalConfig(), **options)
    t = load_task(task) if isinstance(task, str) else task
    check_eval_words(c, t)  # before the model loads
    bb = load_backbone(model) if isinstance(model, str) else model
    contexts, test = _eval_parts(t, c, contexts_task)
    label_words = verbalizer_words(bb, t, verbalizer=c.verbalizer, words=c.words, expand=c.expand)
    drop_shared = not c.keep_shared
    needs_contexts = c.calibrate or (c.verbalizer == "kpt" and (c.cutoff > 0 or drop_shared or c.relevance))
    head = build_kpt_head(
        bb,
        label_words,
        contexts if needs_contexts else None,
        template=c.template,
        max_length=c.max_length,
        batch_size=c.batch_size,
        multi_token=c.multi_token,
        calibrate=c.calibrate,
        refine=c.verbalizer == "kpt",
        cutoff=c.cutoff,
        scope=c.cutoff_scope,
        drop_shared=drop_shared,
        relevance=c.relevance,
        progress=progress,
    )
    reader = TemplateReader(bb, c.template, c.max_length)
    hidden = read_states(reader, test, c.batch_size, progress=progress, desc="test")
    metrics = head_accuracy(head, hidden, test.labels)
    res: dict[str, Any] = {
        "model": bb.identity(),
        "task": t.name,
        "label_names": list(t.label_names),
        "verbalizer": c.verbalizer,
        "calibrate": c.calibrate,
        "template": reader.template,
        "multi_token": c.multi_token,
        "sizes": {"contexts": len(contexts) if needs_contexts else 0, "test": len(test)},
        "seed": c.split_seed,
        **metrics,
        "words_per_class": [len(ws) for ws in head.label_words],
        "label_words": head.label_words,
        "refinement": head.report,
        "seconds": time.perf_counter() - t0,
    }
    if out is not None:
        atomic_write_json(Path(out), res)
    return res


def check_eval_words(config: KPTEvalConfig, task: Task) -> None:
    """Refuse a ``kpt`` evaluation with one label word per class and no expansion
    (:func:`~skillneurons.verbalizers.words.check_kpt_words`); reads the word file, not the model."""
    if config.verbalizer == "kpt":
        words = base_label_words(config.words, task.label_names, task.label_words)
        check_kpt_words(words, task.label_names, config.expand)


def _eval_parts(t: Task, c: KPTEvalConfig, contexts_task: Task | None) -> tuple[Task, Task]:
    """``(contexts, test)`` of a zero-shot evaluation (see :func:`zero_shot_evaluate`)."""
    if contexts_task is None:
        return zero_shot_parts(
            t,
            seed=c.split_seed,
            test_fraction=c.test_fraction,
            max_examples=c.max_examples,
            prior_examples=c.prior_examples,
        )
    contexts, test = unlabelled_contexts(contexts_task, c.prior_examples, c.split_seed), t
    if c.max_examples is not None and c.max_examples < len(t):
        rng = np.random.default_rng(c.split_seed)
        test = t.subset(stratified_sample(t.labels, int(c.max_examples), rng).tolist())
    return contexts, test
