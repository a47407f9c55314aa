"""NIfTI read/write: HU through the header's scaling, geometry round trips, clear errors."""

import gzip
import logging

import nibabel as nib
import numpy as np
import pytest

from data.nifti_io import load_volume, nifti_stem, read_geometry, read_info, save_volume
from tests.conftest import (
    LPS_AFFINE,
    OBLIQUE_AFFINE,
    RAS_AFFINE,
    ct_like,
    write_nifti,
    write_raw_header_nifti,
)
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


def test_save_rounds_to_source_grid_and_widens_instead_of_clipping(tmp_path, caplog):
    src = write_nifti(tmp_path / "u16.nii.gz", np.full((2, 2, 2), -1000.0), RAS_AFFINE,
                      np.uint16, 1.0, -1024.0)
    vol = load_volume(src)
    pred = np.array([-1024.2, -1000.4, 12.6, 40.0, 0, 0, 0, 0]).reshape(2, 2, 2)
    img = nib.load(save_volume(pred, vol, tmp_path / "p.nii"))
    assert img.get_data_dtype() == np.uint16  # -1024..40 HU fit uint16 with inter -1024
    np.testing.assert_array_equal(img.get_fdata().ravel()[:4], [-1024.0, -1000.0, 13.0, 40.0])
    pred[0, 0, 0] = -1500.0  # below what uint16 with inter -1024 holds: widened, not clipped
    with caplog.at_level(logging.WARNING, logger="data.nifti_io"):
        img = nib.load(save_volume(pred, vol, tmp_path / "q.nii"))
    assert img.get_data_dtype() == np.int16
    assert (img.dataobj.slope, img.dataobj.inter) == (1.0, -1024.0)
    np.testing.assert_array_equal(img.get_fdata().ravel()[:4], [-1500.0, -1000.0, 13.0, 40.0])
    assert "storage uint16 (scl_slope 1, scl_inter -1024); written as int16" in caplog.text


@pytest.mark.parametrize(("dtype", "inter", "fitting"), [
    (np.int8, 0.0, (-128.0, 127.0)),
    (np.uint8, -1024.0, (-1024.0, -769.0)),
])
def test_8bit_source_keeps_its_type_only_while_the_hu_fit_then_int16(tmp_path, caplog, dtype,
                                                                     inter, fitting):
    shape = (5, 4, 7)
    src = write_nifti(tmp_path / "avg.nii.gz", np.full(shape, fitting[0]), OBLIQUE_AFFINE,
                      dtype, 1.0, inter)
    vol = load_volume(src)
    low_high = np.linspace(*fitting, num=np.prod(shape)).round().reshape(shape)
    with caplog.at_level(logging.WARNING, logger="data.nifti_io"):
        kept = nib.load(save_volume(low_high, vol, tmp_path / "kept.nii.gz"))
        assert not caplog.records
        pred = ct_like(shape)  # -1000..1500 HU: more than 8 bits hold
        out = save_volume(pred, vol, tmp_path / "p.nii.gz")
    assert kept.get_data_dtype() == np.dtype(dtype)
    np.testing.assert_array_equal(kept.get_fdata(), low_high)
    img = nib.load(out)
    assert img.get_data_dtype() == np.int16
    assert (img.dataobj.slope, img.dataobj.inter) == (1.0, inter)
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), pred)
    np.testing.assert_allclose(img.affine, OBLIQUE_AFFINE, atol=1e-5)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    low, high = int(pred.min()), int(pred.max())
    assert record.getMessage().startswith(f"{out}: HU {low}..{high} do not fit the source {src}")
    assert f"storage {np.dtype(dtype).name} (scl_slope 1, scl_inter {inter:g}); written as " \
        f"int16 instead" in record.getMessage()


@pytest.mark.parametrize(("slope", "chosen"), [(0.01, np.int32), (1e-7, np.float32)])
def test_hu_beyond_int16_on_the_source_scaling_go_to_int32_then_float32(tmp_path, caplog, slope,
                                                                        chosen):
    src = write_nifti(tmp_path / "fine.nii", np.zeros((3, 3, 2)), RAS_AFFINE, np.int16, slope)
    vol = load_volume(src)
    pred = ct_like((3, 3, 2))
    with caplog.at_level(logging.WARNING, logger="data.nifti_io"):
        img = nib.load(save_volume(pred, vol, tmp_path / "p.nii"))
    assert img.get_data_dtype() == np.dtype(chosen)
    np.testing.assert_allclose(img.get_fdata(), pred, atol=1e-3)
    assert f"written as {np.dtype(chosen).name} instead" in caplog.text


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


@pytest.mark.parametrize(("qform_code", "pixdim", "message"), [
    (1, (0.9, 0.9, 0.0), r"axis K \(pixdim\[3\]\) is 0; the affine would come from the qform"),
    (0, (0.9, 0.9, 0.0), r"axis K \(pixdim\[3\]\) is 0; the affine would come from pixdim "
                         r"alone \(qform_code and sform_code are 0\)"),
    (1, (0.0, 0.9, 2.5), r"axis I \(pixdim\[1\]\) is 0"),
    (1, (0.9, float("nan"), 2.5), r"axis J \(pixdim\[2\]\) is nan"),
])
@pytest.mark.parametrize("reader", [load_volume, read_info, read_geometry])
def test_zero_voxel_size_without_sform_is_refused_not_made_1mm(tmp_path, qform_code, pixdim,
                                                               message, reader):
    path = write_raw_header_nifti(tmp_path / "z.nii.gz", ct_like((4, 3, 5)), RAS_AFFINE,
                                  qform_code=qform_code, sform_code=0, pixdim=pixdim)
    with pytest.raises(DataError, match=rf"^{tmp_path / 'z.nii.gz'}: the voxel size along "
                                        rf"{message}.*no usable geometry"):
        reader(path)


def test_a_valid_sform_gives_the_geometry_whatever_pixdim(tmp_path):
    hu = ct_like((4, 3, 5))
    with_sform = write_raw_header_nifti(tmp_path / "s.nii", hu, OBLIQUE_AFFINE, qform_code=1,
                                        sform_code=2, pixdim=(0.9, 0.9, 0.0))
    vol = load_volume(with_sform)
    np.testing.assert_allclose(vol.affine, OBLIQUE_AFFINE, atol=1e-5)
    np.testing.assert_allclose(read_info(with_sform).affine, OBLIQUE_AFFINE, atol=1e-5)
    np.testing.assert_array_equal(vol.hu, hu)
    written = nib.load(save_volume(vol.hu, vol, tmp_path / "out.nii"))
    np.testing.assert_allclose(written.header.get_zooms(), vol.spacing_mm, rtol=1e-6)
    without = write_raw_header_nifti(tmp_path / "q.nii", hu, OBLIQUE_AFFINE, qform_code=1,
                                     sform_code=0, pixdim=(0.9, 0.9, 0.0))
    with pytest.raises(DataError, match="no usable geometry"):
        load_volume(without)
