"""data.reorient: a NIfTI file in another voxel order keeps raw values, scaling and world
positions."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from data.nifti_io import load_volume
from data.reorient import reoriented_bytes, reoriented_image
from data.voxel_grid import axcodes
from tests.conftest import OBLIQUE_AFFINE, ct_like, write_raw_header_nifti
from util.errors import DataError


def _source(path: Path, n_slices: int) -> Path:
    """Oblique int16 volume with slope 2 / inter -1000, qform code 1, sform code 2, slice dim 2."""
    raw = (ct_like((6, 5, n_slices)) / 2).astype(np.int16)
    img = nib.Nifti1Image(raw, None)
    img.header.set_qform(OBLIQUE_AFFINE, code=1)
    img.header.set_sform(OBLIQUE_AFFINE, code=2)
    img.header.set_slope_inter(2.0, -1000.0)
    img.header.set_dim_info(slice=2)
    nib.save(img, path)
    return path


@pytest.mark.parametrize("n_slices", [7, 8])
@pytest.mark.parametrize("target", ["RAS", "SLA", "PIR"])
def test_reordered_voxels_keep_raw_values_scaling_and_world_positions(tmp_path: Path,
                                                                      n_slices: int,
                                                                      target: str) -> None:
    src = _source(tmp_path / "src.nii.gz", n_slices)
    codes = axcodes(OBLIQUE_AFFINE)
    out = tmp_path / "out.nii"
    out.write_bytes(reoriented_bytes(src, codes, target))
    img, orig = nib.load(out), nib.load(src)
    assert axcodes(img.affine) == target
    assert img.get_data_dtype() == np.dtype(np.int16)
    assert (img.dataobj.slope, img.dataobj.inter) == (2.0, -1000.0)
    assert img.header.get_qform(coded=True)[1] == 1
    assert img.header.get_sform(coded=True)[1] == 2
    assert sorted(img.shape) == sorted(orig.shape)
    np.testing.assert_allclose(img.header.get_zooms(), nib.affines.voxel_sizes(img.affine),
                               rtol=1e-5)
    slice_axis = img.header.get_dim_info()[2]
    assert img.shape[slice_axis] == n_slices
    vol, src_vol = load_volume(out), load_volume(src)
    for ijk in np.ndindex(*vol.hu.shape):  # every voxel: same HU at the same world position
        src_ijk = np.rint(np.linalg.solve(src_vol.affine, vol.affine @ [*ijk, 1])[:3])
        assert vol.hu[ijk] == src_vol.hu[tuple(src_ijk.astype(int))]
    back = reoriented_image(out, target, codes)
    np.testing.assert_array_equal(np.asanyarray(back.dataobj),  # raw values, unscaled
                                  np.asanyarray(orig.dataobj.get_unscaled()))
    np.testing.assert_allclose(back.affine, orig.affine, atol=1e-4)


def test_same_input_gives_same_bytes(tmp_path: Path) -> None:
    src = _source(tmp_path / "src.nii.gz", 5)
    codes = axcodes(OBLIQUE_AFFINE)
    assert reoriented_bytes(src, codes, "RAS") == reoriented_bytes(src, codes, "RAS")


def test_file_without_qform_or_sform_is_refused(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.zeros((4, 3, 2), np.int16), None)
    img.header.set_qform(None, code=0)
    img.header.set_sform(None, code=0)
    path = tmp_path / "bare.nii"
    nib.save(img, path)
    with pytest.raises(DataError, match=r"bare\.nii: has neither a qform nor an sform"):
        reoriented_image(path, axcodes(nib.load(path).affine), "RAS")


@pytest.mark.parametrize("qform_code", [1, 0])
def test_zero_voxel_size_without_sform_is_refused_not_made_1mm(tmp_path: Path,
                                                                qform_code: int) -> None:
    path = write_raw_header_nifti(tmp_path / "z.nii.gz", ct_like((4, 3, 5)), OBLIQUE_AFFINE,
                                  qform_code=qform_code, sform_code=0, pixdim=(0.8, 0.9, 0.0))
    with pytest.raises(DataError, match=r"z\.nii\.gz: the voxel size along axis K "
                                        r"\(pixdim\[3\]\) is 0.*no usable geometry"):
        reoriented_image(path, "LPS", "RAS")


def test_unreadable_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.nii.gz"
    _source(path, 5)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"cut\.nii\.gz: cannot be read for reordering"):
        reoriented_image(path, axcodes(OBLIQUE_AFFINE), "RAS")
