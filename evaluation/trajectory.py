"""Motion over the breathing cycle: where the diaphragm and a structure are in every phase.

The diaphragm's height in a phase is the mean height (mm above the centre of the stack's first
slice, along the stack axis: superior-inferior for an axial scan) of the lung base over a fixed
set of columns: those whose lung base the AVG shows above the first slice. Fixing the columns
makes the heights of different phases, and of the truth and the model, comparable. A structure's
trajectory is its centre of mass (world mm) in every phase.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from evaluation.geometry import lung_base_mm, lung_mask
from evaluation.metrics import RegionSettings, body_mask
from util.geometry import axial_axis, stack_spacing_mm, to_slice_stack


def _base_map_mm(hu: np.ndarray, body: np.ndarray, affine: np.ndarray,
                 settings: RegionSettings) -> np.ndarray:
    """(H, W) lung-base height in mm of one volume (I, J, K) HU (NaN where no lung)."""
    lungs = lung_mask(hu, body, settings.lung_threshold_hu)
    return lung_base_mm(to_slice_stack(lungs, affine), stack_spacing_mm(affine)[0])


def diaphragm_heights_mm(volumes: Mapping[float, np.ndarray], avg_hu: np.ndarray,
                         affine: np.ndarray, settings: RegionSettings | None = None
                         ) -> dict[float, float]:
    """{phase %: diaphragm height in mm} of each (I, J, K) HU volume, over the columns where the
    AVG's lung base lies above the first slice (the body mask from the AVG as well); NaN for a
    phase without lung in those columns. ``settings``: the body and lung thresholds (defaults
    when None)."""
    settings = settings or RegionSettings()
    body = body_mask(avg_hu, axial_axis(affine), settings.body_threshold_hu)
    avg_base = _base_map_mm(avg_hu, body, affine, settings)
    columns = np.isfinite(avg_base) & (avg_base > 0)
    heights = {}
    for percent, hu in volumes.items():
        base = _base_map_mm(hu, body, affine, settings)[columns]
        base = base[np.isfinite(base)]
        heights[percent] = float(base.mean()) if base.size else math.nan
    return heights


def centre_of_mass_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(3,) world mm (RAS) centre of a (I, J, K) bool mask; NaN for an empty mask."""
    index = np.argwhere(mask)
    if not index.size:
        return np.full(3, np.nan)
    centre = index.mean(axis=0)
    return (affine[:3, :3] @ centre + affine[:3, 3]).astype(np.float64)


def cycle_summary(truth_mm: Mapping[float, float], model_mm: Mapping[float, float]
                  ) -> dict[str, float]:
    """Peak-to-peak amplitude (mm) of a 1-D trajectory in the truth and the model, the
    amplitude error (model - truth, mm) and the mean and largest |model - truth| over the
    phases both have (NaN-free)."""
    phases = [p for p in truth_mm if p in model_mm
              and math.isfinite(truth_mm[p]) and math.isfinite(model_mm[p])]
    if not phases:
        return dict.fromkeys(("amplitude_truth_mm", "amplitude_model_mm", "amplitude_error_mm",
                              "error_mean_mm", "error_max_mm"), math.nan)
    truth = np.array([truth_mm[p] for p in phases])
    model = np.array([model_mm[p] for p in phases])
    amp_truth, amp_model = float(np.ptp(truth)), float(np.ptp(model))
    errors = np.abs(model - truth)
    return {"amplitude_truth_mm": amp_truth, "amplitude_model_mm": amp_model,
            "amplitude_error_mm": amp_model - amp_truth,
            "error_mean_mm": float(errors.mean()), "error_max_mm": float(errors.max())}
