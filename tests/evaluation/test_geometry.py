"""Lungs, lung base (diaphragm) and margins in mm, against answers known by construction."""

import math

import numpy as np
import pytest

from evaluation.geometry import (
    breathing_amplitude_mm,
    dice,
    dilate_mm,
    lung_base_error,
    lung_base_mm,
    lung_mask,
    lung_scores,
    volume_error,
)
from tests.conftest import OBLIQUE_AFFINE
from util.geometry import from_slice_stack

#: Slice thickness of OBLIQUE_AFFINE's stack: the length of its third column, worked out by hand.
OBLIQUE_THICKNESS_MM = math.sqrt(0.2**2 + 2.49**2)


def test_lung_base_of_each_column_by_hand():
    stack = np.zeros((5, 1, 3), dtype=bool)
    stack[2:5, 0, 0] = True  # lowest lung voxel on slice 2
    stack[0:2, 0, 2] = True  # on slice 0
    np.testing.assert_array_equal(lung_base_mm(stack, 2.5), [[5.0, np.nan, 0.0]])


def _lung_stack(shape: tuple[int, int, int], base: np.ndarray) -> np.ndarray:
    """(S, H, W) bool: lung from slice ``base[h, w]`` up to the second-to-last slice."""
    s = np.arange(shape[0])[:, None, None]
    return (s >= base[None]) & (s < shape[0] - 1)


def _bases() -> tuple[np.ndarray, np.ndarray]:
    """(truth, prediction) lung-base slice indices on 9 x 11 columns: the prediction two slices
    higher; column (8, 10) of the truth reaches the first slice (its base is not seen)."""
    h, w = np.meshgrid(np.arange(9), np.arange(11), indexing="ij")
    truth = 3 + (h + w) % 4
    truth[8, 10] = 0
    return truth, truth + 2


def test_a_base_moved_by_k_slices_is_k_thicknesses_off_with_an_oblique_affine():
    shape = (15, 9, 11)  # odd slice count
    truth_base, pred_base = _bases()
    truth_stack = _lung_stack(shape, truth_base)
    pred_stack = _lung_stack(shape, pred_base)
    pred_stack[:, 0, :] = False  # no lung in row 0 of the prediction: those columns are left out
    truth_lung = from_slice_stack(truth_stack, OBLIQUE_AFFINE)
    pred_lung = from_slice_stack(pred_stack, OBLIQUE_AFFINE)
    scores = lung_scores(pred_lung, truth_lung, OBLIQUE_AFFINE)
    assert scores["diaphragm_columns"] == 8 * 11 - 1  # rows 1..8, less the cut-off column
    assert scores["diaphragm_error_mean_mm"] == pytest.approx(2 * OBLIQUE_THICKNESS_MM)
    assert scores["diaphragm_error_p95_mm"] == pytest.approx(2 * OBLIQUE_THICKNESS_MM)
    assert scores["diaphragm_bias_mm"] == pytest.approx(2 * OBLIQUE_THICKNESS_MM)  # too superior
    reverse = lung_scores(truth_lung, pred_lung, OBLIQUE_AFFINE)
    assert reverse["diaphragm_bias_mm"] == pytest.approx(-2 * OBLIQUE_THICKNESS_MM)


def test_lung_base_error_mean_and_p95_by_hand():
    truth = np.full((1, 20), 50.0)
    pred = truth + np.array([0.0] * 10 + [2.0] * 9 + [-40.0])  # one column 40 mm too low
    base = lung_base_error(pred, truth)
    assert base["mean_mm"] == pytest.approx((9 * 2 + 40) / 20)
    # |errors| sorted: ten 0, nine 2, one 40; the 95th percentile lies at rank 18.05 of 0..19
    assert base["p95_mm"] == pytest.approx(2 + 0.05 * 38)
    assert base["bias_mm"] == pytest.approx((9 * 2 - 40) / 20)


def test_lung_base_error_without_shared_columns_is_nan_with_a_warning(caplog):
    pred = np.array([[np.nan, 5.0]])
    truth = np.array([[5.0, np.nan]])
    base = lung_base_error(pred, truth)
    assert math.isnan(base["mean_mm"])
    assert base["columns"] == 0
    assert "no column holds lung" in caplog.text


def test_amplitude_is_the_avg_to_phase0_lung_base_shift():
    shape = (13, 7, 9)
    h, w = np.meshgrid(np.arange(7), np.arange(9), indexing="ij")
    phase0_base = 2 + (h * w) % 3
    phase0 = from_slice_stack(_lung_stack(shape, phase0_base), OBLIQUE_AFFINE)
    avg = from_slice_stack(_lung_stack(shape, phase0_base + 3), OBLIQUE_AFFINE)
    assert breathing_amplitude_mm(avg, phase0, OBLIQUE_AFFINE) == pytest.approx(
        3 * OBLIQUE_THICKNESS_MM)


