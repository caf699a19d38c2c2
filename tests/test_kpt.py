"""Knowledgeable verbalizer (KPT): word files, expansion, every refinement step on hand-made logits,
multi-token scoring, calibration, learned weights, artifacts, zero-shot reading and the command."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from conftest import separable_task
from skillneurons.data import Task, check_disjoint
from skillneurons.errors import ConfigError, DataError
from skillneurons.prompts import PromptModel, SoftPrompt, build_head, load_prompt, save_prompt
from skillneurons.prompts.heads import head_from_config
from skillneurons.testing import tiny_model
from skillneurons.training import TrainConfig, Trainer, evaluate
from skillneurons.verbalizers import (
    ContextStats,
    KnowledgeableHead,
    TemplateReader,
    aggregate,
    build_kpt_head,
    calibrate_log_probs,
    calibrate_probs,
    combine_pieces,
    contextual_prior,
    expand_label_words,
    frequency_keep,
    frequency_keep_words,
    load_label_words,
    nearest_words,
    refine_in_prompt_model,
    relevance_keep,
    shared_keep,
    token_prior,
    whole_word_vocabulary,
    zero_shot_evaluate,
    zero_shot_parts,
)
from skillneurons.verbalizers.refine import membership

CLASSES = ("negative", "positive")


# ---- label-word sources -----------------------------------------------------------------------
def test_word_file_named_lines_any_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "words.txt"
    f.write_text("# sentiment\nPositive: good, great ,good\n\nnegative: bad, awful\n")
    assert load_label_words(f, CLASSES) == [["bad", "awful"], ["good", "great"]]


def test_word_file_positional_lines_and_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "kpt.txt"
    f.write_text("bad,awful,poor\ngood,great\n")  # the original KPT files: one line per class, in order
    assert load_label_words(f, CLASSES) == [["bad", "awful", "poor"], ["good", "great"]]
    j = tmp_path / "w.json"
    j.write_text(json.dumps({"positive": ["good"], "negative": "bad, awful"}))
    assert load_label_words(j, CLASSES) == [["bad", "awful"], ["good"]]
    j.write_text(json.dumps([["bad"], ["good", "fine"]]))
    assert load_label_words(j, CLASSES) == [["bad"], ["good", "fine"]]
    assert load_label_words({"negative": ["bad"], "positive": ["good"]}, CLASSES) == [["bad"], ["good"]]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("negative: bad\nneutral: meh\npositive: good\n", "does not have"),
        ("negative: bad\n", "no label words"),
        ("negative: bad\ngood, great\n", "does not start with a class"),
        ("bad\ngood\nfine\n", "3 word lists"),
    ],
)
def test_word_file_errors_are_one_line(  # type: ignore[no-untyped-def]
    tmp_path,
    text: str,
    match: str,
) -> None:
    f = tmp_path / "w.txt"
    f.write_text(text)
    with pytest.raises(DataError, match=match) as e:
        load_label_words(f, CLASSES)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="not found"):
        load_label_words(tmp_path / "missing.txt", CLASSES)


# ---- multi-token words ------------------------------------------------------------------------
def test_combine_pieces_first_mean_max() -> None:
    logits = torch.tensor([[[1.0, 3.0, 99.0], [2.0, 0.0, 4.0]]])  # [B=1, W=2, P=3]
    mask = torch.tensor([[True, True, False], [True, True, True]])  # word 0 has 2 pieces, 99 is padding
    assert combine_pieces(logits, mask, "first").tolist() == [[1.0, 2.0]]
    assert combine_pieces(logits, mask, "mean").tolist() == [[2.0, 2.0]]
    assert combine_pieces(logits, mask, "max").tolist() == [[3.0, 4.0]]
    with pytest.raises(ConfigError, match="first, mean, max"):
        combine_pieces(logits, mask, "sum")


@pytest.mark.parametrize("family", ["bert", "llama"])
@pytest.mark.parametrize("how", ["first", "mean", "max"])
def test_split_word_scored_from_its_pieces_at_read_position(family: str, how: str) -> None:
    bb = tiny_model(family)
    # the tiny tokenizer is word-level, so the label word "bad movie" splits into two pieces
    pieces = bb.token_ids("bad movie")
    assert len(pieces) == 2
    head = KnowledgeableHead(bb, [["bad movie", "awful"], ["good"]], multi_token=how, calibrate=False)
    hidden = torch.randn(3, bb.hidden_size)
    full = bb.lm_logits(hidden)  # [3, V]
    piece_logits = full[:, pieces]
    expect = {"first": piece_logits[:, 0], "mean": piece_logits.mean(1), "max": piece_logits.max(1).values}[
        how
    ]
    word = head.word_logits(hidden)
    torch.testing.assert_close(word[:, 0], expect)
    torch.testing.assert_close(word[:, 1], full[:, bb.token_ids("awful")[0]])
    # class scores: mean over the class's words of log softmax over all label words
    logp = torch.log_softmax(word, -1)
    torch.testing.assert_close(head(hidden), torch.stack([logp[:, :2].mean(1), logp[:, 2]], 1))


# ---- refinement steps on hand-made logits -----------------------------------------------------
def test_contextual_prior_is_mean_softmax_over_label_words() -> None:
    word_logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # softmaxes [.5,.5] and [.75,.25]
    torch.testing.assert_close(contextual_prior(word_logits), torch.tensor([0.625, 0.375]))
    vocab = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    torch.testing.assert_close(token_prior(vocab), torch.log_softmax(vocab, -1).mean(0))


def test_calibration_divides_by_prior_and_renormalises() -> None:
    probs = torch.tensor([[0.6, 0.3, 0.1]])
    prior = torch.tensor([0.5, 0.25, 0.25])
    expect = torch.tensor([[1.2, 1.2, 0.4]]) / 2.8
    torch.testing.assert_close(calibrate_probs(probs, prior), expect)
    word_logits = probs.log() + 7.0  # any logits with that softmax
    torch.testing.assert_close(calibrate_log_probs(word_logits, prior.log()).exp(), expect)
    torch.testing.assert_close(calibrate_log_probs(word_logits, None).exp(), probs)


def test_frequency_filter_removes_exactly_the_low_prior_words() -> None:
    prior = torch.tensor([5.0, -3.0, 2.0, -1.0, 0.0, 4.0, -2.0, 1.0, 3.0, -4.0])  # V = 10
    # cutoff 0.3 -> the 3 lowest tokens: 9 (-4), 1 (-3), 6 (-2)
    words = [[0], [1], [2, 6], [3], [5, 8], [9]]
    assert frequency_keep(words, prior, 0.3) == [True, False, False, True, True, False]
    assert frequency_keep(words, prior, 0.0) == [True] * 6
    word_prior = torch.tensor([0.1, -2.0, 0.5, -1.0])  # among the label words: drop the lowest half
    assert frequency_keep_words(word_prior, 0.5) == [True, False, True, False]
    with pytest.raises(ConfigError, match="cutoff"):
        frequency_keep(words, prior, 1.5)


def test_shared_words_dropped_and_duplicates_kept_once() -> None:
    keys = [(1,), (2,), (2,), (3,), (1,), (4,)]
    owner = [0, 0, 0, 1, 1, 1]
    # (1,) is in both classes: gone everywhere; (2,) twice in class 0: first copy kept
    assert shared_keep(keys, owner) == [False, True, False, True, False, True]


def test_relevance_keeps_words_following_their_own_anchor() -> None:
    g = torch.Generator().manual_seed(0)
    a0, a1 = torch.randn(64, generator=g), torch.randn(64, generator=g)
    noise = lambda: 0.3 * torch.randn(64, generator=g)  # noqa: E731
    scores = torch.stack([a0, a1, a0 + noise(), a1 + noise(), 2 * a1 + noise(), a0 + noise()], 1)  # [N, W]
    owner = [
        0,
        1,
        0,
        0,
        1,
        1,
    ]  # word 3 follows class 1's anchor but is filed under class 0; word 5 the reverse
    assert relevance_keep(scores, owner, anchors=[0, 1]) == [True, True, True, False, True, False]


def test_aggregate_mean_and_learned_weights() -> None:
    logp = torch.log(torch.tensor([[0.1, 0.3, 0.2, 0.4]]))
    member = membership(torch.tensor([0, 0, 1, 1]), 2)
    torch.testing.assert_close(
        aggregate(logp, member), torch.stack([logp[:, :2].mean(1), logp[:, 2:].mean(1)], 1)
    )
    weights = torch.tensor([0.0, 50.0, 50.0, 0.0])  # all weight on word 1 (class 0) and word 2 (class 1)
    torch.testing.assert_close(aggregate(logp, member, weights), logp[:, [1, 2]])


# ---- the head: refinement on hand-made statistics ---------------------------------------------
def _head(bb, words, **kw):  # type: ignore[no-untyped-def]
    return KnowledgeableHead(bb, words, **kw)


def test_refine_drops_shared_and_low_prior_words_and_sets_prior() -> None:
    bb = tiny_model("bert")
    words = [["bad", "awful", "movie", "poor"], ["good", "great", "movie", "fine"]]
    head = _head(bb, words)
    vocab = bb.input_embeddings.weight.shape[0]
    tp = torch.zeros(vocab)
    tp[bb.token_ids("poor")[0]] = -10.0  # the only low-prior token (cutoff: 1 of V)
    logits = torch.randn(5, head.num_words)
    stats = ContextStats(token_prior=tp, word_log_probs=logits)
    report = head.refine(stats, cutoff=1.5 / vocab)
    assert head.label_words == [["bad", "awful"], ["good", "great", "fine"]]
    assert report["dropped"] == {"shared": ["movie", "movie"], "frequency": ["poor"], "relevance": []}
    assert report["words_before"] == [4, 4] and report["words_after"] == [2, 3]
    kept = [0, 1, 4, 5, 7]
    prior = head.prior()
    assert prior is not None
    flat_prior = torch.tensor([p for ps in prior for p in ps])
    torch.testing.assert_close(flat_prior, contextual_prior(logits[:, kept]))
    # forward = mean over class words of the calibrated log-probabilities
    hidden = torch.randn(2, bb.hidden_size)
    word = bb.lm_logits(hidden, torch.tensor([bb.token_ids(w)[0] for ws in head.label_words for w in ws]))
    p = calibrate_probs(torch.softmax(word, -1), flat_prior)
    expect = torch.stack([p[:, :2].log().mean(1), p[:, 2:].log().mean(1)], 1)
    torch.testing.assert_close(head(hidden), expect)


def test_refine_never_empties_a_class(caplog) -> None:  # type: ignore[no-untyped-def]
    bb = tiny_model("roberta")
    head = _head(bb, [["bad", "awful"], ["good", "great"]], calibrate=False)
    logits = torch.tensor([[0.0, 0.0, -5.0, -1.0]] * 3)
    stats = ContextStats(token_prior=torch.zeros(bb.input_embeddings.weight.shape[0]), word_log_probs=logits)
    head.refine(stats, cutoff=0.5, scope="words")  # drops the two lowest words: both of class 1
    assert head.label_words == [["bad", "awful"], ["great"]]  # class 1 keeps its best-prior word
    assert head.report["restored"] == ["great"] and "great" in caplog.text
    with pytest.raises(ConfigError, match="shared"):
        shared = _head(bb, [["bad", "good"], ["good", "bad"]])
        shared.refine(ContextStats(torch.zeros(bb.input_embeddings.weight.shape[0]), torch.zeros(2, 4)))


def test_calibration_without_prior_is_refused() -> None:
    bb = tiny_model("bert")
    head = _head(bb, [["bad"], ["good"]], calibrate=True)
    with pytest.raises(ConfigError, match="contextual prior") as e:
        head(torch.randn(1, bb.hidden_size))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="no MLM/LM head"):
        _head(tiny_model("bert", kind="encoder"), [["bad"], ["good"]])


def test_context_stats_from_real_read_states() -> None:
    bb = tiny_model("llama")
    head = _head(bb, [["bad", "awful"], ["good", "great"]])
    hidden = torch.randn(6, bb.hidden_size)
    stats = head.context_stats([hidden[:4], hidden[4:]])
    full = torch.log_softmax(bb.lm_logits(hidden), -1)
    torch.testing.assert_close(stats.token_prior, full.mean(0))
    ids = [bb.token_ids(w)[0] for w in ("bad", "awful", "good", "great")]
    torch.testing.assert_close(stats.word_log_probs, full[:, ids])
    head.refine(stats, cutoff=0.0, relevance=True)
    assert head.label_words[0][0] == "bad" and head.label_words[1][0] == "good"  # anchors stay


# ---- expansion -------------------------------------------------------------------------------
def test_expansion_finds_embedding_neighbours_among_whole_words() -> None:
    bb = tiny_model("bert")
    emb = bb.input_embeddings.weight
    tid = lambda w: bb.token_ids(w)[0]  # noqa: E731
    with torch.no_grad():
        emb[tid("awful")] = emb[tid("bad")] + 0.01 * torch.randn(emb.shape[1])
        emb[tid("great")] = emb[tid("good")] + 0.01 * torch.randn(emb.shape[1])
    ids, words = whole_word_vocabulary(bb)
    special = set(bb.tokenizer.all_special_ids)
    assert not special & set(ids) and "[MASK]" not in words
    assert all(len(w) >= 3 and w.isalpha() for w in words) and "is" not in words
    assert expand_label_words(bb, [["bad"], ["good"]], 1) == [["bad", "awful"], ["good", "great"]]
    near = nearest_words(bb, [["bad"], ["good"]], 5)
    assert near[0][0][1] > 0.99 and not {w for w, _ in near[0]} & {w for w, _ in near[1]}
    assert not {"bad", "good"} & {w for n in near for w, _ in n}


# ---- prompt tuning with learned word weights, artifacts ---------------------------------------
def _kpt_prompt_model(family: str):  # type: ignore[no-untyped-def]
    bb = tiny_model(family)
    torch.manual_seed(0)
    head = KnowledgeableHead(
        bb,
        [["negative", "bad", "awful", "hate"], ["positive", "good", "great", "love"]],
        aggregate="learned",
        calibrate=True,
    )
    pm = PromptModel(bb, SoftPrompt.create(bb, 4, "normal", std=0.5), head, max_length=24)
    task = separable_task(32)
    report = refine_in_prompt_model(pm, task, cutoff=0.0)
    assert report["contexts"] == len(task) and head.prior() is not None
    return pm, task


@pytest.mark.parametrize("family", ["roberta", "llama"])
def test_learned_word_weights_train_with_the_prompt(family: str) -> None:
    pm, task = _kpt_prompt_model(family)
    backbone_before = {k: v.clone() for k, v in pm.backbone.model.state_dict().items()}
    weights_before = pm.head.word_weights.detach().clone()
    assert {n for n, p in pm.named_parameters() if p.requires_grad} == {"prompt.weight", "head.word_weights"}
    before = evaluate(pm, task)
    cfg = TrainConfig(max_steps=12, batch_size=16, lr=0.1, head_lr=0.1, eval_every=1000, warmup_ratio=0.0)
    Trainer(pm, task, task, cfg, progress=False).fit()
    after = evaluate(pm, task)
    assert after["loss"] < before["loss"]
    assert not torch.allclose(pm.head.word_weights, weights_before)
    for k, v in pm.backbone.model.state_dict().items():
        assert torch.equal(v, backbone_before[k]), f"backbone weight {k} changed"


def test_kpt_head_round_trips_through_a_saved_prompt(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pm, task = _kpt_prompt_model("bert")
    with torch.no_grad():
        pm.head.word_weights.copy_(torch.randn(pm.head.num_words))
    path = save_prompt(tmp_path / "p", pm, task={"name": task.name})
    man = json.loads((tmp_path / "p.json").read_text())
    assert man["head"]["type"] == "kpt" and man["head"]["aggregate"] == "learned"
    assert "head.word_weights" in man["shapes"]
    loaded, _ = load_prompt(path, pm.backbone)
    assert isinstance(loaded.head, KnowledgeableHead) and loaded.head.config() == pm.head.config()
    b = pm.encode(["good movie", "bad plot"])
    torch.testing.assert_close(loaded(b), pm(b))
    # head_from_config alone rebuilds the refined, calibrated zero-shot head exactly
    zs = build_kpt_head(pm.backbone, [["bad", "awful"], ["good", "great"]], task, cutoff=0.2)
    again = head_from_config(json.loads(json.dumps(zs.config())), pm.backbone)
    h = torch.randn(3, pm.backbone.hidden_size)
    torch.testing.assert_close(again(h), zs(h))


def test_build_head_kpt_is_unrefined_and_learned() -> None:
    bb = tiny_model("roberta")
    head = build_head("kpt", bb, [["bad", "awful"], ["good"]])
    assert isinstance(head, KnowledgeableHead) and head.aggregate == "learned" and not head.calibrate
    assert head(torch.randn(2, bb.hidden_size)).shape == (2, 2)


# ---- zero-shot reading ------------------------------------------------------------------------
def test_template_reader_reads_the_mask_slot_and_truncates_only_the_text() -> None:
    bb = tiny_model("bert")
    r = TemplateReader(bb, "{text} it was {mask} .", max_length=16)
    ids, _, read = r.encode([" ".join(["good"] * 50), "bad"])
    tok = bb.tokenizer
    assert ids.shape[1] <= 16
    for row, pos in zip(ids, read, strict=True):
        assert int(row[pos]) == tok.mask_token_id
    r0 = int(read[0])
    assert ids[0, r0 - 2 : r0].tolist() == tok("it was", add_special_tokens=False)["input_ids"]
    front = TemplateReader(tiny_model("roberta"), "a {mask} movie : {text}")
    _, _, read = front.encode(["good", "bad plot"])
    assert read.tolist() == [2, 2]  # [CLS] a [MASK]


def test_template_reader_causal_reads_the_last_token() -> None:
    bb = tiny_model("llama")
    r = TemplateReader(bb, "{text} it was {mask}", max_length=12)
    assert r.template == "{text} it was"
    ids, mask, read = r.encode([" ".join(["good"] * 50), "bad"])
    lengths = mask.sum(1)
    assert read.tolist() == (lengths - 1).tolist() and ids.shape[1] <= 12
    assert ids[0, int(read[0]) - 1 : int(read[0]) + 1].tolist() == bb.tokenizer("it was")["input_ids"]
    with pytest.raises(ConfigError, match="causal LM"):
        TemplateReader(bb, "{text} it was {mask} .")
    with pytest.raises(ConfigError, match="text"):
        TemplateReader(bb, "it was")
    with pytest.raises(ConfigError, match="placeholder"):
        TemplateReader(bb, "{text} {label}")
    with pytest.raises(ConfigError, match="mask"):
        TemplateReader(tiny_model("bert"), "{text} it was")


def test_zero_shot_parts_are_disjoint_and_unlabelled_contexts_come_from_training() -> None:
    task = Task("unique", tuple(f"text {i}" for i in range(200)), tuple(i % 2 for i in range(200)), CLASSES)
    contexts, test = zero_shot_parts(task, seed=1, max_examples=20, prior_examples=30)
    assert len(contexts) == 30 and len(test) == 20 and test.class_counts() == (10, 10)
    check_disjoint(contexts, test, "context", "test")


@pytest.mark.parametrize("family", ["bert", "roberta", "llama"])
def test_zero_shot_evaluate_single_and_kpt(family: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bb = tiny_model(family)
    task = separable_task(80)
    single = zero_shot_evaluate(bb, task, verbalizer="single", calibrate=False, progress=False)
    assert single["words_per_class"] == [1, 1] and single["sizes"]["contexts"] == 0
    kpt = zero_shot_evaluate(
        bb, task, verbalizer="kpt", expand=3, prior_examples=16, progress=False, out=tmp_path / "r.json"
    )
    assert 0.0 <= kpt["accuracy"] <= 1.0 and kpt["n"] == 16 and kpt["sizes"]["contexts"] == 16
    assert sum(kpt["predicted_share"]) == pytest.approx(1.0)
    assert json.loads((tmp_path / "r.json").read_text())["refinement"]["words_before"] == [5, 5]


def test_kpt_evaluate_command(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from skillneurons.cli.kpt import COMMANDS

    bb = tiny_model("bert")
    bb.model.save_pretrained(tmp_path / "model")
    bb.tokenizer.save_pretrained(tmp_path / "model")
    task: Task = separable_task(60)
    (tmp_path / "data.csv").write_text(
        "text,label\n" + "".join(f"{t},{task.label_names[y]}\n" for t, y in zip(task.texts, task.labels))
    )
    (tmp_path / "words.txt").write_text("negative: bad, awful\npositive: good, great\n")
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd in COMMANDS:
        cmd.add_arguments(p := sub.add_parser(cmd.name))
        p.set_defaults(fn=cmd.run)
    args = parser.parse_args(
        [
            "kpt-evaluate",
            "--model",
            str(tmp_path / "model"),
            "--task",
            str(tmp_path / "data.csv"),
            "--words",
            str(tmp_path / "words.txt"),
            "--template",
            "{text} it was {mask} .",
            "--no-calibrate",
            "--prior-examples",
            "8",
            "--out",
            str(tmp_path / "res.json"),
        ]
    )
    args.quiet = True
    assert args.fn(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["verbalizer"] == "kpt" and summary["calibrate"] is False and summary["n"] == 12
    assert json.loads((tmp_path / "res.json").read_text())["label_words"][1][0] == "good"


@pytest.mark.real_model
def test_real_bpe_vocabulary_whole_words_and_split_words() -> None:
    """On SmolLM2's byte-level BPE: whole words carry the leading-space marker, a rare word splits,
    and expansion finds inflections of the seed (LM head computed on random states only: cheap)."""
    from skillneurons.backbones import load_backbone

    bb = load_backbone("smollm2")
    ids, words = whole_word_vocabulary(bb)
    assert len(ids) > 10_000 and not set(bb.tokenizer.all_special_ids) & set(ids)
    assert "positive" in words and all(bb.token_ids(w) == [i] for i, w in list(zip(ids, words))[::500])
    pieces = bb.token_ids("unwatchable")
    assert len(pieces) > 1
    hidden = torch.randn(2, bb.hidden_size)
    piece_logits = bb.lm_logits(hidden, torch.tensor(pieces))
    for how, expect in [
        ("first", piece_logits[:, 0]),
        ("mean", piece_logits.mean(1)),
        ("max", piece_logits.amax(1)),
    ]:
        head = KnowledgeableHead(bb, [["unwatchable"], ["good"]], multi_token=how, calibrate=False)
        torch.testing.assert_close(head.word_logits(hidden)[:, 0], expect)
    near = nearest_words(bb, [["negative"], ["positive"]], 5)
    assert "positively" in [w for w, _ in near[1]]


def test_verbalizer_config_builds_the_tuning_head() -> None:
    from skillneurons.verbalizers import KPTEvalConfig, VerbalizerConfig, prepare_head, tuning_head

    with pytest.raises(ConfigError, match="unknown verbalizer 'many'"):
        VerbalizerConfig(verbalizer="many")
    with pytest.raises(ConfigError, match="unknown verbalizer"):
        KPTEvalConfig(verbalizer="many")
    bb = tiny_model("bert")
    task = separable_task(40)
    single = tuning_head(VerbalizerConfig(), bb, task, "label_words")
    assert single.kind == build_head("label_words", bb, task.label_words).kind
    kpt = tuning_head(VerbalizerConfig(verbalizer="kpt"), bb, task)
    assert isinstance(kpt, KnowledgeableHead) and kpt.kind == "kpt"
    pm = PromptModel(bb, SoftPrompt.create(bb, 2), kpt, max_length=24)
    assert prepare_head(VerbalizerConfig(), pm, task, 0) is None
    assert prepare_head(VerbalizerConfig(verbalizer="kpt", contexts=8), pm, task, 0) is not None


def test_kpt_with_one_word_per_class_is_refused_before_the_model_loads(  # type: ignore[no-untyped-def]
    tmp_path,
    capsys,
    monkeypatch,
) -> None:
    """#17 item 8: ``kpt-evaluate --verbalizer kpt`` without --words/--expand used one word per class
    silently (the single-word verbalizer, reported as KPT); it is now a one-line error, raised before
    the model loads. Several words per class (a file, or the task's own) or --expand still run."""
    import dataclasses

    import skillneurons.cli.kpt as cli_kpt
    from skillneurons.cli import main
    from skillneurons.verbalizers.config import KPTEvalConfig
    from skillneurons.verbalizers.zero_shot import check_eval_words

    task: Task = separable_task(40)
    (tmp_path / "data.csv").write_text(
        "text,label\n" + "".join(f"{t},{task.label_names[y]}\n" for t, y in zip(task.texts, task.labels))
    )

    def no_load(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(cli_kpt, "load_backbone_from", no_load)
    argv = ["-q", "kpt-evaluate", "--model", "nowhere", "--task", str(tmp_path / "data.csv")]
    assert main([*argv, "--verbalizer", "kpt"]) == 2
    err = capsys.readouterr().err
    assert "only one label word per class" in err and "--words FILE" in err and "--expand N" in err
    assert "\n" not in err.strip()
    one_word = dataclasses.replace(task, label_words=(("negative",), ("positive",)))
    with pytest.raises(ConfigError, match="only one label word per class"):
        zero_shot_evaluate("nowhere", one_word, verbalizer="kpt", progress=False)
    check_eval_words(KPTEvalConfig(verbalizer="kpt"), task)  # the task's own two words per class
    check_eval_words(KPTEvalConfig(verbalizer="kpt", expand=3), one_word)
    check_eval_words(KPTEvalConfig(verbalizer="single"), one_word)
    (tmp_path / "w.txt").write_text("negative: bad, awful\npositive: good\n")
    check_eval_words(KPTEvalConfig(verbalizer="kpt", words=str(tmp_path / "w.txt")), one_word)
