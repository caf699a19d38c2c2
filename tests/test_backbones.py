"""Backbones: every family exposes its neuron site, hooks are always removed, errors are clear."""

from __future__ import annotations

import pytest
import torch

from skillneurons.backbones import (
    FFNSpec,
    has_hooks,
    load_backbone,
    neuron_hooks,
    parse_ffn_option,
    record_neurons,
    register_architecture,
    spec_for,
)
from skillneurons.errors import ModelError
from skillneurons.testing import tiny_model


def _run(bb):  # type: ignore[no-untyped-def]
    enc = bb.tokenizer(["good movie", "the plot was bad and dull"], padding=True, return_tensors="pt")
    return enc, bb.encoder_forward(bb.input_embeddings(enc["input_ids"]), enc["attention_mask"])


def test_neuron_site_shape_and_edit(family: str) -> None:
    bb = tiny_model(family, d_ff=40, layers=3)
    enc, base = _run(bb)
    with record_neurons(bb) as acts:
        _run(bb)
    assert sorted(acts) == [0, 1, 2]
    for a in acts.values():
        assert a.shape == (2, enc["input_ids"].shape[1], 40)
    assert bb.d_ff == [40, 40, 40] and bb.num_neurons == 120

    # an edit at one neuron of one layer changes the output; hooks are gone afterwards
    def bump(layer: int, a: torch.Tensor) -> torch.Tensor:
        a = a.clone()
        a[..., 7] += 5.0
        return a

    with neuron_hooks(bb, bump, layers=[1]):
        _, edited = _run(bb)
    assert not torch.allclose(base, edited)
    assert not has_hooks(bb)
    _, again = _run(bb)
    torch.testing.assert_close(base, again)


def test_hooks_removed_on_error() -> None:
    bb = tiny_model("bert")
    with pytest.raises(RuntimeError, match="boom"), record_neurons(bb):
        assert has_hooks(bb)
        raise RuntimeError("boom")
    assert not has_hooks(bb)


def test_record_sees_down_projection_input_exactly() -> None:
    """The site is the input of the down projection: down(site) must equal the FFN's output."""
    bb = tiny_model("llama")
    with record_neurons(bb, layers=[0]) as acts:
        _run(bb)
    a = acts[0]
    block = bb.blocks[0]
    # recompute act(gate(x)) * up(x) from the block's own matrices on a probe input
    x = torch.randn(3, bb.hidden_size)
    mlp = block.mlp
    expected = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)
    captured = {}
    with neuron_hooks(bb, lambda layer, t: captured.setdefault(layer, t), layers=[0]):
        mlp(x)
    torch.testing.assert_close(captured[0], expected)
    assert a.shape[-1] == bb.d_ff[0]


def test_frozen() -> None:
    bb = tiny_model("roberta")
    assert not any(p.requires_grad for p in bb.model.parameters())


def test_unknown_architecture_message() -> None:
    class Cfg:
        model_type = "my_new_arch"

    with pytest.raises(ModelError) as e:
        spec_for(Cfg())  # type: ignore[arg-type]
    msg = str(e.value)
    assert "register_architecture" in msg and "--ffn" in msg and "\n" not in msg


def test_register_and_parse_ffn() -> None:
    spec = parse_ffn_option("layers=model.blocks,down=ffn.out,up=ffn.inp,gate=ffn.gate")
    assert spec == FFNSpec(layers="model.blocks", down="ffn.out", up="ffn.inp", gate="ffn.gate")
    register_architecture("custom_for_test", spec)
    with pytest.raises(ModelError, match="already registered"):
        register_architecture("custom_for_test", spec)
    with pytest.raises(ModelError, match="KEY=PATH"):
        parse_ffn_option("layers")


def test_unknown_model_offline_names_alternatives(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelError) as e:
        load_backbone(str(tmp_path / "no-such-model"))
    msg = str(e.value)
    assert "minilm" in msg and "smollm2" in msg and "\n" not in msg


def test_lm_logits_only_at_given_positions() -> None:
    bb = tiny_model("bert")
    h = torch.randn(3, bb.hidden_size)
    ids = torch.tensor([5, 9])
    full = bb.model.cls(h)
    torch.testing.assert_close(bb.lm_logits(h, ids), full[:, ids])


def test_t5_has_no_lm_head() -> None:
    bb = tiny_model("t5")
    assert bb.kind == "encoder" and not bb.has_lm_head
    with pytest.raises(ModelError, match="linear or similarity"):
        bb.lm_logits(torch.randn(1, bb.hidden_size))


def test_geometry_is_read_without_the_weights(family: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``backbone_geometry`` (a model built on the meta device from its config) gives the layers and
    neurons per layer that the loaded backbone has, for every family."""
    from skillneurons.backbones import backbone_geometry

    bb = tiny_model(family, d_ff=24, layers=3)
    bb.model.save_pretrained(tmp_path)
    bb.tokenizer.save_pretrained(tmp_path)
    assert backbone_geometry(str(tmp_path)) == (bb.num_layers, bb.d_ff) == (3, [24, 24, 24])
