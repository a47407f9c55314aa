#!/usr/bin/env bash
# The whole job on the built-in synthetic 4DCT, on CPU in a few minutes:
# install -> synthetic export tree -> prepare_dataset.py -> train.py -> test.py (volumes, metrics).
# Training uses the README's recommended recipe (2.5-D input, residual output), shortened.
#   bash scripts/run_demo.sh
# Environment: WORK (default ./synthetic_4dct), DATASET (./datasets/ct_phases_dataset),
# NAME (synthetic_demo), PATIENTS (16 synthetic patients), EPOCHS (20: half at the initial
# learning rate, half decaying).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
WORK="${WORK:-./synthetic_4dct}"
DATASET="${DATASET:-./datasets/ct_phases_dataset}"
NAME="${NAME:-synthetic_demo}"
PATIENTS="${PATIENTS:-16}"
EPOCHS="${EPOCHS:-20}"

bash scripts/install.sh
"$PYTHON" scripts/make_synthetic_4dct.py --out "$WORK" --n_patients "$PATIENTS" --size 64 --n_slices 32 \
  --seed 0
"$PYTHON" prepare_dataset.py --avg_root "$WORK/res_avg" --phases_root "$WORK/res_phases" \
  --structures_root "$WORK/res_structures" --output "$DATASET"
COMMON=(--dataroot "$DATASET" --name "$NAME")
# no recipe flag: train.py's default is the recommended recipe, planned from the data (plan.json)
"$PYTHON" train.py "${COMMON[@]}" \
  --n_epochs $((EPOCHS - EPOCHS / 2)) --n_epochs_decay $((EPOCHS / 2)) --save_epoch_freq "$EPOCHS" \
  --display_freq 400 --print_freq 400 --overwrite
"$PYTHON" test.py "${COMMON[@]}" --epoch best --eval
echo "checkpoints and training page: ./checkpoints/$NAME/ (web/index.html)"
