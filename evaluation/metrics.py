"""Evaluation metrics between CT volumes, in HU, per region (whole volume, body, moving anatomy).

Every function is pure and takes numpy arrays of HU in voxel order ``(I, J, K)`` (float or int);
arithmetic is done in float64. ``axial_axis`` (0, 1 or 2) names the voxel axis along which axial
slices are taken (``util.geometry.axial_axis(affine)``). The baseline of every score is the AVG
itself, the identity answer a model has to beat.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

from util.hu_window import DEFAULT_HU_MAX, DEFAULT_HU_MIN, check_window

logger = logging.getLogger(__name__)

REGIONS: tuple[str, ...] = ("whole", "body", "motion")
METRICS: tuple[str, ...] = ("mae_hu", "rmse_hu", "bias_hu", "psnr_db", "ssim")
#: Metrics where lower is better; for ``bias_hu`` it is the magnitude that should be low.
_ERROR_METRICS = ("mae_hu", "rmse_hu", "bias_hu")
_CUBE = np.ones((3, 3, 3), dtype=bool)
_SSIM_WIN = 7  # skimage's default window: an axial slice must be at least 7 x 7 voxels


@dataclass(frozen=True)
class RegionSettings:
    """How the regions are cut out and the intensity range PSNR/SSIM are relative to.

    body_threshold_hu: body = voxels of the AVG above this (HU), holes filled, largest component.
    motion_threshold_hu: motion = voxels where |phase 0 - AVG| exceeds this (HU), in groups of
        at least :data:`MOTION_MIN_VOXELS` ...
    motion_dilate_vox: ... then dilated by this many voxels.
    lung_threshold_hu: lung = voxels below this (HU) inside the body.
    hu_min, hu_max: the HU range; its width (4095 HU by default) is the PSNR/SSIM data range.
    """

    body_threshold_hu: float = -500.0
    motion_threshold_hu: float = 50.0
    motion_dilate_vox: int = 2
    lung_threshold_hu: float = -400.0
    hu_min: float = DEFAULT_HU_MIN
    hu_max: float = DEFAULT_HU_MAX

    def __post_init__(self) -> None:
        for name in ("body_threshold_hu", "motion_threshold_hu", "lung_threshold_hu"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number of HU, not {getattr(self, name)}")
        dilate = self.motion_dilate_vox
        if isinstance(dilate, bool) or not isinstance(dilate, int) or dilate < 0:
            raise ValueError(f"motion_dilate_vox must be an integer >= 0, not {dilate!r}")
        check_window(self.hu_min, self.hu_max)

    @property
    def data_range_hu(self) -> float:
        """Width of the HU range (HU), the data range of PSNR and SSIM."""
        return float(self.hu_max - self.hu_min)


def _float(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _check_same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(f"{names} must have the same shape, got {np.shape(a)} and {np.shape(b)}")


def _check_volume(vol: np.ndarray, name: str) -> None:
    if np.ndim(vol) != 3:
        raise ValueError(f"{name} must be a 3-D volume (I, J, K), got shape {np.shape(vol)}")


def _check_axis(axial_axis: int) -> None:
    if axial_axis not in (0, 1, 2):
        raise ValueError(f"axial_axis must be 0, 1 or 2, not {axial_axis!r}")


def _check_data_range(data_range_hu: float) -> None:
    if not data_range_hu > 0:
        raise ValueError(f"data_range_hu must be > 0 HU, not {data_range_hu}")


def masked_mean(values: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean of ``values`` (any shape) over ``mask`` (bool, same shape; None = all elements).

    Returns NaN, not an error, when the mask (or the array) is empty.
    """
    values = _float(values)
    if mask is not None:
        _check_same_shape(values, mask, "values and mask")
        values = values[np.asarray(mask, dtype=bool)]
    return float(np.mean(values)) if values.size else float("nan")


