"""Skill-neuron discovery on tiny models: streaming == naive reference, shards merge, the chain runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from conftest import separable_task
from skillneurons.backbones import record_neurons
from skillneurons.data import Task
from skillneurons.errors import ConfigError, DataError
from skillneurons.neurons import PredictivityStats, decompose
from skillneurons.neurons.collect import baseline_pass, predictivity_pass
from skillneurons.neurons.config import FindConfig
from skillneurons.neurons.find import SkillNeurons, find_skill_neurons, score_prompt
from skillneurons.neurons.results import FindSummary
from skillneurons.prompts import PromptModel, SoftPrompt, build_head, save_prompt
from skillneurons.testing import tiny_model
from skillneurons.training.trainer import encode_examples, iterate_batches


def _pm(family: str = "bert", layout: str = "auto") -> PromptModel:
    bb = tiny_model(family)
    torch.manual_seed(0)
    prompt = SoftPrompt.create(bb, 3, "normal", std=0.5)
    head = build_head("linear" if family == "t5" else "auto", bb, [["bad"], ["good"]])
    return PromptModel(bb, prompt, head, layout=layout, max_length=24)


def _naive_prompt_acts(pm: PromptModel, task: Task) -> torch.Tensor:
    """[n, L, P+1, N]: every prompt-position activation of every example, stored (the original's way)."""
    rows = []
    with torch.no_grad():
        for idx in iterate_batches(task, 5):
            batch = encode_examples(pm, task, idx)
            with record_neurons(pm.backbone) as rec:
                pm.hidden_states(batch)
            pos = pm.prompt_positions(batch)
            per_layer = [
                torch.stack([rec[layer][b, pos[b]] for b in range(len(idx))]) for layer in sorted(rec)
            ]
            rows.append(torch.stack(per_layer, 1))
    return torch.cat(rows)


def _naive_predictivity(
    train_acts: torch.Tensor, dev_acts: torch.Tensor, labels: torch.Tensor, balanced: bool = False
) -> torch.Tensor:
    base = train_acts.double().mean(0)
    above = (dev_acts.double() > base).double()  # [n, L, T, N]
    acc = (above == labels.view(-1, 1, 1, 1).double()).double().mean(0)
    if balanced:  # 0.5 * (P[a > a_bar | y=1] + P[a <= a_bar | y=0])
        acc = 0.5 * (above[labels == 1].mean(0) + (1 - above[labels == 0]).mean(0))
    return torch.maximum(acc, 1 - acc)


@pytest.mark.parametrize(
    ("family", "layout"),
    [
        ("bert", "slot_first"),
        ("roberta", "prompt_first"),
        ("llama", "auto"),
        ("gpt2", "auto"),
        ("llama", "prompt_last"),
        ("t5", "auto"),
    ],
)
def test_streaming_equals_naive_reference(family: str, layout: str) -> None:
    pm = _pm(family, layout)
    train, dev = separable_task(30, seed=1), separable_task(22, seed=2)
    expected = _naive_predictivity(
        _naive_prompt_acts(pm, train), _naive_prompt_acts(pm, dev), torch.tensor(dev.labels)
    )
    got = score_prompt(pm, train, dev.subset(range(len(dev))), decompose(2), batch_size=7)
    torch.testing.assert_close(got["pred.1_vs_0"], expected, rtol=0, atol=0)
    assert got["pred.1_vs_0"].shape == (pm.backbone.num_layers, 4, pm.backbone.d_ff[0])
    # --score balanced on imbalanced labels (11 positive, 4 negative): the textbook balanced accuracy
    # of the stored activations, to float64 rounding (find computes the exact rational, rounded once)
    skew = dev.subset([i for i, y in enumerate(dev.labels) if y == 1] + [0, 2, 4, 6])
    y = torch.tensor(skew.labels)
    assert y.tolist().count(0) == 4
    acts = _naive_prompt_acts(pm, skew)
    got = score_prompt(pm, train, skew, decompose(2, score="balanced"), batch_size=7)
    want = _naive_predictivity(_naive_prompt_acts(pm, train), acts, y, balanced=True)
    torch.testing.assert_close(got["pred.1_vs_0"], want, rtol=0, atol=1e-15)
    plain = _naive_predictivity(_naive_prompt_acts(pm, train), acts, y)
    assert (plain - want).abs().max() > 0.05  # the weighting matters on these labels


def test_shards_merge_to_the_single_pass_result() -> None:
    pm = _pm("bert")
    train, dev = separable_task(30, seed=1), separable_task(24, seed=2)
    base, _ = baseline_pass(pm, train, batch_size=8)
    # shards cut at batch boundaries: the same batches (same padding) run, only the sums are split
    a, b = train.subset(range(0, 16)), train.subset(range(16, 30))
    merged = baseline_pass(pm, a, batch_size=8)[0] + baseline_pass(pm, b, batch_size=8)[0]
    torch.testing.assert_close(merged.mean(), base.mean(), rtol=1e-12, atol=1e-12)
    whole = predictivity_pass(pm, dev, base, batch_size=8)
    parts: PredictivityStats = predictivity_pass(
        pm, dev.subset(range(16)), base, batch_size=8
    ) + predictivity_pass(pm, dev.subset(range(16, 24)), base, batch_size=8)
    assert torch.equal(parts.above, whole.above) and torch.equal(parts.class_counts, whole.class_counts)
    torch.testing.assert_close(parts.predictivity(), whole.predictivity(), rtol=0, atol=0)


def test_memory_does_not_grow_with_examples() -> None:
    pm = _pm("bert")
    small, large = separable_task(16, seed=1), separable_task(64, seed=1)
    s_small, _ = baseline_pass(pm, small)
    s_large, _ = baseline_pass(pm, large)
    size = lambda s: sum(t.numel() * t.element_size() for t in s.state_dict().values())  # noqa: E731
    assert size(s_small) == size(s_large)


def test_dev_overlapping_training_examples_is_refused() -> None:
    pm = _pm("bert")
    task = separable_task(20)
    with pytest.raises(DataError, match="also occur"):
        score_prompt(pm, task, task.subset(range(5)), decompose(2))


def test_find_chain_saves_resumes_and_reports(tmp_path) -> None:  # type: ignore[no-untyped-def]
    task = separable_task(60)
    splits = task.split(0)
    bb = tiny_model("bert")
    prompts = []
    for seed in range(2):
        run = tmp_path / f"seed{seed}"
        splits.save(run / "split.json")
        torch.manual_seed(seed)
        pm = PromptModel(
            bb,
            SoftPrompt.create(bb, 3, "normal", std=0.5),
            build_head("auto", bb, task.label_words),
            max_length=24,
        )
        manifest = {
            "task": {"name": task.name, "fingerprint": task.fingerprint()},
            "split": {"seed": 0, "file": "split.json"},
        }
        prompts.append(save_prompt(run / "prompt", pm, seed=seed, **manifest))
    res = find_skill_neurons(
        bb, prompts, task, tmp_path / "neurons", FindConfig(auroc_bins=16, top=3), progress=False
    )
    summary = res.summary
    assert 0.5 <= summary.top1_predictivity <= 1.0 and len(summary.top) == 3
    assert set(summary.controls or {}) == {
        "text_mean_pooled",
        "text_max_pooled",
        "random_prompt",
        "hand_written_prompt",
    }
    assert summary.seed_stability is not None and summary.auroc_top1 is not None
    assert "top-1 predictivity" in res.text
    saved = FindSummary.load(tmp_path / "neurons" / "summary.json")
    assert saved == summary and saved.to_json()["schema"] == "skillneurons.find_summary"
    loaded = SkillNeurons.load(tmp_path / "neurons" / "skill_neurons")
    assert torch.equal(loaded.mask(0.1), res.neurons.mask(0.1))
    assert loaded.mask(0.1).sum(1).tolist() == [5, 5]  # 10% of 48 per layer
    # a rerun reuses the per-prompt scores (no forward pass needed) and gives the same ranking
    again = find_skill_neurons(
        bb, prompts, task, tmp_path / "neurons", FindConfig(auroc_bins=16, controls=False), progress=False
    )
    assert torch.equal(again.neurons.scores(), res.neurons.scores())


def test_find_refuses_prompt_of_other_data(tmp_path) -> None:  # type: ignore[no-untyped-def]
    task = separable_task(40)
    bb = tiny_model("bert")
    pm = PromptModel(bb, SoftPrompt.create(bb, 3), build_head("auto", bb, task.label_words), max_length=24)
    path = save_prompt(
        tmp_path / "prompt", pm, task={"name": "other", "fingerprint": "0" * 64}, split={"seed": 0}
    )
    with pytest.raises(DataError, match="other data"):
        find_skill_neurons(bb, [path], task, None, progress=False)


def test_multiclass_union_splits_the_quota() -> None:
    subs = decompose(3, "paper")
    assert [s.name for s in subs] == ["0_vs_2", "1_vs_rest"]


def test_pooled_control_from_the_same_pass_equals_naive_pooling() -> None:
    pm = _pm("bert")
    train, dev = separable_task(20, seed=1), separable_task(16, seed=2)

    def pooled(task: Task) -> torch.Tensor:
        rows = []
        with torch.no_grad():
            for idx in iterate_batches(task, 64):
                batch = encode_examples(pm, task, idx)
                with record_neurons(pm.backbone) as rec:
                    pm.hidden_states(batch)
                m = pm.text_mask(batch)
                for b in range(len(idx)):
                    per_layer = [
                        torch.stack([rec[la][b][m[b]].mean(0), rec[la][b][m[b]].amax(0)])
                        for la in sorted(rec)
                    ]
                    rows.append(torch.stack(per_layer))
        return torch.stack(rows)

    expected = _naive_predictivity(pooled(train), pooled(dev), torch.tensor(dev.labels))
    got = score_prompt(pm, train, dev, decompose(2), pooled=True)
    torch.testing.assert_close(got["pooled.pred.1_vs_0"], expected, rtol=0, atol=0)


def test_bad_options_and_wrong_artifacts_fail_before_any_pass(tmp_path: Path) -> None:
    from skillneurons.errors import ArtifactError, ConfigError
    from skillneurons.neurons.stats import BaselineStats

    task = separable_task(20)
    bb = tiny_model("bert")
    pm = PromptModel(bb, SoftPrompt.create(bb, 3), build_head("auto", bb, task.label_words), max_length=24)
    path = save_prompt(tmp_path / "prompt", pm)
    with pytest.raises(ConfigError, match="rho"):
        find_skill_neurons(bb, [path], task, None, FindConfig(rho=2.0), progress=False)
    BaselineStats(1, 1, 1).save(tmp_path / "stats")
    with pytest.raises(ArtifactError, match="not a 'prompt'"):
        find_skill_neurons(bb, [tmp_path / "stats"], task, None, progress=False)


def test_configs_import_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, skillneurons.neurons.config, skillneurons.perturb.config, skillneurons.pruning.config; "
        "import skillneurons.neurons.results, skillneurons.perturb.results, skillneurons.pruning.results; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_find_config_validates_in_one_line() -> None:
    for bad in (dict(rho=2.0), dict(auroc_bins=0), dict(top=-1), dict(scheme="x"), dict(aggregate="max")):
        with pytest.raises(ConfigError) as e:
            FindConfig(**bad)  # type: ignore[arg-type]
        assert "\n" not in str(e.value)


def _saved_prompts(
    tmp_path: Path, task: Task, n: int = 2, family: str = "bert", layout: str = "auto"
) -> tuple[object, list[Path]]:
    splits = task.split(0)
    bb = tiny_model(family)
    prompts = []
    for seed in range(n):
        run = tmp_path / f"seed{seed}"
        splits.save(run / "split.json")
        torch.manual_seed(seed)
        pm = PromptModel(
            bb,
            SoftPrompt.create(bb, 3, "normal", std=0.5),
            build_head("auto", bb, task.label_words),
            max_length=24,
            layout=layout,
        )
        manifest = {
            "task": {"name": task.name, "fingerprint": task.fingerprint()},
            "split": {"seed": 0, "file": "split.json"},
        }
        prompts.append(save_prompt(run / "prompt", pm, seed=seed, dev_accuracy=0.5, **manifest))
    return bb, prompts


def test_find_summary_labels_its_figures_and_flags_untrustworthy_ones(tmp_path: Path) -> None:
    """#17 item 6: the layer spread is labelled as the GLOBAL top 1%; the neurons' binary-subtask
    predictivity stands beside the comparable number (the prompt's own accuracy on the same subtask and
    dev examples, checked against its own predictions); a prompt at chance, a control beating the
    trained prompt and n < 200 dev examples are flagged in the text and in summary.json."""
    from skillneurons.neurons.results import ControlScore, PromptInfo
    from skillneurons.prompts import load_prompt
    from skillneurons.rundir import RunDir

    task = separable_task(60)
    bb, prompts = _saved_prompts(tmp_path, task)
    res = find_skill_neurons(bb, prompts, task, tmp_path / "n", FindConfig(top=2), progress=False)
    s = res.summary
    assert "per layer:" not in res.text and "where the global top 1% lie" in res.text
    assert "the prompts' own accuracy on it" in res.text and "over all 2 classes" in res.text
    # the prompt's own accuracy on subtask 1_vs_0, from its own predictions on the dev split
    pm, _ = load_prompt(prompts[0], bb)
    dev = RunDir.of(prompts[0]).splits(task).part("dev")
    with torch.no_grad():
        pred = torch.cat([pm(encode_examples(pm, dev, idx)).argmax(-1) for idx in iterate_batches(dev, 8)])
    own = float((pred == torch.tensor(dev.labels)).double().mean())
    info = s.prompts[0]
    assert info.subtask_accuracy == {"1_vs_0": pytest.approx(own)} and info.num_classes == 2
    assert s.subtasks is not None and s.subtasks[0].name == "1_vs_0" and not s.subtasks[0].balanced
    assert s.evidence is not None and s.subtasks[0].top1 == pytest.approx(s.evidence.top1.in_sample)
    assert s.subtasks[0].prompt_accuracy == pytest.approx(
        sum((p.subtask_accuracy or {})["1_vs_0"] for p in s.prompts) / 2
    )
    assert s.flags is not None and any(
        f.startswith(f"too few to rank: {len(dev)} dev examples") for f in s.flags
    )
    assert "  ! too few to rank" in res.text
    assert FindSummary.load(tmp_path / "n" / "summary.json").flags == s.flags
    # the other two flags, on a summary built by hand (no null: tests/test_null.py checks its flag)
    s.evidence = None
    s.prompts = [PromptInfo("p", 0, 0, 0.41, 500, 3, 0.36, {"0_vs_rest": 0.5})]
    s.first_prompt, s.controls = ControlScore(0.8, 0.7), {"random_prompt": ControlScore(0.81, 0.72)}
    flags = s.check()
    assert len(flags) == 2
    assert flags[0].startswith("prompt 1 is at chance (balanced dev accuracy 0.3600, chance 0.3333)")
    assert flags[1].startswith("control random prompt beats the trained prompt (mean of the top 1% 0.7200")
    s.prompts[0].balanced_accuracy, s.controls = 0.6, {"random_prompt": ControlScore(0.7, 0.6)}
    assert s.check() == []


def test_find_progress_bars_name_what_they_score(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """#17 (smaller things): the control passes were unlabelled repeats of "pass 1 (train)"; every
    progress bar of find now names the prompt or the control it scores."""
    import skillneurons.neurons.collect as collect

    names: list[str] = []
    real_tqdm = collect.tqdm

    def recording_tqdm(*args, **kwargs):  # type: ignore[no-untyped-def]
        names.append(kwargs["desc"])
        return real_tqdm(*args, **kwargs)

    monkeypatch.setattr(collect, "tqdm", recording_tqdm)
    task = separable_task(60)
    bb, prompts = _saved_prompts(tmp_path, task)
    find_skill_neurons(bb, prompts, task, None, FindConfig(top=2), progress=False)
    assert names == [
        "pass 1 (train), prompt 1/2 + text-token controls",
        "pass 2 (dev), prompt 1/2 + text-token controls",
        "pass 3 (dev, paired), prompt 1/2 + text-token controls",
        "pass 1 (train), prompt 2/2",
        "pass 2 (dev), prompt 2/2",
        "pass 1 (train), control: random prompt",
        "pass 2 (dev), control: random prompt",
        "pass 3 (dev, paired), control: random prompt",
        "pass 1 (train), control: hand written prompt",
        "pass 2 (dev), control: hand written prompt",
        "pass 3 (dev, paired), control: hand written prompt",
    ]


def test_find_score_balanced_is_recorded_and_keys_the_cached_scores(tmp_path: Path) -> None:
    """``--score balanced`` (issue 18 finding): the binary subtask is balanced, the summary, the
    skill-neuron manifest and the per-prompt score cache record it; a cache of the other score is
    not reused; a summary written before the option reads as ``accuracy``."""
    from skillneurons.artifacts import load_manifest

    full = separable_task(300)
    neg = [i for i, y in enumerate(full.labels) if y == 0]
    task = full.subset([i for i, y in enumerate(full.labels) if y == 1] + neg[:50])  # 3:1
    bb, prompts = _saved_prompts(tmp_path, task, n=1)
    out = tmp_path / "n"
    cfg = FindConfig(score="balanced", permutations=3, controls=False, top=2)
    res = find_skill_neurons(bb, prompts, task, out, cfg, progress=False)
    s = res.summary
    assert s.score == "balanced" and s.subtasks is not None and s.subtasks[0].balanced
    assert "predictivity: the BALANCED accuracy of ONE neuron" in res.text
    assert "1_vs_0       balanced" in res.text
    assert FindSummary.load(out / "summary.json").score == "balanced"
    assert load_manifest(out / "skill_neurons", "skill_neurons")["meta"]["score"] == "balanced"
    assert load_manifest(out / "scores_0", "prompt_scores")["score"] == "balanced"
    # the prompt's own accuracy on the subtask is weighted as the neurons' predictivity is
    dev = [y for y in task.split(0).part("dev").labels]
    assert dev.count(1) > 2 * dev.count(0)
    plain = find_skill_neurons(
        bb, prompts, task, out, dataclasses.replace(cfg, score="accuracy"), progress=False
    )
    assert load_manifest(out / "scores_0", "prompt_scores")["score"] == "accuracy"  # recomputed
    assert plain.summary.score == "accuracy" and not plain.summary.subtasks[0].balanced  # type: ignore[index]
    assert not torch.equal(plain.neurons.scores(), res.neurons.scores())
    assert "0.5 = chance on balanced labels" in plain.text
    old = s.to_json()
    del old["score"]
    assert FindSummary.from_json(old).score == "accuracy"
    with pytest.raises(ConfigError, match="score 'f1' is unknown"):
        FindConfig(score="f1")


def test_a_causal_lm_with_the_prompt_first_is_flagged(tmp_path: Path) -> None:
    """In a causal LM the soft prompt precedes the text, so its positions never see the input: every
    example has the same activations there, no neuron there predicts anything, and the summary says
    that only the read position can hold skill neurons."""
    task = separable_task(60)
    bb, prompts = _saved_prompts(tmp_path, task, n=1, family="llama")
    res = find_skill_neurons(
        bb, prompts, task, None, FindConfig(controls=False, permutations=0), progress=False
    )
    s = res.summary
    assert s.text_blind_positions == 3
    assert any(f.startswith("3 prompt positions precede the text in this causal LM") for f in s.flags or [])
    assert {t.position for t in s.top} == {"read"}
    name = res.neurons.subtasks[0].name
    pos, score = res.neurons.best_position[name], res.neurons.rankings[name].scores
    blind = score[pos != 3]  # a neuron best at a prompt position: a constant there, scoring the majority rate
    assert blind.numel() and bool((blind == blind[0]).all()) and float(blind[0]) <= float(score.max())
    # with the prompt after the text (prompt_last) every analysed position sees the text: no flag
    _, last = _saved_prompts(tmp_path / "last", task, n=1, family="llama", layout="prompt_last")
    after = find_skill_neurons(
        bb, last, task, None, FindConfig(controls=False, permutations=0), progress=False
    )
    assert after.summary.text_blind_positions is None and not any(
        "precede" in f for f in after.summary.flags or []
    )
    a_pos = after.neurons.best_position[name]
    assert len(set(a_pos.reshape(-1).tolist())) > 1, (
        "neurons are best at several positions, not only the read"
    )
    assert {t.position for t in after.summary.top} <= {"end", "p1", "p2", "read"}
    bert_task = separable_task(60)
    _, bert_prompts = _saved_prompts(tmp_path / "bert", bert_task, n=1)
    bert = find_skill_neurons(
        tiny_model("bert"),
        bert_prompts,
        bert_task,
        None,
        FindConfig(controls=False, permutations=0),
        progress=False,
    )
    assert bert.summary.text_blind_positions is None
