"""Structure centre-of-mass error: a sphere moved by a known vector, found by its HU threshold."""

import logging
import math

import numpy as np
import pytest

from evaluation.structures import (
    STRUCTURE_MARGIN_MM,
    StructureScore,
    fit_structure,
    score_structure,
    structure_scores,
)


def structure_com_error(pred_hu: np.ndarray, truth_hu: np.ndarray, mask: np.ndarray,
                        affine: np.ndarray, margin_mm: float = STRUCTURE_MARGIN_MM
                        ) -> StructureScore:
    """The structure's threshold fitted on the truth, then the answer scored with it."""
    return score_structure(pred_hu, fit_structure(truth_hu, mask, affine, margin_mm), affine)

SHAPE = (40, 36, 24)
SPACING_MM = np.array([0.8, 1.0, 2.5])
_C, _S = math.cos(math.radians(20.0)), math.sin(math.radians(20.0))
#: A rotation of 20 degrees about world z, a flip of world x, and the anisotropic voxel size.
AFFINE = np.eye(4)
AFFINE[:3, :3] = np.diag([-1.0, 1.0, 1.0]) @ np.array([[_C, -_S, 0.0], [_S, _C, 0.0],
                                                       [0.0, 0.0, 1.0]]) @ np.diag(SPACING_MM)
AFFINE[:3, 3] = [12.0, -40.0, 100.0]
CENTRE = np.array([14.0, 17.0, 11.0])  # voxel index of the sphere's centre in the truth
RADIUS_MM = 6.0


def _sphere(centre: np.ndarray) -> np.ndarray:
    """(I, J, K) bool: voxels within RADIUS_MM (world) of ``centre`` (voxel index)."""
    index = np.indices(SHAPE).reshape(3, -1).T
    return (np.sum(((index - centre) * SPACING_MM) ** 2, axis=1) <= RADIUS_MM**2).reshape(SHAPE)


def _volume(sphere: np.ndarray, inside_hu: float, outside_hu: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, 10.0, SHAPE)
    return np.where(sphere, inside_hu, outside_hu) + noise


@pytest.mark.parametrize(("inside_hu", "outside_hu"), [(40.0, -800.0), (-900.0, 40.0)])
def test_a_moved_sphere_gives_its_shift_in_world_mm(inside_hu, outside_hu):
    shift = np.array([3, -2, 1])  # voxels
    mask = _sphere(CENTRE)
    truth = _volume(mask, inside_hu, outside_hu, seed=1)
    pred = _volume(_sphere(CENTRE + shift), inside_hu, outside_hu, seed=2)
    score = structure_com_error(pred, truth, mask, AFFINE)
    expected = AFFINE[:3, :3] @ shift  # the world vector of a shift of (3, -2, 1) voxels
    np.testing.assert_allclose(score.com_error_vector_mm, expected, atol=1e-9)
    assert score.com_error_mm == pytest.approx(np.linalg.norm(SPACING_MM * shift))
    assert score.predicted_voxels == mask.sum()
    assert score.threshold_dice == 1.0
    assert min(inside_hu, outside_hu) + 40 < score.threshold_hu < max(inside_hu, outside_hu) - 40


def test_the_truth_against_itself_scores_zero_even_with_a_loose_mask():
    sphere = _sphere(CENTRE)
    truth = _volume(sphere, 40.0, -800.0, seed=3)
    low, high = np.argwhere(sphere).min(0) - 1, np.argwhere(sphere).max(0) + 2
    loose = np.zeros(SHAPE, dtype=bool)  # a box drawn around the sphere
    loose[low[0]:high[0], low[1]:high[1], low[2]:high[2]] = True
    score = structure_com_error(truth, truth, loose, AFFINE)
    assert score.com_error_mm == 0.0
    assert score.threshold_dice < 1.0  # no threshold reproduces a box from a sphere


