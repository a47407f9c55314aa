"""scripts/predict.py with DICOM: a series folder in (one series, or the AVG of several picked
by --avg_series), a derived series out (--output_format dicom) on the source's slice positions
with new UIDs, the same prediction as from a NIfTI copy, and one-line refusals that write
nothing."""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pydicom
import pytest

from data.dicom_io import load_series, read_series
from data.nifti_io import save_volume
from tests.data.test_dicom_io import ct_hu, write_ct_series
from tests.test_dicom_outputs import (
    OBLIQUE,
    SWAPPED,
    check_derived_series,
    expected_prediction,
    export,
    one_line_error,
    tree,
)
from tests.tiny_runs import dropout_and_plain_runs, load_script, tiny_run


@pytest.fixture(scope="module")
def predict() -> ModuleType:
    return load_script("scripts/predict.py", "ct_predict_script")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """checkpoints/run (dropout) and checkpoints/plain (--no_dropout)."""
    return dropout_and_plain_runs(tmp_path_factory.mktemp("ck"))


def argv(runs: Path, src: Path, out: Path, *extra: str, name: str = "plain") -> list[str]:
    return ["--name", name, "--checkpoints_dir", str(runs), "--input", str(src), "--output",
            str(out), "--gpu_ids", "-1", *extra]


@pytest.mark.parametrize(("spec", "name"), [(OBLIQUE, "oblique"), (SWAPPED, "swapped")])
def test_dicom_in_dicom_out_keeps_hu_positions_and_identity(tmp_path, predict, runs, spec,
                                                            name):
    src = tmp_path / name
    write_ct_series(src, ct_hu(spec, seed=3), spec)
    out = tmp_path / "out" / "phase0"
    assert predict.main(argv(runs, src, out, "--output_format", "dicom")) == 0
    expected = expected_prediction(runs / "plain", read_series(src))
    assert np.ptp(expected) > 0  # the network does something
    check_derived_series(out, src, expected, spec.slope,
                         "SYNTHETIC phase 0 (pix2pix plain latest)")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["phase0"]  # no temp left


def test_nifti_and_dicom_copies_of_a_volume_give_the_same_prediction(tmp_path, predict, runs):
    src = tmp_path / "avg"
    write_ct_series(src, ct_hu(OBLIQUE, seed=4), OBLIQUE)
    vol = read_series(src)
    nifti = save_volume(vol.hu, vol, tmp_path / "avg.nii.gz")
    assert predict.main(argv(runs, src, tmp_path / "from_dicom.nii.gz")) == 0
    assert predict.main(argv(runs, nifti, tmp_path / "from_nifti.nii.gz")) == 0
    assert predict.main(argv(runs, src, tmp_path / "series", "--output_format", "dicom")) == 0
    from_dicom, from_nifti = (nib.load(tmp_path / f"from_{k}.nii.gz") for k in ("dicom", "nifti"))
    np.testing.assert_array_equal(from_dicom.get_fdata(), from_nifti.get_fdata())
    np.testing.assert_allclose(from_dicom.affine, vol.affine, atol=1e-4)
    assert from_dicom.get_data_dtype() == np.int16  # the series' stored type and rescale
    assert (from_dicom.dataobj.slope, from_dicom.dataobj.inter) == (OBLIQUE.slope, OBLIQUE.inter)
    np.testing.assert_array_equal(read_series(tmp_path / "series").hu, from_dicom.get_fdata())


