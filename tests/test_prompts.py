"""Prompt tuning: layouts, heads that learn, artifacts, PEFT round trip, resume."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import separable_task
from skillneurons.backbones.text import CHARS_PER_TOKEN
from skillneurons.errors import ArtifactError, ConfigError
from skillneurons.prompts import (
    PromptConfig,
    PromptModel,
    SoftPrompt,
    build_head,
    build_prompt_model,
    export_peft,
    import_peft,
    load_prompt,
    save_prompt,
)
from skillneurons.testing import tiny_model
from skillneurons.training import TrainConfig, Trainer, evaluate
from skillneurons.verbalizers.zero_shot import TemplateReader


def _model(  # type: ignore[no-untyped-def]
    family: str = "bert",
    head: str = "auto",
    layout: str = "auto",
    length: int = 4,
    **kw,
):
    bb = tiny_model(family, **kw)
    torch.manual_seed(0)
    prompt = SoftPrompt.create(bb, length, "normal", std=0.5)
    return PromptModel(bb, prompt, build_head(head, bb, [["bad"], ["good"]]), layout=layout, max_length=24)


def test_paper_layout_reads_at_mask_slot() -> None:
    m = _model("bert")
    b = m.encode(["good movie", "bad"])
    assert m.layout == "slot_first" and b.read_index.tolist() == [0, 0]
    x, mask, _ = m.embed(b)
    assert x.shape[1] == 1 + 4 + b.input_ids.shape[1]
    torch.testing.assert_close(
        x[0, 0], m.backbone.input_embeddings.weight[m.backbone.tokenizer.mask_token_id]
    )
    assert m.prompt_positions(b).tolist() == [[0, 1, 2, 3, 4]] * 2
    assert mask[:, :5].all()


def test_peft_layout_slot_before_closing_token_and_causal_last_token() -> None:
    m = _model("bert", layout="prompt_first")
    b = m.encode(["good movie", "bad"])
    tok = m.backbone.tokenizer
    for row, read in zip(b.input_ids, b.read_index, strict=True):
        pos = int(read) - m.prefix_length
        assert int(row[pos]) == tok.mask_token_id and int(row[pos + 1]) == tok.sep_token_id
    c = _model("llama")
    bc = c.encode(["good movie", "bad"])
    assert c.layout == "prompt_first"
    assert bc.read_index.tolist() == [4 + 2 - 1, 4 + 1 - 1]


def test_causal_model_rejects_slot_first() -> None:
    with pytest.raises(ConfigError, match="prompt_first"):
        _model("gpt2", layout="slot_first")


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_prompt_last_puts_each_rows_prompt_after_its_own_text(family: str) -> None:
    """prompt_last: [text][p_1 .. p_P] per row (padding behind the prompt), read at p_P; a padded
    batch gives each example the logits it gets alone; every soft token sees the text (prompt_first's
    soft tokens do not: identical activations for all examples)."""
    from skillneurons.backbones import record_neurons
    from skillneurons.prompts.model import position_names, soft_columns

    m = _model(family, layout="suffix")
    texts = ["good movie it was", "bad"]
    b = m.encode(texts)
    n = b.attention_mask.sum(1)
    P = m.prompt.length
    assert m.layout == "prompt_last" and b.read_index.tolist() == (n + P - 1).tolist()
    x, mask, _ = m.embed(b)
    text = m.backbone.input_embeddings(b.input_ids)
    for i, k in enumerate(n.tolist()):
        torch.testing.assert_close(x[i, :k], text[i, :k])
        torch.testing.assert_close(x[i, k : k + P], m.prompt().detach())
        assert mask[i].tolist() == [1] * (k + P) + [0] * (x.shape[1] - k - P)
    assert m.sequence_mask(b).long().tolist() == mask.tolist()
    assert (m.text_mask(b).sum(1) == n).all() and not (m.text_mask(b) & ~m.sequence_mask(b)).any()
    pos = m.prompt_positions(b)
    assert pos.tolist() == [[k - 1 + t for t in range(P + 1)] for k in n.tolist()]
    assert (pos[:, -1] == b.read_index).all() and (pos[:, soft_columns(m.layout, P)] >= n[:, None]).all()
    assert position_names(m.layout, P) == ["end", "p1", "p2", "p3", "read"]
    with torch.no_grad():
        together = m(b)
        alone = torch.cat([m(m.encode([t])) for t in texts])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    m(b).sum().backward()
    assert m.prompt.weight.grad is not None and m.prompt.weight.grad.abs().sum() > 0
    for layout, blind in (("prompt_last", False), ("prompt_first", True)):
        mm = _model(family, layout=layout)
        bb = mm.encode(texts)
        with record_neurons(mm.backbone, [0]) as acts, torch.no_grad():
            mm.hidden_states(bb)
        soft = mm.prompt_positions(bb)[:, soft_columns(layout, P)]
        a = torch.gather(acts[0], 1, soft.unsqueeze(-1).expand(-1, -1, acts[0].shape[-1]))
        assert torch.allclose(a[0], a[1], atol=1e-6) is blind, layout


def test_prompt_last_is_for_causal_lms() -> None:
    with pytest.raises(ConfigError, match=r"prompt_last reads at the last soft token.*encoder"):
        _model("bert", layout="prompt_last")


def test_text_truncated_never_prompt() -> None:
    m = _model("roberta")
    b = m.encode([" ".join(["good"] * 100)])
    assert b.input_ids.shape[1] + m.prefix_length == m.max_length


@pytest.mark.parametrize("family", ["llama", "gpt2", "bert"])
def test_template_never_truncated(family: str) -> None:
    """A long text is cut before it is filled into the template, so the template's end (where a
    causal LM reads) survives; a text that fits is encoded exactly as the filled template is."""
    bb = tiny_model(family)
    torch.manual_seed(0)
    prompt = SoftPrompt.create(bb, 4, "normal", std=0.5)
    template = "{text} movie it was"
    m = PromptModel(bb, prompt, build_head("auto", bb, [["bad"], ["good"]]), max_length=24, template=template)
    tok = bb.tokenizer
    tail = tok(" movie it was", add_special_tokens=False)["input_ids"]
    for pair in (False, True):
        long_b = [" ".join(["bad"] * 50)] if pair else None
        b = m.encode([" ".join(["good"] * 50)], long_b)
        assert (
            b.input_ids.shape[1]
            + m.prefix_length
            + (1 if m.layout == "prompt_first" and m.slot_id is not None else 0)
            <= m.max_length
        )
        ids = b.input_ids[0].tolist()
        text = tok.decode(ids)
        assert "good movie it was" in text, text
        if not pair and bb.is_causal:
            read = int(b.read_index[0]) - m.prefix_length
            assert ids[read - len(tail) + 1 : read + 1] == tail
    short = m.encode(["good movie"])
    plain = tok(["good movie movie it was"], return_tensors="pt")["input_ids"]
    if m.layout == "slot_first" or m.slot_id is None:
        assert short.input_ids.tolist() == plain.tolist()
    with pytest.raises(ConfigError, match="template"):
        PromptModel(bb, prompt, m.head, max_length=10, template="{text} " + "it was " * 3)


def test_huge_line_is_cut_by_characters_before_tokenising(monkeypatch: pytest.MonkeyPatch) -> None:
    """#17 item 15: a huge line (a 25 MB review made two steps take 89 s) is cut to CHARS_PER_TOKEN
    characters per token of room before the tokenizer sees it; the tokens kept are the same."""
    m = _model("bert", layout="prompt_first")
    room = m.max_length - m.prefix_length - 1
    huge, short = "good movie " * 200_000, "good movie " * 100
    tok_type = type(m.backbone.tokenizer)
    seen: list[int] = []
    real_call = tok_type.__call__

    def spy(self, text, text_pair=None, *a, **kw):  # type: ignore[no-untyped-def]
        seen.extend(len(t) for t in ([text] if isinstance(text, str) else text))
        seen.extend(len(t) for t in ([text_pair] if isinstance(text_pair, str) else text_pair or []))
        return real_call(self, text, text_pair, *a, **kw)

    monkeypatch.setattr(tok_type, "__call__", spy)
    big = m.encode([huge], [huge])
    assert max(seen) <= room * CHARS_PER_TOKEN
    assert torch.equal(big.input_ids, m.encode([short], [short]).input_ids)
    reader = TemplateReader(tiny_model("bert"), "{text} it was {mask} .", max_length=16)
    seen.clear()
    ids, _, _ = reader.encode([huge])
    assert max(seen) <= reader.room * CHARS_PER_TOKEN + len(reader.template)
    assert torch.equal(ids, reader.encode([short])[0])


def test_pairs_are_real_pairs() -> None:
    m = _model("bert")
    b = m.encode(["good movie"], ["bad plot"])
    tok = m.backbone.tokenizer
    assert b.input_ids[0].tolist().count(tok.sep_token_id) == 2
    assert b.token_type_ids is not None and b.token_type_ids.max() == 1
    _, _, extra = m.embed(b)
    assert extra["token_type_ids"].shape[1] == m.prefix_length + b.input_ids.shape[1]


@pytest.mark.parametrize(
    ("family", "head"),
    [
        ("bert", "label_words"),
        ("roberta", "label_words"),
        ("llama", "label_words"),
        ("gpt2", "label_words"),
        ("bert", "linear"),
        ("t5", "linear"),
        ("bert", "similarity"),
        ("mpnet", "similarity"),
    ],
)
def test_heads_learn_separable_task(family: str, head: str) -> None:
    task = separable_task(48)
    m = _model(family, head=head, hidden=32, layers=2)
    weights_before = {k: v.clone() for k, v in m.backbone.model.state_dict().items()}
    before = evaluate(m, task)
    cfg = TrainConfig(max_steps=200, batch_size=16, lr=0.1, head_lr=0.05, eval_every=1000, warmup_ratio=0.0)
    Trainer(m, task, task, cfg, progress=False).fit()
    after = evaluate(m, task)
    assert after["loss"] < before["loss"]
    assert after["accuracy"] >= 0.75, after
    for k, v in m.backbone.model.state_dict().items():
        assert torch.equal(v, weights_before[k]), f"backbone weight {k} changed"


def test_prompt_artifact_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = _model("bert", head="linear")
    path = save_prompt(tmp_path / "p", m, task={"name": "x"}, seed=3)
    man = json.loads((tmp_path / "p.json").read_text())
    assert man["kind"] == "prompt" and man["seed"] == 3 and man["shapes"]["prompt"] == [4, 32]
    loaded, _ = load_prompt(path, m.backbone)
    b = m.encode(["good movie", "bad"])
    torch.testing.assert_close(loaded(b), m(b))


def test_prompt_from_other_width_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = _model("bert", hidden=32)
    path = save_prompt(tmp_path / "p", m)
    other = tiny_model("bert", hidden=48)
    with pytest.raises(ArtifactError) as e:
        load_prompt(path, other)
    assert "hidden_size 32" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="hidden size 48"):
        PromptModel(other, m.prompt, build_head("linear", other, [["a"], ["b"]]))


def test_corrupted_prompt_detected(tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = _model("bert")
    path = save_prompt(tmp_path / "p", m)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="hash"):
        load_prompt(path, m.backbone)


def test_peft_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from peft import PeftModel

    m = _model("llama")
    export_peft(m, tmp_path / "adapter")
    prompt, cfg = import_peft(tmp_path / "adapter")
    assert cfg["peft_type"] == "PROMPT_TUNING" and cfg["num_virtual_tokens"] == 4
    torch.testing.assert_close(prompt.weight, m.prompt.weight)
    # PEFT itself loads the adapter and holds the same prompt
    peft_model = PeftModel.from_pretrained(m.backbone.model, str(tmp_path / "adapter"))
    emb = peft_model.prompt_encoder["default"].embedding.weight
    torch.testing.assert_close(emb, m.prompt.weight)
    with pytest.raises(ConfigError, match="prompt_first"):
        export_peft(_model("bert"), tmp_path / "x")


def test_resume_after_interrupt_matches_uninterrupted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    task = separable_task(40)
    cfg = TrainConfig(max_steps=8, batch_size=8, lr=0.05, eval_every=2, seed=1)
    full = _model("bert", head="linear")
    Trainer(full, task, task, cfg, tmp_path / "a", progress=False).fit()

    part = _model("bert", head="linear")
    trainer = Trainer(part, task, task, cfg, tmp_path / "b", progress=False)
    calls = {"n": 0}
    real_step = trainer.train_step

    def flaky(idx, step):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real_step(idx, step)

    trainer.train_step = flaky  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    resumed = _model("bert", head="linear")
    res = Trainer(resumed, task, task, cfg, tmp_path / "b", progress=False).fit()
    assert res.resumed_from == 5
    torch.testing.assert_close(resumed.prompt.weight, full.prompt.weight)
    torch.testing.assert_close(
        resumed.head.state_dict()["linear.weight"], full.head.state_dict()["linear.weight"]
    )


def test_checkpoint_of_other_run_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    task = separable_task(16)
    Trainer(
        _model("bert"), task, task, TrainConfig(max_steps=2, batch_size=8), tmp_path, progress=False
    ).fit()
    with pytest.raises(ConfigError, match="different run"):
        Trainer(
            _model("bert"), task, task, TrainConfig(max_steps=3, batch_size=8), tmp_path, progress=False
        ).fit()


def test_same_seed_same_result() -> None:
    task = separable_task(24)
    cfg = TrainConfig(max_steps=4, batch_size=8, seed=5)
    a, b = _model("bert"), _model("bert")
    Trainer(a, task, task, cfg, progress=False).fit()
    Trainer(b, task, task, cfg, progress=False).fit()
    assert torch.equal(a.prompt.weight, b.prompt.weight)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"init": "text"}, "--init-text"),
        ({"init": "zeros"}, "unknown prompt init"),
        ({"layout": "sideways"}, "unknown layout"),
        ({"template": "no placeholder"}, "placeholder"),
        ({"max_length": 0}, "max_length"),
    ],
)
def test_prompt_config_refuses_bad_options_in_one_line(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        PromptConfig(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(e.value)


def test_prompt_config_builds_the_same_model() -> None:
    bb = tiny_model("bert")
    cfg = PromptConfig(prompt_length=4, head="linear", max_length=24)
    torch.manual_seed(0)
    a = build_prompt_model(bb, [["bad"], ["good"]], cfg, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    prompt = SoftPrompt.create(bb, 4, "normal", generator=torch.Generator().manual_seed(1))
    b = PromptModel(bb, prompt, build_head("linear", bb, [["bad"], ["good"]]), max_length=24)
    batch = a.encode(["good movie", "bad"])
    assert a.layout == b.layout == "slot_first"
    torch.testing.assert_close(a(batch), b(batch))
