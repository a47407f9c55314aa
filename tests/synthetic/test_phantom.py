"""The synthetic 4DCT phantom: the breathing motion, the noise and the voxel order."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest

from synthetic import (
    N_PHASES,
    PatientParams,
    SyntheticGrid,
    noiseless_phases,
    phase_displacement_mm,
    synthetic_patient,
)


@pytest.fixture(scope="module")
def breathing() -> tuple[PatientParams, SyntheticGrid, np.ndarray, np.ndarray]:
    """One 64 x 64 x 32 patient with a 20 mm amplitude: (params, grid, noisy, noiseless)."""
    params = PatientParams(amplitude_mm=20.0, chest_expansion_mm=4.0, noise_hu=15.0)
    grid = SyntheticGrid()
    patient = synthetic_patient(params, grid)
    return params, grid, patient.phases_hu, patient.noiseless_hu


def test_displacement_formula() -> None:
    assert phase_displacement_mm(0, 20.0) == pytest.approx(20.0)
    assert phase_displacement_mm(5, 20.0) == pytest.approx(0.0)
    assert phase_displacement_mm(3, 20.0) == pytest.approx(phase_displacement_mm(7, 20.0))
    assert phase_displacement_mm(2, 20.0) == pytest.approx(20 * np.cos(0.2 * np.pi) ** 4)
    mean = np.mean([phase_displacement_mm(p, 20.0) for p in range(10)])
    assert mean == pytest.approx(20 * 3 / 8)  # dwells near exhale: AVG is nearer phase 5


def test_motion_is_at_the_diaphragm_not_the_apex_or_abdomen(breathing) -> None:
    _, _, noisy, _ = breathing
    avg = noisy.mean(axis=0)
    per_slice = np.abs(noisy[0] - avg).mean(axis=(0, 1))  # (K,), slice 0 inferior
    peak = int(per_slice.argmax())
    assert 6 <= peak <= 20  # the dome moves between z = +10 mm and z = -10 mm (mid-volume)
    assert per_slice[peak] > 4 * per_slice[-2:].max()  # apex slices: noise only
    assert per_slice[peak] > 4 * per_slice[:3].max()  # abdomen below the dome: noise only


def test_end_inhale_is_far_from_avg_and_lungs_largest(breathing) -> None:
    _, _, _, clean = breathing
    mean = clean.mean(axis=0)
    dist = [float(np.abs(clean[p] - mean).mean()) for p in range(N_PHASES)]
    assert dist[0] == max(dist)  # end-inhale is the phase farthest from the AVG
    assert dist[0] > 1.3 * dist[5]  # breathing dwells near exhale, so the AVG leans that way
    inside = clean[5] > -950  # body (phase 5 outline), so outside air does not count as lung
    lung_voxels = [int(((clean[p] < -500) & inside).sum()) for p in range(N_PHASES)]
    assert lung_voxels[0] == max(lung_voxels)
    assert lung_voxels[5] <= 1.01 * min(lung_voxels)  # phases 4-6 differ by < 1 mm of motion
    assert all(a > b for a, b in itertools.pairwise(lung_voxels[:5]))


def test_diaphragm_drops_by_the_amplitude(breathing) -> None:
    params, grid, _, clean = breathing
    dx, _, dz = grid.spacing_mm
    # column through the right lung (LPS voxel order: i grows towards the patient's left)
    i = round((grid.size - 1) / 2 - 0.42 * params.body_half_width_mm / dx)
    j = round((grid.size - 1) / 2 + 0.05 * params.body_half_depth_mm / dx)

    def lung_bottom(phase: int) -> int:
        column = clean[phase, i, j, :]
        return int(np.flatnonzero(column < -500).min())

    drop_mm = (lung_bottom(5) - lung_bottom(0)) * dz
    assert abs(drop_mm - params.amplitude_mm) <= dz
    top = np.abs(clean[0, ..., -1] - clean[5, ..., -1]).mean()
    dome = np.abs(clean[0, ..., lung_bottom(0)] - clean[5, ..., lung_bottom(0)]).mean()
    assert top < 0.1 * dome  # the apex barely moves


def test_noise_is_independent_per_phase(breathing) -> None:
    params, _, noisy, clean = breathing
    residual = noisy - clean
    assert residual.std() == pytest.approx(params.noise_hu, rel=0.1)
    corr = np.corrcoef(residual[0].ravel(), residual[1].ravel())[0, 1]
    assert abs(corr) < 0.05


def test_ras_is_the_same_phantom_flipped() -> None:
    params = PatientParams(amplitude_mm=12.0, noise_hu=10.0, noise_seed=5)
    lps, ras = SyntheticGrid(size=16, n_slices=8), SyntheticGrid(size=16, n_slices=8,
                                                                 orientation="RAS")
    a, b = synthetic_patient(params, lps), synthetic_patient(params, ras)
    np.testing.assert_array_equal(b.phases_hu, a.phases_hu[:, ::-1, ::-1, :])
    np.testing.assert_array_equal(noiseless_phases(params, ras), a.noiseless_hu[:, ::-1, ::-1, :])
    assert nib.aff2axcodes(b.affine) == ("R", "A", "S")
    np.testing.assert_allclose(b.affine @ [15, 15, 3, 1], a.affine @ [0, 0, 3, 1])