def test_dice_and_volume_error_of_overlapping_boxes():
    truth = np.zeros((10, 10, 10), dtype=bool)
    truth[2:6, 2:6, 2:6] = True  # 64 voxels
    pred = np.zeros_like(truth)
    pred[3:8, 2:6, 2:6] = True  # 80 voxels, 48 shared
    assert dice(pred, truth) == pytest.approx(2 * 48 / (64 + 80))
    assert volume_error(pred, truth, voxel_ml=0.5) == pytest.approx((16 * 0.5, 25.0))
    assert volume_error(truth, pred, voxel_ml=0.5) == pytest.approx((-16 * 0.5, -20.0))
    assert math.isnan(dice(np.zeros(3, bool), np.zeros(3, bool)))
    assert math.isnan(volume_error(pred, np.zeros_like(pred), 1.0)[1])


def test_lung_scores_volume_in_ml_through_the_affine():
    affine = np.diag([0.5, 2.0, 3.0, 1.0])  # 3 mm^3 voxels
    truth = np.zeros((10, 10, 12), dtype=bool)
    truth[1:9, 1:9, 2:10] = True
    pred = truth.copy()
    pred[1:9, 1:9, 2] = False  # the bottom slice of lung lost: 64 voxels
    scores = lung_scores(pred, truth, affine)
    assert scores["lung_volume_error_ml"] == pytest.approx(-64 * 3 / 1000)
    assert scores["lung_volume_error_pct"] == pytest.approx(-100 / 8)
    assert scores["lung_dice"] == pytest.approx(2 * 448 / (512 + 448))
    assert scores["diaphragm_bias_mm"] == pytest.approx(3.0)


def test_lung_mask_keeps_both_lungs_and_drops_gas_and_air_outside_the_body():
    hu = np.full((20, 20, 20), 40.0)
    hu[2:8, 2:18, 5:18] = -850.0  # right lung, 1248 voxels
    hu[11:18, 2:18, 7:18] = -850.0  # left lung, 1232 voxels, not connected to the right
    hu[8:11, 8:11, 1:3] = -900.0  # bowel gas: 18 voxels, < 10 % of a lung
    hu[0:2, :, :] = -1000.0  # air outside the body
    body = np.ones(hu.shape, dtype=bool)
    body[0:2] = False
    expected = (hu == -850.0)
    np.testing.assert_array_equal(lung_mask(hu, body), expected)
    with_gas = lung_mask(hu, body, min_component_fraction=0.0)
    assert with_gas.sum() == expected.sum() + 18
    assert not lung_mask(hu, body, threshold_hu=-950.0).any()


@pytest.mark.parametrize("margin_mm", [0.0, 0.9, 1.0, 2.0, 4.99, 5.0, 7.5, 10.0])
def test_a_band_grows_by_floor_margin_over_spacing_voxels_per_axis(margin_mm):
    spacing = (1.0, 2.0, 5.0)
    band = np.zeros((44, 34, 21), dtype=bool)
    band[15:29, 12:22, 10] = True  # one voxel thick along K
    grown = dilate_mm(band, spacing, margin_mm)
    reach = [math.floor(margin_mm / s + 1e-9) for s in spacing]
    where = np.argwhere(grown)
    assert where.min(axis=0).tolist() == [15 - reach[0], 12 - reach[1], 10 - reach[2]]
    assert where.max(axis=0).tolist() == [28 + reach[0], 21 + reach[1], 10 + reach[2]]


def test_dilation_is_a_sphere_in_world_space():
    band = np.zeros((44, 34, 21), dtype=bool)
    band[15:29, 12:22, 10] = True
    grown = dilate_mm(band, (1.0, 2.0, 5.0), 5.0)
    assert grown[28 + 3, 21 + 1, 10]  # 3 mm and 2 mm beyond a corner: 3.6 mm away
    assert not grown[28 + 4, 21 + 2, 10]  # 4 and 4 mm: 5.7 mm
    assert grown[28, 21, 11]  # one slice up: 5 mm
    assert not grown[28 + 3, 21, 11]  # 3 mm and 5 mm: 5.8 mm
    # brute force: every voxel within 5 mm of a band voxel, and no other
    offsets = np.argwhere(np.ones((11, 5, 3), dtype=bool)) - [5, 2, 1]
    near = offsets[np.sum((offsets * [1.0, 2.0, 5.0]) ** 2, axis=1) <= 25.0]
    expected = np.zeros_like(band)
    for voxel in np.argwhere(band):
        expected[tuple((near + voxel).T)] = True
    np.testing.assert_array_equal(grown, expected)


def test_dilate_mm_refuses_bad_margins_and_spacing():
    band = np.zeros((3, 3, 3), dtype=bool)
    with pytest.raises(ValueError, match="margin_mm must be a finite distance >= 0 mm"):
        dilate_mm(band, (1.0, 1.0, 1.0), -1.0)
    with pytest.raises(ValueError, match=r"spacing_mm must be 3 finite sizes > 0 mm"):
        dilate_mm(band, (1.0, 0.0, 1.0), 2.0)
