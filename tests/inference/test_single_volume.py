"""inference.single_volume: predict.py's outputs beside --output, as one plan."""

from pathlib import Path

import pytest

from inference.single_volume import SingleOutput, beside_output, named_outputs


@pytest.mark.parametrize(("output", "expected"), [
    ("out/p0.nii.gz", "out/p0_std.nii.gz"), ("out/p0.NII", "out/p0_std.NII"),
    ("out/PT1_phase0", "out/PT1_phase0_std.nii.gz")])
def test_beside_output_keeps_the_extension_and_gives_a_folder_one(output, expected):
    assert beside_output(Path(output), "_std") == Path(expected)


def test_a_nifti_output_and_what_goes_beside_it():
    layout = SingleOutput(Path("o/p0.nii.gz"))
    paths = layout.paths(samples=1, motion=False)
    assert (paths.volume, paths.series, paths.std, paths.field) == (Path("o/p0.nii.gz"), None,
                                                                    None, None)
    paths = layout.paths(samples=3, motion=True, phases=(0.0, 50.0))
    assert (paths.std, paths.field) == (Path("o/p0_std.nii.gz"),
                                        Path("o/p0_displacement.nii.gz"))
    assert paths.cycle_volumes == ((50.0, Path("o/p0_p50.nii.gz")),
                                   ("mip", Path("o/p0_mip.nii.gz")),
                                   ("mean", Path("o/p0_mean.nii.gz")))
    assert (paths.cycle_series, paths.cycle_fields) == ((), ())
    assert [(option, path.name, folder) for option, path, folder in named_outputs(paths)] == [
        ("--output", "p0.nii.gz", False), ("--std_output", "p0_std.nii.gz", False),
        ("--displacement_output", "p0_displacement.nii.gz", False),
        ("--phases", "p0_p50.nii.gz", False), ("--phases", "p0_mip.nii.gz", False),
        ("--phases", "p0_mean.nii.gz", False)]


def test_a_series_folder_output_keeps_the_std_and_field_nifti():
    layout = SingleOutput(Path("o/p0"), dicom=True, std_output=Path("s.nii.gz"),
                          overwrite=True)
    paths = layout.paths(samples=2, motion=True, phases=(0.0, 50.0))
    assert (paths.volume, paths.series, paths.std, paths.field) == (
        None, Path("o/p0"), Path("s.nii.gz"), Path("o/p0_displacement.nii.gz"))
    assert paths.cycle_series == ((50.0, Path("o/p0_p50")), ("mip", Path("o/p0_mip")),
                                  ("mean", Path("o/p0_mean")))
    assert paths.cycle_volumes == ()
    assert paths.overwrite_series
    assert [folder for _option, _path, folder in named_outputs(paths)] == [
        True, False, False, True, True, True]