def test_the_avg_of_several_series_is_picked_by_description(tmp_path, predict, runs, caplog):
    folder = export(tmp_path / "PT1")
    out = tmp_path / "out"
    assert predict.main(argv(runs, folder, out / "avg", "--output_format", "dicom")) == 0
    expected = expected_prediction(runs / "plain", read_series(folder / "AVG"))
    check_derived_series(out / "avg", folder / "AVG", expected, OBLIQUE.slope,
                         "SYNTHETIC phase 0 (pix2pix plain latest)")
    assert predict.main(argv(runs, folder, out / "mip", "--output_format", "dicom",
                             "--avg_series", "m?p")) == 0
    assert load_series(out / "mip").source.frame_of_reference_uid  # registered, and from MIP:
    np.testing.assert_allclose(read_series(out / "mip").hu,
                               expected_prediction(runs / "plain", read_series(folder / "MIP")),
                               atol=OBLIQUE.slope / 2 + 1e-3)
    before = tree(tmp_path)
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert predict.main(argv(runs, folder, out / "n.nii.gz", "--avg_series", "*4D*")) == 1
    message = one_line_error(caplog)
    assert message.startswith(f"{folder}: no series description matches '*4D*'")
    assert "'MIP' (CT, 5 files" in message
    assert message.endswith("choose the series with --avg_series PATTERN")
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert predict.main(argv(runs, folder, out / "t.nii.gz", "--avg_series", "*a*")) == 1
    assert "2 series descriptions match '*a*'" in one_line_error(caplog)
    assert tree(tmp_path) == before


def test_samples_and_field_outputs_stay_nifti_beside_the_series_folder(tmp_path, predict, runs):
    src = tmp_path / "avg"
    write_ct_series(src, ct_hu(OBLIQUE), OBLIQUE)
    out = tmp_path / "out" / "PT1_phase0"
    assert predict.main(argv(runs, src, out, "--output_format", "dicom", "--samples", "3",
                             name="run")) == 0
    std = nib.load(tmp_path / "out" / "PT1_phase0_std.nii.gz")
    assert std.shape == OBLIQUE.shape
    np.testing.assert_allclose(std.affine, read_series(src).affine, atol=1e-4)
    assert std.get_fdata().max() > 1.0
    assert len(list(out.iterdir())) == OBLIQUE.shape[2]


def test_an_occupied_output_folder_needs_overwrite(tmp_path, predict, runs, caplog):
    src = tmp_path / "avg"
    write_ct_series(src, ct_hu(OBLIQUE), OBLIQUE)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with caplog.at_level(logging.ERROR):
        assert predict.main(argv(runs, src, out, "--output_format", "dicom")) == 1
    assert one_line_error(caplog) == (f"--output {out}: the folder exists and is not empty; "
                                      f"refusing to replace it (pass --overwrite to replace it, "
                                      f"or choose another folder)")
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert predict.main(argv(runs, src, out, "--output_format", "dicom", "--overwrite")) == 0
    assert len(list(out.iterdir())) == OBLIQUE.shape[2]
    assert all(p.suffix == ".dcm" for p in out.iterdir())


def _refusal(predict: ModuleType, caplog: pytest.LogCaptureFixture, args: list[str],
             root: Path) -> str:
    """The one-line message of a refused run, checking that nothing under ``root`` changed."""
    before = tree(root)
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert predict.main(args) == 1
    assert tree(root) == before
    return one_line_error(caplog)


def test_refusals_name_the_path_and_the_problem_and_write_nothing(tmp_path, predict, runs,
                                                                 caplog):
    src = tmp_path / "in" / "avg"
    files = write_ct_series(src, ct_hu(OBLIQUE), OBLIQUE)
    nifti = save_volume(read_series(src).hu, read_series(src), tmp_path / "in" / "avg.nii.gz")
    dicom = ("--output_format", "dicom")
    cases = [
        (argv(runs, nifti, tmp_path / "o", *dicom),
         f"--output_format dicom needs a DICOM input series, but --input {nifti} is a file "
         f"(NIfTI), which has no patient, study or frame of reference"),
        (argv(runs, src, tmp_path / "o.nii.gz", *dicom),
         f"--output {tmp_path / 'o.nii.gz'}: with --output_format dicom, --output is the folder"),
        (argv(runs, src, tmp_path / "in", *dicom, "--overwrite"),
         f"--output {tmp_path / 'in'} holds the input {src}: writing the series there would "
         f"replace the source"),
        (argv(runs, src, src / "sub", *dicom),
         f"--output {src / 'sub'} lies inside the input folder {src}: the source is never "
         f"written into"),
        (argv(runs, src, src / "p0.nii.gz"),
         f"--output {src / 'p0.nii.gz'} lies inside the input folder {src}"),
        (argv(runs, src, tmp_path / "p0"),
         f"--output {tmp_path / 'p0'}: must end in .nii or .nii.gz (or pass --output_format "
         f"dicom"),
        (argv(runs, src, tmp_path / "s", *dicom, "--samples", "2", "--std_output",
              str(tmp_path / "s" / "std.nii.gz"), name="run"),
         f"--std_output {tmp_path / 's' / 'std.nii.gz'} lies inside the --output series folder"),
        (argv(runs, tmp_path / "missing", tmp_path / "o", *dicom),
         f"--input {tmp_path / 'missing'}: no such file or folder"),
    ]
    for args, expected in cases:
        assert expected in _refusal(predict, caplog, args, tmp_path), expected
    files[2].unlink()  # a missing slice: the series cannot be read whole
    message = _refusal(predict, caplog, argv(runs, src, tmp_path / "o", *dicom), tmp_path)
    assert message.startswith(f"{src}: missing slices: a gap of 4 mm")