def test_a_larger_object_at_the_edge_of_the_search_region_is_not_taken():
    mask = _sphere(CENTRE)
    truth = _volume(mask, 40.0, -800.0, seed=4)
    moved = _sphere(CENTRE + np.array([2, 0, 0]))
    wall = np.zeros(SHAPE, dtype=bool)
    wall[36:, :, :] = True  # a slab of tissue 11.6 mm beyond the sphere's edge
    pred = _volume(moved | wall, 40.0, -800.0, seed=5)
    fit = fit_structure(truth, mask, AFFINE)
    assert fit.near[36:].any()  # the slab reaches into the 15 mm neighbourhood ...
    score = structure_com_error(pred, truth, mask, AFFINE)
    np.testing.assert_allclose(score.com_error_vector_mm, AFFINE[:3, :3] @ [2, 0, 0],
                               atol=1e-9)


def test_a_sphere_moved_beyond_its_size_is_found_by_its_centre_not_the_wall():
    mask = _sphere(CENTRE)
    truth = _volume(mask, 40.0, -800.0, seed=9)
    shift = np.array([0, 0, 5])  # 12.5 mm: no overlap with the truth's 12 mm wide sphere
    moved = _sphere(CENTRE + shift)
    assert not (moved & mask).any()
    wall = np.zeros(SHAPE, dtype=bool)
    wall[36:, :, :] = True
    pred = _volume(moved | wall, 40.0, -800.0, seed=10)
    score = structure_com_error(pred, truth, mask, AFFINE)
    np.testing.assert_allclose(score.com_error_vector_mm, AFFINE[:3, :3] @ shift, atol=1e-9)
    # shrunk to a few voxels it is no longer taken for the structure, nor is the wall
    speck = _sphere(CENTRE + shift) & (np.indices(SHAPE)[2] == CENTRE[2] + shift[2])
    lost = structure_com_error(_volume(speck | wall, 40.0, -800.0, seed=11), truth, mask, AFFINE)
    assert math.isnan(lost.com_error_mm)


def test_a_structure_merged_with_a_wall_in_the_answer_is_reported(caplog):
    mask = _sphere(CENTRE)
    truth = _volume(mask, 40.0, -800.0, seed=12)
    wall = np.zeros(SHAPE, dtype=bool)
    wall[:, :, : int(CENTRE[2]) - 1] = True  # tissue up to the sphere's lower slices
    with caplog.at_level(logging.WARNING):
        score = structure_com_error(_volume(mask | wall, 40.0, -800.0, seed=13), truth, mask,
                                    AFFINE)
    assert score.truth_voxels == mask.sum()
    assert score.predicted_voxels > 2 * mask.sum()  # the sphere and the wall in the box
    assert score.com_error_mm > 5.0  # pulled into the wall
    assert "merges with neighbouring tissue" in caplog.text


def test_nothing_past_the_threshold_gives_nan_and_a_warning(caplog):
    mask = _sphere(CENTRE)
    truth = _volume(mask, 40.0, -800.0, seed=6)
    flat = _volume(np.zeros(SHAPE, dtype=bool), 40.0, -800.0, seed=7)
    with caplog.at_level(logging.WARNING):
        score = structure_com_error(flat, truth, mask, AFFINE)
    assert math.isnan(score.com_error_mm)
    assert np.isnan(score.com_error_vector_mm).all()
    assert score.predicted_voxels == 0
    assert "no component above" in caplog.text


def test_structure_scores_fit_once_and_name_a_bad_mask():
    mask = _sphere(CENTRE)
    truth = _volume(mask, 40.0, -800.0, seed=8)
    out = structure_scores({"model": truth, "avg": None}, truth, {"gtv": mask}, AFFINE)
    assert out["avg"] is None
    assert out["model"]["gtv"]["com_error_vector_mm"] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="structure 'empty': the structure mask is empty"):
        structure_scores({"model": truth}, truth, {"empty": np.zeros(SHAPE, bool)}, AFFINE)
    with pytest.raises(ValueError, match=r"structure 'small'.*\(40, 36, 24\) and \(4, 4, 4\)"):
        structure_scores({"model": truth}, truth, {"small": np.ones((4, 4, 4), bool)}, AFFINE)
