"""The CLI's flags are generated from the config dataclasses: defaults, help, types, aliases, checks."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

import pytest

from skillneurons.cli.options import add_config, build_config
from skillneurons.errors import ConfigError
from skillneurons.options import check_range, option


@dataclass
class _Demo:
    batch_size: int = option(32, "examples per step")
    lr: float = option(3e-2, "learning rate")
    precision: Literal["auto", "fp32", "bf16"] = option("auto", "numeric precision")
    template: str | None = option(None, "text template")
    controls: bool = option(True, "run the controls")
    per_layer: bool = option(True, "select per layer", aliases=("--global=false",))
    per_task: bool = option(True, "one per task", flag="--pooled", aliases=("--pool",))
    verbose_name: bool = option(False, "a switch", aliases=("--old-switch",))
    rhos: tuple[float, ...] = option((0.01, 0.02), "fractions", aliases=("--rho",))
    prompts: tuple[str, ...] = option((), "prompt artifacts", positional=True)
    hidden: int = option(3, "API only", cli=False)

    def __post_init__(self) -> None:
        check_range("--batch-size", self.batch_size, low=1)


def _parse(argv: list[str], **kw) -> _Demo:  # type: ignore[no-untyped-def]
    p = argparse.ArgumentParser()
    add_config(p, _Demo, **kw)
    return build_config(p.parse_args(argv), _Demo)  # type: ignore[no-any-return]


def test_defaults_types_and_positional() -> None:
    c = _parse(["a.safetensors", "b.safetensors"])
    assert c == _Demo(prompts=("a.safetensors", "b.safetensors"))
    c = _parse(["x", "--batch-size", "8", "--lr", "0.1", "--precision", "bf16", "--template", "{text} !"])
    assert (c.batch_size, c.lr, c.precision, c.template) == (8, 0.1, "bf16", "{text} !")
    assert _parse(["x", "--no-controls", "--rhos", "0.1", "0.2"]).controls is False
    assert _parse(["x", "--rhos", "0.1", "0.2"]).rhos == (0.1, 0.2)
    assert _parse(["x"]).hidden == 3


def test_every_flag_shows_help_and_default() -> None:
    p = argparse.ArgumentParser()
    add_config(p, _Demo, defaults={"lr": 1e-3})
    text = p.format_help()
    assert "examples per step (default: 32)" in text
    assert "learning rate (default: 0.001)" in text
    assert "text template (default: none)" in text
    assert "--hidden" not in text and "--global" not in text and "--rho " not in text


def test_aliases_work_and_warn(capsys: pytest.CaptureFixture[str]) -> None:
    c = _parse(["x", "--global", "--old-switch", "--rho", "0.5"])
    assert (c.per_layer, c.verbose_name, c.rhos) == (False, True, (0.5,))
    assert _parse(["x", "--pooled"]).per_task is False and _parse(["x", "--pool"]).per_task is False
    assert _parse(["x"]).per_task is True
    err = capsys.readouterr().err
    assert "--global is deprecated" in err and "use --per-layer" in err
    assert "--old-switch is deprecated" in err and "--rho is deprecated" in err


def test_choices_and_validation() -> None:
    with pytest.raises(SystemExit):
        _parse(["x", "--precision", "fp64"])
    with pytest.raises(ConfigError, match="--batch-size 0 is out of range"):
        _parse(["x", "--batch-size", "0"])


def test_list_values_may_be_comma_separated() -> None:
    assert _parse(["x", "--rhos", "0,0.01", "0.02"]).rhos == (0.0, 0.01, 0.02)
    with pytest.raises(ConfigError, match=r"--rhos '0,a' is not a comma-separated list of numbers \('a'\)"):
        _parse(["x", "--rhos", "0,a"])


def test_every_flag_of_every_command_has_help_and_shows_its_default() -> None:
    from skillneurons.cli import build_parser

    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = []
    for name, p in sub.choices.items():
        for a in p._actions:
            if a.help == argparse.SUPPRESS or isinstance(a, argparse._HelpAction) or not a.option_strings:
                continue
            if a.dest in ("verbose", "quiet"):
                continue
            text = a.help or ""
            if not text or not any(w in text for w in ("default", "required")):
                missing.append(f"{name} {a.option_strings[0]}: {text!r}")
    assert not missing, missing
