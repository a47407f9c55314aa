#!/usr/bin/env bash
# Install what the project needs into the current Python (the active virtualenv, if any).
# torch is installed first and pinned, because a bare `torch` requirement can pull a multi-GB
# CUDA build; an already installed torch (e.g. your CUDA build) is kept.
#   bash scripts/install.sh          # runtime requirements
#   bash scripts/install.sh --dev    # plus pytest, ruff and mypy
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  "$PYTHON" -m pip install --quiet "torch==${TORCH_VERSION:-2.13.0}"
fi
if [[ "${1:-}" == "--dev" ]]; then
  "$PYTHON" -m pip install --quiet -r requirements-dev.txt
else
  "$PYTHON" -m pip install --quiet -r requirements.txt
fi
