"""Fast prompt tuning: layer selection, partial models (exactness against independent references),
schedules, carrying the prompt and optimizer state across expansions, resume, FLOP counts."""

from __future__ import annotations

import contextlib
import itertools
import json
from typing import Any

import pytest
import torch

from conftest import separable_task
from skillneurons.backbones import Backbone, neuron_hooks, record_neurons
from skillneurons.errors import ConfigError
from skillneurons.fpt import (
    PartialModel,
    ProgressiveTraining,
    activation_magnitudes,
    count_step_flops,
    parse_schedule,
    select_layers,
    top_fraction_mask,
)
from skillneurons.neurons.find import SkillNeurons
from skillneurons.neurons.ranking import SkillRanking, decompose
from skillneurons.prompts import PromptModel, SoftPrompt, build_head
from skillneurons.testing import tiny_model
from skillneurons.training import TrainConfig, Trainer
from skillneurons.training.trainer import encode_examples

# ---------------------------------------------------------------------------------------------------
# layer selection


def test_even_rule_matches_the_paper_example() -> None:
    assert select_layers(24, 6) == [0, 4, 8, 13, 18, 23]
    assert select_layers(12, 3) == [0, 5, 11]
    assert select_layers(6, 3) == [0, 2, 5]
    assert select_layers(24, 6, "first") == [0, 1, 2, 3, 4, 5]


def test_even_rule_invariants() -> None:
    for L in range(1, 40):
        assert select_layers(L, L) == list(range(L))
        assert select_layers(L, 1, "first") == [0]
        for k in range(2, L + 1):
            got = select_layers(L, k)
            assert len(got) == k and got[0] == 0 and got[-1] == L - 1
            gaps = [b - a for a, b in itertools.pairwise(got)]
            assert min(gaps) >= 1 and max(gaps) - min(gaps) <= 1
            assert gaps == sorted(gaps)  # the remainder goes to the later gaps
            assert sum(gaps) == L - 1
    with pytest.raises(ConfigError, match="at least 2"):
        select_layers(6, 1)
    with pytest.raises(ConfigError, match="cannot keep 7 of 6"):
        select_layers(6, 7)


def test_top_fraction_mask_keeps_the_highest_scores() -> None:
    scores = [torch.tensor([0.1, 0.9, 0.5, 0.7]), torch.tensor([3.0, 1.0, 2.0, 2.0])]
    m = top_fraction_mask(scores, 0.5)
    assert m[0].tolist() == [False, True, False, True]
    assert m[1].tolist() == [True, False, True, False]  # tie 2.0/2.0: the lower index
    assert [int(x.sum()) for x in top_fraction_mask(scores, 0.01)] == [1, 1]  # at least one per layer


# ---------------------------------------------------------------------------------------------------
# partial models


