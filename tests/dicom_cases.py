"""DICOM cases shared by the tests of test.py and scripts/predict.py: series written here with
pydicom (LPS, oblique, odd sides and slice count, non-trivial rescale), the checks a derived
series must pass against its source, and one-line refusals that write nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest

from data.ct_volumes import slice_stack
from data.dicom_io import load_series
from data.nifti_io import Volume
from models.trained_run import load_generator
from tests.data.test_dicom_io import GEOMETRIES, ORIENTATIONS, Spec, sitk_reading
from util.geometry import from_slice_stack

#: Oblique (rotated 20 deg about z, then 10 deg about x), 9 x 7 pixels, 5 slices of 2 mm,
#: int16 stored with slope 0.5 and intercept -1000.
OBLIQUE = Spec(shape=(9, 7, 5), orientation=ORIENTATIONS["oblique"], slope=0.5, inter=-1000.0,
               step_mm=2.0, pixel_spacing=(0.8, 0.7))
#: Rows and columns swapped (slice normal -z: slices stored head to feet), 6 x 5 pixels, 7
#: slices, 12-bit unsigned with intercept -1024.
SWAPPED = GEOMETRIES["swapped_uint12"]


def expected_prediction(run_dir: Path, vol: Volume) -> np.ndarray:
    """What the run's generator predicts for ``vol``: (I, J, K) float32 HU, on its grid."""
    generator = load_generator(run_dir, "latest")
    return from_slice_stack(generator.predict(slice_stack(vol).hu).hu, vol.affine)


def _positions(folder: Path) -> dict[str, list[float]]:
    """{SOPInstanceUID: IPP (LPS mm)} of the files in ``folder``."""
    found = {}
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found[str(ds.SOPInstanceUID)] = [float(v) for v in ds.ImagePositionPatient]
    return found


def check_derived_series(out: Path, src: Path, expected_hu: np.ndarray, slope: float,
                         description: str) -> None:
    """``out`` holds a derived series of the one series in ``src``: ``expected_hu`` within half
    the rescale step, every slice at the position of the source slice it names, the same grid
    for SimpleITK, the source's patient, study and frame of reference, UIDs none of the
    source's, and ``description`` as SeriesDescription."""
    source = load_series(src).source
    back = load_series(out)
    np.testing.assert_allclose(back.volume.hu, expected_hu, atol=slope / 2 + 1e-3)
    assert back.source.geometry == source.geometry
    assert back.source.storage == source.storage
    src_positions = _positions(src)
    referenced = []
    for path in sorted(out.iterdir()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        ref = str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID)
        referenced.append(ref)
        assert [float(v) for v in ds.ImagePositionPatient] == src_positions[ref]
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.SeriesDescription == description
    assert sorted(referenced) == sorted(src_positions)  # each source slice once
    assert (back.source.study_uid, back.source.frame_of_reference_uid,
            back.source.patient_id) == (source.study_uid, source.frame_of_reference_uid,
                                        source.patient_id)
    source_uids = {source.series_uid, source.study_uid, source.frame_of_reference_uid,
                   *source.sop_instance_uids}
    assert back.source.series_uid not in source_uids
    assert not set(back.source.sop_instance_uids) & source_uids
    out_hu, out_affine = sitk_reading(out)
    _, src_affine = sitk_reading(src)
    np.testing.assert_allclose(out_affine, src_affine, atol=1e-6)
    np.testing.assert_array_equal(out_hu, back.volume.hu)


def tree(root: Path) -> list[str]:
    """Every file and folder under ``root``, relative, sorted (what a refusal must not change)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def one_line_error(caplog: pytest.LogCaptureFixture) -> str:
    """The one error logged (a single line); fails otherwise."""
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "\n" not in errors[0], errors[0]
    return errors[0]
