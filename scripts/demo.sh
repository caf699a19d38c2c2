#!/usr/bin/env bash
# Set up, then run the main job on the embedded default (offline MiniLM + MR sentence polarity).
# Extra arguments go to `skillneurons demo` (e.g. --budget-minutes 5, --out runs/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/skillneurons demo "$@"
