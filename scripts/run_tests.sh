#!/usr/bin/env bash
# Install the project and its test tools, then lint, type-check (mypy, configured in
# pyproject.toml) and run the whole test suite (slow end-to-end tests included).
#   bash scripts/run_tests.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
bash scripts/install.sh --dev
"$PYTHON" -m ruff check .
"$PYTHON" -m mypy
"$PYTHON" -m pytest "$@"