def _error(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """pred - truth in HU (float64, same shape) after checking the shapes of all three."""
    _check_same_shape(pred, truth, "pred and truth")
    if mask is not None:
        _check_same_shape(pred, mask, "pred and mask")
    return _float(pred) - _float(truth)


def mae_hu(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute error (HU) of ``pred`` vs ``truth`` (same shape, any dims) over ``mask``."""
    return masked_mean(np.abs(_error(pred, truth, mask)), mask)


def rmse_hu(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Root-mean-square error (HU) of ``pred`` against ``truth`` (same shape) over ``mask``."""
    return math.sqrt(masked_mean(_error(pred, truth, mask) ** 2, mask))


def bias_hu(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean of ``pred - truth`` (HU) over ``mask``; positive = the prediction is too dense."""
    return masked_mean(_error(pred, truth, mask), mask)


def psnr_db(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None,
            data_range_hu: float = 4095.0) -> float:
    """Peak signal-to-noise ratio (dB): ``20 log10(data_range_hu / RMSE)``; inf when RMSE is 0."""
    _check_data_range(data_range_hu)
    rmse = rmse_hu(pred, truth, mask)
    if math.isnan(rmse):
        return rmse
    return math.inf if rmse == 0 else 20.0 * math.log10(data_range_hu / rmse)


def ssim_map(pred: np.ndarray, truth: np.ndarray, axial_axis: int,
             data_range_hu: float = 4095.0) -> np.ndarray:
    """Per-voxel SSIM, computed in 2-D on each axial slice (7 x 7 window) and stacked back.

    pred, truth: (I, J, K) HU -> (I, J, K) float64 SSIM (1 = identical structure). Each axial
    slice must be at least 7 x 7 voxels.
    """
    _check_volume(pred, "pred")
    _check_same_shape(pred, truth, "pred and truth")
    _check_axis(axial_axis)
    _check_data_range(data_range_hu)
    pred_s, truth_s = (np.moveaxis(_float(v), axial_axis, 0) for v in (pred, truth))
    if min(pred_s.shape[1:]) < _SSIM_WIN:
        raise ValueError(f"SSIM needs axial slices of at least {_SSIM_WIN} x {_SSIM_WIN} voxels, "
                         f"got {pred_s.shape[1]} x {pred_s.shape[2]} (axial_axis={axial_axis})")
    out = np.empty(pred_s.shape, dtype=np.float64)
    for s in range(pred_s.shape[0]):
        _, out[s] = structural_similarity(pred_s[s], truth_s[s], data_range=data_range_hu,
                                          full=True)
    return np.moveaxis(out, 0, axial_axis)


def body_mask(avg_hu: np.ndarray, axial_axis: int, threshold_hu: float = -500.0) -> np.ndarray:
    """The patient's body: (I, J, K) HU -> (I, J, K) bool.

    Voxels above ``threshold_hu``, with holes filled in each axial slice (so the lungs count as
    body even where they reach the first or last slice), then only the largest 3-D connected
    component, which drops the couch and specks of noise. All False when nothing exceeds the
    threshold.
    """
    _check_volume(avg_hu, "avg_hu")
    _check_axis(axial_axis)
    slices = np.moveaxis(_float(avg_hu) > threshold_hu, axial_axis, 0)
    filled = np.stack([ndimage.binary_fill_holes(s) for s in slices])
    labels, n = ndimage.label(filled)
    if n == 0:
        return np.zeros(np.shape(avg_hu), dtype=bool)
    largest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    return np.moveaxis(labels == largest, 0, axial_axis)


#: Connected groups of fewer voxels than this are noise, not motion (see :func:`motion_mask`).
MOTION_MIN_VOXELS = 5


def motion_mask(avg_hu: np.ndarray, truth_hu: np.ndarray, threshold_hu: float = 50.0,
                dilate_vox: int = 2, min_voxels: int = MOTION_MIN_VOXELS) -> np.ndarray:
    """Where anatomy moves between the AVG and phase 0: two (I, J, K) HU -> (I, J, K) bool.

    ``|truth - avg| > threshold_hu``; then groups of fewer than ``min_voxels`` voxels connected
    through faces, edges or corners are dropped (noise specks: with independent noise of sigma
    15 HU per phase, a voxel exceeds 50 HU by chance about once in 700, and its neighbours
    rarely do too), while thin moving sheets such as a one-slice band at the diaphragm are kept;
    then ``dilate_vox`` binary dilations with a 3 x 3 x 3 cube (a margin around the anatomy).
    """
    _check_volume(avg_hu, "avg_hu")
    _check_same_shape(avg_hu, truth_hu, "avg_hu and truth_hu")
    if isinstance(dilate_vox, bool) or not isinstance(dilate_vox, int) or dilate_vox < 0:
        raise ValueError(f"dilate_vox must be an integer >= 0, not {dilate_vox!r}")
    mask = np.abs(_float(truth_hu) - _float(avg_hu)) > threshold_hu
    labels, n_groups = ndimage.label(mask, _CUBE)
    if n_groups:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= min_voxels
        keep[0] = False  # background
        mask = keep[labels]
    if dilate_vox:  # iterations=0 would mean "dilate until nothing changes" to scipy
        mask = ndimage.binary_dilation(mask, _CUBE, iterations=dilate_vox)
    return mask


def region_masks(avg_hu: np.ndarray | None, truth_hu: np.ndarray | None, axial_axis: int,
                 settings: RegionSettings) -> dict[str, np.ndarray]:
    """Region name -> (I, J, K) bool mask, in the order of ``REGIONS``.

    "whole" is every voxel; "body" is ``body_mask`` of the AVG, or of the truth when ``avg_hu`` is
    None; "motion" is ``motion_mask`` and only present when both volumes are given.
    """
    if avg_hu is not None:
        ref = avg_hu
    elif truth_hu is not None:
        ref = truth_hu
    else:
        raise ValueError("region_masks needs avg_hu or truth_hu, got neither")
    if avg_hu is not None and truth_hu is not None:
        _check_same_shape(avg_hu, truth_hu, "avg_hu and truth_hu")
    masks = {"whole": np.ones(np.shape(ref), dtype=np.bool_),
             "body": body_mask(ref, axial_axis, settings.body_threshold_hu)}
    if avg_hu is not None and truth_hu is not None:
        masks["motion"] = motion_mask(avg_hu, truth_hu, settings.motion_threshold_hu,
                                      settings.motion_dilate_vox)
    return masks


def lung_volume_ml(hu: np.ndarray, body: np.ndarray, spacing_mm: tuple[float, float, float],
                   threshold_hu: float = -400.0) -> float:
    """Lung volume (mL): voxels below ``threshold_hu`` inside ``body`` times the voxel volume.

    hu: (I, J, K) HU; body: (I, J, K) bool; spacing_mm: voxel size along I, J, K in mm.
    """
    _check_same_shape(hu, body, "hu and body")
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != np.ndim(hu) or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing_mm must be {np.ndim(hu)} positive sizes in mm, got {spacing_mm}")
    count = int(np.count_nonzero((_float(hu) < threshold_hu) & np.asarray(body, dtype=bool)))
    return count * math.prod(spacing) / 1000.0


def score_prediction(pred: np.ndarray, truth: np.ndarray, masks: dict[str, np.ndarray],
                     axial_axis: int, data_range_hu: float) -> dict[str, dict[str, float]]:
    """Region -> {metric in ``METRICS``: value} for ``pred`` against ``truth`` ((I, J, K) HU).

    SSIM of a region is the mean of ``ssim_map`` over it; an empty region scores NaN.
    """
    ssim = ssim_map(pred, truth, axial_axis, data_range_hu)
    scores = {}
    for region, mask in masks.items():
        if not np.any(mask):
            logger.warning("region %r is empty; its metrics are NaN", region)
        scores[region] = {"mae_hu": mae_hu(pred, truth, mask),
                          "rmse_hu": rmse_hu(pred, truth, mask),
                          "bias_hu": bias_hu(pred, truth, mask),
                          "psnr_db": psnr_db(pred, truth, mask, data_range_hu),
                          "ssim": masked_mean(ssim, mask)}
    return scores


def _improvement(model: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    """Per metric, how much better the model is than the baseline (positive = better)."""
    return {m: abs(baseline[m]) - abs(model[m]) if m in _ERROR_METRICS else model[m] - baseline[m]
            for m in METRICS}


def evaluate_volumes(pred: np.ndarray, truth: np.ndarray, avg: np.ndarray | None,
                     spacing_mm: tuple[float, float, float], axial_axis: int,
                     settings: RegionSettings = RegionSettings()) -> dict[str, Any]:
    """Score a predicted phase 0 and, when ``avg`` is given, the AVG baseline; JSON-serialisable.

    pred, truth, avg: (I, J, K) HU; spacing_mm: voxel size in mm. Returns "model" and "baseline"
    (region -> metric -> value; baseline None without ``avg``), "improvement" (positive = model
    better; None without ``avg``), "region_voxels", "lung_volume_ml" (inside the body) and
    "settings". NaN/inf values (empty region, perfect PSNR) pass ``json.dumps`` as NaN/Infinity.
    """
    _check_volume(pred, "pred")
    _check_same_shape(pred, truth, "pred and truth")
    if avg is not None:
        _check_same_shape(pred, avg, "pred and avg")
    masks = region_masks(avg, truth, axial_axis, settings)
    model = score_prediction(pred, truth, masks, axial_axis, settings.data_range_hu)
    baseline = None if avg is None else score_prediction(avg, truth, masks, axial_axis,
                                                         settings.data_range_hu)
    improvement = None if baseline is None else {
        region: _improvement(model[region], baseline[region]) for region in model}

    def lung(hu: np.ndarray) -> float:
        return lung_volume_ml(hu, masks["body"], spacing_mm, settings.lung_threshold_hu)

    return {"model": model, "baseline": baseline, "improvement": improvement,
            "region_voxels": {region: int(np.count_nonzero(m)) for region, m in masks.items()},
            "lung_volume_ml": {"truth": lung(truth), "model": lung(pred),
                               "avg": None if avg is None else lung(avg)},
            "settings": dataclasses.asdict(settings)}
