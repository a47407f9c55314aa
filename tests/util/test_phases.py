"""Phase percentages, their folder names and the cyclic encoding."""

import math

import numpy as np
import pytest

from util.errors import ConfigError
from util.phases import (
    STANDARD_PHASES,
    folder_phase,
    gated_percent,
    parse_phases,
    phase_encoding,
    phase_folder,
    phase_planes,
)


@pytest.mark.parametrize(("percent", "folder"), [(0.0, "trainB"), (50.0, "trainB_p50"),
                                                 (12.5, "valB_p12.5")])
def test_folder_names_round_trip_and_phase_0_stays_where_it_was(percent, folder):
    split = folder.split("B")[0]
    assert phase_folder(split, percent) == folder
    assert folder_phase(folder, split) == percent


def test_folders_of_other_splits_or_kinds_hold_no_phase():
    assert folder_phase("trainA", "train") is None
    assert folder_phase("testB_p50", "train") is None
    assert folder_phase("trainB_px", "train") is None


@pytest.mark.parametrize(("name", "percent"), [
    ("PT1_CT_Gated 0.0A.nii.gz", 0.0), ("4D Gated 50.0A", 50.0), ("gated90.0a", 90.0),
    ("PT1 Gated 12.5A", 12.5), ("PT1_AVG.nii.gz", None), ("Gated 150.0A", None)])
def test_gated_percent_reads_the_export_names(name, percent):
    assert gated_percent(name) == percent


def test_parse_phases():
    assert parse_phases("all") == STANDARD_PHASES
    assert parse_phases("50, 0,50") == (0.0, 50.0)
    for bad in ("", "x", "100", "-10"):
        with pytest.raises(ConfigError, match="--phases"):
            parse_phases(bad)


def test_encoding_is_cyclic_and_on_the_unit_circle():
    for p in STANDARD_PHASES:
        s, c = phase_encoding(p)
        assert math.hypot(s, c) == pytest.approx(1.0)
    near_end, start = np.array(phase_encoding(90.0)), np.array(phase_encoding(0.0))
    mid = np.array(phase_encoding(50.0))
    assert np.linalg.norm(near_end - start) < np.linalg.norm(mid - start)  # 90 % is next to 0 %
    planes = phase_planes(25.0, (3, 4))
    assert planes.shape == (2, 3, 4)
    assert planes.dtype == np.float32
    np.testing.assert_allclose(planes[0], 1.0, atol=1e-6)  # sin(pi / 2)
    np.testing.assert_allclose(planes[1], 0.0, atol=1e-6)
