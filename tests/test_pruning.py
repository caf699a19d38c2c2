"""Skill-neuron pruning on tiny models: exact bias folding for every family, save/load, bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from conftest import ALL_FAMILIES, separable_task
from skillneurons.backbones import Backbone, neuron_hooks
from skillneurons.errors import ArtifactError, ConfigError
from skillneurons.neurons.find import SkillNeurons
from skillneurons.neurons.ranking import SkillRanking, decompose
from skillneurons.prompts import PromptModel, SoftPrompt, build_head, save_prompt
from skillneurons.pruning import (
    count_parameters,
    default_first_layer,
    is_pruned_model,
    load_pruned,
    prune_backbone,
    read_pruned_manifest,
    save_pruned,
    skill_keep_mask,
)
from skillneurons.testing import tiny_model


def _masks(bb: Backbone, frac: float = 0.3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A keep mask (layer 0 whole, a random ``frac`` elsewhere, widths differing) and a baseline."""
    g = torch.Generator().manual_seed(seed)
    L, N = bb.num_layers, bb.d_ff[0]
    keep = torch.rand(L, N, generator=g) < frac
    keep[0] = True
    keep[1:, 0] = True  # never empty
    base = torch.randn(L, N, generator=g, dtype=torch.float64)
    return keep, base


