"""data.dicom_io: series made here with pydicom read as SimpleITK reads them, and every refusal.

The series are LPS with non-trivial orientations (rows and columns swapped, feet first, oblique),
an odd slice count, rows != columns, shuffled file names and instance numbers, and int16 / 12-bit
uint16 storage with non-trivial rescale. The reference is SimpleITK's ImageSeriesReader.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    MPEG2MPML,
    UID,
    ExplicitVRLittleEndian,
    JPEGLosslessSV1,
    RLELossless,
    generate_uid,
)

from data.dicom_io import (
    DicomSeries,
    find_series,
    gated_phase_percent,
    is_dicom_folder,
    load_series,
    pick_series,
    read_series,
)
from util.errors import DataError

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _rotation(z_deg: float, x_deg: float) -> np.ndarray:
    """Rotation about z, then about x (3, 3)."""
    a, b = math.radians(z_deg), math.radians(x_deg)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return rx @ rz


_OBLIQUE = _rotation(20.0, 10.0)
#: Named IOPs (row vector, column vector), LPS.
ORIENTATIONS = {
    "axial": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "swapped": (0.0, 1.0, 0.0, 1.0, 0.0, 0.0),  # normal -z: slices stored head to feet
    "feet_first": (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "oblique": tuple(float(v) for v in (*_OBLIQUE[:, 0], *_OBLIQUE[:, 1])),
}


@dataclass(frozen=True)
class Spec:
    """A test series: (I, J, K) = (columns, rows, slices), LPS geometry, storage."""

    shape: tuple[int, int, int] = (6, 5, 7)
    orientation: tuple[float, ...] = ORIENTATIONS["axial"]
    origin_lps: tuple[float, float, float] = (-120.5, 80.25, -310.0)
    pixel_spacing: tuple[float, float] = (0.7, 0.9)  # (between rows, between columns)
    step_mm: float = 2.5
    dtype: str = "int16"
    bits_stored: int = 16
    slope: float = 1.0
    inter: float = 0.0

    def positions(self) -> np.ndarray:
        """(K, 3) IPP of the slices in K order, LPS mm."""
        normal = np.cross(self.orientation[:3], self.orientation[3:])
        return np.array(self.origin_lps) + np.outer(np.arange(self.shape[2]) * self.step_mm,
                                                    normal)


def ct_hu(spec: Spec, seed: int = 0) -> np.ndarray:
    """(I, J, K) float32 HU on the spec's rescale grid, within its stored range."""
    info = np.iinfo(np.dtype(spec.dtype))
    low = max(info.min, -(2 ** (spec.bits_stored - 1)) if info.min < 0 else 0)
    high = min(info.max, 2 ** (spec.bits_stored - (1 if info.min < 0 else 0)) - 1)
    raw = np.random.default_rng(seed).integers(max(low, -1000), min(high, 3000),
                                               size=spec.shape)
    return (raw * spec.slope + spec.inter).astype(np.float32)


