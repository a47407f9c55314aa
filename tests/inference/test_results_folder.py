"""inference.results_folder: test.py's file names, derived from one plan per patient, and what
of an earlier run is removed."""

from pathlib import Path

import pytest

from inference.results_folder import (
    cycle_file_names,
    patient_paths,
    prepare_results_folder,
    remove_stale_series,
    series_folder_names,
)
from util.errors import DataError


def test_a_patients_outputs_are_named_from_its_safe_id(tmp_path):
    paths = patient_paths(tmp_path, "PT 1", (0.0, 50.0), dicom=True, series_description="AVG")
    volumes, dicom = tmp_path / "volumes", tmp_path / "dicom"
    assert (paths.volume, paths.series, paths.std, paths.field) == (
        volumes / "PT_1_fake_B.nii.gz", dicom / "PT_1", volumes / "PT_1_fake_B_std.nii.gz",
        volumes / "PT_1_displacement.nii.gz")
    assert paths.cycle_volumes == ((50.0, volumes / "PT_1_fake_B_p50.nii.gz"),
                                   ("mip", volumes / "PT_1_fake_B_mip.nii.gz"),
                                   ("mean", volumes / "PT_1_fake_B_mean.nii.gz"))
    assert paths.cycle_fields == ((50.0, volumes / "PT_1_displacement_p50.nii.gz"),)
    assert paths.cycle_series == ((50.0, dicom / "PT_1_p50"), ("mip", dicom / "PT_1_mip"),
                                  ("mean", dicom / "PT_1_mean"))
    assert (paths.series_description, paths.overwrite_series) == ("AVG", True)
    plain = patient_paths(tmp_path, "PT 1")
    assert (plain.series, plain.cycle_volumes, plain.cycle_series) == (None, (), ())


def test_the_cycle_files_kept_are_those_the_plan_writes():
    assert cycle_file_names(["p1"], ()) == set()
    assert cycle_file_names(["p1"], (0.0,)) == set()  # phase 0 is the volume itself
    assert cycle_file_names(["p1", "p 2"], (0.0, 50.0)) == {
        "p1_fake_B_p50.nii.gz", "p1_displacement_p50.nii.gz", "p1_fake_B_mip.nii.gz",
        "p1_fake_B_mean.nii.gz", "p_2_fake_B_p50.nii.gz", "p_2_displacement_p50.nii.gz",
        "p_2_fake_B_mip.nii.gz", "p_2_fake_B_mean.nii.gz"}
    whole = cycle_file_names(["p1"], tuple(float(p) for p in range(0, 100, 10)))
    assert "p1_fake_B_avg.nii.gz" in whole
    assert "p1_fake_B_mean.nii.gz" not in whole


def test_series_folder_names_hold_phase_0_and_refuse_two_patients_on_one():
    assert series_folder_names(["PT1"], ()) == {"pt1"}
    assert series_folder_names(["PT1"], (0.0, 50.0)) == {"pt1", "pt1_p50", "pt1_mip",
                                                         "pt1_mean"}
    assert series_folder_names(["PT1"], (50.0,)) == {"pt1", "pt1_p50"}  # phase 0 is written
    with pytest.raises(DataError, match="patients 'PT1' and 'PT1_p50' would both write the "
                                        "DICOM series folder dicom/PT1_p50"):
        series_folder_names(["PT1", "PT1_p50"], (0.0, 50.0))
    with pytest.raises(DataError, match="'PT1' and 'pt1'"):
        series_folder_names(["PT1", "pt1"], ())


def _series(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "CT_0001.dcm").write_bytes(b"slice")
    return folder


def test_a_run_of_one_other_phase_keeps_its_own_phase_0_series(tmp_path):
    kept = [_series(tmp_path / "dicom" / name) for name in ("PT1", "PT1_p50")]
    stale = _series(tmp_path / "dicom" / "PT2")
    assert remove_stale_series(tmp_path, series_folder_names(["PT1"], (50.0,))) == [stale]
    assert all(folder.is_dir() for folder in kept)


def test_the_folders_of_a_run_are_made_and_temp_files_of_an_earlier_one_removed(tmp_path):
    left = tmp_path / "volumes" / ".p1_fake_B.nii.gz.ab12cd_3.tmp.nii.gz"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"half")
    prepare_results_folder(tmp_path, pictures=False, dicom=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dicom", "volumes"]
    assert not left.exists()
    prepare_results_folder(tmp_path, pictures=True, dicom=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dicom", "images", "patients",
                                                          "volumes"]
