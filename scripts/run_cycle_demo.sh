#!/usr/bin/env bash
# The whole breathing cycle from the AVG, on the built-in synthetic 4DCT, on CPU:
# install -> synthetic export tree -> prepare_dataset.py --phases all -> train.py --phases all
# (the recipe, phase-conditioned) -> test.py --phases all (ten phases, MIP and mean per patient,
# per-phase metrics, the mean-of-phases check, trajectories).
#   bash scripts/run_cycle_demo.sh
# Environment: WORK (default ./synthetic_4dct_cycle), DATASET (./datasets/ct_cycle_dataset),
# NAME (synthetic_cycle), CHECKPOINTS (./checkpoints), RESULTS (./results), PATIENTS (12), SLICES (32),
# EPOCHS (2 passes over every phase's pairs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
WORK="${WORK:-./synthetic_4dct_cycle}"
DATASET="${DATASET:-./datasets/ct_cycle_dataset}"
NAME="${NAME:-synthetic_cycle}"
PATIENTS="${PATIENTS:-12}"
SLICES="${SLICES:-32}"
EPOCHS="${EPOCHS:-2}"
CHECKPOINTS="${CHECKPOINTS:-./checkpoints}"
RESULTS="${RESULTS:-./results}"

bash scripts/install.sh
"$PYTHON" scripts/make_synthetic_4dct.py --out "$WORK" --n_patients "$PATIENTS" --size 64 --n_slices "$SLICES" \
  --seed 0
"$PYTHON" prepare_dataset.py --avg_root "$WORK/res_avg" --phases_root "$WORK/res_phases" \
  --structures_root "$WORK/res_structures" --output "$DATASET" --phases all
COMMON=(--dataroot "$DATASET" --name "$NAME" --checkpoints_dir "$CHECKPOINTS")
# no recipe flag: the recommended recipe, planned from the data (--input_nc 7 with --phases all)
RECIPE=(--phases all)
"$PYTHON" train.py "${COMMON[@]}" "${RECIPE[@]}" \
  --n_epochs $((EPOCHS - EPOCHS / 2)) --n_epochs_decay $((EPOCHS / 2)) --save_epoch_freq "$EPOCHS" \
  --display_freq 2000 --print_freq 2000 --overwrite
"$PYTHON" test.py "${COMMON[@]}" --results_dir "$RESULTS" --epoch best --phases all
echo "ten phases per test patient: $RESULTS/$NAME/test_best/volumes/ (<id>_fake_B_p<p>.nii.gz)"
