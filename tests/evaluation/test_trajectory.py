"""Diaphragm and structure trajectories over the breathing cycle."""

import math

import numpy as np
import pytest

from evaluation.trajectory import centre_of_mass_mm, cycle_summary, diaphragm_heights_mm
from synthetic import ParamRanges, SyntheticGrid, patient_params, synthetic_patient, tumour_masks
from synthetic.phantom import phase_displacement_mm


def test_the_synthetic_diaphragm_follows_the_phantoms_breathing():
    grid = SyntheticGrid(size=48, n_slices=40)
    params = patient_params(0, 0, ParamRanges(amplitude_mm=(20.0, 20.0)))
    patient = synthetic_patient(params, grid)
    phases = {10.0 * k: patient.noiseless_hu[k] for k in range(10)}
    heights = diaphragm_heights_mm(phases, patient.avg_hu, patient.affine)
    moved = np.array([heights[p] - heights[0.0] for p in sorted(heights)])
    # the phantom moves the diaphragm inferiorly by phase_displacement_mm: most at phase 0
    expected = np.array([phase_displacement_mm(0, params.amplitude_mm)
                         - phase_displacement_mm(k, params.amplitude_mm) for k in range(10)])
    assert moved.max() > 10.0  # the base rises out of end-inhale
    # the lung base follows the phantom to within a slice (3 mm)
    assert np.abs(moved - expected).max() < grid.slice_thickness_mm


def test_cycle_summary_amplitudes_and_errors():
    truth = {0.0: 0.0, 50.0: 20.0, 90.0: 5.0}
    model = {0.0: 1.0, 50.0: 17.0, 90.0: math.nan}
    summary = cycle_summary(truth, model)
    assert summary["amplitude_truth_mm"] == pytest.approx(20.0)
    assert summary["amplitude_model_mm"] == pytest.approx(16.0)
    assert summary["amplitude_error_mm"] == pytest.approx(-4.0)
    assert summary["error_max_mm"] == pytest.approx(3.0)
    assert math.isnan(cycle_summary({}, {})["error_mean_mm"])


def test_centre_of_mass_of_the_tumour_masks_moves_with_the_phases():
    grid = SyntheticGrid(size=32, n_slices=24)
    params = patient_params(0, 1, ParamRanges(amplitude_mm=(20.0, 20.0)))
    masks = tumour_masks(params, grid)
    centres = np.array([centre_of_mass_mm(m, grid.affine()) for m in masks])
    assert np.ptp(centres[:, 2]) > 3.0  # superior-inferior motion, mm
    assert np.isnan(centre_of_mass_mm(np.zeros((2, 2, 2), bool), np.eye(4))).all()
