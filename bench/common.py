"""Helpers shared by the benchmark scripts (run as ``python bench/NAME.py``, which puts bench/ on
the path)."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from skillneurons.files import atomic_write_json, to_jsonable


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_json(path: str | Path, result: Any) -> None:
    """Write ``result`` as indented JSON (creating the folder) and print it. Typed results inside are
    written as their JSON; a NaN or infinity is refused (``ValueError`` naming the key), not written."""
    atomic_write_json(path, result)
    print(json.dumps(to_jsonable(result), indent=2, allow_nan=False))


def matrix_md(
    cols: list[str], m: list[list[Any]], fmt: str = "{:.3f}", rows: list[str] | None = None, corner: str = ""
) -> str:
    """A markdown table of the matrix ``m`` (``None`` cells as ``-``), rows named ``rows`` (default
    ``cols``)."""
    lines = [f"| {corner} | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for n, row in zip(rows or cols, m):
        lines.append(f"| {n} | " + " | ".join(fmt.format(v) if v is not None else "-" for v in row) + " |")
    return "\n".join(lines)
