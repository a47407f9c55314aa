"""Where a structure (tumour, organ) drawn on the true phase 0 ends up in a synthetic phase 0.

The user gives a structure as a mask on the truth's grid; the prediction has none. Both are
found the same way, by the HU threshold that best reproduces the given mask from the truth:

1. Search region: the mask grown by a sphere of ``margin_mm`` in world space (the "neighbourhood",
   :func:`evaluation.geometry.dilate_mm`) and that neighbourhood's bounding box (the "box").
   The structure is brighter than the rest of the box when its mean HU is at least theirs
   (a tumour in lung), else darker (an airway): "in" means above, or below, the threshold.
2. Threshold: over the HU values present in the box (or, when there are more than
   :data:`MAX_CANDIDATES`, that many evenly spaced HU levels between its lowest and highest
   value), the one maximising the Dice overlap of the given mask with the truth's component
   (face-connected, inside the box) that overlaps the mask most; among ties, the middle one.
3. The truth's structure is that threshold's component overlapping the mask most. In each
   answer (prediction, AVG), with the same threshold, the answer's structure is the component
   inside the box that overlaps the truth's structure most; when none does (it moved by more
   than its own size), the component touching the neighbourhood, of 1/2 to 2 times the truth's
   structure's voxel count, whose centre is nearest the truth's; none: NaN, with a warning.
   (Overlap, not size or mere presence in the neighbourhood, so that the chest wall a few mm
   from a small tumour is not taken for it.)
4. Centre of mass of each structure: the unweighted mean of its voxel indices, in world mm
   through the affine, ``affine @ [i, j, k, 1]``. Error: answer's centre minus the truth's
   (world axes of the affine; RAS+ mm for NIfTI), and its length. The truth's thresholded
   structure, not the drawn mask, is the reference, so an answer equal to the truth scores
   exactly 0 whatever the mask's margins; ``threshold_dice`` says how well the threshold
   reproduces the drawn mask.

A structure that touches tissue of its own HU merges with it at any threshold: on the truth (a
tumour on the chest wall) ``threshold_dice`` is then low; in an answer only (a lower-lobe tumour
that the blurred AVG joins to the diaphragm) ``predicted_voxels`` far exceeds ``truth_voxels``,
a warning says so, and the centre is that of the merged component. Read the error with both.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from evaluation.checks import check_margin, check_same_shape, check_volume
from evaluation.geometry import dice, dilate_mm
from util.geometry import voxel_spacing_mm

logger = logging.getLogger(__name__)

#: Default margin (mm) around a structure within which it is looked for in an answer.
STRUCTURE_MARGIN_MM = 15.0
#: Most HU thresholds tried when fitting a structure's threshold.
MAX_CANDIDATES = 256
#: A structure that moved off its place in the truth is a component within this factor of the
#: truth's structure's voxel count (step 3 of the module docstring).
SIZE_FACTOR = 2.0


@dataclass(frozen=True, eq=False)
class StructureFit:
    """How one structure is found by thresholding (see the module docstring).

    threshold_hu: the HU threshold; above: True when the structure is the voxels above it,
    False when below; dice: overlap of the truth's structure with the given mask (how well
    the threshold reproduces it); box: the search box (three slices of the voxel axes);
    near: (I, J, K) bool neighbourhood; truth: the truth's structure, bool of the box's shape
    (empty when no threshold fits); truth_com_mm: (3,) its centre, world mm.
    """

    threshold_hu: float
    above: bool
    dice: float
    box: tuple[slice, ...]
    near: np.ndarray = field(repr=False)
    truth: np.ndarray = field(repr=False)
    truth_com_mm: np.ndarray


@dataclass(frozen=True, eq=False)
class StructureScore:
    """Centre-of-mass error of one structure in one answer.

    com_error_mm: length of the error vector (mm; NaN when the answer holds no component);
    com_error_vector_mm: (3,) answer's centre minus the truth's, world mm; threshold_hu and
    threshold_dice: the fitted threshold and how well it reproduces the given mask;
    predicted_voxels: voxels of the answer's component (0 when none); truth_voxels: of the
    truth's (0 when no threshold fits). Far more predicted than true voxels means the structure
    merged with neighbouring tissue in the answer (see the module docstring).
    """

    com_error_mm: float
    com_error_vector_mm: np.ndarray
    threshold_hu: float
    threshold_dice: float
    predicted_voxels: int
    truth_voxels: int


def _inside(hu: np.ndarray, threshold_hu: float, above: bool) -> np.ndarray:
    return hu > threshold_hu if above else hu < threshold_hu


def _most_overlap(labels: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    """The component of ``labels`` (int, 0 = background) with the most voxels in ``target``
    (bool, same shape), as a bool mask; None when no component touches ``target``."""
    overlap = np.bincount(labels[target], minlength=1)
    overlap[0] = 0
    best = int(np.argmax(overlap))
    return labels == best if overlap[best] > 0 else None


def _component(inside: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    """The face-connected component of ``inside`` with the most voxels in ``target``."""
    return _most_overlap(ndimage.label(inside)[0], target)


def _candidates(values: np.ndarray, above: bool) -> np.ndarray:
    """Thresholds (HU) that leave something of ``values`` in and something out: the values
    present when there are at most :data:`MAX_CANDIDATES`, else as many evenly spaced HU
    levels strictly between the lowest and highest value (evenly spaced ranks would crowd into
    the background and skip the gap between it and the structure)."""
    present = np.unique(values)
    if present.size > MAX_CANDIDATES:
        return np.linspace(present[0], present[-1], MAX_CANDIDATES + 2)[1:-1]
    return present[:-1] if above else present[1:]


def _to_world_mm(index: np.ndarray, box: tuple[slice, ...], affine: np.ndarray) -> np.ndarray:
    """(..., 3) voxel indices within ``box`` -> (..., 3) world mm."""
    full = np.asarray(index, dtype=np.float64) + [sl.start for sl in box]
    matrix = np.asarray(affine, dtype=np.float64)
    return full @ matrix[:3, :3].T + matrix[:3, 3]


def _centre_mm(component: np.ndarray, box: tuple[slice, ...], affine: np.ndarray) -> np.ndarray:
    """(3,) world mm of the mean voxel index of ``component`` (bool, the box's shape)."""
    return _to_world_mm(np.argwhere(component).mean(axis=0), box, affine)


def _moved_structure(labels: np.ndarray, fit: StructureFit,
                     affine: np.ndarray) -> np.ndarray | None:
    """Step 3's fallback: of the components (``labels`` in the box) touching the neighbourhood
    and within :data:`SIZE_FACTOR` of the truth's size, the one nearest the truth's centre."""
    sizes = np.bincount(labels.ravel())
    truth_size = int(np.count_nonzero(fit.truth))
    touching = np.unique(labels[fit.near[fit.box]])
    fits_size = (sizes[touching] * SIZE_FACTOR >= truth_size) & (
        sizes[touching] <= SIZE_FACTOR * truth_size)
    candidates = touching[(touching > 0) & fits_size]
    if not candidates.size:
        return None
    centres = np.array(ndimage.center_of_mass(np.ones(labels.shape), labels, candidates))
    distance = np.linalg.norm(_to_world_mm(centres, fit.box, affine) - fit.truth_com_mm, axis=1)
    return labels == candidates[int(np.argmin(distance))]


def _answer_structure(answer_hu: np.ndarray, fit: StructureFit,
                      affine: np.ndarray) -> np.ndarray | None:
    """Step 3 of the module docstring in one answer: bool of the box's shape, or None."""
    inside = _inside(np.asarray(answer_hu, dtype=np.float64)[fit.box], fit.threshold_hu,
                     fit.above)
    labels, _ = ndimage.label(inside)
    found = _most_overlap(labels, fit.truth)
    return found if found is not None else _moved_structure(labels, fit, affine)


def fit_structure(truth_hu: np.ndarray, mask: np.ndarray, affine: np.ndarray,
                  margin_mm: float = STRUCTURE_MARGIN_MM) -> StructureFit:
    """Steps 1-3 of the module docstring on the truth: (I, J, K) HU, (I, J, K) bool mask.

    ValueError for an empty mask or mismatched shapes; a NaN threshold and centre, with a
    warning, when no threshold reproduces any of the mask (a mask on a flat region).
    """
    check_volume(truth_hu, "truth_hu")
    check_same_shape(truth_hu, mask, "truth_hu and the structure mask")
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("the structure mask is empty")
    near = dilate_mm(mask, voxel_spacing_mm(affine), check_margin(margin_mm))
    box = ndimage.find_objects(near.astype(np.int8))[0]
    values, given = np.asarray(truth_hu, dtype=np.float64)[box], mask[box]
    above = bool(given.all() or values[given].mean() >= values[~given].mean())
    thresholds, scores = _candidates(values, above), []
    for t in thresholds:
        found = _component(_inside(values, t, above), given)
        scores.append(0.0 if found is None else dice(found, given))
    best = max(scores, default=0.0)
    if best > 0:
        ties = np.flatnonzero(np.isclose(scores, best, rtol=0, atol=1e-12))
        threshold = float(thresholds[ties[len(ties) // 2]])
        found = _component(_inside(values, threshold, above), given)
        if found is not None:  # always: this threshold's component overlaps the mask
            return StructureFit(threshold, above, best, box, near, found,
                                _centre_mm(found, box, affine))
    logger.warning("no HU threshold reproduces the structure mask; its scores are NaN")
    return StructureFit(math.nan, above, 0.0, box, near, np.zeros(values.shape, dtype=bool),
                        np.full(3, np.nan))


def score_structure(answer_hu: np.ndarray, fit: StructureFit,
                    affine: np.ndarray) -> StructureScore:
    """Step 3-4 of the module docstring for one answer ((I, J, K) HU on the truth's grid)."""
    check_same_shape(answer_hu, fit.near, "the answer and the structure mask")
    truth_voxels = int(np.count_nonzero(fit.truth))
    found = None
    if math.isfinite(fit.threshold_hu):
        found = _answer_structure(answer_hu, fit, affine)
    if found is None:
        if math.isfinite(fit.threshold_hu):
            side = "above" if fit.above else "below"
            logger.warning("no component %s %.1f HU in the answer overlaps the structure or "
                           "lies near it with a like size; its centre of mass error is NaN",
                           side, fit.threshold_hu)
        return StructureScore(math.nan, np.full(3, np.nan), fit.threshold_hu, fit.dice, 0,
                              truth_voxels)
    vector = _centre_mm(found, fit.box, affine) - fit.truth_com_mm
    predicted_voxels = int(np.count_nonzero(found))
    if predicted_voxels > SIZE_FACTOR * truth_voxels:
        logger.warning("the structure merges with neighbouring tissue in the answer (%d voxels "
                       "against %d in the truth); its centre is that of the merged component",
                       predicted_voxels, truth_voxels)
    return StructureScore(float(np.linalg.norm(vector)), vector, fit.threshold_hu, fit.dice,
                          predicted_voxels, truth_voxels)


def _as_json(score: StructureScore) -> dict[str, Any]:
    return {"com_error_mm": score.com_error_mm,
            "com_error_vector_mm": [float(v) for v in score.com_error_vector_mm],
            "threshold_hu": score.threshold_hu, "threshold_dice": score.threshold_dice,
            "predicted_voxels": score.predicted_voxels, "truth_voxels": score.truth_voxels}


def structure_scores(answers: Mapping[str, np.ndarray | None], truth_hu: np.ndarray,
                     structures: Mapping[str, np.ndarray], affine: np.ndarray,
                     margin_mm: float = STRUCTURE_MARGIN_MM
                     ) -> dict[str, dict[str, dict[str, Any]] | None]:
    """``{answer: {structure: {"com_error_mm", "com_error_vector_mm": [x, y, z],
    "threshold_hu", "threshold_dice", "predicted_voxels", "truth_voxels"}} or None}`` (None for
    an answer that is None); each structure's threshold is fitted once on the truth."""
    fits = {}
    for structure, mask in structures.items():
        try:
            fits[structure] = fit_structure(truth_hu, mask, affine, margin_mm)
        except ValueError as exc:
            raise ValueError(f"structure {structure!r}: {exc}") from exc
    return {name: None if hu is None else
            {structure: _as_json(score_structure(hu, fit, affine))
             for structure, fit in fits.items()}
            for name, hu in answers.items()}
