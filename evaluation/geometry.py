"""Geometry of a synthetic phase 0 against the true one: lungs, lung base (diaphragm), margins.

A radiotherapy physicist judges a synthetic phase 0 first by where things are, then by HU. Volumes
are (I, J, K) HU in voxel order with their (4, 4) affine (voxel index -> world mm); spacing and
the superior-inferior axis are derived from the affine (:mod:`util.geometry`). The lung base is
measured in the slice-stack frame of :func:`util.geometry.to_slice_stack`: (S, H, W), axis 0 the
voxel axis nearest superior-inferior, inferior first. Volumes in mL, distances in mm.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from scipy import ndimage

from evaluation.checks import check_margin, check_same_shape, check_spacing, check_volume
from util.geometry import stack_spacing_mm, to_slice_stack, voxel_volume_ml

logger = logging.getLogger(__name__)

#: Lung components smaller than this fraction of the largest one are not lung (see lung_mask).
LUNG_MIN_COMPONENT_FRACTION = 0.1
#: Tolerance (mm) of the sphere's radius, so that a margin of exactly k voxels reaches them.
_MARGIN_TOL_MM = 1e-6


def dilate_mm(mask: np.ndarray, spacing_mm: tuple[float, float, float],
              margin_mm: float) -> np.ndarray:
    """Grow ``mask`` by a sphere of radius ``margin_mm`` in world space: (I, J, K) bool -> same.

    A voxel joins when its centre lies within ``margin_mm`` of a mask voxel's centre, the
    distance measured with ``spacing_mm`` (voxel size along I, J, K, mm). That is a dilation by
    the ellipsoid of radii ``margin_mm / spacing_mm`` voxels, so along each axis the mask grows
    by ``floor(margin_mm / spacing)`` voxels. Computed with a Euclidean distance transform of the
    mask's bounding box grown by those radii. For a sheared grid the distance ignores the shear.
    """
    check_volume(mask, "mask")
    spacing = check_spacing(spacing_mm)
    margin = check_margin(margin_mm)
    mask = np.asarray(mask, dtype=bool)
    if margin == 0 or not mask.any():
        return mask.copy()
    radii = [math.floor(margin / s + 1e-9) for s in spacing]
    found = ndimage.find_objects(mask.astype(np.int8))[0]
    box = tuple(slice(max(sl.start - r, 0), min(sl.stop + r, n))
                for sl, r, n in zip(found, radii, mask.shape, strict=True))
    distance = ndimage.distance_transform_edt(~mask[box], sampling=spacing)
    out = np.zeros(mask.shape, dtype=bool)
    out[box] = distance <= margin + _MARGIN_TOL_MM
    return out


def lung_mask(hu: np.ndarray, body: np.ndarray, threshold_hu: float = -400.0,
              min_component_fraction: float = LUNG_MIN_COMPONENT_FRACTION) -> np.ndarray:
    """The lungs: (I, J, K) HU and (I, J, K) bool body -> (I, J, K) bool.

    Voxels below ``threshold_hu`` inside ``body`` (the body mask fills each axial slice's holes,
    so the lungs are inside it), keeping only the face-connected groups of at least
    ``min_component_fraction`` of the largest group's size. That drops bowel gas and dark specks,
    which would otherwise pose as the lowest lung voxel of their column (see
    :func:`lung_base_mm`), and keeps both lungs whether or not the airways join them.
    """
    check_volume(hu, "hu")
    check_same_shape(hu, body, "hu and body")
    if not 0 <= min_component_fraction <= 1:
        raise ValueError(f"min_component_fraction must be in [0, 1], not {min_component_fraction}")
    below = (np.asarray(hu, dtype=np.float64) < threshold_hu) & np.asarray(body, dtype=bool)
    labels, n = ndimage.label(below)
    if n == 0:
        return below
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= min_component_fraction * sizes.max()
    keep[0] = False
    return keep[labels]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap 2 |a & b| / (|a| + |b|) of two bool masks of one shape; NaN if both empty."""
    check_same_shape(a, b, "the two masks")
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 2.0 * int(np.count_nonzero(a & b)) / total if total else math.nan


def volume_error(pred: np.ndarray, truth: np.ndarray, voxel_ml: float) -> tuple[float, float]:
    """(mL, %) by which the ``pred`` mask's volume exceeds the ``truth`` mask's (bool, one shape):
    prediction minus truth, and that over the truth's volume (NaN % when the truth is empty)."""
    check_same_shape(pred, truth, "pred and truth masks")
    n_pred, n_truth = int(np.count_nonzero(pred)), int(np.count_nonzero(truth))
    error_ml = (n_pred - n_truth) * voxel_ml
    return error_ml, 100.0 * (n_pred - n_truth) / n_truth if n_truth else math.nan


