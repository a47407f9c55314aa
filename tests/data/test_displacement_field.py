"""Displacement-field NIfTI files: stack frame <-> world mm, the file ITK and 3D Slicer read, and
the sign of the convention (phase0(x) = AVG(x + u(x)))."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from data.displacement_field import (
    DESCRIP,
    read_displacement_field,
    stack_field_to_world,
    world_to_stack_field,
    write_displacement_field,
)
from data.nifti_io import read_info
from tests.conftest import (
    LPS_AFFINE,
    OBLIQUE_AFFINE,
    RAS_AFFINE,
    write_nifti,
    write_raw_header_nifti,
)
from util.errors import DataError
from util.geometry import from_slice_stack, stack_affine, stack_spacing_mm, to_slice_stack


def _rotated_lps(degrees: float) -> np.ndarray:
    """LPS_AFFINE turned about the z axis: oblique, orthonormal axes (which ITK accepts)."""
    t = np.radians(degrees)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    return rot @ LPS_AFFINE


#: Voxel orders a CT may be stored in: RAS, LPS, axial axis first (permuted), rotated.
AFFINES = {
    "ras": RAS_AFFINE,
    "lps": LPS_AFFINE,
    "permuted": LPS_AFFINE[:, [2, 0, 1, 3]],
    "rotated": _rotated_lps(8.0),
}
SHAPE = (7, 8, 9)


def voxel_world(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """(I, J, K, 3) RAS mm of every voxel centre."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def load_nifti(path: Path) -> nib.Nifti1Image:
    """``path`` opened with nibabel, as the NIfTI-1 image it must be."""
    img = nib.load(path)
    assert isinstance(img, nib.Nifti1Image)
    return img


