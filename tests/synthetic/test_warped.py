"""synthetic.warped: the deformation-based 4DCT (static anatomy pulled through a breathing field)
and synthetic.scanner's kernel and noise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from synthetic.grid import SyntheticGrid
from synthetic.scanner import acquire
from synthetic.warped import (
    WarpedParams,
    breathing_scales,
    displacement_mm,
    static_anatomy,
    warped_patient,
    warped_phases,
)
from util.errors import ConfigError

#: 32 x 32 x 16 voxels of 10.9 x 10.9 x 6 mm; the dome top is at z = -0.2 * 48 mm.
GRID = SyntheticGrid(size=32, n_slices=16, fov_mm=350.0, slice_thickness_mm=6.0)
STILL = WarpedParams(amplitude_mm=20.0, ap_fraction=0.0, lateral_fraction=0.0, seed=4)


def _z_mm(grid: SyntheticGrid) -> np.ndarray:
    """(K,) slice heights (mm, + superior) from the volume centre."""
    return (np.arange(grid.n_slices) - (grid.n_slices - 1) / 2.0) * grid.slice_thickness_mm


def _x_index(x_mm: float, grid: SyntheticGrid) -> int:
    """LPS voxel index i of the column nearest to ``x_mm`` (+ right)."""
    return round((grid.size - 1) / 2.0 - x_mm / grid.spacing_mm[0])


def test_avg_is_mean_of_the_noisy_integer_phases() -> None:
    patient = warped_patient(STILL, GRID, noise_hu=20.0, kernel_blur_mm=1.0, noise_seed=1)
    assert patient.phases_hu.shape == (10, 32, 32, 16)
    np.testing.assert_allclose(patient.avg_hu, patient.phases_hu.mean(axis=0), atol=1e-3)
    np.testing.assert_array_equal(patient.phases_hu, np.rint(patient.phases_hu))
    assert patient.phases_hu.min() >= -1024
    assert patient.phases_hu.max() <= 3071


def test_phase0_differs_from_avg_most_near_the_diaphragm() -> None:
    patient = warped_patient(STILL, GRID, noise_hu=0.0)
    per_slice = np.abs(patient.phases_hu[0] - patient.avg_hu).mean(axis=(0, 1))
    z = _z_mm(GRID)
    dome_mm = STILL.dome_level * GRID.n_slices * GRID.slice_thickness_mm / 2.0
    assert abs(z[int(np.argmax(per_slice))] - dome_mm) <= 40.0
    assert per_slice.max() > 3.0 * per_slice[-1]  # the apex end barely changes


def test_lungs_slide_along_a_nearly_still_chest_wall() -> None:
    thick = dataclasses.replace(STILL, fat_mm=30.0)  # a chest wall two voxels thick
    u_z = displacement_mm(thick, GRID, 0)[2]
    k = int(np.argmin(np.abs(_z_mm(GRID) - (-9.6))))  # slice through the dome top
    cavity_mm = thick.body_half_width_mm - thick.fat_mm - 12.0
    lung = u_z[_x_index(0.55 * cavity_mm, GRID), 16, k]
    i_wall = _x_index(cavity_mm + 25.0, GRID)
    assert lung > 0.9 * thick.amplitude_mm
    assert u_z[i_wall, 16, k] <= thick.wall_fraction * thick.amplitude_mm + 1e-3
    static, _ = static_anatomy(thick, GRID)
    phases, _ = warped_phases(thick, GRID)
    i_lung = _x_index(0.55 * cavity_mm, GRID)
    wall_change = np.abs(phases[0, i_wall] - static[i_wall]).mean()
    assert wall_change < 0.2 * np.abs(phases[0, i_lung] - static[i_lung]).mean()


def test_amplitude_scales_the_motion_and_zero_is_still() -> None:
    base = displacement_mm(dataclasses.replace(STILL, amplitude_mm=10.0), GRID, 2)
    np.testing.assert_allclose(displacement_mm(STILL, GRID, 2), 2.0 * base, atol=1e-4)
    still = dataclasses.replace(STILL, amplitude_mm=0.0, ap_fraction=0.3, lateral_fraction=0.1)
    phases, _ = warped_phases(still, GRID)
    static, _ = static_anatomy(still, GRID)
    for phase in phases:
        np.testing.assert_allclose(phase, static, atol=1e-3)
    noisy = warped_patient(still, GRID, noise_hu=10.0)
    assert 7.0 < float((noisy.phases_hu - static).std()) < 13.0  # only the noise is left


def test_hysteresis_lags_the_anterior_motion_only() -> None:
    lagged = dataclasses.replace(STILL, ap_fraction=0.3, hysteresis_cycle=0.1)
    fields = np.stack([displacement_mm(lagged, GRID, p) for p in range(10)])
    assert int(np.argmax(np.abs(fields[:, 2]).max(axis=(1, 2, 3)))) == 0
    assert int(np.argmax(np.abs(fields[:, 1]).max(axis=(1, 2, 3)))) == 1
    plain = np.stack([displacement_mm(dataclasses.replace(lagged, hysteresis_cycle=0.0), GRID, p)
                      for p in range(10)])
    assert int(np.argmax(np.abs(plain[:, 1]).max(axis=(1, 2, 3)))) == 0


def test_irregular_cycles_and_binning_slabs() -> None:
    np.testing.assert_array_equal(breathing_scales(STILL, 16), np.ones((10, 16)))
    irregular = dataclasses.replace(STILL, irregularity=0.2)
    scales = breathing_scales(irregular, 16)
    assert scales.min() >= 0.8
    assert scales.max() <= 1.2
    assert len(np.unique(scales[:, 0])) == 10
    np.testing.assert_array_equal(scales, scales[:, :1].repeat(16, axis=1))  # one cycle a phase
    slabs = breathing_scales(dataclasses.replace(irregular, slab_slices=4), 16)
    np.testing.assert_array_equal(slabs[:, 0:4], slabs[:, :1].repeat(4, axis=1))
    assert not np.array_equal(slabs[:, 3], slabs[:, 4])  # a step at the slab boundary
    u_regular = displacement_mm(STILL, GRID, 0)[2]
    u_irregular = displacement_mm(irregular, GRID, 0)[2]
    np.testing.assert_allclose(u_irregular, u_regular * scales[0][None, None, :], atol=1e-4)


def test_anatomy_has_lungs_bone_and_a_nodule() -> None:
    static, nodule = static_anatomy(STILL, GRID)
    lung = (static > -950) & (static < -750)
    assert lung.mean() > 0.1
    assert (static > 300).any()
    assert nodule.max() == 1.0
    assert -900 < float(np.median(static[lung])) < -840


def test_kernel_blurs_edges_and_correlates_the_noise() -> None:
    clean = np.zeros((10, 24, 24, 12), dtype=np.float32)
    clean[:, 12:] = 1000.0
    rng = np.random.default_rng
    sharp, _ = acquire(clean, (2.0, 2.0, 2.0), 20.0, 0.0, rng(0))
    soft, _ = acquire(clean, (2.0, 2.0, 2.0), 20.0, 3.0, rng(0))
    for phases in (sharp, soft):
        assert 17.0 < float(phases[:, :8].std()) < 23.0
    def lag1(a: np.ndarray) -> float:
        return float(np.corrcoef(a[:, :8, :, :-1].ravel(), a[:, :8, :, 1:].ravel())[0, 1])
    assert lag1(sharp) < 0.1 < 0.5 < lag1(soft)
    assert 50.0 < float(soft[:, 11].mean()) < 950.0  # the edge is spread over voxels


def test_invalid_parameters_are_named() -> None:
    with pytest.raises(ConfigError, match="irregularity"):
        WarpedParams(irregularity=1.5)
