"""Start-up cost of the command line: wall time of fresh processes, median of N, interleaved.

Side by side in one run: a bare ``python -c pass`` (the interpreter's own start-up, the floor),
``import skillneurons``, ``skillneurons --help``, ``skillneurons find --help``, ``skillneurons tune
--help``, ``models``, ``data list``, commands that fail validation (an invalid option of ``tune`` and
of ``find``, exit 2) and one that fails on a missing input file, and ``import torch`` / ``import
transformers`` for scale. Also records which of torch/transformers/numpy each command imported.

    .venv/bin/python bench/startup.py --repeats 5
    .venv/bin/python bench/startup.py --only "missing prompt" --out bench/results/startup_find.json
    PYTHONPATH=OLD/src .venv/bin/python bench/startup.py --out bench/results/startup_before.json  # before
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import cpu_model, write_json

PY = sys.executable
TMP = tempfile.mkdtemp(prefix="startup-bench-")  # --out of the failing commands (never written)
CASES = {
    "python -c pass": [PY, "-c", "pass"],
    "import skillneurons": [PY, "-c", "import skillneurons"],
    "skillneurons --help": [PY, "-m", "skillneurons.cli", "--help"],
    "skillneurons find --help": [PY, "-m", "skillneurons.cli", "find", "--help"],
    "skillneurons tune --help": [PY, "-m", "skillneurons.cli", "tune", "--help"],
    "skillneurons models": [PY, "-m", "skillneurons.cli", "models"],
    "skillneurons data list": [PY, "-m", "skillneurons.cli", "data", "list"],
    "skillneurons tune --prompt-length 0 (exit 2)": [
        *[PY, "-m", "skillneurons.cli", "-q", "tune", "--task", "mr", "--prompt-length", "0"],
        *["--out", f"{TMP}/tune"],
    ],
    "skillneurons find --auroc-bins 0 (exit 2)": [
        *[PY, "-m", "skillneurons.cli", "-q", "find", "--prompt", "p.safetensors", "--auroc-bins", "0"],
        *["--out", f"{TMP}/find"],
    ],
    "skillneurons find, missing prompt (exit 2)": [
        *[PY, "-m", "skillneurons.cli", "-q", "find", "--prompt", f"{TMP}/none.safetensors"],
        *["--out", f"{TMP}/find"],
    ],
    "skillneurons perturb, missing prompt (exit 2)": [
        *[PY, "-m", "skillneurons.cli", "-q", "perturb", "--prompt", f"{TMP}/none.safetensors"],
        *["--neurons", f"{TMP}/none", "--out", f"{TMP}/perturb"],
    ],
    "import torch": [PY, "-c", "import torch"],
    "import transformers": [PY, "-c", "import transformers"],
}
PROBE = (
    "import runpy, sys, contextlib, io\n"
    "sys.argv = ['skillneurons'] + sys.argv[1:]\n"
    "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()), "
    "contextlib.redirect_stderr(io.StringIO()):\n"
    "    runpy.run_module('skillneurons.cli', run_name='__main__')\n"
    "print(','.join(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules) or '-')\n"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="bench/results/startup.json")
    ap.add_argument(
        "--only", action="append", default=[], help="only the cases whose name contains this (repeatable)"
    )
    args = ap.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cases = {
        k: v
        for k, v in CASES.items()
        if k == "python -c pass" or not args.only or any(o in k for o in args.only)
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):  # interleaved: a load spike hits every case alike
        for name, cmd in cases.items():
            t0 = time.perf_counter()
            rc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
            if rc != (2 if "(exit 2)" in name else 0):
                raise SystemExit(f"{name}: exit {rc}")
            times[name].append(time.perf_counter() - t0)
    loaded = {}
    for name, cmd in cases.items():
        if cmd[1:3] == ["-m", "skillneurons.cli"]:
            out = subprocess.run(
                [PY, "-c", PROBE, *cmd[3:]], env=env, capture_output=True, text=True, check=True
            )
            loaded[name] = out.stdout.strip().splitlines()[-1]
    shutil.rmtree(TMP, ignore_errors=True)
    base = statistics.median(times["python -c pass"])
    rows = {
        name: {
            "median_s": round(statistics.median(t), 3),
            "min_s": round(min(t), 3),
            "over_bare_python_s": round(statistics.median(t) - base, 3),
            "imports": loaded.get(name),
        }
        for name, t in times.items()
    }
    write_json(
        args.out,
        {
            "machine": {
                "cpu": cpu_model(),
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "load_average_1min": round(os.getloadavg()[0], 2),
            },
            "repeats": args.repeats,
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
