"""Zero-shot accuracy of a single label word per class vs the knowledgeable verbalizer (KPT) without
and with contextual calibration (REFERENCE.md section 8), side by side in one run.

For every task the read states of the test examples and of the ~200 unlabelled contexts are
computed once through the template (no prompt); every verbalizer is then applied to the same
states, so the variants differ only in the verbalizer:

* ``single``            - each class's label word (the task's), argmax of its logit;
* ``single+cal``        - the same word, contextually calibrated;
* ``kpt-expand``        - the label word + ``--expand`` embedding neighbours, refined (shared words,
  frequency), not calibrated; ``kpt-expand+cal`` calibrated; ``+rel`` adds relevance refinement;
* ``kpt-list``          - a hand-written list of ~20 words per class (below: the "knowledge source a
  user supplies"), refined, not calibrated; ``kpt-list+cal`` calibrated; ``+rel``; ``mean``/``max``
  score multi-token words by the mean / max over their pieces instead of the first piece.

Offline it runs on SmolLM2-135M (causal, real LM head; read at the last token)::

    .venv/bin/python bench/kpt_zero_shot.py                      # mr + bbc_news, 400 test examples each

and writes ``bench/results/kpt_zero_shot.json`` and ``.md``. With Hub access the paper's zero-shot
setting (RoBERTa-large, the whole AG News test set, 200 unlabelled training texts as contexts,
template 0 'A [MASK] news: ...', KPT's word file from OpenPrompt
``scripts/TextClassification/agnews/knowledgeable_verbalizer.txt``: one line per class in the
dataset's class order World, Sports, Business, Sci/Tech) is one command per verbalizer::

    skillneurons kpt-evaluate --model roberta-large --task hf:ag_news --hf-split test \\
        --contexts-split train --template 'A {mask} news: {text}' \\
        --words knowledgeable_verbalizer.txt --verbalizer kpt --calibrate \\
        --prior-examples 200 --cutoff 0.5 --max-length 128 --batch-size 32 --out runs/kpt-agnews.json
    # baselines: --verbalizer single (first word of each line) and/or --no-calibrate
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from skillneurons.backbones import load_backbone
from skillneurons.data import load_task
from skillneurons.files import atomic_write_json
from skillneurons.verbalizers import (
    TemplateReader,
    expand_label_words,
    head_accuracy,
    read_states,
    zero_shot_parts,
)
from skillneurons.verbalizers.kpt import KnowledgeableHead

TEMPLATES = {  # causal LM templates (read the next word) and masked LM ones
    "mr": ("{text} Overall, the movie was", "{text} It was {mask}."),
    "bbc_news": ("{text} This topic is about", "A {mask} news: {text}"),
}

WORD_LISTS: dict[str, list[list[str]]] = {  # hand-written, first word = the task's label word (anchor)
    "mr": [
        "negative bad terrible awful boring dull poor horrible worst disappointing mediocre stupid weak "
        "tedious bland annoying lame pointless forgettable unwatchable".split(),
        "positive good great excellent wonderful amazing brilliant fantastic enjoyable beautiful superb "
        "delightful entertaining fun moving charming perfect best compelling impressive".split(),
    ],
    "bbc_news": [
        "business economy economic market markets finance financial company companies trade stocks shares "
        "bank profit investment industry sales oil prices firm".split(),
        "entertainment film films movie music celebrity show television actor actress singer album star "
        "stars cinema festival award awards comedy oscar".split(),
        "politics political government election elections parliament minister party labour tory vote "
        "policy law campaign democracy chancellor politicians tax conservative voters".split(),
        "sports sport football soccer rugby tennis cricket athletics match team cup game player players "
        "championship league olympic coach club injury".split(),
        "technology tech computer computers software internet digital mobile phone phones web online "
        "broadband gadgets microsoft apple google devices science gaming".split(),
    ],
}


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "load_average_at_start": os.getloadavg(),
    }


def run_task(bb: Any, name: str, args: argparse.Namespace) -> dict[str, Any]:
    task = load_task(name)
    contexts, test = zero_shot_parts(
        task, seed=args.seed, max_examples=args.max_examples, prior_examples=args.prior_examples
    )
    template = TEMPLATES.get(name, (None, None))[0 if bb.is_causal else 1]
    reader = TemplateReader(bb, template, args.max_length)
    t0 = time.perf_counter()
    h_ctx = read_states(reader, contexts, args.batch_size, progress=True, desc=f"{name} contexts")
    t1 = time.perf_counter()
    h_test = read_states(reader, test, args.batch_size, progress=True, desc=f"{name} test")
    t2 = time.perf_counter()
    label_words = [list(ws) for ws in task.label_words]
    expanded = expand_label_words(bb, label_words, args.expand)
    sources = {"single": [ws[:1] for ws in label_words], "expand": expanded, "list": WORD_LISTS.get(name)}
    variants: list[tuple[str, str, dict[str, Any]]] = [
        ("single", "single", {"refine": False, "calibrate": False}),
        ("single+cal", "single", {"refine": False, "calibrate": True}),
        ("kpt-expand", "expand", {"calibrate": False}),
        ("kpt-expand+cal", "expand", {"calibrate": True}),
        ("kpt-expand+cal+rel", "expand", {"calibrate": True, "relevance": True}),
        ("kpt-list", "list", {"calibrate": False}),
        ("kpt-list+cal", "list", {"calibrate": True}),
        ("kpt-list+cal+rel", "list", {"calibrate": True, "relevance": True}),
        ("kpt-list+cal mean", "list", {"calibrate": True, "multi_token": "mean"}),
        ("kpt-list+cal max", "list", {"calibrate": True, "multi_token": "max"}),
    ]
    rows = []
    for label, source, opts in variants:
        words = sources[source]
        if words is None:
            continue
        head = KnowledgeableHead(
            bb, words, multi_token=opts.get("multi_token", "first"), calibrate=opts["calibrate"]
        )
        stats = head.context_stats([h_ctx])
        if opts.get("refine", True):
            head.refine(stats, cutoff=args.cutoff, relevance=opts.get("relevance", False))
        else:
            head.set_prior(stats)
        m = head_accuracy(head, h_test, test.labels)
        rows.append(
            {
                "variant": label,
                "words": source,
                **opts,
                **m,
                "words_before": [len(ws) for ws in words],
                "words_after": [len(ws) for ws in head.label_words],
                "label_words": head.label_words,
                "dropped": head.report.get("dropped"),
            }
        )
        print(f"{name:9s} {label:22s} acc {m['accuracy']:.4f}  words {rows[-1]['words_after']}", flush=True)
    return {
        "task": name,
        "template": reader.template,
        "max_length": args.max_length,
        "sizes": {
            "contexts": len(contexts),
            "test": len(test),
            "test_class_counts": list(test.class_counts()),
        },
        "seconds": {"contexts": t1 - t0, "test": t2 - t1},
        "results": rows,
    }


def write_markdown(res: dict[str, Any], path: Path) -> None:
    lines = [
        "# KPT zero-shot: single label word vs knowledgeable verbalizer",
        "",
        f"Model `{res['model']}` ({res['kind']}), command `{res['command']}`.",
        f"Machine: {res['machine']['platform']}, {res['machine']['cpu_count']} CPUs, "
        f"torch {res['machine']['torch']} "
        f"({res['machine']['torch_threads']} threads, {res['machine']['device']}); load average at start "
        f"{', '.join(f'{x:.1f}' for x in res['machine']['load_average_at_start'])} "
        "(a shared machine: the reading times"
        " below are noisy, the accuracies are not).",
        "",
    ]
    for t in res["tasks"]:
        lines += [
            f"## {t['task']}: {t['sizes']['test']} test examples {t['sizes']['test_class_counts']}, "
            f"{t['sizes']['contexts']} unlabelled contexts",
            "",
            f"Template `{t['template']}`, max length {t['max_length']} tokens; reading took "
            f"{t['seconds']['contexts']:.0f} s (contexts) + {t['seconds']['test']:.0f} s (test).",
            "",
            "| verbalizer | accuracy | words per class (kept / given) | predicted share per class |",
            "|---|---|---|---|",
        ]
        for r in t["results"]:
            kept = " ".join(f"{a}/{b}" for a, b in zip(r["words_after"], r["words_before"]))
            share = " ".join(f"{x:.2f}" for x in r["predicted_share"])
            lines.append(f"| {r['variant']} | {r['accuracy']:.3f} | {kept} | {share} |")
        lines.append("")
    lines += [
        "single: the task's label word per class; kpt-expand: + embedding neighbours (`--expand`), "
        "kpt-list: a",
        "hand-written list (in the script); refined = shared words and the frequency cutoff dropped;",
        "+cal = contextual calibration; +rel = relevance refinement; mean/max = multi-token scoring.",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--model", default="smollm2")
    p.add_argument("--tasks", nargs="+", default=["mr", "bbc_news"])
    p.add_argument("--max-examples", type=int, default=400, help="test examples per task")
    p.add_argument("--prior-examples", type=int, default=200, help="unlabelled contexts")
    p.add_argument("--expand", type=int, default=30, help="neighbours per class for kpt-expand")
    p.add_argument("--cutoff", type=float, default=0.5, help="frequency refinement cutoff (vocabulary)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/results/kpt_zero_shot")
    p.add_argument("--markdown-only", action="store_true", help="rewrite OUT.md from an existing OUT.json")
    args = p.parse_args()
    out = Path(args.out)
    if args.markdown_only:
        write_markdown(json.loads(out.with_suffix(".json").read_text()), out.with_suffix(".md"))
        return
    torch.set_num_threads(args.threads)
    info = machine()
    t0 = time.perf_counter()
    bb = load_backbone(args.model)
    res: dict[str, Any] = {
        "model": args.model,
        "kind": bb.kind,
        "command": "python bench/kpt_zero_shot.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if k != "markdown_only"
        ),
        "machine": info,
        "settings": vars(args),
        "tasks": [run_task(bb, name, args) for name in args.tasks],
    }
    res["seconds_total"] = time.perf_counter() - t0
    atomic_write_json(out.with_suffix(".json"), res)
    write_markdown(res, out.with_suffix(".md"))
    print(f"wrote {out.with_suffix('.json')} and .md in {res['seconds_total']:.0f} s")


if __name__ == "__main__":
    main()
