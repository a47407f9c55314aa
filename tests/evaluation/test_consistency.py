"""The mean-of-phases consistency check."""

import numpy as np
import pytest

from evaluation.consistency import consistency_error, mean_of_phases
from synthetic import ParamRanges, SyntheticGrid, patient_params, synthetic_patient


def test_true_phases_of_the_synthetic_4dct_give_back_its_avg_to_the_noise_level():
    grid = SyntheticGrid(size=32, n_slices=12)
    params = patient_params(0, 0, ParamRanges(noise_hu=(15.0, 15.0)))
    patient = synthetic_patient(params, grid)
    phases = [patient.noiseless_hu[k] for k in range(patient.noiseless_hu.shape[0])]
    body = patient.avg_hu > -500
    errors = consistency_error(phases, patient.avg_hu, {"whole": None, "body": body})
    # a perfect model gives the noiseless phases; the AVG is the mean of the ten noisy ones, so
    # what is left is the mean of ten 15 HU noises: sd 15 / sqrt(10) = 4.7 HU, whose mean
    # absolute value is sd * sqrt(2 / pi) = 3.8 HU: the noise level
    expected = 15.0 / np.sqrt(10.0) * np.sqrt(2.0 / np.pi)
    assert errors["body"]["mae_hu"] == pytest.approx(expected, rel=0.15)
    assert abs(errors["body"]["bias_hu"]) < 0.5


def test_a_cycle_that_forgets_to_move_back_is_caught():
    avg = np.zeros((4, 4, 4), dtype=np.float32)
    phases = [avg + 10.0 for _ in range(10)]  # every phase 10 HU too bright
    errors = consistency_error(phases, avg, {"whole": None})
    assert errors["whole"]["mae_hu"] == pytest.approx(10.0)
    assert errors["whole"]["bias_hu"] == pytest.approx(10.0)


def test_mean_of_phases_refuses_mixed_shapes_and_nothing():
    with pytest.raises(ValueError, match="no phases"):
        mean_of_phases([])
    with pytest.raises(ValueError, match="shapes"):
        mean_of_phases([np.zeros((2, 2, 2)), np.zeros((2, 2, 3))])