def test_a_folder_without_ct_series_and_a_series_without_frame_of_reference(tmp_path, predict,
                                                                            runs, caplog):
    rt = tmp_path / "rt"
    write_ct_series(rt, ct_hu(OBLIQUE), OBLIQUE, description="contours",
                    edit=lambda _k, ds: setattr(ds, "Modality", "RTSTRUCT"))
    message = _refusal(predict, caplog, argv(runs, rt, tmp_path / "o.nii.gz"), tmp_path)
    assert message.startswith(f"{rt}: no DICOM CT series found (series found: 'contours' "
                              f"(RTSTRUCT, 5 files")
    loose = tmp_path / "loose"
    write_ct_series(loose, ct_hu(OBLIQUE), OBLIQUE,
                    edit=lambda _k, ds: delattr(ds, "FrameOfReferenceUID"))
    message = _refusal(predict, caplog, argv(runs, loose, tmp_path / "o", "--output_format",
                                             "dicom"), tmp_path)
    assert message.startswith(f"{loose}: the input series has no FrameOfReferenceUID")
    assert predict.main(argv(runs, loose, tmp_path / "o.nii.gz")) == 0  # NIfTI needs none


def test_the_source_series_is_left_byte_identical(tmp_path, predict, runs):
    src = tmp_path / "avg"
    write_ct_series(src, ct_hu(SWAPPED), SWAPPED)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    assert predict.main(argv(runs, src, tmp_path / "out", "--output_format", "dicom")) == 0
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    first = pydicom.dcmread(next((tmp_path / "out").iterdir()))
    assert first.SeriesNumber == 1003  # the source's 3 + 1000: filed apart from it


def test_a_motion_generator_writes_its_field_as_nifti_beside_the_series(tmp_path, predict):
    runs = tiny_run(tmp_path / "ck", "--netG", "motion3d_3", "--dataset_mode", "nifti_volume",
                    "--no_dropout", name="motion")
    src = tmp_path / "avg"
    write_ct_series(src, ct_hu(SWAPPED), SWAPPED)
    out = tmp_path / "out" / "PT1_phase0"
    assert predict.main(argv(runs, src, out, "--output_format", "dicom", name="motion")) == 0
    field = nib.load(tmp_path / "out" / "PT1_phase0_displacement.nii.gz")
    assert field.shape == (*SWAPPED.shape, 1, 3)
    np.testing.assert_allclose(field.affine, read_series(src).affine, atol=1e-4)
    check_derived_series(out, src, expected_prediction(runs / "motion", read_series(src)),
                         SWAPPED.slope, "SYNTHETIC phase 0 (pix2pix motion latest)")


@pytest.fixture(scope="module")
def cycle_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """checkpoints/cycle: an untrained phase-conditioned unet_64 (--phases) without dropout."""
    return tiny_run(tmp_path_factory.mktemp("ck"), "--no_dropout", "--phases", "all",
                    "--input_nc", "3", name="cycle")