def write_ct_series(folder: Path, hu: np.ndarray, spec: Spec, *, description: str = "AVG",
                    series_uid: str | None = None, seed: int = 0,
                    positions: np.ndarray | None = None,
                    edit: Callable[[int, Dataset], None] | None = None) -> list[Path]:
    """Write ``hu`` ((I, J, K) HU) as a CT series into ``folder`` with pydicom: shuffled file
    names and instance numbers; ``positions`` (K, 3) overrides the IPPs; ``edit(k, ds)`` may
    change slice ``k`` before it is saved. Returns the files in K order."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    series_uid = series_uid or generate_uid()
    study, frame = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
    positions = spec.positions() if positions is None else positions
    numbers = rng.permutation(spec.shape[2]) + 1
    files = []
    for k in range(spec.shape[2]):
        uid = generate_uid()
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = UID(CT_STORAGE)
        ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
        ds.SOPClassUID, ds.SOPInstanceUID = CT_STORAGE, uid
        ds.Modality, ds.PatientID, ds.PatientName = "CT", "PAT-7", "Doe^Jane"
        ds.StudyInstanceUID, ds.FrameOfReferenceUID = study, frame
        ds.SeriesInstanceUID, ds.SeriesDescription, ds.SeriesNumber = series_uid, description, 3
        ds.InstanceNumber = int(numbers[k])
        ds.ImagePositionPatient = [f"{v:.6f}" for v in positions[k]]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in spec.orientation]
        ds.PixelSpacing = [str(v) for v in spec.pixel_spacing]
        ds.SliceThickness = str(spec.step_mm)
        ds.RescaleSlope, ds.RescaleIntercept = str(spec.slope), str(spec.inter)
        raw = np.rint((hu[:, :, k] - spec.inter) / spec.slope).astype(spec.dtype)
        ds.set_pixel_data(np.ascontiguousarray(raw.T), "MONOCHROME2", spec.bits_stored,
                          generate_instance_uid=False)
        if edit is not None:
            edit(k, ds)
        path = folder / f"IM{rng.integers(10**8):08d}"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def sitk_reading(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK's reading of the one series in ``folder``: ((I, J, K) float HU, RAS affine)."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    lps = np.eye(4)
    lps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    hu = sitk.GetArrayFromImage(image).transpose(2, 1, 0).astype(np.float64)
    return hu, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


GEOMETRIES = {
    "axial_int16": Spec(),
    "swapped_uint12": Spec(orientation=ORIENTATIONS["swapped"], dtype="uint16", bits_stored=12,
                           inter=-1024.0),
    "feet_first_scaled": Spec(orientation=ORIENTATIONS["feet_first"], slope=0.5, inter=-1000.0),
    "oblique": Spec(orientation=ORIENTATIONS["oblique"], shape=(7, 4, 9), step_mm=1.25),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_reading_matches_simpleitk(tmp_path: Path, name: str) -> None:
    spec = GEOMETRIES[name]
    hu = ct_hu(spec, seed=len(name))
    write_ct_series(tmp_path / "s", hu, spec)
    vol = read_series(tmp_path / "s")
    ref_hu, ref_affine = sitk_reading(tmp_path / "s")
    np.testing.assert_allclose(vol.affine, ref_affine, atol=1e-5)
    np.testing.assert_array_equal(vol.hu, ref_hu.astype(np.float32))
    np.testing.assert_array_equal(vol.hu, hu)  # and the HU the series was written from
    assert vol.hu.dtype == np.float32
    assert vol.path == tmp_path / "s"
    assert vol.header.get_data_dtype() == np.dtype(spec.dtype)
    assert vol.header.get_slope_inter() == (spec.slope, spec.inter)
    np.testing.assert_allclose(vol.spacing_mm, (*spec.pixel_spacing[::-1], spec.step_mm))


def test_voxel_positions_are_the_slice_positions(tmp_path: Path) -> None:
    spec = GEOMETRIES["feet_first_scaled"]
    files = write_ct_series(tmp_path / "s", ct_hu(spec), spec)
    vol = read_series(tmp_path / "s")
    for k, path in enumerate(files):  # files come back in K order, whatever their names
        ipp_lps = np.array([float(v) for v in pydicom.dcmread(path).ImagePositionPatient])
        np.testing.assert_allclose(vol.affine @ [0, 0, k, 1], [*(ipp_lps * [-1, -1, 1]), 1],
                                   atol=1e-6)


def test_source_records_identity_storage_and_slice_order(tmp_path: Path) -> None:
    spec = GEOMETRIES["swapped_uint12"]
    files = write_ct_series(tmp_path / "s", ct_hu(spec), spec, series_uid="1.2.3.4")
    series: DicomSeries = load_series(tmp_path / "s")
    source = series.source
    assert (source.series_uid, source.series_description, source.series_number) == \
        ("1.2.3.4", "AVG", 3)
    assert source.patient_id == "PAT-7"
    assert source.study_uid.endswith(".1")
    assert source.frame_of_reference_uid.endswith(".2")
    assert source.sop_instance_uids == tuple(pydicom.dcmread(p).SOPInstanceUID for p in files)
    assert (source.storage.bits_allocated, source.storage.bits_stored,
            source.storage.pixel_representation) == (16, 12, 0)
    assert source.storage.rescale == ((1.0, -1024.0),) * 7
    assert source.geometry.shape == spec.shape


def test_rle_compressed_series_reads_like_the_uncompressed_one(tmp_path: Path) -> None:
    spec = GEOMETRIES["axial_int16"]
    hu = ct_hu(spec)
    write_ct_series(tmp_path / "rle", hu, spec, edit=lambda _k, ds: ds.compress(RLELossless))
    assert pydicom.dcmread(next((tmp_path / "rle").iterdir())).file_meta.TransferSyntaxUID \
        == RLELossless
    np.testing.assert_array_equal(read_series(tmp_path / "rle").hu, hu)


def test_find_series_is_recursive_and_skips_what_is_not_dicom(tmp_path: Path) -> None:
    spec = Spec(shape=(4, 4, 3))
    write_ct_series(tmp_path / "p" / "a", ct_hu(spec), spec, description="CT Gated 50.0A")
    write_ct_series(tmp_path / "p" / "b" / "deep", ct_hu(spec), spec, description="AVG")
    (tmp_path / "p" / "notes.txt").write_text("not DICOM")
    shutil.copy(next((tmp_path / "p" / "a").iterdir()), tmp_path / "p" / ".hidden")
    found = find_series(tmp_path / "p")
    assert [(s.description, s.n_slices, s.modality) for s in found] == \
        [("AVG", 3, "CT"), ("CT Gated 50.0A", 3, "CT")]
    assert found[0].folder == tmp_path / "p" / "b" / "deep"
    assert found[1].phase_percent == 50.0
    assert found[0].phase_percent is None
    assert is_dicom_folder(tmp_path / "p")
    assert is_dicom_folder(tmp_path / "p" / "b")
    (tmp_path / "nifti").mkdir()
    (tmp_path / "nifti" / "x.nii.gz").write_bytes(b"\x1f\x8b" + bytes(200))
    assert not is_dicom_folder(tmp_path / "nifti")
    assert not is_dicom_folder(tmp_path / "p" / "notes.txt")
    assert find_series(tmp_path / "nifti") == []


@pytest.mark.parametrize(("description", "percent"), [
    ("Gated 0.0A", 0.0), ("CT 4D  gated 50.0A", 50.0), ("GATED 90%", 90.0), ("AVG", None),
    ("MIP", None)])
def test_gated_phase_percent(description: str, percent: float | None) -> None:
    assert gated_phase_percent(description) == percent


def _tree_of_phases(root: Path) -> list:
    spec = Spec(shape=(4, 4, 3))
    for k, name in enumerate(["AVG", "MIP", "CT Gated 0.0A", "CT Gated 10.0A", "Gated 50.0A"]):
        write_ct_series(root / f"s{k}", ct_hu(spec), spec, description=name)
    return find_series(root)


def test_pick_series_by_description(tmp_path: Path) -> None:
    series = _tree_of_phases(tmp_path)
    assert pick_series(series, "*avg*").description == "AVG"
    assert pick_series(series, "*Gated 0.0A*").description == "CT Gated 0.0A"
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}: no series description matches "
                                                  f"'*Gated 20.0A*'") + r".*'MIP' \(CT, 3 files"):
        pick_series(series, "*Gated 20.0A*", tmp_path)
    with pytest.raises(DataError, match=r": 3 series descriptions match '\*gated\*': "
                                        r"'CT Gated 0\.0A'.*give a more specific pattern"):
        pick_series(series, "*gated*")


def test_series_uid_picks_one_of_several(tmp_path: Path) -> None:
    spec = Spec(shape=(4, 4, 3))
    hu = ct_hu(spec, seed=3)
    write_ct_series(tmp_path / "a", hu, spec, series_uid="1.2.3.10")
    write_ct_series(tmp_path / "b", ct_hu(spec, seed=4), spec, series_uid="1.2.3.11")
    np.testing.assert_array_equal(read_series(tmp_path, series_uid="1.2.3.10").hu, hu)
    files = sorted((tmp_path / "a").iterdir())
    np.testing.assert_array_equal(read_series(files).hu, hu)


# --- refusals: each names the folder (or the file) and the problem ----------------------------

def _refused(folder: Path, pattern: str, source: Path | list[Path] | None = None) -> None:
    with pytest.raises(DataError) as info:
        read_series(source if source is not None else folder)
    message = str(info.value)
    assert str(folder) in message, message
    assert re.search(pattern, message), message


def test_refuses_several_series_listing_them(tmp_path: Path) -> None:
    spec = Spec(shape=(4, 4, 3))
    write_ct_series(tmp_path / "mix", ct_hu(spec), spec, description="AVG")
    write_ct_series(tmp_path / "mix", ct_hu(spec), spec, description="Gated 0.0A", seed=1)
    _refused(tmp_path / "mix", r"2 series where one was expected: 'AVG' \(CT, 3 files, UID "
                               r".*'Gated 0\.0A' \(CT, 3 files")


def test_one_ct_series_beside_non_ct_objects_is_read(tmp_path: Path) -> None:
    spec = Spec(shape=(4, 4, 3))
    hu = ct_hu(spec)
    write_ct_series(tmp_path / "export", hu, spec, description="AVG")
    write_ct_series(tmp_path / "export", ct_hu(spec), spec, description="contours", seed=1,
                    edit=lambda _k, ds: setattr(ds, "Modality", "RTSTRUCT"))
    np.testing.assert_array_equal(read_series(tmp_path / "export").hu, hu)
    write_ct_series(tmp_path / "export", ct_hu(spec), spec, description="MIP", seed=2)
    _refused(tmp_path / "export", r"3 series where one was expected: 'AVG' \(CT.*'MIP' \(CT.*"
                                  r"'contours' \(RTSTRUCT")


def test_refuses_an_empty_folder_and_a_missing_one(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    _refused(tmp_path / "empty", r"no DICOM series found")
    _refused(tmp_path / "gone", r"does not exist")


def test_refuses_not_ct(tmp_path: Path) -> None:
    spec = Spec(shape=(4, 4, 3))
    write_ct_series(tmp_path / "mr", ct_hu(spec), spec,
                    edit=lambda _k, ds: setattr(ds, "Modality", "MR"))
    _refused(tmp_path / "mr", r"Modality is 'MR', not 'CT'")


def test_refuses_no_pixel_data(tmp_path: Path) -> None:
    spec = Spec(shape=(4, 4, 3))
    write_ct_series(tmp_path / "nopix", ct_hu(spec), spec,
                    edit=lambda k, ds: delattr(ds, "PixelData") if k == 1 else None)
    _refused(tmp_path / "nopix", r"no pixel data")


def test_refuses_a_multi_frame_object(tmp_path: Path) -> None:
    spec = Spec(shape=(4, 4, 3))
    write_ct_series(tmp_path / "mf", ct_hu(spec), spec,
                    edit=lambda _k, ds: setattr(ds, "NumberOfFrames", 3))
    _refused(tmp_path / "mf", r"multi-frame \(enhanced\) CT")


def test_refuses_a_single_slice(tmp_path: Path) -> None:
    spec = Spec(shape=(4, 4, 1))
    write_ct_series(tmp_path / "one", ct_hu(spec), spec)
    _refused(tmp_path / "one", r"the series has one slice")


def test_refuses_gantry_tilt(tmp_path: Path) -> None:
    spec = Spec()
    tilted = spec.positions() + np.outer(np.arange(7), [0.0, 2.5 * math.tan(math.radians(15)),
                                                        0.0])
    write_ct_series(tmp_path / "tilt", ct_hu(spec), spec, positions=tilted,
                    edit=lambda _k, ds: setattr(ds, "GantryDetectorTilt", "15"))
    _refused(tmp_path / "tilt", r"gantry tilt: the slices are stacked 15\.00 deg off their "
                                r"normal \(GantryDetectorTilt 15")


def test_refuses_a_slice_shifted_in_plane(tmp_path: Path) -> None:
    spec = Spec()
    shifted = spec.positions()
    shifted[3, 0] += 1.0
    write_ct_series(tmp_path / "shift", ct_hu(spec), spec, positions=shifted)
    _refused(tmp_path / "shift", r"shifted 1 mm in plane .* do not form one volume")


def test_refuses_a_missing_slice_with_positions(tmp_path: Path) -> None:
    spec = Spec()
    files = write_ct_series(tmp_path / "gap", ct_hu(spec), spec)
    files[4].unlink()
    _refused(tmp_path / "gap", r"missing slices: a gap of 5 mm between .* at -302\.5, -297\.5 "
                               r"mm along the slice normal\), median spacing 2\.5 mm")


def test_refuses_uneven_spacing_with_positions(tmp_path: Path) -> None:
    spec = Spec()
    uneven = spec.positions()
    uneven[4:, 2] += 0.5
    write_ct_series(tmp_path / "uneven", ct_hu(spec), spec, positions=uneven)
    _refused(tmp_path / "uneven", r"uneven slice spacing: steps from 2\.5 to 3 mm \(median 2\.5 "
                                  r"mm.*slices 2-5 \(in position order\) at -305, -302\.5, "
                                  r"-299\.5, -297 mm")


def test_refuses_slices_at_one_position(tmp_path: Path) -> None:
    spec = Spec()
    twice = spec.positions()
    twice[5] = twice[4]
    write_ct_series(tmp_path / "dup", ct_hu(spec), spec, positions=twice)
    _refused(tmp_path / "dup", r"slices share a position, .* at -300 mm along the normal "
                               r"\(several phases or acquisitions in one series\?\)")


@pytest.mark.parametrize(("what", "edit", "pattern"), [
    ("size", lambda ds: ds.set_pixel_data(np.zeros((5, 7), np.int16), "MONOCHROME2", 16,
                                          generate_instance_uid=False),
     r"differ in size \(rows, columns\): .* has \(5, 6\), .* has \(5, 7\)"),
    ("orientation", lambda ds: setattr(ds, "ImageOrientationPatient", [0, 1, 0, 1, 0, 0]),
     r"differ in ImageOrientationPatient"),
    ("spacing", lambda ds: setattr(ds, "PixelSpacing", [0.8, 0.9]), r"differ in PixelSpacing"),
])
def test_refuses_mixed_sizes_and_orientations(tmp_path: Path, what: str,
                                              edit: Callable[[Dataset], None],
                                              pattern: str) -> None:
    spec = Spec()
    write_ct_series(tmp_path / what, ct_hu(spec), spec,
                    edit=lambda k, ds: edit(ds) if k == 3 else None)
    _refused(tmp_path / what, pattern + r".*mixes images of different sizes or orientations")


def _fake_compressed(syntax: UID) -> Callable[[int, Dataset], None]:
    """Relabel a slice as encapsulated in ``syntax`` (its bytes are never decoded)."""
    def edit(_k: int, ds: Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = pydicom.encaps.encapsulate([bytes(64)])
        ds["PixelData"].VR = "OB"
    return edit


def test_refuses_a_transfer_syntax_without_decoder(tmp_path: Path) -> None:
    spec = Spec(shape=(4, 4, 3))
    write_ct_series(tmp_path / "mpeg", ct_hu(spec), spec, edit=_fake_compressed(MPEG2MPML))
    _refused(tmp_path / "mpeg", r"transfer syntax MPEG2 .* cannot be decoded")


@pytest.mark.skipif(pydicom.pixels.get_decoder(JPEGLosslessSV1).is_available,
                    reason="a JPEG Lossless decoder plugin is installed here")
def test_refuses_jpeg_lossless_when_no_plugin_decodes_it(tmp_path: Path) -> None:
    spec = Spec(shape=(4, 4, 3))
    write_ct_series(tmp_path / "jpeg", ct_hu(spec), spec, edit=_fake_compressed(JPEGLosslessSV1))
    _refused(tmp_path / "jpeg", r"compressed transfer syntax JPEG Lossless.*needs a decoder that "
                                r"is not installed: install pylibjpeg")


def test_refusal_through_a_file_list_names_the_folder(tmp_path: Path) -> None:
    spec = Spec()
    files = write_ct_series(tmp_path / "gap", ct_hu(spec), spec)
    _refused(tmp_path / "gap", "missing slices", source=files[:3] + files[4:])


def test_per_slice_rescale_is_applied_slice_by_slice(tmp_path: Path) -> None:
    spec = replace(Spec(), slope=1.0, inter=0.0)
    hu = ct_hu(spec)
    scaled = hu.copy()
    scaled[:, :, 2] = hu[:, :, 2] * 2 - 1000  # slice 2 stored with slope 2, intercept -1000...

    def edit(k: int, ds: Dataset) -> None:
        if k == 2:
            ds.RescaleSlope, ds.RescaleIntercept = "2", "-1000"

    write_ct_series(tmp_path / "s", hu, spec, edit=edit)  # ...holding the same stored values
    vol = read_series(tmp_path / "s")
    np.testing.assert_array_equal(vol.hu, scaled)
    assert vol.header.get_data_dtype() == np.float32  # no single slope/intercept to mirror


def test_refuses_a_zero_rescale_slope(tmp_path: Path) -> None:
    spec = Spec(shape=(4, 4, 3))
    write_ct_series(tmp_path / "zero", ct_hu(spec), spec,
                    edit=lambda _k, ds: setattr(ds, "RescaleSlope", "0"))
    _refused(tmp_path / "zero", r"RescaleSlope 0\.0 / RescaleIntercept 0\.0 cannot give HU")
