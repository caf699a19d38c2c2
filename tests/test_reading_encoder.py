"""DynSAN over a frozen encoder (issue #19, ``embeddings_kind = "encoder"``): the cached vectors are the
encoder's own outputs on each passage alone, computed once, the encoder stays frozen, training resumes,
and vectors of another encoder or caps are refused."""

from __future__ import annotations

import math
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import tiny_reader_config
from skillneurons.errors import ConfigError, DataError
from skillneurons.reading.config import ReaderConfig, ReadTrainConfig
from skillneurons.reading.contextual import BATCH_SIZE, ContextEncoder
from skillneurons.reading.encode import EncodedSplit, collate, encode_examples
from skillneurons.reading.examples import ReadingExample
from skillneurons.reading.network import Reader
from skillneurons.reading.train import ReaderTrainer, evaluate_reader, load_reader
from skillneurons.testing import tiny_model

NAMES = ["paris", "london", "berlin", "madrid", "rome", "vienna"]
FILLER = "the city has a river and many old streets where people walk every day".split()
EXTRA = [*NAMES, *FILLER, "which", "mask", "0", "1", "2", "3"]


def _examples(n: int, seed: int) -> list[ReadingExample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        answer = rng.choice(NAMES)
        passages = []
        for j in range(3):
            words = rng.sample(FILLER, 4 + (i + j) % 5)  # passages of different lengths: padding
            if j == i % 3:
                words.insert(rng.randrange(len(words)), answer)
            passages.append(" ".join(words))
        out.append(ReadingExample(f"q{seed}-{i}", f"which city is mask {i % 4}", tuple(passages), (answer,)))
    return out


def _backbone(seed: int = 0) -> Any:
    return tiny_model("bert", kind="encoder", seed=seed, extra_words=EXTRA)


@pytest.fixture
def encoder() -> ContextEncoder:
    return ContextEncoder(_backbone())


def _config(**kw: Any) -> ReaderConfig:
    return tiny_reader_config(**{"embeddings_kind": "encoder", **kw})  # type: ignore[no-any-return]


def _split(enc: ContextEncoder, n: int, seed: int, c: ReaderConfig | None = None) -> EncodedSplit:
    c = c or _config()
    return encode_examples(_examples(n, seed), enc.tokenizer, c, encoder=enc, keep_unanswerable=seed > 0)


def _trainer(enc: ContextEncoder, out: Path | None, steps: int = 6, **kw: Any) -> ReaderTrainer:
    c = _config(**kw)
    train, dev = _split(enc, 24, 0, c), _split(enc, 8, 1, c)
    tc = ReadTrainConfig(steps=steps, batch_size=4, eval_batch_size=8, warmup_steps=2, eval_every=2, ema=0.9)
    torch.manual_seed(0)
    return ReaderTrainer(Reader(c, enc.width), train, dev, tc, out, progress=False)


def test_the_cached_vectors_are_the_encoders_outputs_on_each_passage_alone(encoder: ContextEncoder) -> None:
    split = encode_examples(_examples(10, 0), encoder.tokenizer, _config(), encoder=encoder)
    assert len(split.examples) == 10
    cls, sep = encoder.tokenizer.cls_token_id, encoder.tokenizer.sep_token_id
    assert (encoder.prefix, encoder.suffix) == ([cls], [sep])
    lengths = {len(p) for e in split.examples for p in e.passages}
    assert len(lengths) > 1  # they were batched with padding (all 40 sequences in one forward pass)
    assert encoder.calls == 1
    for e in split.examples:
        assert e.vectors is not None and e.vectors.key == encoder.key(_config())
        for ids, vec in [(e.question, e.vectors.question), *zip(e.passages, e.vectors.passages)]:
            assert vec.dtype == torch.float16 and vec.shape == (len(ids), encoder.width)
            assert not vec.requires_grad
            alone = encoder.model(input_ids=torch.tensor([[cls, *ids, sep]]))[0][0, 1:-1]
            torch.testing.assert_close(vec.float(), alone.detach(), atol=2e-3, rtol=2e-3)
    batch = collate(split.examples[:4], "span")
    assert batch.passage_vectors is not None and batch.question_vectors is not None
    assert batch.passage_vectors.shape[:3] == batch.passages.shape
    assert not bool(batch.passage_vectors[~batch.passage_mask].any())  # zero on padding
    assert not bool(batch.question_vectors[~batch.question_mask].any())


def test_the_reader_ignores_what_the_padding_holds(encoder: ContextEncoder) -> None:
    split = _split(encoder, 6, 0)
    torch.manual_seed(0)
    model = Reader(_config(dropout=0.0), encoder.width).eval()
    batch = collate(split.examples, "span")
    assert batch.passage_vectors is not None
    noisy = collate(split.examples, "span")
    assert noisy.passage_vectors is not None and noisy.question_vectors is not None
    noisy.passage_vectors[~noisy.passage_mask] = 50.0
    noisy.question_vectors[~noisy.question_mask] = 50.0
    with torch.no_grad():
        a, b = model(batch), model(noisy)
    assert a.start is not None and b.start is not None
    real = batch.passage_mask.reshape(len(split.examples), -1)
    torch.testing.assert_close(a.start[real], b.start[real])


def test_the_encoder_runs_once_and_stays_frozen_while_the_reader_trains(encoder: ContextEncoder) -> None:
    forwards = []
    encoder.model.register_forward_hook(lambda *_: forwards.append(1))
    before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    trainer = _trainer(encoder, None, steps=18)  # 3 epochs of 6 steps
    n_train, n_dev = len(trainer.train.examples), len(trainer.dev.examples)
    expected = math.ceil(4 * n_train / BATCH_SIZE) + math.ceil(4 * n_dev / BATCH_SIZE)  # 1 + 3 sequences each
    assert len(forwards) == expected == encoder.calls == 3
    assert not any(p.requires_grad for p in encoder.model.parameters()) and not encoder.model.training
    reader_before = [p.detach().clone() for p in trainer.model.parameters()]
    state = trainer.fit()
    evaluate_reader(trainer.model, trainer.dev.examples, 8)
    assert state.step == 18 and len(forwards) == expected  # training and evaluation never ran the encoder
    for k, v in encoder.model.state_dict().items():
        assert torch.equal(v, before[k]), k  # bit-identical
    assert any(not torch.equal(a, b) for a, b in zip(reader_before, trainer.model.parameters()))
    assert not any(n.startswith("table") for n in trainer.model.state_dict())  # nothing of the encoder


def test_an_interrupted_encoder_reader_training_resumes_to_the_identical_result(
    encoder: ContextEncoder, tmp_path: Path
) -> None:
    whole = _trainer(encoder, tmp_path / "a")
    s_whole = whole.fit()
    _trainer(encoder, tmp_path / "b").fit(stop_after=3)
    resumed = _trainer(encoder, tmp_path / "b")
    s_res = resumed.fit()
    assert resumed.resumed_from == 2 and s_res.history == s_whole.history
    for (k, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    one, man = load_reader(tmp_path / "a" / "reader", encoder.width)
    assert one.config.embeddings_kind == "encoder" and man["reader"]["embeddings_kind"] == "encoder"
    scored = evaluate_reader(one, whole.dev.examples, 8)
    assert sum(scored.em) / len(scored.em) == pytest.approx(man["dev_em"])


def test_vectors_of_another_encoder_or_kind_are_refused(encoder: ContextEncoder, tmp_path: Path) -> None:
    other = ContextEncoder(_backbone(seed=1))
    assert other.key(_config()) != encoder.key(_config())
    assert encoder.key(_config(max_passage_tokens=10)) != encoder.key(_config())
    assert ContextEncoder(_backbone()).key(_config()) == encoder.key(_config())  # same weights, same key
    c = _config()
    train, dev = _split(encoder, 8, 0), _split(other, 4, 1)
    with pytest.raises(ConfigError, match="one encoder"):
        ReaderTrainer(Reader(c, encoder.width), train, dev, ReadTrainConfig(steps=2), None)
    with pytest.raises(DataError, match="mixes"):
        collate([train.examples[0], dev.examples[0]], "span")
    table = torch.randn(len(encoder.tokenizer), 8)
    with pytest.raises(ConfigError, match="word-piece table"):
        ReaderTrainer(Reader(_config(embeddings_kind="table"), table), train, train, ReadTrainConfig(), None)
    plain = encode_examples(_examples(4, 0), encoder.tokenizer, _config(embeddings_kind="table"))
    with pytest.raises(DataError, match="has none"):
        Reader(c, encoder.width)(collate(plain.examples, "span"))
    with pytest.raises(ConfigError, match="needs the encoder"):
        encode_examples(_examples(2, 0), encoder.tokenizer, c)
    # a checkpoint of another encoder in the same folder is not resumed
    _trainer(encoder, tmp_path, steps=2).fit()
    with pytest.raises(ConfigError, match="different run"):
        _trainer(other, tmp_path, steps=2).fit()


def test_caps_over_the_encoders_positions_are_one_line_errors(encoder: ContextEncoder) -> None:
    assert encoder.max_positions == 128
    with pytest.raises(ConfigError, match="--max-passage-tokens 200 plus 2 special tokens exceeds the 128"):
        encode_examples(_examples(2, 0), encoder.tokenizer, _config(max_passage_tokens=200), encoder=encoder)
    assert encoder.calls == 0
    with pytest.raises(ConfigError, match="--embeddings-kind"):
        ReaderConfig(embeddings_kind="chars")  # type: ignore[arg-type]


def test_read_train_and_evaluate_with_the_encoder_and_a_changed_encoder_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from skillneurons.artifacts import load_manifest
    from skillneurons.cli import main
    from skillneurons.reading.examples import write_jsonl
    from skillneurons.reading.results import ReadEvaluation

    model = tmp_path / "encoder"
    bb = _backbone()
    bb.model.save_pretrained(model)
    bb.tokenizer.save_pretrained(model)
    task = tmp_path / "task"
    task.mkdir()
    for split, (n, seed) in {"train": (12, 0), "dev": (4, 1), "test": (4, 2)}.items():
        write_jsonl(task / f"{split}.jsonl", _examples(n, seed))
    small = ["--dim", "16", "--heads", "2", "--top-k", "8", "--blocks", "1", "--read-passages", "3"]
    steps = ["--steps", "2", "--eval-every", "1", "--warmup-steps", "1", "--batch-size", "4"]
    out = tmp_path / "run"
    emb = ["--embeddings", str(model), "--embeddings-kind", "encoder", "--max-passage-tokens", "40"]
    assert (
        main(["read", "train", "-q", "--task", f"jsonl:{task}", *emb, *small, *steps, "--out", str(out)]) == 0
    )
    man = load_manifest(out / "reader", kind="reader")
    assert man["embeddings_kind"] == "encoder" and man["reader"]["embeddings_kind"] == "encoder"
    assert man["embeddings_key"] == ContextEncoder(bb).key(ReaderConfig(max_passage_tokens=40))
    res = tmp_path / "test.json"
    ev = ["read", "evaluate", "-q", "--reader", str(out / "reader.safetensors"), "--task", f"jsonl:{task}"]
    assert main([*ev, "--out", str(res)]) == 0
    assert ReadEvaluation.load(res).n == 4
    shutil.rmtree(model)
    changed = _backbone(seed=3)  # another model under the same name
    changed.model.save_pretrained(model)
    changed.tokenizer.save_pretrained(model)
    capsys.readouterr()
    assert main([*ev, "--out", str(tmp_path / "again.json")]) != 0
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and "trained on encoder embeddings" in err[0] and "now gives" in err[0]
    assert not (tmp_path / "again.json").exists()
