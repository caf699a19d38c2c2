"""DynSAN training (issue #19): encoding, skipped examples, resume to the identical result, EMA, the
saved reader, gate statistics."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import tiny_reader_config
from skillneurons.errors import ConfigError, DataError
from skillneurons.reading.config import ReaderConfig, ReadTrainConfig
from skillneurons.reading.encode import collate, encode_examples, span_text
from skillneurons.reading.examples import ReadingExample
from skillneurons.reading.gates import GateRecorder, exact_auroc
from skillneurons.reading.network import Reader
from skillneurons.reading.train import ReaderTrainer, evaluate_reader, load_reader

NAMES = ["Paris", "London", "Berlin", "Madrid", "Rome", "Vienna"]
FILLER = "the city has a river and many old streets where people walk every day".split()


def _tokenizer(words: list[str]) -> Any:
    """A word-level fast tokenizer (character offsets, no special tokens) over ``words``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(sorted(set(words)))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


def _examples(n: int, seed: int) -> list[ReadingExample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        answer = rng.choice(NAMES)
        passages = []
        for j in range(3):
            words = rng.sample(FILLER, 8)
            if j == i % 3:
                words.insert(rng.randrange(8), answer)
            passages.append(" ".join(words))
        out.append(
            ReadingExample(f"q{seed}-{i}", f"which city is @placeholder {i % 4}", tuple(passages), (answer,))
        )
    return out


VOCAB = NAMES + FILLER + ["which", "city", "is", "@placeholder", "0", "1", "2", "3"]


@pytest.fixture(scope="module")
def tok() -> Any:
    return _tokenizer(VOCAB)


def _config(**kw: Any) -> ReaderConfig:
    return tiny_reader_config(**kw)  # type: ignore[no-any-return]


def _model(c: ReaderConfig) -> Reader:
    torch.manual_seed(0)
    return Reader(c, torch.randn(len(VOCAB) + 2, 8))


def test_encoding_finds_every_occurrence_and_counts_what_it_skips(tok: Any) -> None:
    good = ReadingExample("a", "where", ("Paris is big and Paris is old", "in London"), ("Paris",))
    bad = [
        ReadingExample("b", "  ", ("Paris",), ("Paris",)),
        ReadingExample("c", "where", ("in London",), ("Paris",)),
        ReadingExample("d", "where", ("", " "), ("Paris",)),
    ]
    split = encode_examples([good, *bad], tok, _config())
    assert [e.id for e in split.examples] == ["a"]
    assert split.examples[0].spans == [(0, 0, 0), (0, 4, 4)]
    assert split.skipped == {
        "answer not in the (truncated) passages": 1,
        "empty question": 1,
        "no passages": 1,
    }
    batch = collate(split.examples, "span")
    assert span_text(split.examples[0], 4, 4, batch.passages.shape[2]) == "Paris"


def test_the_passage_index_finds_what_find_answer_spans_finds() -> None:
    from skillneurons.reading.encode import _Words
    from skillneurons.reading.examples import find_answer_spans, tokenize

    rng = random.Random(0)
    pool = ["Paris", "paris", "the", "The", "New", "York", ",", "U.S", "Blair's", "an", "old", "York."]
    for _ in range(200):
        text = " ".join(rng.choice(pool) for _ in range(rng.randint(0, 14)))
        answer = " ".join(rng.choice(pool) for _ in range(rng.randint(1, 3)))
        words, starts, pos = tokenize(text), [], 0
        for w in words:
            pos = text.index(w, pos)
            starts.append(pos)
            pos += len(w)
        want = [(starts[s], starts[e] + len(words[e])) for s, e in find_answer_spans(words, tokenize(answer))]
        assert _Words(text).char_spans(answer) == want, (text, answer)


def test_length_cap_truncates_or_skips(tok: Any) -> None:
    ex = ReadingExample("a", "where", ("city " * 20 + "Paris", "Paris is old"), ("Paris",))
    cut = encode_examples([ex], tok, _config(max_passage_tokens=5))
    assert cut.truncated == 1 and cut.examples[0].spans == [(1, 0, 0)]  # the cut-off mention is gone
    assert len(cut.examples[0].passages[0]) == 5
    off = encode_examples([ex], tok, _config(max_passage_tokens=5, truncate=False))
    assert off.examples == [] and off.skipped == {"over the length cap (truncation off)": 1}


def _train(tok: Any, out: Path | None, steps: int = 6, **kw: Any) -> tuple[ReaderTrainer, Any]:
    c = _config(selection=kw.pop("selection", "gate"), top_k=kw.pop("top_k", 8))
    train = encode_examples(_examples(24, 0), tok, c)
    dev = encode_examples(_examples(8, 1), tok, c)
    tc = ReadTrainConfig(steps=steps, batch_size=4, eval_batch_size=8, warmup_steps=2, eval_every=2, ema=0.9)
    trainer = ReaderTrainer(_model(c), train, dev, tc, out, progress=False)
    return trainer, trainer.fit(**kw)


@pytest.mark.parametrize("selection", ["gate", "random"])
def test_an_interrupted_training_resumes_to_the_identical_result(
    tok: Any, tmp_path: Path, selection: str
) -> None:
    whole, s_whole = _train(tok, tmp_path / "a", selection=selection, top_k=4)
    _, s_part = _train(tok, tmp_path / "b", selection=selection, top_k=4, stop_after=3)  # killed at step 3
    assert s_part.step == 3
    resumed, s_res = _train(tok, tmp_path / "b", selection=selection, top_k=4)  # restarts from step 2
    assert resumed.resumed_from == 2
    assert s_res.history == s_whole.history and s_res.best_step == s_whole.best_step
    for (k, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    for a, b in zip(whole.ema, resumed.ema):
        assert torch.equal(a, b)
    one, _ = load_reader(tmp_path / "a" / "reader", whole.model.table)
    two, _ = load_reader(tmp_path / "b" / "reader", whole.model.table)
    for a, b in zip(one.state_dict().values(), two.state_dict().values()):
        assert torch.equal(a, b)


def test_a_checkpoint_of_another_run_is_refused(tok: Any, tmp_path: Path) -> None:
    _train(tok, tmp_path, steps=2)
    with pytest.raises(ConfigError, match="different run"):
        _train(tok, tmp_path, steps=4)


def test_training_learns_and_the_saved_reader_scores_as_reported(tok: Any, tmp_path: Path) -> None:
    trainer, state = _train(tok, tmp_path, steps=40)
    assert state.history[-1]["train_loss"] < state.history[0]["train_loss"]
    reader, man = load_reader(tmp_path / "reader", trainer.model.table)
    scored = evaluate_reader(reader, trainer.dev.examples, 8)
    assert sum(scored.em) / len(scored.em) == pytest.approx(man["dev_em"])
    assert man["best_step"] == state.best_step


def test_gate_auroc_from_the_streaming_statistics_matches_the_exact_one(tok: Any) -> None:
    c = _config(blocks=1)
    model = _model(c).eval()
    split = encode_examples(_examples(12, 2), tok, c)
    rec = GateRecorder(model)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def both(batch: Any, out: Any, exs: Any) -> None:
        rec(batch, out, exs)
        g = model.cross[0].last_gate
        assert g is not None
        label = torch.zeros_like(out.mask)
        for i, row in enumerate(batch.spans):
            for s, e in row.tolist():
                if s >= 0:
                    label[i, s : e + 1] = True
        seen.append((g[:, 0][out.mask], label[out.mask]))

    evaluate_reader(model, split.examples, 4, on_batch=both)
    rec.close()
    res = {r.block: r for r in rec.result()}
    scores, labels = torch.cat([s for s, _ in seen]), torch.cat([lab for _, lab in seen])
    assert abs(res["cross0"].auroc[0] - exact_auroc(scores, labels)) <= rec.error_bound() + 1e-9
    assert res["cross0"].answer_share == pytest.approx(float(labels.float().mean()))
    assert set(res) == {"encoder", "modeler", "cross0"}


def _choice(examples: list[ReadingExample]) -> list[ReadingExample]:
    """Multiple choice over every name (the answer among them), as ``--candidates entities`` gives."""
    return [replace(e, candidates=tuple(NAMES)) for e in examples]


def test_choice_evaluation_keeps_unanswerable_questions_and_scores_them_zero(tok: Any) -> None:
    c = _config(head="choice")
    good = ReadingExample("a", "which city", ("Paris is old", "in London"), ("Paris",), ("Paris", "London"))
    missing = replace(good, id="b", candidates=("London", "Rome"))  # the answer is no candidate
    unmentioned = replace(good, id="c", passages=("in London", "old Rome"), candidates=("Paris", "Rome"))
    exs = [good, missing, unmentioned]
    train = encode_examples(exs, tok, c)
    assert [e.id for e in train.examples] == ["a"] and train.skipped == {
        "answer candidate never mentioned in the (truncated) passages": 1,
        "answer not among the candidates": 1,
    }
    split = encode_examples(exs, tok, c, keep_unanswerable=True)
    assert [e.label for e in split.examples] == [0, -1, -1] and split.unanswerable == 2
    model = _model(c).eval()
    scored = evaluate_reader(model, split.examples, 3)
    alone = evaluate_reader(model, split.examples[:1], 3)
    assert scored.em[1:] == [0.0, 0.0] and scored.em[0] == alone.em[0]
    assert scored.loss == pytest.approx(alone.loss)  # the mean over the answerable question only


def test_choice_reader_trains_and_its_gates_score_the_answer_mentions(tok: Any) -> None:
    c = _config(head="choice", blocks=1)
    train = encode_examples(_choice(_examples(24, 0)), tok, c)
    dev = encode_examples(_choice(_examples(8, 1)), tok, c, keep_unanswerable=True)
    tc = ReadTrainConfig(steps=30, batch_size=4, eval_batch_size=8, warmup_steps=2, eval_every=10, ema=0.9)
    trainer = ReaderTrainer(_model(c), train, dev, tc, None, progress=False)
    state = trainer.fit()
    assert state.history[-1]["train_loss"] < state.history[0]["train_loss"]
    model = trainer.model.eval()
    rec = GateRecorder(model)
    labels: list[torch.Tensor] = []

    def both(batch: Any, out: Any, exs: Any) -> None:
        rec(batch, out, exs)
        gold = torch.stack([batch.mentions[i, k] for i, k in enumerate(batch.label.tolist())])
        labels.append(gold[out.mask])

    evaluate_reader(model, dev.examples, 4, on_batch=both)
    rec.close()
    res = {r.block: r for r in rec.result()}
    assert res["cross0"].answer_share == pytest.approx(float(torch.cat(labels).float().mean()))
    assert 0 < res["cross0"].answer_share < 1


def test_empty_training_data_is_a_one_line_error(tok: Any) -> None:
    c = _config()
    empty = encode_examples([ReadingExample("x", "q", ("in London",), ("Paris",))], tok, c)
    dev = encode_examples(_examples(4, 1), tok, c)
    with pytest.raises(DataError, match="readable train"):
        ReaderTrainer(_model(c), empty, dev, ReadTrainConfig(steps=2), None)


def test_read_train_then_evaluate_on_the_command_line(tmp_path: Path, model_dir: Path) -> None:
    from skillneurons.cli import main
    from skillneurons.reading.examples import write_jsonl
    from skillneurons.reading.results import ReadEvaluation, ReadTrainResult

    task = tmp_path / "task"
    task.mkdir()
    for split, (n, seed) in {"train": (16, 0), "dev": (6, 1), "test": (6, 2)}.items():
        write_jsonl(task / f"{split}.jsonl", _examples(n, seed))
    small = ["--dim", "16", "--heads", "2", "--top-k", "8", "--blocks", "1", "--read-passages", "3"]
    steps = ["--steps", "4", "--eval-every", "2", "--warmup-steps", "1", "--batch-size", "4"]
    out = tmp_path / "run"
    args = ["read", "train", "-q", "--task", f"jsonl:{task}", "--embeddings", str(model_dir), *small, *steps]
    assert main([*args, "--out", str(out)]) == 0
    trained = ReadTrainResult.load(out / "train_result.json")
    assert trained.steps == 4 and trained.n_train == 16 and (out / "reader.safetensors").is_file()
    res = tmp_path / "test.json"
    ev = ["read", "evaluate", "-q", "--reader", str(out / "reader.safetensors"), "--task", f"jsonl:{task}"]
    assert main([*ev, "--split", "test", "--gates", "--out", str(res)]) == 0
    result = ReadEvaluation.load(res)
    assert result.n == 6 and 0 <= result.em_low <= result.em <= result.em_high <= 1
    assert [g.block for g in result.gates] == ["encoder", "modeler", "cross0"]
    assert main([*args, "--out", str(out)]) == 0  # the finished run resumes at its end: nothing to do
    assert ReadTrainResult.load(out / "train_result.json").resumed_from == 4
    from skillneurons.reading.data_config import ReadDataConfig
    from skillneurons.reading.run import evaluate_saved_reader

    with pytest.raises(ConfigError, match="trained with --candidates none: evaluate it on bbc_cloze"):
        evaluate_saved_reader(out / "reader.safetensors", ReadDataConfig(candidates="entities"))
