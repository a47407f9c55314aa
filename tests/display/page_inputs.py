"""What test.py hands the results page: score dicts, with and without the geometry keys, and
patient pictures (real PNGs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from display.patient_page import PatientPictures, Picture, PictureRow

REGION_VOXELS = {"whole": 4096, "body": 2000, "motion": 300}


def hu_block(mae_hu: float, ssim: float) -> dict[str, dict[str, float]]:
    """``{region: metrics}``: MAE ``mae_hu`` in the motion region, 2/3 of it in the body and
    1/3 over the whole volume; SSIM ``ssim`` everywhere."""
    return {region: {"mae_hu": mae_hu * f, "rmse_hu": 2 * mae_hu * f, "bias_hu": -1.0,
                     "psnr_db": 30.0, "ssim": ssim}
            for region, f in (("whole", 1 / 3), ("body", 2 / 3), ("motion", 1.0))}


def geometry_block(dice: float, volume_pct: float, diaphragm_mm: float,
                   tumour_mm: float) -> dict[str, Any]:
    """One answer's geometry scores."""
    return {"lung_dice": dice, "lung_volume_error_ml": volume_pct * 30.0,
            "lung_volume_error_pct": volume_pct, "diaphragm_error_mean_mm": diaphragm_mm,
            "diaphragm_error_p95_mm": 2 * diaphragm_mm, "diaphragm_bias_mm": -diaphragm_mm,
            "structures": {"tumour": {"com_error_mm": tumour_mm,
                                      "com_error_vector_mm": [tumour_mm, 0.0, 0.0],
                                      "threshold_hu": -300.0}}}


def scores(model_mae: float, avg_mae: float, *, geometry: bool = False,
           amplitude_mm: float | None = None, model_diaphragm_mm: float = 2.0,
           avg_diaphragm_mm: float = 6.0) -> dict[str, Any]:
    """A patient's score dict: today's keys, and with ``geometry`` the new ones (region sizes in
    mL, breathing amplitude, geometry of the model and the AVG)."""
    model, baseline = hu_block(model_mae, 0.9), hu_block(avg_mae, 0.8)
    out: dict[str, Any] = {
        "model": model, "baseline": baseline,
        "improvement": {r: {m: baseline[r][m] - model[r][m] for m in model[r]} for r in model},
        "region_voxels": dict(REGION_VOXELS),
        "lung_volume_ml": {"truth": 900.0, "model": 880.0, "avg": 800.0},
        "settings": {"lung_threshold_hu": -400.0}}
    if geometry:
        out["region_ml"] = {region: n * 0.5 for region, n in REGION_VOXELS.items()}
        out["amplitude_mm"] = amplitude_mm
        out["geometry"] = {"model": geometry_block(0.95, -2.0, model_diaphragm_mm, 1.5),
                           "baseline": geometry_block(0.85, -8.0, avg_diaphragm_mm, 4.0)}
    return out


def pictures(folder: Path, pid: str) -> PatientPictures:
    """Two views and two slice rows of small grey PNGs written into ``folder/images``."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    stem = pid.replace(" ", "_")
    names = [f"{stem}_views_lung_base.png", f"{stem}_views_lung.png",
             f"{stem}_slice000_real_A.png", f"{stem}_slice001_real_A.png"]
    for name in names:
        Image.new("RGB", (8, 6), "gray").save(folder / "images" / name)
    return PatientPictures(
        views=(Picture(f"images/{names[0]}", "lung base"), Picture(f"images/{names[1]}", "lung")),
        slices=(PictureRow("slice 000", (Picture(f"images/{names[2]}", "input"),)),
                PictureRow("slice 001", (Picture(f"images/{names[3]}", "input"),))),
        slice_width_px=128)