def _inputs(bb: Backbone, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    return bb.input_embeddings(ids), mask


@torch.no_grad()
def test_all_layers_full_width_equal_the_full_model_exactly(family: str) -> None:
    bb = tiny_model(family, layers=4)
    emb, mask = _inputs(bb)
    full = bb.encoder_forward(emb, mask)
    everything = [torch.ones(n, dtype=torch.bool) for n in bb.d_ff]
    pm = PartialModel(bb, list(range(4)), everything, [torch.zeros(n) for n in bb.d_ff])
    assert pm.is_full
    with pm:
        assert torch.equal(bb.encoder_forward(emb, mask), full)
    # a schedule's final stage is the untouched model: same logits through the hooks' context
    task = separable_task(16)
    model = PromptModel(
        bb, SoftPrompt.create(bb, 3), build_head("linear", bb, task.label_words), max_length=24
    )
    trainer = Trainer(
        model,
        task,
        task,
        TrainConfig(max_steps=4, batch_size=4),
        progress=False,
        hooks=ProgressiveTraining(model, task, "50,full:1"),
    )
    batch = encode_examples(model, task, list(range(8)))
    ref = model(batch)
    hooks = trainer.hooks
    assert hooks is not None
    with hooks.step_context(3):  # the final (full) stage
        assert torch.equal(model(batch), ref)
    with hooks.step_context(0):  # a partial stage
        assert not torch.allclose(model(batch), ref)
    assert torch.equal(model(batch), ref)  # restored


def _reference_shallow(bb: Backbone, layers: list[int]) -> torch.nn.Module:
    """An independently built model with only ``layers``: a fresh model of ``len(layers)`` layers
    whose weights are loaded from the kept blocks (renumbered)."""
    cfg = bb.config.__class__.from_dict(bb.config.to_dict())
    cfg.num_hidden_layers = len(layers)
    ref = type(bb.model)(cfg).eval()
    prefix = bb.layers_path + "."
    sd = {}
    for k, v in bb.model.state_dict().items():
        if k.startswith(prefix):
            i, rest = k[len(prefix) :].split(".", 1)
            if int(i) not in layers:
                continue
            k = f"{prefix}{layers.index(int(i))}.{rest}"
        sd[k] = v
    missing, unexpected = ref.load_state_dict(sd, strict=False)
    assert not unexpected and all("rotary" in m or "position_ids" in m for m in missing), (
        missing,
        unexpected,
    )
    return ref


@torch.no_grad()
def test_dropped_layers_equal_a_shallower_model(family: str) -> None:
    bb = tiny_model(family, layers=5)
    emb, mask = _inputs(bb)
    keep = select_layers(5, 3)  # 0, 2, 4
    ref = _reference_shallow(bb, keep)
    want = ref.base_model(inputs_embeds=emb, attention_mask=mask)[0]
    with record_neurons(bb) as rec, PartialModel(bb, keep) as pm:
        got = bb.encoder_forward(emb, mask)
        assert pm.widths == [bb.d_ff[i] for i in keep]
    assert sorted(rec) == keep  # only the kept blocks ran
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], rtol=1e-5, atol=1e-5)
    full = bb.encoder_forward(emb, mask)
    assert not torch.allclose(full[real], got[real])
    assert len(bb.model.get_submodule(bb.layers_path)) == 5  # restored


@torch.no_grad()
def test_narrow_ffn_equals_replacing_removed_neurons_by_their_baseline(family: str) -> None:
    bb = tiny_model(family, layers=3)
    emb, mask = _inputs(bb)
    g = torch.Generator().manual_seed(1)
    keep = [torch.rand(n, generator=g) < 0.4 for n in bb.d_ff]
    base = [torch.randn(n, generator=g, dtype=torch.float64) for n in bb.d_ff]

    def replace(layer: int, acts: torch.Tensor) -> torch.Tensor:
        k = keep[layer].to(acts.device)
        return torch.where(k, acts, base[layer].to(acts.dtype))

    with neuron_hooks(bb, replace):
        want = bb.encoder_forward(emb, mask)
    originals = [bb.down_proj(i) for i in range(3)]
    with PartialModel(bb, [0, 2], keep, base) as pm:
        got = bb.encoder_forward(emb, mask)
        assert pm.widths == [int(keep[0].sum()), int(keep[2].sum())]
    assert [bb.down_proj(i) for i in range(3)] == originals  # the full FFNs are back
    with neuron_hooks(bb, replace, layers=[0, 2]), PartialModel(bb, [0, 2]):
        want_partial = bb.encoder_forward(emb, mask)
    real = mask.bool()
    torch.testing.assert_close(got[real], want_partial[real], rtol=1e-4, atol=1e-4)
    with PartialModel(bb, None, keep, base):
        torch.testing.assert_close(bb.encoder_forward(emb, mask)[real], want[real], rtol=1e-4, atol=1e-4)


