"""The data part of a run's settings: what a training and a test derive from the same options."""

import pytest

from data.nifti_aligned_dataset import dicom_choices
from data.settings import DataSettings


@pytest.mark.parametrize(("is_train", "no_flip", "flip"), [
    (True, False, True), (True, True, False), (False, False, False), (False, True, False)])
def test_flips_in_training_only_unless_no_flip(is_train, no_flip, flip):
    assert DataSettings(dataroot="d", is_train=is_train, no_flip=no_flip).flip is flip


def test_a_test_limits_patients_and_keeps_the_native_grid():
    spacing = (3.0, 1.5, 1.5)
    training = DataSettings(dataroot="d", is_train=True, num_test=2, working_spacing_mm=spacing)
    testing = DataSettings(dataroot="d", is_train=False, num_test=2, working_spacing_mm=spacing)
    assert (training.max_patients, training.grid_spacing_mm) == (None, spacing)
    assert (testing.max_patients, testing.grid_spacing_mm) == (2, (0.0, 0.0, 0.0))


@pytest.mark.parametrize(("is_train", "phases", "phase_input", "planes"), [
    (True, "all", False, True),  # a training with phases reads phase planes
    (True, "", True, False),
    (False, "", True, True),  # a test of a run trained with phases, phase 0 asked for
    (False, "all", False, False),  # a test of a phase-0 run (refused later, by the pipeline)
])
def test_phase_planes_come_from_phases_in_training_and_from_the_run_at_test(
        is_train, phases, phase_input, planes):
    data = DataSettings(dataroot="d", is_train=is_train, phases=phases, phase_input=phase_input)
    assert data.phase_planes is planes


def test_dicom_series_are_picked_only_where_the_settings_name_them():
    assert dicom_choices(DataSettings(dataroot="d")) is None
    a, b = dicom_choices(DataSettings(dataroot="d", avg_series="*AVG*",
                                      phase0_series="*T0*"))
    assert (a.pattern, a.option, b.pattern, b.option) == ("*AVG*", "--avg_series", "*T0*",
                                                          "--phase0_series")
    assert not DataSettings(dataroot="d", direction="BtoA").a_to_b
