"""evaluate_volumes end to end: geometry block, amplitude and the motion region in mm."""

import json

import numpy as np
import pytest

from evaluation.metrics import RegionSettings, evaluate_volumes, region_masks

#: 1.5 x 1.5 x 3 mm voxels; voxel index k grows towards the feet (world z flipped).
AFFINE = np.array([[1.5, 0.0, 0.0, -20.0],
                   [0.0, 1.5, 0.0, -15.0],
                   [0.0, 0.0, -3.0, 40.0],
                   [0.0, 0.0, 0.0, 1.0]])
VOXEL_ML = 1.5 * 1.5 * 3.0 / 1000
SHAPE = (24, 20, 15)


def _thorax(lung_base_k: int, tumour_k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(HU, tumour mask): a 40 HU body in air; two -850 HU lungs from slice 1 down to (towards
    the feet) ``lung_base_k``; in the right lung a 40 HU tumour centred on slice ``tumour_k``;
    5 HU noise."""
    hu = np.full(SHAPE, -1000.0)
    hu[2:22, 2:18, :] = 40.0
    hu[4:11, 5:15, 1:lung_base_k + 1] = -850.0
    hu[13:20, 5:15, 1:lung_base_k + 1] = -850.0
    i, j, k = np.indices(SHAPE)
    tumour = ((i - 7) * 1.5) ** 2 + ((j - 9) * 1.5) ** 2 + ((k - tumour_k) * 3.0) ** 2 <= 3.5**2
    hu[tumour] = 40.0
    return hu + np.random.default_rng(seed).normal(0.0, 5.0, SHAPE), tumour


def test_geometry_of_a_prediction_and_of_the_avg():
    truth, gtv = _thorax(lung_base_k=10, tumour_k=5, seed=0)  # phase 0: lungs lowest
    pred, pred_gtv = _thorax(lung_base_k=9, tumour_k=5, seed=1)  # base one slice too high
    avg, avg_gtv = _thorax(lung_base_k=8, tumour_k=4, seed=2)  # base two, tumour one too high
    result = evaluate_volumes(pred, truth, avg, AFFINE, RegionSettings(), {"gtv": gtv})
    columns = 2 * 7 * 10
    model, base = result["geometry"]["model"], result["geometry"]["baseline"]
    assert model["diaphragm_columns"] == columns
    assert model["diaphragm_error_mean_mm"] == pytest.approx(3.0)
    assert model["diaphragm_error_p95_mm"] == pytest.approx(3.0)
    assert model["diaphragm_bias_mm"] == pytest.approx(3.0)  # positive: too superior
    assert base["diaphragm_error_mean_mm"] == pytest.approx(6.0)
    assert base["diaphragm_bias_mm"] == pytest.approx(6.0)
    assert result["amplitude_mm"] == pytest.approx(6.0)
    truth_lung = columns * 10 - gtv.sum()
    assert result["lung_volume_ml"]["truth"] == pytest.approx(truth_lung * VOXEL_ML)
    assert model["lung_volume_error_ml"] == pytest.approx(-columns * VOXEL_ML)
    assert model["lung_volume_error_pct"] == pytest.approx(-100 * columns / truth_lung)
    pred_lung = truth_lung - columns  # inside the truth's lungs: same tumour
    assert model["lung_dice"] == pytest.approx(2 * pred_lung / (truth_lung + pred_lung))
    avg_lung = columns * 8 - avg_gtv.sum()
    shared = columns * 8 - (gtv | avg_gtv)[:, :, 1:9].sum()
    assert base["lung_dice"] == pytest.approx(2 * shared / (truth_lung + avg_lung))
    assert model["structures"]["gtv"]["com_error_mm"] == pytest.approx(0.0, abs=1e-9)
    avg_tumour = base["structures"]["gtv"]
    np.testing.assert_allclose(avg_tumour["com_error_vector_mm"], [0.0, 0.0, 3.0], atol=1e-9)
    assert avg_tumour["com_error_mm"] == pytest.approx(3.0)
    assert -850 < avg_tumour["threshold_hu"] < 40
    assert pred_gtv.sum() == model["structures"]["gtv"]["predicted_voxels"]
    assert json.loads(json.dumps(result))["geometry"]["baseline"]["structures"]["gtv"]


def _band_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(avg, truth, body): a 0 HU body for i < 22 in air, and a one-voxel-thick band at slice
    10 where the truth is 200 HU denser, reaching out of the body (i 15..28)."""
    avg = np.full((44, 34, 21), -1000.0)
    avg[:22] = 0.0
    truth = avg.copy()
    truth[15:29, 12:22, 10] += 200.0
    return avg, truth, avg > -500


def test_motion_region_in_mm_stays_in_the_body_and_is_reported_in_ml():
    avg, truth, body = _band_case()
    affine = np.diag([-1.0, 2.0, 5.0, 1.0])  # 1 x 2 x 5 mm, x flipped
    settings = RegionSettings(motion_margin_mm=5.0)
    result = evaluate_volumes(truth, truth, avg, affine, settings)
    motion = region_masks(avg, truth, 2, (1.0, 2.0, 5.0), settings)["motion"]
    assert not (motion & ~body).any()  # never outside the body
    # worked out: the band's part in the body (i 15..21) grown by 5 mm: 5 voxels along i (only
    # inwards matters: outwards is out of the body), 2 along j, 1 along k, as an ellipsoid
    offsets = np.argwhere(np.ones((11, 5, 3), dtype=bool)) - [5, 2, 1]
    ball = offsets[np.sum((offsets * [1.0, 2.0, 5.0]) ** 2, axis=1) <= 25.0]
    expected = np.zeros(avg.shape, dtype=bool)
    for voxel in np.argwhere(truth != avg):
        expected[tuple((ball + voxel).T)] = True
    expected &= body
    np.testing.assert_array_equal(motion, expected)
    assert result["region_voxels"]["motion"] == expected.sum()
    assert result["region_ml"]["motion"] == pytest.approx(expected.sum() * 10 / 1000)
    assert result["region_ml"]["body"] == pytest.approx(body.sum() * 10 / 1000)
    assert result["region_ml"]["whole"] == pytest.approx(avg.size * 10 / 1000)
    assert result["settings"]["motion_margin_mm"] == 5.0


def test_motion_region_counts_the_chest_wall_of_phase0_beyond_the_avg_skin():
    avg = np.full((20, 20, 10), -1000.0)
    avg[:10] = 40.0
    truth = avg.copy()
    truth[10:12, 5:15, 2:8] = 40.0  # phase 0's chest wall, 2 voxels out of the AVG's body
    masks = region_masks(avg, truth, 2, (1.0, 1.0, 1.0), RegionSettings(motion_margin_mm=0.0))
    assert masks["motion"].sum() == 2 * 10 * 6
    assert not masks["body"][10:12].any()  # the "body" region itself is the AVG's
