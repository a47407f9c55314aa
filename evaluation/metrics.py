"""Evaluation metrics between CT volumes, in HU, per region (whole volume, body, moving anatomy).

Every function is pure and takes numpy arrays of HU in voxel order ``(I, J, K)`` (float or int);
arithmetic is done in float64. ``axial_axis`` (0, 1 or 2) names the voxel axis along which axial
slices are taken (``util.geometry.axial_axis(affine)``) and ``spacing_mm`` the voxel size along
I, J, K in mm; :func:`evaluate_volumes` derives both from the affine. The baseline of every score
is the AVG itself, the identity answer a model has to beat. The geometric scores (lungs, lung
base, structures) are in :mod:`evaluation.geometry` and :mod:`evaluation.structures`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

from evaluation.checks import check_margin, check_same_shape, check_spacing, check_volume
from evaluation.geometry import breathing_amplitude_mm, dilate_mm, lung_mask, lung_scores
from evaluation.structures import STRUCTURE_MARGIN_MM, structure_scores
from util.geometry import axial_axis as axial_axis_of
from util.geometry import voxel_spacing_mm, voxel_volume_ml
from util.hu_window import DEFAULT_HU_MAX, DEFAULT_HU_MIN, check_window

logger = logging.getLogger(__name__)

REGIONS: tuple[str, ...] = ("whole", "body", "motion")
METRICS: tuple[str, ...] = ("mae_hu", "rmse_hu", "bias_hu", "psnr_db", "ssim")
#: Metrics where lower is better; for ``bias_hu`` it is the magnitude that should be low.
_ERROR_METRICS = ("mae_hu", "rmse_hu", "bias_hu")
_CUBE = np.ones((3, 3, 3), dtype=bool)
_SSIM_WIN = 7  # skimage's default window: an axial slice must be at least 7 x 7 voxels
#: Default margin (mm) of the motion region; see :class:`RegionSettings`.
MOTION_MARGIN_MM = 5.0


@dataclass(frozen=True)
class RegionSettings:
    """How the regions are cut out and the intensity range PSNR/SSIM are relative to.

    body_threshold_hu: body = voxels of the AVG above this (HU), holes filled, largest component.
    motion_threshold_hu: motion = voxels where |phase 0 - AVG| exceeds this (HU), in groups of
        at least :data:`MOTION_MIN_VOXELS` ...
    motion_margin_mm: ... then grown by a sphere of this radius (mm, world space) and cut to
        the body. 5 mm by default: a moved boundary is blurred over about one voxel of partial
        volume plus the scanner's blur (1-2 mm), and the threshold cuts the tails of that
        ramp, so the margin must reach one voxel past the thresholded edge at 5 mm pixels and
        the 2-3 mm of blur at 1 mm pixels; more would mostly add static tissue (the old
        2 voxels of a 3 x 3 x 3 cube were 11 mm at 5.5 mm pixels).
    lung_threshold_hu: lung = voxels below this (HU) inside the body.
    hu_min, hu_max: the HU range; its width (4095 HU by default) is the PSNR/SSIM data range.
    """

    body_threshold_hu: float = -500.0
    motion_threshold_hu: float = 50.0
    motion_margin_mm: float = MOTION_MARGIN_MM
    lung_threshold_hu: float = -400.0
    hu_min: float = DEFAULT_HU_MIN
    hu_max: float = DEFAULT_HU_MAX

    def __post_init__(self) -> None:
        for name in ("body_threshold_hu", "motion_threshold_hu", "lung_threshold_hu"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number of HU, not {getattr(self, name)}")
        check_margin(self.motion_margin_mm, "motion_margin_mm")
        check_window(self.hu_min, self.hu_max)

    @property
    def data_range_hu(self) -> float:
        """Width of the HU range (HU), the data range of PSNR and SSIM."""
        return float(self.hu_max - self.hu_min)


def _float(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


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
        check_same_shape(values, mask, "values and mask")
        values = values[np.asarray(mask, dtype=bool)]
    return float(np.mean(values)) if values.size else float("nan")


def _error(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """pred - truth in HU (float64, same shape) after checking the shapes of all three."""
    check_same_shape(pred, truth, "pred and truth")
    if mask is not None:
        check_same_shape(pred, mask, "pred and mask")
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
    check_volume(pred, "pred")
    check_same_shape(pred, truth, "pred and truth")
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
    check_volume(avg_hu, "avg_hu")
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


def motion_mask(avg_hu: np.ndarray, truth_hu: np.ndarray, body: np.ndarray,
                spacing_mm: tuple[float, float, float], threshold_hu: float = 50.0,
                margin_mm: float = MOTION_MARGIN_MM,
                min_voxels: int = MOTION_MIN_VOXELS) -> np.ndarray:
    """Where anatomy moves between the AVG and phase 0: two (I, J, K) HU -> (I, J, K) bool.

    ``|truth - avg| > threshold_hu``; then groups of fewer than ``min_voxels`` voxels connected
    through faces, edges or corners are dropped (noise specks: with independent noise of sigma
    15 HU per phase, a voxel exceeds 50 HU by chance about once in 700, and its neighbours
    rarely do too), while thin moving sheets such as a one-slice band at the diaphragm are kept;
    then the rest grows by a sphere of ``margin_mm`` in world space (``spacing_mm``: voxel size
    along I, J, K in mm; :func:`evaluation.geometry.dilate_mm`, i.e. ``floor(margin_mm /
    spacing)`` voxels along each axis) and is cut to ``body`` ((I, J, K) bool).
    """
    check_volume(avg_hu, "avg_hu")
    check_same_shape(avg_hu, truth_hu, "avg_hu and truth_hu")
    check_same_shape(avg_hu, body, "avg_hu and body")
    mask = np.abs(_float(truth_hu) - _float(avg_hu)) > threshold_hu
    labels, n_groups = ndimage.label(mask, _CUBE)
    if n_groups:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= min_voxels
        keep[0] = False  # background
        mask = keep[labels]
    return dilate_mm(mask, spacing_mm, margin_mm) & np.asarray(body, dtype=bool)


def region_masks(avg_hu: np.ndarray | None, truth_hu: np.ndarray | None, axial_axis: int,
                 spacing_mm: tuple[float, float, float],
                 settings: RegionSettings) -> dict[str, np.ndarray]:
    """Region name -> (I, J, K) bool mask, in the order of ``REGIONS``.

    "whole" is every voxel; "body" is ``body_mask`` of the AVG, or of the truth when ``avg_hu`` is
    None; "motion" is ``motion_mask`` cut to the body of either volume (the chest wall that rises
    beyond the AVG's skin at inhale still counts) and only present when both volumes are given.
    ``spacing_mm``: voxel size along the arrays' axes, mm.
    """
    if avg_hu is not None:
        ref = avg_hu
    elif truth_hu is not None:
        ref = truth_hu
    else:
        raise ValueError("region_masks needs avg_hu or truth_hu, got neither")
    if avg_hu is not None and truth_hu is not None:
        check_same_shape(avg_hu, truth_hu, "avg_hu and truth_hu")
    masks = {"whole": np.ones(np.shape(ref), dtype=np.bool_),
             "body": body_mask(ref, axial_axis, settings.body_threshold_hu)}
    if avg_hu is not None and truth_hu is not None:
        either = masks["body"] | body_mask(truth_hu, axial_axis, settings.body_threshold_hu)
        masks["motion"] = motion_mask(avg_hu, truth_hu, either, spacing_mm,
                                      settings.motion_threshold_hu, settings.motion_margin_mm)
    return masks


def lung_volume_ml(hu: np.ndarray, body: np.ndarray, spacing_mm: tuple[float, float, float],
                   threshold_hu: float = -400.0) -> float:
    """Lung volume (mL): voxels of :func:`evaluation.geometry.lung_mask` times the voxel volume.

    hu: (I, J, K) HU; body: (I, J, K) bool; spacing_mm: voxel size along I, J, K in mm.
    """
    check_same_shape(hu, body, "hu and body")
    spacing = check_spacing(spacing_mm, np.ndim(hu))
    return int(np.count_nonzero(lung_mask(hu, body, threshold_hu))) * math.prod(spacing) / 1000.0


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


def _geometry(pred: np.ndarray, truth: np.ndarray, avg: np.ndarray | None, body: np.ndarray,
              affine: np.ndarray, lung_threshold_hu: float,
              structures: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The "lung_volume_ml", "geometry" and "amplitude_mm" entries of :func:`evaluate_volumes`."""
    voxel_ml = voxel_volume_ml(affine)
    truth_lung, pred_lung = (lung_mask(hu, body, lung_threshold_hu) for hu in (truth, pred))
    avg_lung = None if avg is None else lung_mask(avg, body, lung_threshold_hu)
    found = structure_scores({"model": pred, "avg": avg}, truth, structures, affine,
                             STRUCTURE_MARGIN_MM)
    baseline = None if avg_lung is None else (lung_scores(avg_lung, truth_lung, affine)
                                              | {"structures": found["avg"]})
    return {"lung_volume_ml": {name: None if m is None else int(np.count_nonzero(m)) * voxel_ml
                               for name, m in (("truth", truth_lung), ("model", pred_lung),
                                               ("avg", avg_lung))},
            "geometry": {"model": lung_scores(pred_lung, truth_lung, affine)
                         | {"structures": found["model"]}, "baseline": baseline},
            "amplitude_mm": None if avg_lung is None else
            breathing_amplitude_mm(avg_lung, truth_lung, affine)}


def evaluate_volumes(pred: np.ndarray, truth: np.ndarray, avg: np.ndarray | None,
                     affine: np.ndarray, settings: RegionSettings = RegionSettings(),
                     structures: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Score a predicted phase 0 and, when ``avg`` is given, the AVG baseline; JSON-serialisable.

    pred, truth, avg: (I, J, K) HU on the grid of ``affine`` ((4, 4) voxel -> world mm, from
    which spacing and the axial axis are derived); structures: name -> (I, J, K) bool mask on
    the truth (e.g. a GTV). Returns

    - "model" and "baseline": region -> metric -> value (baseline None without ``avg``);
      "improvement" (positive = model better; None without ``avg``);
    - "region_voxels" and "region_ml": region -> size (voxels, mL);
    - "lung_volume_ml": "truth", "model", "avg" (None without ``avg``), lungs of
      :func:`evaluation.geometry.lung_mask` inside the body;
    - "geometry": {"model": G, "baseline": G or None}, G = :func:`evaluation.geometry.lung_scores`
      plus "structures": name -> entry of :func:`evaluation.structures.structure_scores`;
    - "amplitude_mm": the AVG-to-phase-0 lung-base shift (mm,
      :func:`evaluation.geometry.lung_base_shift_mm`), None without ``avg``;
    - "settings".

    NaN/inf values (empty region, perfect PSNR) pass ``json.dumps`` as NaN/Infinity.
    """
    check_volume(pred, "pred")
    check_same_shape(pred, truth, "pred and truth")
    if avg is not None:
        check_same_shape(pred, avg, "pred and avg")
    axis, voxel_ml = axial_axis_of(affine), voxel_volume_ml(affine)
    masks = region_masks(avg, truth, axis, voxel_spacing_mm(affine), settings)
    model = score_prediction(pred, truth, masks, axis, settings.data_range_hu)
    baseline = None if avg is None else score_prediction(avg, truth, masks, axis,
                                                         settings.data_range_hu)
    improvement = None if baseline is None else {
        region: _improvement(model[region], baseline[region]) for region in model}
    return {"model": model, "baseline": baseline, "improvement": improvement,
            "region_voxels": {region: int(np.count_nonzero(m)) for region, m in masks.items()},
            "region_ml": {region: int(np.count_nonzero(m)) * voxel_ml
                          for region, m in masks.items()},
            **_geometry(pred, truth, avg, masks["body"], affine, settings.lung_threshold_hu,
                        structures or {}),
            "settings": dataclasses.asdict(settings)}
