"""The layout rules of ARCHITECTURE.md, checked on the source: small functions, no layer-dodging
function-level imports, the formatter owns the layout, and ``--help`` loads no model library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "skillneurons"

#: function-level imports of skillneurons modules that are allowed: the CLI imports the library inside
#: each command's ``run`` (start-up speed), and torch-free config modules load what they configure on use
LAZY_OK = ("cli/", "config.py", "/_lazy.py")


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rel = path.relative_to(SRC).as_posix()
        out += [(rel, n) for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    return out


def test_no_function_over_100_lines_and_tune_prompt_under_40() -> None:
    long = [
        f"{rel}:{fn.lineno} {fn.name} ({fn.end_lineno - fn.lineno + 1} lines)"  # type: ignore[operator]
        for rel, fn in _functions()
        if fn.end_lineno - fn.lineno + 1 > 100
    ]  # type: ignore[operator]
    assert not long, long
    [tune] = [fn for rel, fn in _functions() if rel == "runs/tune.py" and fn.name == "tune_prompt"]
    assert tune.end_lineno - tune.lineno + 1 < 40  # type: ignore[operator]


def test_no_function_level_imports_of_skillneurons_outside_the_cli() -> None:
    found = []
    for rel, fn in _functions():
        if any(ok in "/" + rel for ok in LAZY_OK):
            continue
        for node in ast.walk(fn):
            mod = node.module if isinstance(node, ast.ImportFrom) else None
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [mod or ""]
            if isinstance(node, ast.Import | ast.ImportFrom) and any(
                n.startswith("skillneurons") for n in names
            ):
                found.append(f"{rel}:{node.lineno} in {fn.name}")
    assert not found, found


def test_the_formatter_owns_the_layout() -> None:
    skips = [p for p in SRC.rglob("*.py") if "fmt: skip" in p.read_text(encoding="utf-8")]
    assert not skips, skips


def test_help_imports_no_model_library() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from skillneurons.cli import main\n"
        "for argv in (['--help'], ['tune', '--help'], ['find', '--help']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'numpy', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