def _series_tags(folder: Path) -> tuple[int, str]:
    """(SeriesNumber, SeriesDescription) of the series in ``folder``, the same in every file."""
    found = {(int(ds.SeriesNumber), str(ds.SeriesDescription))
             for ds in (pydicom.dcmread(p, stop_before_pixels=True) for p in folder.iterdir())}
    assert len(found) == 1, found
    return found.pop()


def test_every_series_of_a_cycle_has_its_own_number_and_says_what_it_is(tmp_path, predict,
                                                                        cycle_runs, caplog):
    src = tmp_path / "avg"
    write_ct_series(src, ct_hu(OBLIQUE), OBLIQUE)  # SeriesNumber 3
    out = tmp_path / "out" / "p0"
    with caplog.at_level(logging.INFO):
        assert predict.main(argv(cycle_runs, src, out, "--output_format", "dicom", "--phases",
                                 "0,50", name="cycle")) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["p0", "p0_mean", "p0_mip", "p0_p50"]
    tags = {p.name: _series_tags(p) for p in out.parent.iterdir()}
    model = "(pix2pix cycle latest)"
    assert tags == {"p0": (1003, f"SYNTHETIC phase 0 {model}"),
                    "p0_p50": (1053, f"SYNTHETIC phase 50 % {model}"),
                    "p0_mip": (1103, f"SYNTHETIC MIP of phases 0, 50 % {model}"),
                    "p0_mean": (1104, f"SYNTHETIC mean of phases 0, 50 % {model}")}
    assert f"wrote {out.parent / 'p0_mean'}: mean of phases 0, 50 %" in caplog.text
    assert "mean of the cycle" not in caplog.text  # two phases are not the cycle


def test_the_mean_of_fewer_phases_is_named_for_what_it_is(tmp_path, predict, cycle_runs):
    src = tmp_path / "avg"
    write_ct_series(src, ct_hu(OBLIQUE), OBLIQUE)
    assert predict.main(argv(cycle_runs, src, tmp_path / "out" / "p0.nii.gz", "--phases",
                             "0,50", name="cycle")) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "p0.nii.gz", "p0_mean.nii.gz", "p0_mip.nii.gz", "p0_p50.nii.gz"]
    phases = [nib.load(tmp_path / "out" / n).get_fdata() for n in ("p0.nii.gz", "p0_p50.nii.gz")]
    np.testing.assert_allclose(nib.load(tmp_path / "out" / "p0_mean.nii.gz").get_fdata(),
                               np.mean(phases, axis=0), atol=OBLIQUE.slope)


def test_what_a_killed_write_left_is_removed_before_writing(tmp_path, predict, runs, caplog):
    """A prediction killed mid-write leaves a hidden temp folder holding a partial series (and
    temp files): the next run removes those of its own outputs, and nothing else."""
    src = tmp_path / "avg"
    write_ct_series(src, ct_hu(OBLIQUE), OBLIQUE)
    out = tmp_path / "out" / "PT1_phase0"
    partial = tmp_path / "out" / ".PT1_phase0.k3x9_a2b.tmp"
    partial.mkdir(parents=True)
    (partial / "CT_0001.dcm").write_bytes(b"a valid-looking slice")
    old = tmp_path / "out" / ".PT1_phase0.zz00aa11.old"
    (old / "PT1_phase0").mkdir(parents=True)
    nifti_tmp = tmp_path / "out" / ".PT1_phase0_std.nii.gz.ab12cd34.tmp.nii.gz"
    nifti_tmp.write_bytes(b"half")
    others = [tmp_path / "out" / ".other.k3x9_a2b.tmp", tmp_path / "out" / ".PT1_phase0.notes"]
    for path in others:
        path.mkdir()
    with caplog.at_level(logging.WARNING):
        assert predict.main(argv(runs, src, out, "--output_format", "dicom", "--samples", "2",
                                 name="run")) == 0
    assert not partial.exists()
    assert not old.exists()
    assert not nifti_tmp.exists()
    assert all(path.is_dir() for path in others)  # not of this tool's naming for these outputs
    assert "removed 2 temporary files or folders left by an interrupted write of " \
           f"{out}" in caplog.text
    assert "removed 1 temporary files or folders" in caplog.text
    assert len(list(out.iterdir())) == OBLIQUE.shape[2]
