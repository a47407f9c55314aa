"""data.dicom_write: a derived series registers with its source (geometry, identity, new UIDs)
and round-trips HU through the source's stored type and rescale."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest

from data import dicom_write
from data.dicom_io import PixelStorage, load_series, read_series
from data.dicom_write import (
    geometry_from_affine,
    series_description,
    write_derived_series,
    write_series,
)
from tests.data.test_dicom_io import GEOMETRIES, Spec, ct_hu, sitk_reading, write_ct_series
from util.errors import DataError, OutputError


def _headers(folder: Path) -> list[pydicom.Dataset]:
    """Headers of a series folder's files, in InstanceNumber order."""
    headers = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    return sorted(headers, key=lambda ds: int(ds.InstanceNumber))


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_round_trip_keeps_hu_geometry_and_identity(tmp_path: Path, name: str) -> None:
    spec = GEOMETRIES[name]
    write_ct_series(tmp_path / "src", ct_hu(spec), spec, description="AVG")
    source = load_series(tmp_path / "src").source
    rng = np.random.default_rng(1)
    lowest, highest = source.storage.stored_range
    predicted = rng.uniform(lowest * spec.slope + spec.inter + 1,
                            highest * spec.slope + spec.inter - 1,
                            size=spec.shape).astype(np.float32)
    out = write_derived_series(predicted, source, tmp_path / "out", "phase 0", "ct_run_7")
    back = load_series(out)
    np.testing.assert_allclose(back.volume.hu, predicted, atol=spec.slope / 2 + 1e-3)
    np.testing.assert_allclose(back.volume.affine, read_series(tmp_path / "src").affine,
                               atol=1e-9)
    assert back.source.geometry == source.geometry  # every slice at its source's position
    assert back.source.storage == source.storage  # stored type and rescale per slice
    assert back.volume.header.get_data_dtype() == np.dtype(spec.dtype)
    assert back.source.study_uid == source.study_uid
    assert back.source.frame_of_reference_uid == source.frame_of_reference_uid
    assert back.source.patient_id == source.patient_id
    assert back.source.series_uid != source.series_uid
    assert not set(back.source.sop_instance_uids) & {*source.sop_instance_uids,
                                                      source.series_uid}
    headers = _headers(out)
    assert [h.SourceImageSequence[0].ReferencedSOPInstanceUID for h in headers] == \
        list(source.sop_instance_uids)
    first = headers[0]
    assert list(first.ImageType) == ["DERIVED", "SECONDARY"]
    assert first.SeriesDescription == "SYNTHETIC phase 0 (pix2pix ct_run_7)"
    assert "ct_run_7" in first.DerivationDescription
    assert str(first.PatientName) == "Doe^Jane"
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


@pytest.mark.parametrize("name", ["oblique", "swapped_uint12"])
def test_simpleitk_reads_the_written_series_on_the_source_geometry(tmp_path: Path,
                                                                   name: str) -> None:
    spec = GEOMETRIES[name]
    hu = ct_hu(spec, seed=5)
    write_ct_series(tmp_path / "src", hu, spec)
    source = load_series(tmp_path / "src").source
    write_derived_series(hu + 10, source, tmp_path / "out", "phase 0", "m")
    src_hu, src_affine = sitk_reading(tmp_path / "src")
    out_hu, out_affine = sitk_reading(tmp_path / "out")
    np.testing.assert_allclose(out_affine, src_affine, atol=1e-6)
    np.testing.assert_allclose(out_hu, src_hu + 10, atol=spec.slope / 2)


NARROW_SOURCES = {  # stored ranges that cannot hold CT HU on their rescale
    "uint12_intercept_0": Spec(dtype="uint16", bits_stored=12),  # 0..4095 HU, no negative HU
    "uint8_intercept_-1024": Spec(dtype="uint8", bits_stored=8, inter=-1024.0),  # -1024..-769
    "uint12_intercept_-1024": GEOMETRIES["swapped_uint12"],  # -1024..3071 HU
}


