#!/usr/bin/env bash
# Set up with the dev tools, then lint (ruff), type-check (mypy) and run the test suite (pytest).
# Extra arguments go to pytest (e.g. -m "not real_model", -k prompts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "== ruff"; .venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
echo "== mypy"; .venv/bin/mypy
echo "== lint-imports"; .venv/bin/lint-imports --no-cache
echo "== pytest"; .venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-2}" "$@"
