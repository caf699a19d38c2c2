"""Markdown tables of a study's figures, straight from its study.json (REPLICATION.md is written from
this output, so every figure there can be traced to the JSON and to the spec it records).

    python bench/study_tables.py bench/results/study_minilm.json
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from skillneurons.evidence import Estimate
from skillneurons.study import StudyResult


def fmt(e: Estimate | dict[str, Any] | None, digits: int = 3) -> str:
    if e is None:
        return "n/a"
    if isinstance(e, dict):
        e = Estimate.from_json(e)
    p = f", p={e.p:.3g}" if e.p is not None else ""
    return f"{e.format(digits)} (n={e.n}{p})"


def prompts(res: StudyResult) -> list[str]:
    out = [
        "| task | sizes train/dev/test | majority | seed | test accuracy [Wilson 95%] "
        "| best dev (step / steps) | late gain | converged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in res.tasks:
        if t.excluded:
            out.append(f"| {t.name} | excluded: {t.excluded} | | | | | | |")
            continue
        sz = f"{t.sizes.get('train')}/{t.sizes.get('dev')}/{t.sizes.get('test')}"
        for p in t.prompts:
            gain = f"{p.late_gain:+.4f}" if p.late_gain is not None else "n/a"
            out.append(
                f"| {t.name} | {sz} | {t.majority:.3f} | {p.seed} | {fmt(p.test_accuracy)} | "
                f"{p.best_dev_accuracy:.4f} ({p.best_step} / {p.steps}) | {gain} | {p.converged} |"
            )
        out.append(f"| {t.name} | | | mean over seeds [t] | {fmt(t.test_accuracy)} | | | |")
    return out


def _stat(st: dict[str, Any] | None) -> str:
    """A held-out statistic: value [Wilson], in-sample beside it, null p and z."""
    if not st:
        return "n/a"
    null = st.get("null") or st.get("in_sample_null")
    which = "held-out null" if st.get("null") else "in-sample null"
    z = f", z={null['z']:.1f}" if null and null.get("z") is not None else ""
    nul = f"; {which} {null['mean']:.3f}±{null['std']:.3f}, p={null['p']:.3g}{z}" if null else ""
    return f"{st['heldout']:.3f} [{st['lo']:.3f}, {st['hi']:.3f}] (in-sample {st['in_sample']:.3f}{nul})"


def find(res: StudyResult) -> list[str]:
    out = [
        "| task | prompts' own dev accuracy (balanced) | subtasks: prompts' own accuracy on it | "
        "top-1 held-out [Wilson] | top 1% mean held-out |",
        "|---|---|---|---|---|",
    ]
    for t in res.tasks:
        if t.find is None:
            continue
        ev = t.find.get("evidence") or {}
        accs = ", ".join(
            f"{p['dev_accuracy']:.3f} ({p.get('balanced_accuracy') or 0:.3f})" for p in t.find["prompts"]
        )
        subs = ", ".join(f"{s['name']} {s['prompt_accuracy']:.3f}" for s in t.find.get("subtasks") or [])
        out.append(f"| {t.name} | {accs} | {subs} | {_stat(ev.get('top1'))} | {_stat(ev.get('top1pct'))} |")
    out += [
        "",
        "| task | prompt / control (on the first prompt's split) | top-1 held-out | top 1% mean held-out "
        "| first prompt - control, top-1 [paired over examples] | ... top 1% [paired] |",
        "|---|---|---|---|---|---|",
    ]
    for t in res.tasks:
        if t.find is None:
            continue
        first = t.find.get("first_prompt") or {}
        if not first:  # found without the controls
            continue
        rows = [("first trained prompt", first), *(t.find.get("controls") or {}).items()]
        for name, c in rows:
            ev = c.get("evidence") or {}
            vs = (
                f"{fmt(c.get('versus_top1'))} | {fmt(c.get('versus_top1pct'))}"
                if c.get("versus_top1")
                else "| "
            )
            out.append(f"| {t.name} | {name} | {_stat(ev.get('top1'))} | {_stat(ev.get('top1pct'))} | {vs} |")
    return out


def delta(res: StudyResult) -> list[str]:
    """Claim 5: per task/method, the tuned models' accuracy and the prompt-found skill neurons vs
    random neurons perturbed in them, paired over the test examples with the seeds pooled."""
    out = [
        "| task/method | unperturbed test accuracy, mean over seeds [t] | rho | neurons | "
        "skill drop [paired, seeds pooled] | skill - random accuracy [paired over examples and draws] | "
        "skill drop - random drop [t over seeds] |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, figs in res.delta_sweeps.items():
        acc = res.delta_accuracy.get(key)
        for f in figs:
            out.append(
                f"| {key} | {fmt(acc)} | {f.rho:g} | {f.neurons} | {fmt(f.skill_drop_pooled)} | "
                f"{fmt(f.paired_pooled)} | {fmt(f.difference)} |"
            )
    return out


def sweeps(res: StudyResult) -> list[str]:
    out = [
        "| task | mode | rho | neurons | skill drop, paired over examples (seeds pooled) | "
        "skill - random accuracy, paired over examples and draws (seeds pooled) | per seed: skill - random | "
        "skill drop - random drop [t over seeds] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in res.tasks:
        for f in t.sweep:
            per = "; ".join(fmt(e) for e in f.paired or []) or "n/a"
            out.append(
                f"| {t.name} | {f.mode} | {f.rho:g} | {f.neurons} | {fmt(f.skill_drop_pooled)} | "
                f"{fmt(f.paired_pooled)} | {per} | {fmt(f.difference)} |"
            )
    return out


def similarity(res: StudyResult) -> list[str]:
    out: list[str] = []
    if res.similarity:
        names = res.similarity["tasks"]
        out += [
            "Spearman of the neuron predictivity (all neurons) / mean of the per-layer Spearman / "
            "Jaccard of the top-2% sets (chance):",
            "",
            "| | " + " | ".join(names) + " |",
            "|---" * (len(names) + 1) + "|",
        ]
        for i, a in enumerate(names):
            cells = []
            for j in range(len(names)):
                sp = res.similarity["spearman"][i][j]
                lm = res.similarity["spearman_layer_mean"][i][j]
                ja = res.similarity["jaccard"][i][j]
                ch = res.similarity["chance_jaccard"][i][j]
                cells.append(f"{sp:.3f} / {lm:.3f} / {ja:.3f} ({ch:.3f})")
            out.append(f"| {a} | " + " | ".join(cells) + " |")
    out += [
        "",
        "| measure | within-group pairs | within [t over pairs] | across pairs | across | within - across |",
        "|---|---|---|---|---|---|",
    ]
    for g in [*res.similarity_groups, *res.cross_groups]:
        diff = f"{g.difference:+.4f}" if g.difference is not None else "n/a"
        out.append(
            f"| {g.measure} | {', '.join(g.within_pairs)} | {fmt(g.within)} | {', '.join(g.across_pairs)} | "
            f"{fmt(g.across)} | {diff} |"
        )
    for mode, c in res.cross.items():
        names = c["tasks"]
        rc = c["random_control"]
        out += [
            "",
            f"Cross-task perturbation ({mode}, top {c['rho']:.0%} of the row task's skill neurons; "
            f"cell = accuracy drop of the column task's prompt on its test split, n={c['n_eval']}):",
            "",
            "| neurons of \\ prompt of | " + " | ".join(names) + " |",
            "|---" * (len(names) + 1) + "|",
        ]
        for i, a in enumerate(names):
            out.append(f"| {a} | " + " | ".join(f"{v:+.4f}" for v in c["drop"][i]) + " |")
        out.append(
            f"| random (k={rc['draws']}) | "
            + " | ".join(f"{v:+.4f}" if v is not None else "n/a" for v in rc["drop"])
            + " |"
        )
        out.append("| unperturbed | " + " | ".join(f"{v:.4f}" for v in c["unperturbed"]) + " |")
    return out


def transfer(res: StudyResult) -> list[str]:
    out = [
        "| indicator | Spearman with relative transfer [bootstrap over pairs], permutation p |",
        "|---|---|",
    ]
    for k, e in res.indicator_spearman.items():
        out.append(f"| {k} | {fmt(e)} |")
    for w, ests in res.indicator_windows.items():
        for k in ("ON", "ON_skill", "skill_overlap"):
            out.append(f"| {k} on layers {w} | {fmt(ests.get(k))} |")
    if res.transferability:
        out.append(
            f"\npairs used: {res.transferability.get('n_pairs')} (other-task pairs of learned prompts)"
        )
    return out


def main(path: str) -> None:
    res = StudyResult.load(Path(path))
    spec = res.spec_file or "(spec not recorded)"
    print(f"# {res.name}: {res.model.get('name')} ({spec}; {res.seconds / 60:.0f} min in the last run)\n")
    for title, part in (
        ("Prompts", prompts),
        ("Claim 1: skill-neuron predictivity and controls", find),
        ("Claim 2: perturbation, skill vs random", sweeps),
        ("Claim 3: similar tasks share skill neurons", similarity),
        ("Claim 4: indicators vs transfer", transfer),
        ("Claim 5: prompt-found skill neurons in delta-tuned models", delta),
    ):
        print(f"## {title}\n")
        print("\n".join(part(res)))
        print()


if __name__ == "__main__":
    main(sys.argv[1])