@pytest.mark.parametrize("name", sorted(NARROW_SOURCES))
def test_hu_the_source_storage_cannot_hold_are_widened_to_16_bit_not_clipped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str) -> None:
    spec = NARROW_SOURCES[name]
    write_ct_series(tmp_path / "src", ct_hu(spec), spec)
    source = load_series(tmp_path / "src").source
    hu = np.random.default_rng(3).integers(-1000, 1500, size=spec.shape).astype(np.float32)
    hu[0, 0, 0], hu[1, 0, 0] = -3000, 5000  # beyond even the 12-bit -1024..3071 storage
    with caplog.at_level(logging.WARNING, logger="data.dicom_write"):
        out = write_derived_series(hu, source, tmp_path / "out", "phase 0", "m")
    back = load_series(out)
    np.testing.assert_array_equal(back.volume.hu, hu)  # nothing clipped
    assert back.source.storage == PixelStorage(16, 16, 1, source.storage.rescale)
    assert back.source.geometry == source.geometry
    first = _headers(out)[0]
    assert (first.BitsAllocated, first.BitsStored, first.HighBit,
            first.PixelRepresentation) == (16, 16, 15, 1)
    sitk_hu, sitk_affine = sitk_reading(out)
    np.testing.assert_allclose(sitk_hu, hu)
    np.testing.assert_allclose(sitk_affine, read_series(tmp_path / "src").affine, atol=1e-6)
    lowest, highest = source.storage.stored_range
    assert re.search(rf"out: HU -3000\.\.5000 do not fit the source's stored range "
                     rf"{lowest}\.\.{highest} \(BitsAllocated {np.dtype(spec.dtype).itemsize * 8}, "
                     rf"BitsStored {spec.bits_stored}, unsigned\) on its rescale; written as "
                     rf"16-bit signed \(BitsStored 16\) with the same rescale instead",
                     caplog.text)


def test_hu_beyond_16_bit_on_the_source_rescale_take_rescale_1_0(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = Spec(slope=0.05, inter=-1024.0, dtype="uint16", bits_stored=12)  # -1024..-819.25
    write_ct_series(tmp_path / "src", ct_hu(spec), spec)
    source = load_series(tmp_path / "src").source
    hu = np.random.default_rng(4).integers(-1000, 3000, size=spec.shape).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="data.dicom_write"):
        out = write_derived_series(hu, source, tmp_path / "out", "phase 0", "m")
    back = load_series(out)
    np.testing.assert_array_equal(back.volume.hu, hu)
    assert back.source.storage == PixelStorage(16, 16, 1, ((1.0, 0.0),) * spec.shape[2])
    np.testing.assert_allclose(sitk_reading(out)[0], hu)
    assert "with rescale slope 1, intercept 0 instead" in caplog.text
    hu[0, 0, 0], hu[1, 0, 0] = 40000.0, -1000.0
    with pytest.raises(DataError, match=r"out2: HU -1000\.\.40000 do not fit a 16-bit DICOM"):
        write_derived_series(hu, source, tmp_path / "out2", "phase 0", "m")
    assert not (tmp_path / "out2").exists()


