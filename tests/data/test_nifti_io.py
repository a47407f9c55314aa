"""NIfTI read/write: HU through the header's scaling, geometry round trips, clear errors."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from data.nifti_io import load_volume, nifti_stem, read_geometry, save_volume
from tests.conftest import LPS_AFFINE, OBLIQUE_AFFINE, RAS_AFFINE, ct_like, write_nifti
from util.errors import DataError

STORAGE = [  # (dtype, slope, inter)
    (np.int16, 1.0, 0.0),
    (np.uint16, 1.0, -1024.0),
    (np.int16, 2.0, -1000.0),
    (np.float32, 1.0, 0.0),
]


@pytest.mark.parametrize(("dtype", "slope", "inter"), STORAGE)
@pytest.mark.parametrize("affine", [RAS_AFFINE, LPS_AFFINE, OBLIQUE_AFFINE])
@pytest.mark.parametrize("n_slices", [7, 8])
def test_round_trip_keeps_hu_shape_affine_and_storage(tmp_path, dtype, slope, inter, affine,
                                                      n_slices):
    hu = ct_like((6, 5, n_slices))
    if slope != 1.0:
        hu = np.rint((hu - inter) / slope) * slope + inter  # representable values
    src = write_nifti(tmp_path / "src.nii.gz", hu, affine, dtype, slope, inter)
    vol = load_volume(src)
    assert vol.hu.dtype == np.float32
    np.testing.assert_array_equal(vol.hu, hu)
    out = save_volume(vol.hu, vol, tmp_path / "out.nii.gz")
    img = nib.load(out)
    assert img.shape == hu.shape
    assert img.get_data_dtype() == np.dtype(dtype)
    np.testing.assert_allclose(img.affine, affine, atol=1e-5)
    assert (img.dataobj.slope, img.dataobj.inter) == (slope, inter)
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), hu)
    assert not list(tmp_path.glob(".*tmp*"))


def test_save_rounds_to_source_grid_and_clips_to_storage_range(tmp_path):
    src = write_nifti(tmp_path / "u16.nii.gz", np.full((2, 2, 2), -1000.0), RAS_AFFINE,
                      np.uint16, 1.0, -1024.0)
    vol = load_volume(src)
    pred = np.array([-1500.0, -1000.4, 12.6, 40.0, 0, 0, 0, 0]).reshape(2, 2, 2)
    img = nib.load(save_volume(pred, vol, tmp_path / "p.nii"))
    got = img.get_fdata().ravel()[:4]
    np.testing.assert_array_equal(got, [-1024.0, -1000.0, 13.0, 40.0])


def test_save_refuses_wrong_shape(tmp_path):
    vol = load_volume(write_nifti(tmp_path / "a.nii.gz", ct_like((4, 4, 3))))
    with pytest.raises(DataError, match=r"shape \(4, 4, 4\) does not match"):
        save_volume(np.zeros((4, 4, 4)), vol, tmp_path / "b.nii.gz")


def test_plain_nii_and_gz_give_same_hu(tmp_path):
    hu = ct_like((5, 4, 3))
    a = load_volume(write_nifti(tmp_path / "a.nii", hu))
    b = load_volume(write_nifti(tmp_path / "b.nii.gz", hu))
    np.testing.assert_array_equal(a.hu, b.hu)
    assert nifti_stem(tmp_path / "b.nii.gz") == "b"
    assert nifti_stem("x/P01.NII") == "P01"


def test_singleton_4d_accepted_and_squeezed(tmp_path):
    path = tmp_path / "t.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 3, 2, 1), np.int16), RAS_AFFINE), path)
    assert load_volume(path).hu.shape == (4, 3, 2)
    assert read_geometry(path)[0] == (4, 3, 2)


@pytest.mark.parametrize(("shape", "message"), [
    ((4, 3), "expected a 3-D volume, got shape"),
    ((4, 3, 2, 5), "4-D series of 5 frames"),
    ((4, 3, 2, 1, 2), "expected a 3-D volume"),
])
def test_wrong_dimensionality_refused_naming_file(tmp_path, shape, message):
    path = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4)), path)
    with pytest.raises(DataError, match=message) as err:
        load_volume(path)
    assert str(path) in str(err.value)


def test_nan_voxels_refused(tmp_path):
    hu = ct_like((3, 3, 3))
    hu[1, 1, 1] = np.nan
    path = write_nifti(tmp_path / "nan.nii.gz", hu, dtype=np.float32)
    with pytest.raises(DataError, match="1 voxels are NaN or Inf"):
        load_volume(path)


def test_truncated_and_foreign_files_refused(tmp_path):
    good = write_nifti(tmp_path / "g.nii.gz", ct_like((32, 32, 16)))
    truncated = tmp_path / "t.nii.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match=r"t\.nii\.gz: .*truncated or corrupt"):
        load_volume(truncated)
    text = tmp_path / "notes.nii.gz"
    text.write_bytes(gzip.compress(b"hello, not an image"))
    with pytest.raises(DataError, match=r"notes\.nii\.gz: not a readable NIfTI"):
        load_volume(text)
    with pytest.raises(DataError, match="no such file"):
        load_volume(tmp_path / "missing.nii.gz")