def lung_base_mm(lung_stack: np.ndarray, thickness_mm: float) -> np.ndarray:
    """Height of the lowest lung voxel of every column: (S, H, W) bool -> (H, W) float64 mm.

    ``lung_stack`` is a lung mask in the slice-stack frame (axis 0 inferior -> superior); the
    height is the index of the first lung slice times ``thickness_mm``, i.e. mm above the centre
    of the stack's first slice, NaN where a column holds no lung. For an oblique volume this is
    the distance along the stack axis, the voxel axis nearest superior-inferior, not along the
    patient's true superior-inferior axis.
    """
    check_volume(lung_stack, "lung_stack")
    check_spacing((thickness_mm,), ndim=1)
    lung_stack = np.asarray(lung_stack, dtype=bool)
    first = np.argmax(lung_stack, axis=0).astype(np.float64)
    first[~lung_stack.any(axis=0)] = np.nan
    return first * float(thickness_mm)


def lung_base_error(pred_mm: np.ndarray, truth_mm: np.ndarray) -> dict[str, float]:
    """Lung-base (diaphragm) error between two :func:`lung_base_mm` maps ((H, W) mm, NaN = no
    lung): ``{"mean_mm", "p95_mm", "bias_mm", "columns"}``.

    Over the columns with lung in both maps, less those whose lowest lung voxel is on the first
    slice in either (the base lies below the field of view there, so it is not seen): the mean
    and 95th percentile (linear interpolation) of |pred - truth|, and the mean of pred - truth
    (positive = the prediction's base is too superior). NaN, with a warning, without columns.
    """
    check_same_shape(pred_mm, truth_mm, "the two lung-base maps")
    pred_mm, truth_mm = np.asarray(pred_mm, np.float64), np.asarray(truth_mm, np.float64)
    shared = np.isfinite(pred_mm) & np.isfinite(truth_mm) & (pred_mm > 0) & (truth_mm > 0)
    diff = pred_mm[shared] - truth_mm[shared]
    if not diff.size:
        logger.warning("no column holds lung above the first slice in both volumes; the "
                       "lung-base error is NaN")
        return {"mean_mm": math.nan, "p95_mm": math.nan, "bias_mm": math.nan, "columns": 0}
    return {"mean_mm": float(np.mean(np.abs(diff))),
            "p95_mm": float(np.percentile(np.abs(diff), 95)),
            "bias_mm": float(np.mean(diff)), "columns": int(diff.size)}


def lung_base_shift_mm(avg_mm: np.ndarray, phase0_mm: np.ndarray) -> float:
    """The breathing amplitude as the data show it: the AVG-to-phase-0 lung-base shift (mm).

    Mean over shared columns (as in :func:`lung_base_error`) of the AVG's lung base minus phase
    0's ((H, W) mm maps). Phase 0 is end-inhale, when the base is lowest. A voxel of the AVG
    reads as lung where it is lung in roughly half of the phases or more, so the AVG's base
    sits near the median position over the cycle: higher than phase 0's by a fraction of the
    peak-to-peak amplitude. This is a lower bound of the amplitude, not the amplitude itself.
    """
    return lung_base_error(avg_mm, phase0_mm)["bias_mm"]


def lung_scores(pred_lung: np.ndarray, truth_lung: np.ndarray,
                affine: np.ndarray) -> dict[str, Any]:
    """Lung and diaphragm scores of one answer's lungs against the truth's ((I, J, K) bool
    masks on the grid of ``affine``): ``lung_dice``, ``lung_volume_error_ml`` and ``_pct``
    (prediction minus truth), ``diaphragm_error_mean_mm``, ``_p95_mm``, ``diaphragm_bias_mm``
    (positive = too superior) and ``diaphragm_columns`` (see :func:`lung_base_error`)."""
    error_ml, error_pct = volume_error(pred_lung, truth_lung, voxel_volume_ml(affine))
    thickness_mm = stack_spacing_mm(affine)[0]
    base = lung_base_error(lung_base_mm(to_slice_stack(pred_lung, affine), thickness_mm),
                           lung_base_mm(to_slice_stack(truth_lung, affine), thickness_mm))
    return {"lung_dice": dice(pred_lung, truth_lung), "lung_volume_error_ml": error_ml,
            "lung_volume_error_pct": error_pct, "diaphragm_error_mean_mm": base["mean_mm"],
            "diaphragm_error_p95_mm": base["p95_mm"], "diaphragm_bias_mm": base["bias_mm"],
            "diaphragm_columns": base["columns"]}


def breathing_amplitude_mm(avg_lung: np.ndarray, phase0_lung: np.ndarray,
                           affine: np.ndarray) -> float:
    """:func:`lung_base_shift_mm` of the AVG's and phase 0's lungs ((I, J, K) bool masks)."""
    thickness_mm = stack_spacing_mm(affine)[0]
    return lung_base_shift_mm(lung_base_mm(to_slice_stack(avg_lung, affine), thickness_mm),
                              lung_base_mm(to_slice_stack(phase0_lung, affine), thickness_mm))
