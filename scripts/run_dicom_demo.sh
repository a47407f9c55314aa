#!/usr/bin/env bash
# DICOM end to end on the built-in synthetic 4DCT, on CPU in about a minute (after
# `bash scripts/install.sh`): a synthetic DICOM export (one CT series per volume) ->
# prepare_dataset.py (picks the AVG and phase-0 series by description, writes NIfTI) -> a short
# train.py -> test.py on the test patients' DICOM exports (the AVG picked among the 11 series of
# each patient folder by --avg_series, the truth among them by --phase0_series) with
# --output_format dicom -> one output series read back with pydicom (and SimpleITK when it is
# installed), its geometry and identity checked against the source AVG series.
#   bash scripts/run_dicom_demo.sh
# Environment: WORK (default ./synthetic_4dct_dicom), DATASET (./datasets/ct_phases_dicom_demo),
# NAME (dicom_demo), CHECKPOINTS (./checkpoints), RESULTS (./results), PATIENTS (6), EPOCHS (3).
# The model is far too short-trained to be good: the demo shows the DICOM path, not the quality.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
WORK="${WORK:-./synthetic_4dct_dicom}"
DATASET="${DATASET:-./datasets/ct_phases_dicom_demo}"
NAME="${NAME:-dicom_demo}"
CHECKPOINTS="${CHECKPOINTS:-./checkpoints}"
RESULTS="${RESULTS:-./results}"
PATIENTS="${PATIENTS:-6}"
EPOCHS="${EPOCHS:-3}"

"$PYTHON" scripts/make_synthetic_4dct.py --out "$WORK" --n_patients "$PATIENTS" --size 64 \
  --n_slices 16 --seed 0 --format dicom --no_structures --no_progress
"$PYTHON" prepare_dataset.py --avg_root "$WORK/res_avg" --phases_root "$WORK/res_phases" \
  --output "$DATASET" --no_progress
COMMON=(--name "$NAME" --checkpoints_dir "$CHECKPOINTS" --model pix2pix
        --dataset_mode nifti_aligned --preprocess none --axial_slice --gpu_ids -1)
"$PYTHON" train.py --dataroot "$DATASET" "${COMMON[@]}" --input_nc 1 --output_nc 1 --residual \
  --hu_min -1024 --hu_max 1024 --no_dropout --netG unet_64 --ngf 16 --norm instance \
  --batch_size 8 --n_epochs $((EPOCHS - EPOCHS / 2)) --n_epochs_decay $((EPOCHS / 2)) \
  --save_epoch_freq "$EPOCHS" --display_freq 400 --print_freq 400 --num_threads 0 --overwrite

# The test patients as a planning system exports them: testA/<patient>/ and testB/<patient>/
# each hold the patient's AVG and its ten gated phases, one folder per series.
TEST_ROOT="$WORK/dicom_test"
rm -rf "$TEST_ROOT"
for nifti in "$DATASET"/testA/*.nii.gz; do
  patient="$(basename "$nifti" .nii.gz)"
  for side in testA testB; do
    mkdir -p "$TEST_ROOT/$side/$patient"
    cp -R "$WORK/res_avg/$patient/." "$WORK/res_phases/$patient/." "$TEST_ROOT/$side/$patient/"
  done
done
"$PYTHON" test.py --dataroot "$TEST_ROOT" "${COMMON[@]}" --results_dir "$RESULTS" --epoch best \
  --avg_series '*AVG*' --phase0_series '*Gated 0.0A*' --output_format dicom

OUT="$RESULTS/$NAME/test_best/dicom"
"$PYTHON" - "$OUT" "$WORK/res_avg" <<'PY'
"""Read one output series back and compare its geometry and identity with its source AVG."""
import sys
from pathlib import Path

import numpy as np
import pydicom

out_root, avg_root = Path(sys.argv[1]), Path(sys.argv[2])
out = sorted(p for p in out_root.iterdir() if p.is_dir())[0]
source = next(p for p in (avg_root / out.name).iterdir() if p.is_dir())


def slices(folder):
    """Headers of a series' files, sorted along the slice normal."""
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.iterdir())]
    iop = np.array(headers[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    return sorted(headers, key=lambda ds: float(np.dot(ds.ImagePositionPatient, normal)))


new, src = slices(out), slices(source)
same = {
    "same number of slices": len(new) == len(src),
    "same ImagePositionPatient, slice by slice": all(
        [float(v) for v in a.ImagePositionPatient] == [float(v) for v in b.ImagePositionPatient]
        for a, b in zip(new, src)),
    "same ImageOrientationPatient": np.allclose(new[0].ImageOrientationPatient,
                                                src[0].ImageOrientationPatient),
    "same PixelSpacing": np.allclose(new[0].PixelSpacing, src[0].PixelSpacing),
    "same Rows x Columns": (new[0].Rows, new[0].Columns) == (src[0].Rows, src[0].Columns),
    "same PatientID": new[0].PatientID == src[0].PatientID,
    "same StudyInstanceUID": new[0].StudyInstanceUID == src[0].StudyInstanceUID,
    "same FrameOfReferenceUID": new[0].FrameOfReferenceUID == src[0].FrameOfReferenceUID,
}
new_uids = {ds.SOPInstanceUID for ds in new} | {new[0].SeriesInstanceUID}
src_uids = {ds.SOPInstanceUID for ds in src} | {src[0].SeriesInstanceUID}
same["no UID of the source reused"] = not new_uids & src_uids
image_type = "\\".join(new[0].ImageType)
print(f"{out}: {new[0].SeriesDescription!r}, ImageType {image_type}, "
      f"{len(new)} slices, beside {source}")
for what, ok in same.items():
    print(f"  pydicom: {what}: {'yes' if ok else 'NO'}")
try:
    import SimpleITK as sitk
except ImportError:
    print("  SimpleITK is not installed (bash scripts/install.sh --dev installs it): its "
          "check is skipped")
else:
    def image(folder):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        return reader.Execute()

    a, b = image(out), image(source)
    geometry = {"size": a.GetSize() == b.GetSize(),
                "origin": np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4),
                "spacing": np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6),
                "direction": np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)}
    same.update({f"SimpleITK {k}": v for k, v in geometry.items()})
    print(f"  SimpleITK: size {a.GetSize()}, spacing {tuple(round(s, 4) for s in a.GetSpacing())}"
          f" mm, origin {tuple(round(o, 2) for o in a.GetOrigin())} mm: "
          f"{'the source geometry' if all(geometry.values()) else 'DIFFERS from the source'}")
if not all(same.values()):
    sys.exit(f"{out}: differs from its source {source}")
print(f"geometry equals the source's: {out}")
PY
echo "DICOM series: $OUT/<patient>/ (import them beside the source); report: $RESULTS/$NAME/test_best/index.html"
