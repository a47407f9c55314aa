"""CT slice stacks: every storage variant gives the same HU, oblique and non-axial volumes are
sliced along the axis nearest to superior-inferior (and say so), slices -> volume -> file keeps
HU and geometry."""

import logging

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.ct_volumes import load_slice_stack, slice_to_unit, unit_slices_to_hu
from data.nifti_io import load_volume, save_volume
from tests.conftest import LPS_AFFINE, OBLIQUE_AFFINE, RAS_AFFINE, write_nifti
from util.geometry import from_slice_stack

SHAPE = (6, 5, 7)
#: Voxel axis 1 runs superior-inferior: a volume stored coronal-first.
CORONAL_AFFINE = np.array([[0.9, 0, 0, -100.0], [0, 0, 0.8, -80.0], [0, 3.0, 0, -50.0],
                           [0, 0, 0, 1]])


def _anatomy() -> np.ndarray:
    """Integer HU, even (so that slope 2 stores them exactly), within uint16 - 1024."""
    return (np.random.default_rng(7).integers(-512, 1500, size=SHAPE) * 2).astype(np.float32)


@pytest.mark.parametrize(("name", "dtype", "slope", "inter", "lps"), [
    ("int16.nii.gz", np.int16, 1.0, 0.0, False),
    ("uint16_inter.nii.gz", np.uint16, 1.0, -1024.0, False),
    ("float32.nii.gz", np.float32, 1.0, 0.0, False),
    ("slope2.nii.gz", np.int16, 2.0, -1000.0, False),
    ("plain.nii", np.int16, 1.0, 0.0, False),
    ("lps.nii.gz", np.int16, 1.0, 0.0, True),
    ("lps_uint16.nii", np.uint16, 1.0, -1024.0, True),
])
def test_storage_variants_give_identical_hu(tmp_path, name, dtype, slope, inter, lps):
    hu = _anatomy()
    reference = load_slice_stack(write_nifti(tmp_path / "ref.nii.gz", hu))
    # LPS storage of the same anatomy: x and y reversed in the voxel order and in the affine
    stored, affine = (hu[::-1, ::-1, :], LPS_AFFINE) if lps else (hu, RAS_AFFINE)
    path = write_nifti(tmp_path / name, stored, affine, dtype, slope, inter)
    variant = load_slice_stack(path)
    assert nib.load(path).get_data_dtype() == np.dtype(dtype)
    np.testing.assert_array_equal(variant.hu, reference.hu)
    assert variant.stack_spacing_mm == pytest.approx(reference.stack_spacing_mm)
    np.testing.assert_array_equal(load_volume(path).hu, stored)


@pytest.mark.parametrize(("affine", "axis", "logged"), [
    (OBLIQUE_AFFINE, 2, True), (CORONAL_AFFINE, 1, False), (RAS_AFFINE, 2, False)])
def test_oblique_and_non_axial_slice_along_nearest_axis(tmp_path, caplog, affine, axis, logged):
    hu = _anatomy()
    path = write_nifti(tmp_path / "v.nii.gz", hu, affine)
    with caplog.at_level(logging.INFO, logger="data.ct_volumes"):
        stack = load_slice_stack(path)
    assert stack.hu.shape[0] == SHAPE[axis]
    message = f"{path}: oblique acquisition (6.8 deg); slicing along voxel axis {axis}"
    assert (message in caplog.text) == logged


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(affine=st.sampled_from([RAS_AFFINE, LPS_AFFINE, OBLIQUE_AFFINE, CORONAL_AFFINE]),
       storage=st.sampled_from([(np.int16, 1.0, 0.0), (np.uint16, 1.0, -1024.0)]),
       shape=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(2, 6)),
       seed=st.integers(0, 2**16))
def test_property_volume_slices_volume_file_keeps_hu_and_geometry(tmp_path, affine, storage,
                                                                    shape, seed):
    hu = np.random.default_rng(seed).integers(-1024, 3071, size=shape).astype(np.float32)
    path = write_nifti(tmp_path / "src.nii.gz", hu, affine, *storage)
    stack = load_slice_stack(path)
    unit = torch.stack([slice_to_unit(s, -1024.0, 3071.0) for s in stack.hu])
    back = from_slice_stack(unit_slices_to_hu(unit, stack.hu.shape[1:], -1024.0, 3071.0),
                            stack.info.affine)
    out = nib.load(save_volume(back, stack.info, tmp_path / "out.nii.gz"))
    np.testing.assert_array_equal(out.get_fdata(dtype=np.float32), hu)
    np.testing.assert_allclose(out.affine, nib.load(path).affine, atol=1e-6)
    assert out.get_data_dtype() == np.dtype(storage[0])