def test_partial_model_restores_after_an_error_and_refuses_nesting() -> None:
    bb = tiny_model("bert", layers=4)
    emb, mask = _inputs(bb)
    with torch.no_grad():
        ref = bb.encoder_forward(emb, mask)
    a = PartialModel(bb, [0, 3])
    with pytest.raises(RuntimeError, match="boom"), a:
        raise RuntimeError("boom")
    b = PartialModel(bb, [0, 1, 3])
    with a, pytest.raises(ConfigError, match="partial model of tiny-bert is active"):
        PartialModel(
            bb, None, [torch.ones(n, dtype=torch.bool) for n in bb.d_ff], [torch.zeros(n) for n in bb.d_ff]
        )
    with a, pytest.raises(ConfigError, match="is active"), b:
        pass
    with pytest.raises(ConfigError, match="already active"), a, a:
        pass
    with torch.no_grad():
        assert torch.equal(bb.encoder_forward(emb, mask), ref)
    with pytest.raises(ConfigError, match="does not exist"):
        PartialModel(bb, [0, 4])
    with pytest.raises(ConfigError, match="needs a baseline"):
        PartialModel(bb, None, [torch.ones(n, dtype=torch.bool) for n in bb.d_ff])


def test_activation_magnitudes_are_streaming_means_over_real_tokens() -> None:
    bb = tiny_model("roberta", layers=2)
    task = separable_task(10)
    model = PromptModel(
        bb, SoftPrompt.create(bb, 2), build_head("linear", bb, task.label_words), max_length=24
    )
    mean_abs, mean = activation_magnitudes(model, task, batch_size=3)
    batch = encode_examples(model, task, list(range(10)))
    with torch.no_grad(), record_neurons(bb) as rec:
        model.hidden_states(batch)
    real = torch.cat([torch.ones(10, model.prefix_length, dtype=torch.bool), batch.attention_mask.bool()], 1)
    for layer in range(2):
        acts = rec[layer][real].double()
        torch.testing.assert_close(mean_abs[layer], acts.abs().mean(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(mean[layer], acts.mean(0), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# schedules


def test_schedule_syntax() -> None:
    s = parse_schedule("25,50,75,full")
    assert [(x.depth, x.width, x.weight) for x in s.stages] == [
        (0.25, 0.25, 1),
        (0.5, 0.5, 1),
        (0.75, 0.75, 1),
        (1, 1, 2),
    ]
    assert s.boundaries(100) == [20, 40, 60, 100]
    assert [s.stage_at(i, 100) for i in (0, 19, 20, 59, 60, 99)] == [0, 0, 1, 2, 3, 3]
    assert s.spec == "d25w25:1,d50w50:1,d75w75:1,full:2"
    d = parse_schedule("d50:3, w25%:1 ,d50w75,full:5")
    assert [(x.depth, x.width, x.weight) for x in d.stages] == [
        (0.5, 1, 3),
        (1, 0.25, 1),
        (0.5, 0.75, 1),
        (1, 1, 5),
    ]
    assert parse_schedule("full").boundaries(7) == [7]
    assert parse_schedule("50,full").boundaries(2) == [1, 2]
    assert parse_schedule("10,20,30,full").boundaries(2)[-1] == 2  # the full stage always runs
    for bad, msg in [
        ("25,50", "must be 'full'"),
        ("x5,full", "cannot read"),
        ("0,full", r"\(0, 100\]"),
        ("d150,full", r"\(0, 100\]"),
        ("25,,full", "empty stage"),
        ("25:x,full", "not a number"),
        ("25:0,full", "weight"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            parse_schedule(bad)
    with pytest.raises(ConfigError, match="progressive-neurons"):
        parse_schedule("w50,full", width_by="skill")


def test_cli_options_build_the_schedule() -> None:
    from skillneurons.cli import build_parser
    from skillneurons.cli.options import build_config
    from skillneurons.fpt.config import ProgressiveConfig
    from skillneurons.fpt.schedule import ProgressiveSchedule

    def schedule_from_args(args):  # type: ignore[no-untyped-def]
        return ProgressiveSchedule.from_config(build_config(args, ProgressiveConfig))

    args = build_parser().parse_args(
        [
            "tune",
            "--model",
            "m",
            "--task",
            "mr",
            "--out",
            "o",
            "--progressive",
            "d50,full",
            "--progressive-depth",
            "first",
            "--reset-optimizer",
            "--progressive-eval",
            "all",
        ]
    )
    s = schedule_from_args(args)
    assert s is not None and s.depth_rule == "first" and s.reset_optimizer and s.evaluate == "all"
    assert s.spec == "d50:1,full:2"
    plain = build_parser().parse_args(["tune", "--model", "m", "--task", "mr", "--out", "o"])
    assert schedule_from_args(plain) is None


# ---------------------------------------------------------------------------------------------------
# training


class _Recorder(ProgressiveTraining):
    """Records, before every step, the prompt Parameter object and the optimizer state."""

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.seen: list[dict[str, Any]] = []

    def step_context(self, step: int) -> contextlib.AbstractContextManager[Any]:
        ctx = super().step_context(step)  # (resets the optimizer first when asked)
        assert self.trainer is not None
        p = self.model.prompt.weight
        st = self.trainer.optimizer.state.get(p, {})
        self.seen.append(
            {
                "step": step,
                "param": p,
                "value": p.detach().clone(),
                "opt_param": self.trainer.optimizer.param_groups[0]["params"][0],
                "adam_step": float(st["step"]) if "step" in st else None,
                "exp_avg": st["exp_avg"].clone() if "exp_avg" in st else None,
                "layers": len(self.model.backbone.model.get_submodule(self.model.backbone.layers_path)),
            }
        )
        return ctx


def _setup(family: str = "bert", layers: int = 4, n: int = 32) -> tuple[PromptModel, Any]:
    bb = tiny_model(family, layers=layers)
    task = separable_task(n)
    torch.manual_seed(0)
    model = PromptModel(
        bb,
        SoftPrompt.create(bb, 3, generator=torch.Generator().manual_seed(0)),
        build_head("linear", bb, task.label_words),
        max_length=24,
    )
    return model, task


@pytest.mark.parametrize("reset", [False, True])
def test_prompt_and_optimizer_state_persist_across_an_expansion(reset: bool) -> None:
    model, task = _setup()
    prompt_param = model.prompt.weight
    hooks = _Recorder(model, task, parse_schedule("d50:1,full:1", reset_optimizer=reset))
    trainer = Trainer(
        model, task, task, TrainConfig(max_steps=6, batch_size=8, lr=0.05), progress=False, hooks=hooks
    )
    records_during_steps: list[int] = []
    real_step = trainer.train_step

    def spy(idx: list[int], step: int) -> float:
        records_during_steps.append(len(model.backbone.model.get_submodule(model.backbone.layers_path)))
        return real_step(idx, step)

    trainer.train_step = spy  # type: ignore[method-assign]
    trainer.fit()
    assert records_during_steps == [2, 2, 2, 4, 4, 4]  # steps 0-2 on 2 of 4 layers, then the full model
    seen = hooks.seen
    assert [s["step"] for s in seen] == list(range(6))
    assert all(s["param"] is prompt_param and s["opt_param"] is prompt_param for s in seen)
    assert all(s["layers"] == 4 for s in seen)  # outside a step the model is full
    first_full = seen[3]
    if reset:
        assert first_full["adam_step"] is None  # moments cleared at the expansion
    else:
        assert first_full["adam_step"] == 3.0  # carried: 3 Adam steps so far
        assert first_full["exp_avg"] is not None and first_full["exp_avg"].abs().sum() > 0
    # the prompt changed during the partial stage and was carried into the full stage as it was
    assert not torch.equal(seen[0]["value"], first_full["value"])
    st = trainer.optimizer.state[prompt_param]
    assert float(st["step"]) == (3.0 if reset else 6.0)


def test_progressive_run_resumes_exactly_after_an_interruption(  # type: ignore[no-untyped-def]
    tmp_path,
) -> None:
    def run(out: Any, stop_at: int | None) -> torch.Tensor:
        model, task = _setup(n=40)

        class Stop(ProgressiveTraining):
            def step_context(self, step: int) -> contextlib.AbstractContextManager[Any]:
                if stop_at is not None and step == stop_at:
                    raise KeyboardInterrupt
                return super().step_context(step)

        hooks = Stop(model, task, parse_schedule("w50:1,d50:1,full:1", evaluate="all"))
        cfg = TrainConfig(max_steps=9, batch_size=8, lr=0.05, eval_every=2)
        Trainer(model, task, task, cfg, out, progress=False, hooks=hooks).fit()
        return model.prompt.weight.detach().clone()

    ref = run(tmp_path / "ref", None)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", 4)  # inside the second (depth) stage; the checkpoint is at step 4
    assert json.loads((tmp_path / "cut" / "checkpoint.json").read_text())["step"] == 4
    assert torch.equal(run(tmp_path / "cut", None), ref)


def test_evaluation_only_in_the_final_stage_and_history_fields(  # type: ignore[no-untyped-def]
    tmp_path,
) -> None:
    model, task = _setup()
    hooks = ProgressiveTraining(model, task, "d50,full:1")
    Trainer(
        model,
        task,
        task,
        TrainConfig(max_steps=8, batch_size=8, eval_every=2),
        tmp_path,
        progress=False,
        hooks=hooks,
    ).fit()
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["step"] for h in history] == [6, 8]  # steps 5-8 are the full stage; 2 and 4 were partial
    assert all(h["stage"] == 1 for h in history)
    assert history[-1]["flops"] == hooks.flops_until(8) > 0
    assert history[0]["train_seconds"] <= history[1]["train_seconds"]


def test_flops_shrink_with_the_partial_model_and_match_a_direct_count() -> None:
    model, task = _setup(layers=4)
    hooks = ProgressiveTraining(model, task, "d50,w50,d50w50,full")
    Trainer(model, task, task, TrainConfig(max_steps=10, batch_size=8), progress=False, hooks=hooks)
    f_d, f_w, f_dw, f_full = hooks.flops_per_step
    batch = encode_examples(
        model, task, Trainer(model, task, task, TrainConfig(batch_size=8)).epoch_order(0)[:8]
    )
    assert f_full == count_step_flops(model, batch)
    assert f_dw < f_d < f_full and f_dw < f_w < f_full
    with PartialModel(model.backbone, select_layers(4, 2)):
        assert f_d == count_step_flops(model, batch)
    s = hooks.summary()
    assert s["steps"] == 10 and [st["steps"] for st in s["stages"]] == [2, 2, 2, 4]
    assert s["flops"] == 2 * (f_d + f_w + f_dw) + 4 * f_full
    assert s["flops_ratio"] == pytest.approx(s["flops"] / (10 * f_full))
    assert s["stages"][1]["widths"] == [24] * 4 and s["stages"][0]["layers"] == [0, 3]
    vanilla = ProgressiveTraining(model, task, "full")
    Trainer(model, task, task, TrainConfig(max_steps=10, batch_size=8), progress=False, hooks=vanilla)
    assert vanilla.summary()["flops_ratio"] == 1.0


def test_width_by_skill_neurons_keeps_the_most_predictive(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, task = _setup(layers=2)
    bb = model.backbone
    g = torch.Generator().manual_seed(3)
    scores = torch.rand(2, bb.d_ff[0], generator=g, dtype=torch.float64)
    token_mean = torch.randn(2, bb.d_ff[0], generator=g, dtype=torch.float64)
    sub = decompose(2)
    SkillNeurons(
        sub,
        {sub[0].name: SkillRanking(scores)},
        {sub[0].name: torch.zeros_like(scores).long()},
        token_mean,
        {},
    ).save(tmp_path / "sn")
    hooks = ProgressiveTraining(
        model, task, parse_schedule("w25,full", width_by="skill", neurons=str(tmp_path / "sn.safetensors"))
    )
    Trainer(model, task, task, TrainConfig(max_steps=3, batch_size=8), progress=False, hooks=hooks)
    keep, base = hooks._width_masks(0.25)
    for layer in range(2):
        top = set(torch.topk(scores[layer], int(keep[layer].sum())).indices.tolist())
        assert set(torch.nonzero(keep[layer]).view(-1).tolist()) == top
        assert torch.equal(base[layer], token_mean[layer])
    assert hooks.summary()["stages"][0]["widths"] == [12, 12]
    wrong = tiny_model("bert", layers=3)
    m3 = PromptModel(
        wrong, SoftPrompt.create(wrong, 3), build_head("linear", wrong, task.label_words), max_length=24
    )
    with pytest.raises(ConfigError, match="found on a model with 2 layers"):
        Trainer(
            m3,
            task,
            task,
            TrainConfig(max_steps=3, batch_size=8),
            progress=False,
            hooks=ProgressiveTraining(m3, task, hooks.schedule),
        )


def test_tune_prompt_progressive_writes_the_stages(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from skillneurons.runs import tune_prompt

    res = tune_prompt(
        tiny_model("gpt2", layers=4),
        separable_task(60),
        tmp_path,
        prompt_length=3,
        head="linear",
        max_length=24,
        progressive="d50,w50,full",
        progress=False,
        config=TrainConfig(max_steps=8, batch_size=8, eval_every=2),
    )
    p = res["progressive"]
    assert p["schedule"] == "d50:1,w50:1,full:2" and [s["steps"] for s in p["stages"]] == [2, 2, 4]
    assert 0 < p["flops_ratio"] < 1
    assert (tmp_path / "prompt.safetensors").is_file()
    assert json.loads((tmp_path / "results.json").read_text())["progressive"]["flops"] == p["flops"]
    assert res["best_step"] > 4  # selected in the full stage


@torch.no_grad()
def test_depth_stage_gives_kept_layers_their_own_layer_types() -> None:
    """Qwen2 reads ``config.layer_types[i]`` for the i-th running layer: with layers dropped, each
    kept layer must still get its own (sliding-window or full) attention mask."""
    types = ["full_attention", "full_attention", "full_attention", "sliding_attention"]
    bb = tiny_model(
        "qwen2",
        layers=4,
        layer_types=list(types),
        use_sliding_window=True,
        sliding_window=2,
        max_window_layers=3,
    )
    assert list(bb.config.layer_types) == types
    emb, mask = _inputs(bb)
    keep = [0, 3]
    ref: Any = _reference_shallow(bb, keep)
    ref.config.layer_types = [types[i] for i in keep]
    want = ref.base_model(inputs_embeds=emb, attention_mask=mask)[0]
    with PartialModel(bb, keep):
        assert bb.config.layer_types == ["full_attention", "sliding_attention"]
        got = bb.encoder_forward(emb, mask)
    assert list(bb.config.layer_types) == types  # restored
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], rtol=1e-5, atol=1e-5)
    # the window matters here: with the first two entries (both full) layer 3 would see too much
    ref.config.layer_types = types[:2]
    wrong = ref.base_model(inputs_embeds=emb, attention_mask=mask)[0]
    assert not torch.allclose(wrong[real], want[real])


def test_progressive_config_builds_the_schedule_hooks_and_a_typed_summary() -> None:
    from skillneurons.fpt import ProgressiveConfig, ProgressiveSchedule, ProgressiveSummary, progressive_hooks

    assert ProgressiveSchedule.from_config(ProgressiveConfig()) is None
    cfg = ProgressiveConfig(schedule="d50,full", depth_rule="first", reset_optimizer=True)
    s = ProgressiveSchedule.from_config(cfg)
    assert s is not None and s.spec == "d50:1,full:2" and s.depth_rule == "first" and s.reset_optimizer
    with pytest.raises(ConfigError, match="depth rule"):
        ProgressiveConfig(schedule="d50,full", depth_rule="last")
    model, task = _setup(layers=2)
    assert progressive_hooks(ProgressiveConfig(), model, task) is None
    hooks = progressive_hooks(cfg, model, task)
    assert hooks is not None
    Trainer(model, task, task, TrainConfig(max_steps=4, batch_size=8), progress=False, hooks=hooks)
    summary = hooks.summary()
    assert isinstance(summary, ProgressiveSummary) and summary.stages[0].layers == [0]
    again = ProgressiveSummary.from_json(json.loads(json.dumps(summary.to_json())))
    assert again == summary and summary.to_json()["schema"] == "skillneurons.fpt_summary"