def _inputs(bb: Backbone, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask


@torch.no_grad()
def _run(bb: Backbone, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Last hidden states, plus the LM logits at one position when the model has an LM head."""
    h = bb.encoder_forward(bb.input_embeddings(ids), mask)
    if bb.has_lm_head:
        return torch.cat([h.flatten(), bb.lm_logits(h[:, 0]).flatten()])
    return h.flatten()


def _replaced_by_baseline(bb: Backbone, keep: torch.Tensor, base: torch.Tensor) -> Any:
    def fn(layer: int, acts: torch.Tensor) -> torch.Tensor:
        out = acts.clone()
        removed = ~keep[layer]
        out[..., removed] = base[layer][removed].to(acts.dtype)
        return out

    return neuron_hooks(bb, fn)


def test_keeping_every_neuron_changes_nothing(family: str) -> None:
    bb = tiny_model(family)
    keep = torch.ones(bb.num_layers, bb.d_ff[0], dtype=torch.bool)
    small = prune_backbone(bb, keep, torch.randn(keep.shape, dtype=torch.float64))
    ids, mask = _inputs(bb)
    assert small.d_ff == bb.d_ff and small.model is not bb.model
    assert torch.equal(_run(small, ids, mask), _run(bb, ids, mask))


def test_pruned_equals_original_with_removed_neurons_at_their_baseline(family: str) -> None:
    bb = tiny_model(family)
    keep, base = _masks(bb)
    ids, mask = _inputs(bb)
    before = _run(bb, ids, mask)
    small = prune_backbone(bb, keep, base)
    # physically smaller: the FFN matrices have the kept widths, and the source model is untouched
    assert small.d_ff == keep.sum(1).tolist() and len(set(small.d_ff)) > 1
    assert count_parameters(small) < count_parameters(bb)
    assert torch.equal(_run(bb, ids, mask), before)
    with _replaced_by_baseline(bb, keep, base):
        expected = _run(bb, ids, mask)
    got = _run(small, ids, mask)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-5)
    # and the fold is not a no-op: zero instead of the baseline gives other outputs
    with _replaced_by_baseline(bb, keep, torch.zeros_like(base)):
        zeroed = _run(bb, ids, mask)
    assert not torch.allclose(got, zeroed, rtol=1e-5, atol=2e-5)


def test_prompt_trained_on_the_full_model_runs_on_the_pruned_one() -> None:
    bb = tiny_model("roberta")
    keep, base = _masks(bb)
    torch.manual_seed(0)
    pm = PromptModel(
        bb,
        SoftPrompt.create(bb, 3, "normal", std=0.5),
        build_head("auto", bb, [["bad"], ["good"]]),
        max_length=24,
    )
    small = prune_backbone(bb, keep, base)
    pm_small = PromptModel(small, pm.prompt, pm.head, layout=pm.layout, max_length=24)
    pm_small.head.backbone_ref = [small]  # type: ignore[union-attr,assignment]
    batch = pm.encode(["good movie", "the plot was awful and dull"], labels=[1, 0])
    with torch.no_grad(), _replaced_by_baseline(bb, keep, base):
        expected = pm(batch)
    with torch.no_grad():
        got = pm_small(batch)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-5)


def test_inplace_prunes_the_given_backbone() -> None:
    bb = tiny_model("gpt2")
    keep, base = _masks(bb)
    out = prune_backbone(bb, keep, base, inplace=True)
    assert out is bb and bb.d_ff == keep.sum(1).tolist()


def test_save_load_round_trip(family: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bb = tiny_model(family)
    keep, base = _masks(bb)
    small = prune_backbone(bb, keep, base)
    folder = save_pruned(small, tmp_path / "pruned", keep, source=bb, rho=0.3)
    assert is_pruned_model(folder)
    loaded = load_pruned(folder, device="cpu")
    assert isinstance(loaded, Backbone) and loaded.d_ff == small.d_ff and loaded.kind == bb.kind
    ids, mask = _inputs(bb)
    assert torch.equal(_run(loaded, ids, mask), _run(small, ids, mask))
    man = read_pruned_manifest(folder)
    assert man["kept"] == [torch.nonzero(k).view(-1).tolist() for k in keep]
    assert man["d_ff"] == small.d_ff and man["d_ff_source"] == bb.d_ff and man["rho"] == 0.3
    assert man["source"]["name"] == bb.name and man["pruned_layers"] == [1]
    assert man["parameters"]["pruned"] == count_parameters(small) < man["parameters"]["source"]


def test_saving_again_replaces_the_folder_atomically(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bb = tiny_model("bert")
    keep, base = _masks(bb)
    folder = save_pruned(prune_backbone(bb, keep, base), tmp_path / "p", keep, source=bb)
    keep2, base2 = _masks(bb, 0.6, seed=1)
    save_pruned(prune_backbone(bb, keep2, base2), folder, keep2, source=bb)
    assert load_pruned(folder, device="cpu").d_ff == keep2.sum(1).tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]  # no temporary folders left behind


def test_skill_keep_mask_leaves_the_first_layers_whole() -> None:
    skill = torch.zeros(8, 10, dtype=torch.bool)
    skill[:, :2] = True
    keep = skill_keep_mask(skill)
    assert default_first_layer(8) == 2 and default_first_layer(12) == 3
    assert keep[:2].all() and keep[2:].sum(1).tolist() == [2] * 6
    assert skill_keep_mask(skill, first_layer=0).sum().item() == 16
    assert skill_keep_mask(skill, layers=[-1]).sum(1).tolist() == [10] * 7 + [2]


def _one_line(e: pytest.ExceptionInfo[Exception]) -> None:
    assert "\n" not in str(e.value) and ":" in str(e.value)


def test_bad_masks_give_one_line_errors() -> None:
    bb = tiny_model("bert")
    keep, base = _masks(bb)
    with pytest.raises(ConfigError, match="keep mask has shape") as e:
        prune_backbone(bb, keep[:, :-1], base)
    _one_line(e)
    with pytest.raises(ConfigError, match="keep mask has shape"):
        prune_backbone(bb, keep[:1], base[:1])
    empty = keep.clone()
    empty[1] = False
    with pytest.raises(ConfigError, match="keeps no neuron of layer 1") as e:
        prune_backbone(bb, empty, base)
    _one_line(e)
    with pytest.raises(ConfigError, match="baseline"):
        prune_backbone(bb, keep, base[:, :5])
    nan = base.clone()
    nan[1, ~keep[1]] = float("nan")
    with pytest.raises(ConfigError, match="non-finite"):
        prune_backbone(bb, keep, nan)
    with pytest.raises(ConfigError, match="boolean"):
        prune_backbone(bb, keep.float() * 0.5, base)
    with pytest.raises(ConfigError, match="first layer"):
        skill_keep_mask(keep, first_layer=5)


def test_bad_folders_give_one_line_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bb = tiny_model("llama")
    keep, base = _masks(bb)
    small = prune_backbone(bb, keep, base)
    with pytest.raises(ConfigError, match="keeps"):
        save_pruned(small, tmp_path / "x", torch.ones_like(keep))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a pruned-model folder"):
        save_pruned(small, other, keep)
    with pytest.raises(ArtifactError, match="not a pruned-model folder") as e:
        load_pruned(other)
    _one_line(e)
    folder = save_pruned(small, tmp_path / "p", keep, source=bb)
    man = json.loads((folder / "pruning.json").read_text())
    man["d_ff"][1] += 1
    (folder / "pruning.json").write_text(json.dumps(man))
    with pytest.raises(ArtifactError, match="do not belong together"):
        load_pruned(folder, device="cpu")
    with open(folder / "model.safetensors", "ab") as f:
        f.write(b"x")
    with pytest.raises(ArtifactError, match="does not match the hash") as e:
        load_pruned(folder)
    _one_line(e)


def _skill_neurons(bb: Backbone, seed: int = 0) -> SkillNeurons:
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(bb.num_layers, bb.d_ff[0], generator=g, dtype=torch.float64)
    token_mean = torch.randn(bb.num_layers, bb.d_ff[0], generator=g, dtype=torch.float64)
    sub = decompose(2)
    return SkillNeurons(
        sub,
        {sub[0].name: SkillRanking(scores)},
        {sub[0].name: torch.zeros_like(scores).long()},
        token_mean,
        {"backbone": bb.identity(), "task": "tiny-sentiment"},
    )


def test_prune_run_evaluates_and_retunes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from skillneurons.pruning.config import PruneConfig
    from skillneurons.pruning.results import PruneResult
    from skillneurons.pruning.run import prune_model
    from skillneurons.training import TrainConfig

    bb = tiny_model("bert", layers=4)
    task = separable_task(60)
    splits = task.split(0)
    run = tmp_path / "run"
    splits.save(run / "split.json")
    torch.manual_seed(0)
    pm = PromptModel(
        bb,
        SoftPrompt.create(bb, 3, "normal", std=0.5),
        build_head("auto", bb, task.label_words),
        max_length=24,
    )
    prompt = save_prompt(
        run / "prompt",
        pm,
        task={"name": task.name, "fingerprint": task.fingerprint()},
        split={"seed": 0, "file": "split.json"},
    )
    sn = _skill_neurons(bb)
    sn.save(tmp_path / "neurons" / "skill_neurons")
    res = prune_model(
        tmp_path / "neurons" / "skill_neurons.safetensors",
        tmp_path / "pruned",
        PruneConfig(rho=0.1, retune=True),
        model=bb,
        prompt=prompt,
        task=task,
        train_config=TrainConfig(max_steps=2, batch_size=8),
        progress=False,
    )
    assert res.pruned_layers == [1, 2, 3] and res.d_ff == [48, 5, 5, 5]
    assert res.accuracy_pruned is not None and res.accuracy_retuned is not None
    assert 0 <= res.accuracy_pruned <= 1 and 0 <= res.accuracy_retuned <= 1
    assert res.parameters.fraction is not None
    assert res.parameters.fraction < 1 and "re-tuned" in res.text
    saved = PruneResult.load(tmp_path / "pruned" / "results.json")
    assert saved.to_json() == res.to_json() and "fraction" not in saved.to_json()["ffn_parameters"]
    from skillneurons.evidence import accuracy_ci

    assert res.n is not None
    assert saved.to_json()["accuracy_pruned_ci"] == accuracy_ci(res.accuracy_pruned, res.n).to_json()
    man = read_pruned_manifest(tmp_path / "pruned")
    assert len(man["skill_neurons"]["sha256"]) == 64 and man["first_layer"] == 1
    assert (tmp_path / "pruned" / "retuned" / "prompt.safetensors").is_file()
    with pytest.raises(ConfigError, match="--prompt"):
        prune_model(sn, tmp_path / "q", PruneConfig(retune=True), model=bb)


def test_cli_registers_the_prune_command() -> None:
    from skillneurons.cli import build_parser
    from skillneurons.cli.common import artifacts
    from skillneurons.cli.options import build_config
    from skillneurons.cli.prune import _run_prune
    from skillneurons.pruning.config import PruneConfig

    args = build_parser().parse_args(
        ["prune", "n.safetensors", "--out", "o", "--rho", "0.05", "--layers", "2,3"]
    )
    cfg = build_config(args, PruneConfig)
    assert args._run is _run_prune and list(cfg.layers) == [2, 3] and cfg.rho == 0.05 and not cfg.retune
    assert artifacts(args, "neurons") == ["n.safetensors"]


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_gradients_reach_the_prompt_through_the_pruned_model(family: str) -> None:
    bb = tiny_model(family)
    keep, base = _masks(bb)
    small = prune_backbone(bb, keep, base)
    prompt = SoftPrompt.create(small, 2, "normal", std=0.5)
    pm = PromptModel(small, prompt, build_head("linear", small, [["bad"], ["good"]]), max_length=24)
    loss = pm(pm.encode(["good movie", "bad plot"], labels=[1, 0])).sum()
    loss.backward()
    assert prompt.weight.grad is not None and all(not p.requires_grad for p in small.model.parameters())


assert len(ALL_FAMILIES) >= 10


def test_neuron_mask_converts_and_checks_masks_and_layers() -> None:
    from skillneurons.backbones.masks import NeuronMask, layer_indices

    m = NeuronMask.of(torch.tensor([[1, 0, 1], [0, 0, 1]]))
    assert m.counts() == [2, 1] and m.indices() == [[0, 2], [2]] and m.shape_text() == "[2, 3]"
    assert m.restrict([-1]).counts() == [0, 1] and torch.equal(m.tensor(), m.tensor().bool())
    rows = NeuronMask.from_orders([torch.tensor([2, 0, 1]), torch.tensor([1, 0])], [1, 2])
    assert rows.indices() == [[2], [0, 1]] and rows.shape_text() == "2 rows of [2, 3]"
    assert layer_indices([-1, 0], 3) == [2, 0] and layer_indices(None, 2) == [0, 1]
    with pytest.raises(ConfigError, match=r"layer 3 does not exist: the model has layers 0\.\.2"):
        layer_indices([3], 3)
    with pytest.raises(ConfigError, match="does not exist"):
        layer_indices([-1], 3, negative=False)
    with pytest.raises(ConfigError, match="other than 0/1"):
        NeuronMask.of(torch.full((2, 3), 0.5))
    with pytest.raises(ConfigError, match="boolean"):
        NeuronMask.for_model(torch.ones(2, 3), [3, 3], "keep mask", "tiny")
    with pytest.raises(ConfigError, match="mask made for this model"):
        m.check_fits([3, 4], "tiny")


def test_surgery_replaces_a_submodule_by_path() -> None:
    from skillneurons.backbones.surgery import parent_of, replace_module

    bb = tiny_model("bert")
    new = torch.nn.Linear(2, 2)
    path = bb.spec.down
    replace_module(bb.blocks[0], path, new)
    assert bb.blocks[0].get_submodule(path) is new
    parent, attr = parent_of(bb.blocks[0], path)
    assert getattr(parent, attr) is new
