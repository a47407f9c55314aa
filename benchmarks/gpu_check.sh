#!/usr/bin/env bash
# A GPU run in one command, at most 8 minutes: the CUDA tests, the training step (amp,
# channels_last, compile), 1-process DDP and whole-volume inference, written to
# OUT/gpu_check.json and OUT/gpu_check.md (see benchmarks/gpu_check.py and benchmarks/README.md).
#
#   bash benchmarks/gpu_check.sh [OUT] [more gpu_check.py options, e.g. --stages train inference]
#
# OUT defaults to ./gpu_check_<date>_<time>. The stages get 450 s of the 8 minutes; the rest is
# start-up, stopping a job at the limit and writing the report.
set -euo pipefail

out="$(realpath -m "${1:-gpu_check_$(date +%Y%m%d_%H%M%S)}")"
shift || true
cd "$(dirname "$0")/.."

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else
    "gpu_check.sh: no CUDA GPU visible to torch; for the CPU check run "
    "python benchmarks/gpu_check.py --dry_run")'

export PYTHONUNBUFFERED=1
exec python benchmarks/gpu_check.py --out "$out" --budget 450 "$@"