def test_existing_folder_is_refused_unless_overwrite(tmp_path: Path) -> None:
    spec = Spec(shape=(4, 4, 3))
    hu = ct_hu(spec)
    write_ct_series(tmp_path / "src", hu, spec)
    source = load_series(tmp_path / "src").source
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match=re.escape(f"{tmp_path / 'out'}: the folder exists and "
                                                    f"is not empty; refusing to replace it")):
        write_derived_series(hu, source, tmp_path / "out", "phase 0", "m")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]
    write_derived_series(hu + 5, source, tmp_path / "out", "phase 0", "m", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == \
        ["CT_0001.dcm", "CT_0002.dcm", "CT_0003.dcm"]
    np.testing.assert_array_equal(read_series(tmp_path / "out").hu, hu + 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no temp folders left
    (tmp_path / "empty").mkdir()  # an empty folder is simply filled
    write_derived_series(hu, source, tmp_path / "empty", "phase 0", "m")
    assert len(list((tmp_path / "empty").iterdir())) == 3


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    spec = Spec(shape=(4, 4, 3))
    hu = ct_hu(spec)
    write_ct_series(tmp_path / "src", hu, spec)
    source = load_series(tmp_path / "src").source
    with pytest.raises(DataError, match=r"out: 1 voxels are NaN or Inf"):
        write_derived_series(_with_nan(hu), source, tmp_path / "out", "phase 0", "m")
    with pytest.raises(DataError, match=r"out: volume shape \(4, 4, 2\) does not match the "
                                        r"series' \(columns, rows, slices\) \(4, 4, 3\)"):
        write_derived_series(hu[:, :, :2], source, tmp_path / "out", "phase 0", "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def _with_nan(hu: np.ndarray) -> np.ndarray:
    out = hu.copy()
    out[1, 2, 0] = np.nan
    return out


def test_new_uids_never_repeat_a_source_uid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    spec = Spec(shape=(4, 4, 3))
    hu = ct_hu(spec)
    write_ct_series(tmp_path / "src", hu, spec, series_uid="1.2.3.99")
    source = load_series(tmp_path / "src").source
    real = dicom_write.generate_uid
    replays = iter(["1.2.3.99", source.sop_instance_uids[0], source.frame_of_reference_uid])
    monkeypatch.setattr(dicom_write, "generate_uid", lambda: next(replays, None) or real())
    write_derived_series(hu, source, tmp_path / "out", "phase 0", "m")
    back = load_series(tmp_path / "out").source
    assert back.series_uid not in {"1.2.3.99", *source.sop_instance_uids}
    assert not set(back.sop_instance_uids) & set(source.sop_instance_uids)
    monkeypatch.setattr(dicom_write, "generate_uid", lambda: "1.2.3.99")
    with pytest.raises(RuntimeError, match="no new UID"):
        write_derived_series(hu, source, tmp_path / "out2", "phase 0", "m")


def test_source_without_frame_of_reference_is_refused(tmp_path: Path) -> None:
    spec = Spec(shape=(4, 4, 3))
    hu = ct_hu(spec)
    write_ct_series(tmp_path / "src", hu, spec,
                    edit=lambda _k, ds: delattr(ds, "FrameOfReferenceUID"))
    source = load_series(tmp_path / "src").source
    with pytest.raises(DataError, match=r"src: the source series has no FrameOfReferenceUID"):
        write_derived_series(hu, source, tmp_path / "out", "phase 0", "m")


def test_series_description_is_a_valid_long_string() -> None:
    assert series_description("phase 0", "run") == "SYNTHETIC phase 0 (pix2pix run)"
    long = series_description("phase 0", "x" * 100 + "\\y")
    assert len(long) == 64
    assert long.startswith("SYNTHETIC phase 0 (pix2pix xxx")
    assert "\\" not in series_description("a\\b", "m")


def test_geometry_from_affine_round_trips_through_a_written_series(tmp_path: Path) -> None:
    affine = np.array([[-0.8, 0.0, 0.0, 120.5], [0.0, -0.9, 0.0, 98.25],
                       [0.0, 0.0, 2.5, -310.0], [0.0, 0.0, 0.0, 1.0]])
    geometry = geometry_from_affine(affine, (6, 5, 7))
    assert geometry.orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert geometry.pixel_spacing_mm == (0.9, 0.8)
    np.testing.assert_allclose(geometry.affine(), affine)
    tags = pydicom.Dataset()
    tags.Modality, tags.SeriesInstanceUID, tags.SeriesDescription = "CT", "1.2.3.5", "AVG"
    tags.StudyInstanceUID, tags.FrameOfReferenceUID = "1.2.3.6", "1.2.3.7"
    storage = PixelStorage(16, 16, 1, ((1.0, 0.0),) * 7)
    hu = ct_hu(Spec())
    write_series(hu, geometry, storage, tags, [f"1.2.3.8.{k}" for k in range(7)],
                 tmp_path / "s")
    vol = read_series(tmp_path / "s")
    np.testing.assert_array_equal(vol.hu, hu)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-9)
    flipped = affine @ np.diag([1.0, 1.0, -1.0, 1.0])
    with pytest.raises(DataError, match="the slice axis K is not along I x J"):
        geometry_from_affine(flipped, (6, 5, 7))
