"""Metrics in HU, dB and mL, against values worked out by hand; region masks on synthetic CT."""

import dataclasses
import json
import math

import numpy as np
import pytest

from evaluation.metrics import (
    METRICS,
    REGIONS,
    RegionSettings,
    bias_hu,
    body_mask,
    evaluate_volumes,
    lung_volume_ml,
    mae_hu,
    masked_mean,
    motion_mask,
    psnr_db,
    region_masks,
    rmse_hu,
    score_prediction,
    ssim_map,
)

SHAPE = (30, 40, 12)  # axial slices of 30 x 40 voxels along axis 2
#: 1 x 1 x 2 mm voxels, axial slices along axis 2.
AFFINE_112 = np.diag([1.0, 1.0, 2.0, 1.0])
AFFINE_111 = np.eye(4)


def _truth(shape: tuple[int, int, int] = (8, 9, 10)) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1000, 1000, size=shape)


def _phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hu, body, lung) on SHAPE: a 0 HU elliptic cylinder in -1000 HU air, a -800 HU lung inside
    it running through every axial slice, a separate 0 HU couch and a 100 HU speck of noise."""
    i, j = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    body2d = ((i - 15) / 10) ** 2 + ((j - 18) / 14) ** 2 <= 1  # rows 5..25
    lung2d = ((i - 15) / 4) ** 2 + ((j - 18) / 5) ** 2 <= 1
    body = np.repeat(body2d[:, :, None], SHAPE[2], axis=2)
    lung = np.repeat(lung2d[:, :, None], SHAPE[2], axis=2)
    hu = np.full(SHAPE, -1000.0)
    hu[body] = 0.0
    hu[lung] = -800.0
    hu[27:30, 5:35, :] = 0.0  # couch, one row of air below the body
    hu[1, 1, 3] = 100.0  # noise speck
    return hu, body, lung


@pytest.mark.parametrize(("offset", "bias"), [(10.0, 10.0), (-10.0, -10.0)])
def test_constant_offset(offset, bias):
    truth = _truth()
    pred = truth + offset
    assert mae_hu(pred, truth) == pytest.approx(10.0)
    assert rmse_hu(pred, truth) == pytest.approx(10.0)
    assert bias_hu(pred, truth) == pytest.approx(bias)
    assert psnr_db(pred, truth) == pytest.approx(20 * math.log10(4095 / 10))


def test_identical_volumes_are_perfect():
    truth = _truth()
    assert mae_hu(truth, truth) == 0.0
    assert rmse_hu(truth, truth) == 0.0
    assert psnr_db(truth, truth) == math.inf
    smap = ssim_map(truth, truth, axial_axis=2)
    assert smap.shape == truth.shape
    np.testing.assert_allclose(smap, 1.0, atol=1e-9)


def test_mixed_errors_by_hand():
    truth = np.array([100, -200, 50], dtype=np.int16)
    pred = truth + np.array([0, 3, -4], dtype=np.int16)
    assert mae_hu(pred, truth) == pytest.approx(7 / 3)
    assert rmse_hu(pred, truth) == pytest.approx(math.sqrt(25 / 3))
    assert bias_hu(pred, truth) == pytest.approx(-1 / 3)
    assert psnr_db(pred, truth, data_range_hu=100.0) == pytest.approx(
        20 * math.log10(100 / math.sqrt(25 / 3)))


def test_integer_inputs_do_not_overflow():
    pred = np.array([32000], dtype=np.int16)
    truth = np.array([-32000], dtype=np.int16)
    assert mae_hu(pred, truth) == 64000.0


def test_mask_restricts_the_metrics():
    truth = _truth()
    mask = np.zeros(truth.shape, dtype=bool)
    mask[2:6, 2:7, 3:8] = True
    pred = truth.copy()
    pred[~mask] += 50.0  # error only outside the mask
    assert mae_hu(pred, truth, mask) == 0.0
    assert bias_hu(pred, truth, mask) == 0.0
    assert psnr_db(pred, truth, mask) == math.inf
    assert mae_hu(pred, truth, ~mask) == pytest.approx(50.0)
    assert mae_hu(pred, truth) == pytest.approx(50.0 * (~mask).sum() / mask.size)
    assert masked_mean(np.arange(6.0).reshape(2, 3), np.array([[1, 0, 0], [0, 0, 1]], bool)) == 2.5


def test_ssim_of_constant_slices_by_hand():
    # Flat images: SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1), C1 = (0.01 * 4095)^2.
    truth = np.zeros((7, 8, 9))
    c1 = (0.01 * 4095) ** 2
    np.testing.assert_allclose(ssim_map(truth + 100, truth, axial_axis=0), c1 / (100**2 + c1))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_ssim_is_computed_slice_by_slice(axis):
    truth = np.moveaxis(_truth((9, 10, 11)), 2, axis)
    pred = np.moveaxis(truth.copy(), axis, 0)
    pred[4] += np.random.default_rng(1).normal(0, 300, size=pred[4].shape)  # one axial slice
    smap = np.moveaxis(ssim_map(np.moveaxis(pred, 0, axis), truth, axis), axis, 0)
    np.testing.assert_allclose(np.delete(smap, 4, axis=0), 1.0, atol=1e-9)  # no leak across
    assert smap[4].mean() < 0.9


def test_ssim_rejects_slices_smaller_than_its_window():
    with pytest.raises(ValueError, match=r"at least 7 x 7 .* got 6 x 9"):
        ssim_map(np.zeros((6, 9, 20)), np.zeros((6, 9, 20)), axial_axis=2)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_body_mask_keeps_lungs_and_drops_couch_air_and_noise(axis):
    hu, body, lung = _phantom()
    mask = body_mask(np.moveaxis(hu, 2, axis), axial_axis=axis)
    mask = np.moveaxis(mask, axis, 2)
    assert mask.dtype == bool
    assert mask[lung].all()  # lungs reach the first and last slices and are still inside
    assert not mask[27:30].any()  # couch
    assert not mask[1, 1, 3]  # speck
    np.testing.assert_array_equal(mask, body)  # and no air


def test_body_mask_of_air_is_empty():
    assert not body_mask(np.full((5, 6, 7), -1000.0), axial_axis=1).any()


def test_motion_mask_drops_noise_keeps_and_grows_moving_blocks():
    avg = np.zeros((20, 20, 20))
    truth = avg.copy()
    truth[3, 3, 3] = 200.0  # one noisy voxel
    truth[8:12, 8:12, 8:12] = 100.0  # 4^3 moving block
    block = np.zeros(avg.shape, dtype=bool)
    block[8:12, 8:12, 8:12] = True
    body, mm = np.ones(avg.shape, dtype=bool), (1.0, 1.0, 1.0)
    kept = motion_mask(avg, truth, body, mm, threshold_hu=50.0, margin_mm=0.0)
    np.testing.assert_array_equal(kept, block)  # keeps the block, drops the lone voxel
    # a 1 mm sphere reaches the 6 face neighbours only: the block plus a 4 x 4 slab per face
    assert motion_mask(avg, truth, body, mm, 50.0, margin_mm=1.0).sum() == 4**3 + 6 * 4**2
    grown = motion_mask(avg, truth, body, mm, 50.0, margin_mm=1.75)  # > sqrt(3): corners too
    assert grown.sum() == 6**3
    assert grown[7:13, 7:13, 7:13].all()
    assert not motion_mask(avg, truth, body, mm, threshold_hu=250.0).any()


def test_motion_mask_keeps_a_one_voxel_thick_sheet_and_drops_small_specks():
    avg = np.zeros((12, 12, 10))
    truth = avg.copy()
    truth[2:10, 2:10, 5] = 150.0  # a diaphragm band one slice thick: 64 voxels
    truth[0, 0, 0:2] = 300.0  # a 2-voxel speck
    truth[11, 11, 6:10] = 300.0  # a 4-voxel speck, still below MOTION_MIN_VOXELS = 5
    mask = motion_mask(avg, truth, np.ones(avg.shape, dtype=bool), (1.0, 1.0, 1.0),
                       threshold_hu=50.0, margin_mm=0.0)
    assert mask.sum() == 64
    assert mask[2:10, 2:10, 5].all()


def test_lung_volume_of_a_sphere():
    spacing = (1.0, 1.0, 2.0)
    x, y, z = np.meshgrid(np.arange(-25, 26.0), np.arange(-25, 26.0), np.arange(-24, 25.0, 2),
                          indexing="ij")
    hu = np.where(x**2 + y**2 + z**2 <= 20**2, -900.0, 0.0)
    body = np.ones(hu.shape, dtype=bool)
    expected = 4 / 3 * math.pi * 20**3 / 1000  # 33.51 mL
    assert lung_volume_ml(hu, body, spacing) == pytest.approx(expected, rel=0.03)


def test_lung_volume_counts_only_inside_the_body():
    hu = np.zeros((4, 4, 4))
    hu[0, :, :] = -1000.0  # 16 voxels of 0.5 x 1 x 2 = 1 mm^3
    body = np.ones(hu.shape, dtype=bool)
    body[0, 0, :] = False  # 4 of them outside the body
    assert lung_volume_ml(hu, body, (0.5, 1.0, 2.0)) == pytest.approx(12 / 1000)


def _motion_case() -> tuple[np.ndarray, np.ndarray]:
    """(truth, avg): the phantom, and an AVG where a 5^3 lung block is smeared to 0 HU."""
    truth, _, _ = _phantom()
    avg = truth.copy()
    avg[13:18, 16:21, 4:9] = 0.0  # all lung in truth: 125 voxels, 800 HU denser
    return truth, avg


def test_region_masks():
    truth, avg = _motion_case()
    settings = RegionSettings(motion_margin_mm=0.0)
    masks = region_masks(avg, truth, 2, (1.0, 1.0, 2.0), settings)
    assert tuple(masks) == REGIONS
    assert masks["whole"].all()
    assert masks["motion"].sum() == 125
    no_avg = region_masks(None, truth, 2, (1.0, 1.0, 2.0), settings)
    assert set(no_avg) == {"whole", "body"}
    np.testing.assert_array_equal(no_avg["body"], masks["body"])  # body of the truth
    with pytest.raises(ValueError, match="neither"):
        region_masks(None, None, 2, (1.0, 1.0, 2.0), settings)


def test_evaluate_volumes_structure_and_improvement():
    truth, avg = _motion_case()
    settings = RegionSettings(motion_margin_mm=1.0)  # one voxel along I and J, none along K
    result = evaluate_volumes(truth.copy(), truth, avg, AFFINE_112, settings)
    assert set(result) == {"model", "baseline", "improvement", "region_voxels", "region_ml",
                           "lung_volume_ml", "geometry", "amplitude_mm", "settings"}
    for answer in ("model", "baseline", "improvement"):
        assert tuple(result[answer]) == REGIONS
        assert all(tuple(scores) == METRICS for scores in result[answer].values())
    body = _phantom()[1]
    motion = 5**3 + 4 * 5**2  # the 5^3 block and a 5 x 5 slab on each of its 4 sides in I, J
    assert result["region_voxels"] == {"whole": truth.size, "body": body.sum(), "motion": motion}
    assert result["region_ml"] == pytest.approx({"whole": truth.size * 0.002,
                                                 "body": body.sum() * 0.002,
                                                 "motion": motion * 0.002})
    assert result["model"]["motion"]["mae_hu"] == 0.0
    assert result["baseline"]["motion"]["mae_hu"] == pytest.approx(800 * 125 / motion)
    assert result["baseline"]["whole"]["bias_hu"] == pytest.approx(800 * 125 / truth.size)
    for region in REGIONS:
        assert all(v > 0 for v in result["improvement"][region].values()), region
    lungs = result["lung_volume_ml"]
    assert lungs["model"] == lungs["truth"]
    assert lungs["truth"] - lungs["avg"] == pytest.approx(125 * 2 / 1000)
    assert result["settings"] == dataclasses.asdict(settings)
    assert json.loads(json.dumps(result))["region_voxels"]["motion"] == motion


def test_improvement_is_negative_when_the_model_is_worse():
    truth, _ = _motion_case()
    result = evaluate_volumes(truth - 6, truth, truth + 4, AFFINE_112)
    better = result["improvement"]["whole"]
    assert better["mae_hu"] == pytest.approx(4 - 6)
    assert better["rmse_hu"] == pytest.approx(4 - 6)
    assert better["bias_hu"] == pytest.approx(abs(4) - abs(-6))  # not 4 - (-6)
    assert better["psnr_db"] == pytest.approx(20 * math.log10(4 / 6))
    assert result["region_voxels"]["motion"] == 0  # 4 HU apart is below the 50 HU threshold
    assert math.isnan(result["improvement"]["motion"]["mae_hu"])


def test_evaluate_volumes_without_avg():
    truth, _ = _motion_case()
    result = evaluate_volumes(truth + 5, truth, None, AFFINE_112)
    assert result["baseline"] is None
    assert result["improvement"] is None
    assert result["lung_volume_ml"]["avg"] is None
    assert result["geometry"]["baseline"] is None
    assert result["amplitude_mm"] is None
    assert set(result["region_ml"]) == {"whole", "body"}
    assert set(result["model"]) == {"whole", "body"}
    assert result["model"]["body"]["bias_hu"] == pytest.approx(5.0)
    json.dumps(result)


def test_empty_region_gives_nan_not_an_error():
    truth = _truth()
    empty = np.zeros(truth.shape, dtype=bool)
    assert math.isnan(masked_mean(truth, empty))
    assert math.isnan(mae_hu(truth + 1, truth, empty))
    assert math.isnan(psnr_db(truth + 1, truth, empty))
    scores = score_prediction(truth + 1, truth, {"body": empty}, 2, 4095.0)
    assert all(math.isnan(v) for v in scores["body"].values())
    air = np.full((8, 9, 10), -1000.0)  # no body at all
    result = evaluate_volumes(air + 1, air, air, AFFINE_111)
    assert result["region_voxels"]["body"] == 0
    assert math.isnan(result["model"]["body"]["mae_hu"])
    assert "NaN" in json.dumps(result)


@pytest.mark.parametrize("call", [
    lambda a, b: mae_hu(a, b), lambda a, b: rmse_hu(a, b), lambda a, b: bias_hu(a, b),
    lambda a, b: psnr_db(a, b), lambda a, b: ssim_map(a, b, 2),
    lambda a, b: motion_mask(a, b, np.ones(a.shape, bool), (1.0, 1.0, 1.0)),
    lambda a, b: evaluate_volumes(a, b, None, AFFINE_111),
    lambda a, b: mae_hu(a, a, np.zeros(b.shape, bool))])
def test_shape_mismatch_names_both_shapes(call):
    with pytest.raises(ValueError, match=r"\(8, 9, 10\).*\(8, 10, 9\)"):
        call(np.zeros((8, 9, 10)), np.zeros((8, 10, 9)))


def test_bad_axis_and_settings_are_rejected():
    with pytest.raises(ValueError, match="axial_axis must be 0, 1 or 2, not 3"):
        body_mask(np.zeros((8, 8, 8)), axial_axis=3)
    for bad in (-1.0, math.inf, math.nan, True, "5"):
        with pytest.raises(ValueError, match="motion_margin_mm must be a"):
            RegionSettings(motion_margin_mm=bad)
    with pytest.raises(ValueError, match=r"HU window must satisfy hu_min < hu_max"):
        RegionSettings(hu_min=100.0, hu_max=100.0)
    with pytest.raises(ValueError, match="body_threshold_hu"):
        RegionSettings(body_threshold_hu=math.nan)
    assert RegionSettings().data_range_hu == 4095.0