def grid_centre_mm(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """(3,) RAS mm of the centre of a grid."""
    return affine[:3, :3] @ ((np.array(shape) - 1) / 2.0) + affine[:3, 3]


def phantom_hu(world_mm: np.ndarray, centre_mm: np.ndarray) -> np.ndarray:
    """A smooth blob (HU) at world points (..., 3) mm: air around a 1000 HU Gaussian centred
    at ``centre_mm``."""
    r2 = (((world_mm - centre_mm) / [4.0, 5.0, 7.0]) ** 2).sum(axis=-1)
    return (-1000.0 + 2000.0 * np.exp(-r2)).astype(np.float32)


def warp_through_file(moving: np.ndarray, affine: np.ndarray,
                      field_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """out(x) = moving(x + u(x)) at every voxel x, u read from ``field_path`` (world mm),
    linear interpolation: the resampling the file describes, done by hand. Returns out and
    where x + u(x) lies inside the grid."""
    field, field_affine = read_displacement_field(field_path)
    np.testing.assert_allclose(field_affine, affine, atol=1e-5)
    points = voxel_world(moving.shape, affine) + field
    ijk = (points - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    inside = ((ijk >= -1e-6) & (ijk <= np.array(moving.shape) - 1 + 1e-6)).all(axis=-1)
    out = ndimage.map_coordinates(moving, np.moveaxis(ijk, -1, 0), order=1, mode="nearest")
    return out, inside


@pytest.mark.parametrize("affine", [*AFFINES.values(), OBLIQUE_AFFINE], ids=[*AFFINES, "shear"])
def test_stack_affine_places_every_stack_voxel(affine):
    world = voxel_world(SHAPE, affine)
    stacked = np.stack([to_slice_stack(world[..., c], affine) for c in range(3)], axis=-1)
    stack_to_world = stack_affine(affine, SHAPE)
    shw = np.stack(np.meshgrid(*[np.arange(n) for n in stacked.shape[:3]], indexing="ij"), -1)
    np.testing.assert_allclose(shw @ stack_to_world[:3, :3].T + stack_to_world[:3, 3], stacked,
                               atol=1e-9)


def test_stack_affine_refuses_a_bad_shape():
    with pytest.raises(ValueError, match="3 positive voxel counts"):
        stack_affine(LPS_AFFINE, (4, 0, 3))


@pytest.mark.parametrize("name", ["ras", "lps", "permuted"])
def test_stack_steps_become_world_mm(name):
    """+2 slices is 2 slice thicknesses superior; +1 row one row posterior (-y); +1 column one
    column to the patient's left (-x): at every voxel, in the volume's voxel order."""
    affine = AFFINES[name]
    slice_mm, row_mm, col_mm = stack_spacing_mm(affine)
    stack_shape = to_slice_stack(np.empty(SHAPE), affine).shape
    for component, steps, expected in ((0, 2.0, (0.0, 0.0, 2.0 * slice_mm)),
                                       (1, 1.0, (0.0, -row_mm, 0.0)),
                                       (2, 1.0, (-col_mm, 0.0, 0.0))):
        field_vox = np.zeros((3, *stack_shape), dtype=np.float32)
        field_vox[component] = steps
        world = stack_field_to_world(field_vox, affine)
        assert world.shape == (*SHAPE, 3)
        assert world.dtype == np.float32
        np.testing.assert_allclose(world, np.broadcast_to(expected, world.shape), atol=1e-6)


@pytest.mark.parametrize("affine", [*AFFINES.values(), OBLIQUE_AFFINE], ids=[*AFFINES, "shear"])
def test_world_to_stack_inverts_stack_to_world(affine):
    stack_shape = to_slice_stack(np.empty(SHAPE), affine).shape
    field_vox = np.random.default_rng(0).normal(size=(3, *stack_shape)).astype(np.float32)
    world = stack_field_to_world(field_vox, affine)
    np.testing.assert_allclose(world_to_stack_field(world, affine), field_vox, atol=1e-5)


def test_bad_field_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(3, S, H, W\)"):
        stack_field_to_world(np.zeros((2, 4, 4, 4)), LPS_AFFINE)
    with pytest.raises(ValueError, match=r"\(I, J, K, 3\)"):
        world_to_stack_field(np.zeros((4, 4, 4)), LPS_AFFINE)


def write_avg(tmp_path: Path, affine: np.ndarray, sform_code: int = 2,
              qform_code: int = 0) -> Path:
    """An AVG CT of the phantom on a SHAPE grid with ``affine`` (nibabel's default codes:
    sform aligned, no qform)."""
    hu = phantom_hu(voxel_world(SHAPE, affine), grid_centre_mm(SHAPE, affine))
    path = write_nifti(tmp_path / "avg.nii.gz", hu, affine)
    img = load_nifti(path)
    img.set_sform(affine, sform_code)
    img.set_qform(affine, qform_code)
    nib.save(img, path)
    return path


@pytest.mark.parametrize(("sform_code", "qform_code", "written_qform_code"),
                         [(2, 0, 1), (1, 1, 1), (1, 4, 4)])
def test_write_then_read_keeps_vectors_affine_and_header(tmp_path, sform_code, qform_code,
                                                         written_qform_code):
    """The AVG's sform/qform codes are kept; a missing qform code becomes scanner (1)."""
    affine = AFFINES["rotated"]
    like = read_info(write_avg(tmp_path, affine, sform_code, qform_code))
    field = np.random.default_rng(1).normal(scale=5.0, size=(*SHAPE, 3)).astype(np.float32)
    out = write_displacement_field(tmp_path / "field.nii.gz", field, like)
    assert out == tmp_path / "field.nii.gz"
    back, back_affine = read_displacement_field(out)
    np.testing.assert_array_equal(back, field)
    np.testing.assert_allclose(back_affine, affine, atol=1e-6)
    img = load_nifti(out)
    header = img.header
    assert img.shape == (*SHAPE, 1, 3)
    assert header.get_data_dtype() == np.float32
    assert int(header["intent_code"]) == 1006
    assert header.get_intent()[2] == "displacement"
    assert header.get_sform(coded=True)[1] == sform_code
    assert header.get_qform(coded=True)[1] == written_qform_code
    np.testing.assert_allclose(header.get_qform(), affine, atol=1e-5)
    assert header.get_xyzt_units()[0] == "mm"
    assert header["descrip"].tobytes().rstrip(b"\0").decode() == DESCRIP
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avg.nii.gz", "field.nii.gz"]


def test_write_refuses_a_field_off_the_avg_grid(tmp_path):
    like = read_info(write_avg(tmp_path, LPS_AFFINE))
    with pytest.raises(ValueError, match=r"avg\.nii\.gz with 3 vector components"):
        write_displacement_field(tmp_path / "field.nii.gz", np.zeros((7, 8, 8, 3)), like)
    with pytest.raises(ValueError, match=r"not \(7, 8, 9\)"):
        write_displacement_field(tmp_path / "field.nii.gz", np.zeros(SHAPE), like)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avg.nii.gz"]


@pytest.mark.parametrize("name", ["lps", "ras", "permuted", "rotated"])
def test_simpleitk_reads_the_avg_grid_and_lps_vectors(tmp_path, name):
    affine = AFFINES[name]
    avg_path = write_avg(tmp_path, affine)
    field = np.random.default_rng(2).normal(scale=3.0, size=(*SHAPE, 3)).astype(np.float32)
    path = write_displacement_field(tmp_path / "field.nii.gz", field, read_info(avg_path))
    image, avg = sitk.ReadImage(str(path)), sitk.ReadImage(str(avg_path))
    assert image.GetNumberOfComponentsPerPixel() == 3
    assert image.GetSize() == avg.GetSize() == SHAPE
    np.testing.assert_allclose(image.GetSpacing(), avg.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), avg.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(image.GetDirection(), avg.GetDirection(), atol=1e-5)
    vectors = sitk.GetArrayFromImage(image).transpose(2, 1, 0, 3)  # (K, J, I, 3) -> (I, J, K, 3)
    np.testing.assert_allclose(vectors, field * [-1.0, -1.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("name", ["lps", "permuted", "rotated"])
def test_a_known_world_shift_warps_the_avg_into_phase_0(tmp_path, name):
    """Phase 0 is the phantom moved 6 mm inferior and 3 mm to the patient's left: the AVG point
    seen at x in phase 0 sits at x + u, u = (+3, 0, +6) mm RAS; resampling the AVG through the
    written file gives phase 0."""
    affine, shape = AFFINES[name], (24, 24, 24)
    world = voxel_world(shape, affine)
    centre = grid_centre_mm(shape, affine)
    avg = phantom_hu(world, centre)
    avg_path = write_nifti(tmp_path / "avg.nii.gz", avg, affine, dtype=np.float32)
    u = np.array([3.0, 0.0, 6.0])
    phase0 = phantom_hu(world + u, centre)  # the blob 6 mm lower, 3 mm more to the left
    field = np.broadcast_to(u, (*shape, 3)).astype(np.float32)
    path = write_displacement_field(tmp_path / "field.nii.gz", field, read_info(avg_path))
    warped, inside = warp_through_file(avg, affine, path)
    assert inside.mean() > 0.5
    error = np.abs(warped - phase0)[inside]
    assert error.max() < 0.05 * np.ptp(phase0[inside])  # linear interpolation error only
    assert np.abs(avg - phase0)[inside].max() > 10 * error.max()  # the shift shows
    wrong_sign = phantom_hu(world - u, centre)
    assert np.abs(warped - wrong_sign)[inside].max() > 10 * error.max()


@pytest.mark.parametrize("name", ["lps", "ras", "permuted", "rotated"])
def test_stack_shift_through_the_file_matches_shifted_slices(tmp_path, name):
    """A network's stack-frame field of +2 slices, written and resampled by hand (scipy) and by
    SimpleITK: phase 0 slice s is AVG slice s + 2 (away from the top two slices)."""
    affine = AFFINES[name]
    avg_path = write_avg(tmp_path, affine)
    avg = load_nifti(avg_path).get_fdata(dtype=np.float32)
    avg_stack = to_slice_stack(avg, affine)
    field_vox = np.zeros((3, *avg_stack.shape), dtype=np.float32)
    field_vox[0] = 2.0
    path = write_displacement_field(tmp_path / "field.nii.gz",
                                    stack_field_to_world(field_vox, affine), read_info(avg_path))
    by_hand = to_slice_stack(warp_through_file(avg, affine, path)[0], affine)
    np.testing.assert_allclose(by_hand[:-2], avg_stack[2:], atol=1e-3)
    transform = sitk.DisplacementFieldTransform(
        sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkVectorFloat64))
    avg_image = sitk.ReadImage(str(avg_path), sitk.sitkFloat32)
    resampled = sitk.Resample(avg_image, avg_image, transform, sitk.sitkLinear, -1024.0)
    by_itk = to_slice_stack(sitk.GetArrayFromImage(resampled).transpose(2, 1, 0), affine)
    np.testing.assert_allclose(by_itk[:-2], avg_stack[2:], atol=1e-2)
    assert np.abs(avg_stack[2:] - avg_stack[:-2]).max() > 100  # the shift is visible


def test_bad_files_name_the_file(tmp_path):
    avg_path = write_avg(tmp_path, LPS_AFFINE)
    cases = {"missing.nii.gz": None, "garbage.nii.gz": b"not a nifti at all"}
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    two = nib.Nifti1Image(np.zeros((*SHAPE, 1, 2), np.float32), LPS_AFFINE)
    two.header.set_intent(1006)
    nib.save(two, tmp_path / "two.nii.gz")
    vector = nib.Nifti1Image(np.zeros((*SHAPE, 1, 3), np.float32), LPS_AFFINE)
    vector.header.set_intent(1007)
    nib.save(vector, tmp_path / "vector.nii.gz")
    bad = np.zeros((*SHAPE, 3), np.float32)
    bad[0, 0, 0, 1] = np.nan
    write_displacement_field(tmp_path / "nan.nii.gz", bad, read_info(avg_path))
    write_raw_header_nifti(tmp_path / "zero.nii.gz", np.zeros(SHAPE), LPS_AFFINE, qform_code=1,
                           sform_code=0, pixdim=(0.9, 0.0, 3.0))
    expected = {"missing.nii.gz": "not a readable", "garbage.nii.gz": "not a readable",
                "avg.nii.gz": r"shape \(I, J, K, 1, 3\), got \(7, 8, 9\)",
                "two.nii.gz": r"got \(7, 8, 9, 1, 2\)", "vector.nii.gz": "intent code 1007",
                "nan.nii.gz": "1 vector components are NaN",
                "zero.nii.gz": r"axis J \(pixdim\[2\]\) is 0.*no usable geometry"}
    for name, message in expected.items():
        with pytest.raises(DataError, match=message) as err:
            read_displacement_field(tmp_path / name)
        assert str(err.value).startswith(str(tmp_path / name))


def test_from_slice_stack_is_the_voxel_order_of_the_written_field(tmp_path):
    """The file's voxel (i, j, k) holds the vector of the stack voxel at the same world point."""
    affine = AFFINES["permuted"]
    like = read_info(write_avg(tmp_path, affine))
    stack_shape = to_slice_stack(np.empty(SHAPE), affine).shape
    field_vox = np.zeros((3, *stack_shape), dtype=np.float32)
    field_vox[0] = np.arange(stack_shape[0])[:, None, None]  # slice s moves s slices
    path = write_displacement_field(tmp_path / "f.nii", stack_field_to_world(field_vox, affine),
                                    like)
    field, _ = read_displacement_field(path)
    slice_mm = stack_spacing_mm(affine)[0]
    expected_z = from_slice_stack(field_vox[0] * slice_mm, affine)
    np.testing.assert_allclose(field[..., 2], expected_z, atol=1e-5)
    world_z = voxel_world(SHAPE, affine)[..., 2]
    np.testing.assert_allclose(field[..., 2], (world_z - world_z.min()), atol=1e-4)
