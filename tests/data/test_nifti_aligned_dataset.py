"""The NIfTI slice dataset: pairing, geometry checks, samples, options."""

from pathlib import Path

import numpy as np
import pytest
import torch

from data.image_folder import is_image_file, make_dataset
from data.nifti_aligned_dataset import NiftiAlignedDataset
from data.settings import DataSettings
from tests.conftest import LPS_AFFINE, ct_like, write_nifti, write_pair_tree
from tests.parsed import parsed_settings
from util.errors import ConfigError, DataError
from util.geometry import stack_affine, to_slice_stack
from util.hu_window import unit_to_hu


def train_set(root: Path, **kw) -> NiftiAlignedDataset:
    """``root/trainA`` with ``root/trainB``, built with the keyword constructor."""
    return NiftiAlignedDataset(root / "trainA", root / "trainB", **kw)


def parsed(root: Path, *flags: str) -> DataSettings:
    """The data settings of a training as train.py builds them (the registry's path)."""
    return parsed_settings("--dataroot", str(root), "--checkpoints_dir", str(root / "ck"),
                           "--gpu_ids", "-1", "--recipe", "pix2pix", *flags).data


def test_serves_every_axial_slice_in_hu_window(tmp_path):
    hus = write_pair_tree(tmp_path, "train", {"p1": (8, 8, 5), "p2": (8, 8, 4)})
    ds = train_set(tmp_path)
    assert len(ds) == 9
    assert ds.patient_ids == ["p1", "p2"]
    item = ds[6]  # p2, slice 1
    assert (item["patient_id"], item["slice_index"]) == ("p2", 1)
    assert item["A"].shape == (1, 8, 8)
    assert item["A"].dtype == torch.float32
    expected = to_slice_stack(hus["p2"], np.eye(4) * [0.9, 0.9, 3, 1])[1]
    np.testing.assert_allclose(unit_to_hu(item["A"][0]).numpy(), expected, atol=0.01)
    np.testing.assert_allclose(unit_to_hu(item["B"][0]).numpy(), expected + 100, atol=0.01)
    assert item["A_paths"].endswith("trainA/p2.nii.gz")


def test_integer_volumes_held_as_int16(tmp_path):
    write_pair_tree(tmp_path, "train", {"p1": (8, 8, 3)})
    ds = train_set(tmp_path)
    assert ds.stacks_a[0].hu.dtype == np.int16


def test_a_without_b_and_b_without_a_reported_together(tmp_path):
    write_pair_tree(tmp_path, "train", {"p1": (4, 4, 2)})
    write_nifti(tmp_path / "trainA" / "only_a.nii.gz", ct_like((4, 4, 2)))
    write_nifti(tmp_path / "trainB" / "only_b.nii", ct_like((4, 4, 2)))
    with pytest.raises(DataError) as err:
        train_set(tmp_path)
    assert "only_a.nii.gz: no matching file" in str(err.value)
    assert "only_b.nii: no matching file" in str(err.value)


def test_shape_and_affine_mismatch_name_both_files(tmp_path):
    write_nifti(tmp_path / "trainA" / "p.nii.gz", ct_like((4, 4, 2)))
    write_nifti(tmp_path / "trainB" / "p.nii.gz", ct_like((4, 4, 3)))
    with pytest.raises(DataError, match=r"trainA/p\.nii\.gz and .*trainB/p\.nii\.gz: shapes"):
        train_set(tmp_path)
    write_nifti(tmp_path / "trainB" / "p.nii.gz", ct_like((4, 4, 2)), LPS_AFFINE)
    with pytest.raises(DataError, match=r"origin differs by 252\.3 mm"):
        train_set(tmp_path)


@pytest.mark.parametrize("volume_cache", [0, 2])
def test_same_grid_in_another_voxel_order_says_so_and_points_to_prepare(tmp_path, volume_cache):
    """A hand-made folder with phase 0 stored RAS next to an LPS AVG of the same voxel centres."""
    hu = ct_like((4, 4, 3))
    write_nifti(tmp_path / "trainA" / "p.nii.gz", hu, LPS_AFFINE)
    ras = LPS_AFFINE @ np.diag([-1.0, -1.0, 1.0, 1.0])
    ras[:2, 3] = LPS_AFFINE[:2, 3] - 0.9 * 3  # voxel 3 of LPS is voxel 0 of RAS
    write_nifti(tmp_path / "trainB" / "p.nii.gz", hu[::-1, ::-1], ras)
    with pytest.raises(DataError) as err:
        train_set(tmp_path, volume_cache=volume_cache)
    assert "p.nii.gz: same world grid, but the voxels are stored in another order (LPS vs " \
           "RAS); prepare_dataset.py checks each pair's world grid and writes phase 0 in its " \
           "AVG's voxel order" in str(err.value)


def test_missing_folders(tmp_path):
    with pytest.raises(DataError, match=r"trainA: folder not found"):
        train_set(tmp_path)
    write_pair_tree(tmp_path, "test", {"p1": (4, 4, 2)}, with_b=False)
    with pytest.raises(DataError, match=r"testB: folder not found"):
        NiftiAlignedDataset.from_settings(parsed(tmp_path, "--axial_slice", "--phase", "test"))
    ds = NiftiAlignedDataset(tmp_path / "testA", None)
    assert not ds.has_target
    assert set(ds[0]) == {"A", "A_paths", "patient_id", "slice_index", "patient_index"}


def test_resize_to_and_direction(tmp_path):
    write_pair_tree(tmp_path, "train", {"p1": (12, 10, 3)})
    ds = train_set(tmp_path, resize_to=16, a_to_b=False)
    item = ds[0]
    assert item["A"].shape == (1, 16, 16)
    assert item["A_paths"].endswith("trainB/p1.nii.gz")
    assert float((unit_to_hu(item["A"]) - unit_to_hu(item["B"])).mean()) == pytest.approx(100,
                                                                                         abs=1)


def test_max_dataset_size_spreads_over_patients(tmp_path):
    write_pair_tree(tmp_path, "train", {"p1": (4, 4, 10), "p2": (4, 4, 10)})
    ds = train_set(tmp_path, max_slices=4)
    assert len(ds) == 4
    assert {ds[i]["patient_id"] for i in range(4)} == {"p1", "p2"}


def test_flip_only_when_training_and_allowed(tmp_path):
    write_pair_tree(tmp_path, "train", {"p1": (6, 6, 2)})
    torch.manual_seed(0)
    ds = train_set(tmp_path, flip=True)
    flipped = [not torch.equal(ds[0]["A"], train_set(tmp_path)[0]["A"]) for _ in range(20)]
    assert 0 < sum(flipped) < 20
    for no_flip in ([], ["--no_flip"]):  # the options flip in training unless --no_flip
        from_settings = NiftiAlignedDataset.from_settings(parsed(tmp_path, "--axial_slice",
                                                                 *no_flip))
        assert from_settings.flip == (not no_flip)


@pytest.mark.parametrize(("flags", "message"), [
    (["--axial_slice", "--preprocess", "resize_and_crop"], "--preprocess none only"),
    (["--input_nc", "3", "--context_slices", "0"], "pass --input_nc 1 --output_nc 1"),
    (["--input_nc", "4"], "pass --input_nc 1 --output_nc 1"),  # no 2K+1 makes 4
    (["--context_slices", "1", "--input_nc", "1"], "serves 3 input channel"),
    (["--axial_slice", "--context_slices", "-1"], "--context_slices must be 0 or positive"),
])
def test_unsupported_options_refused(tmp_path, flags, message):
    write_pair_tree(tmp_path, "train", {"p1": (4, 4, 2)})
    with pytest.raises(ConfigError, match=message):
        NiftiAlignedDataset.from_settings(parsed(tmp_path, *flags))


@pytest.mark.parametrize(("flags", "channels"), [
    ([], 1), (["--context_slices", "1"], 3), (["--input_nc", "5"], 5)])
def test_only_legal_values_need_no_flag(tmp_path, flags, channels):
    """--axial_slice and --preprocess none are the defaults; --input_nc follows
    --context_slices, or gives it."""
    write_pair_tree(tmp_path, "train", {"p1": (4, 4, 2)})
    data = parsed(tmp_path, *flags)
    assert (data.axial_slice, data.preprocess, data.input_nc) == (True, "none", channels)
    assert NiftiAlignedDataset.from_settings(data)[0]["A"].shape[0] == channels


@pytest.mark.parametrize("name", ["context_slices", "resize_to", "volume_cache"])
def test_keyword_constructor_refuses_negative_sizes(tmp_path, name):
    write_pair_tree(tmp_path, "train", {"p1": (4, 4, 2)})
    with pytest.raises(ConfigError, match=f"--{name} must be 0 or positive, got -1"):
        train_set(tmp_path, **{name: -1})


def test_image_folder_knows_nifti_and_pictures(tmp_path):
    for name in ("a.nii.gz", "b.NII", "c.png", "d.txt", ".e.nii.gz.tmp.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    assert is_image_file("x.nii.gz")
    assert is_image_file("x.JPG")
    assert not is_image_file("x.txt")
    assert [p.name for p in make_dataset(tmp_path)] == ["a.nii.gz", "b.NII", "c.png"]
    assert [p.name for p in make_dataset(tmp_path, nifti_only=True)] == ["a.nii.gz", "b.NII"]


def test_context_slices_stack_neighbours_as_channels_and_repeat_edges(tmp_path):
    hus = write_pair_tree(tmp_path, "train", {"p1": (8, 8, 5)})
    ds = train_set(tmp_path, context_slices=2)
    stack = to_slice_stack(hus["p1"], np.eye(4) * [0.9, 0.9, 3, 1])
    first, middle = ds[0], ds[2]
    assert first["A"].shape == (5, 8, 8)
    assert first["B"].shape == (1, 8, 8)  # the target stays one slice
    for item, positions in ((first, [0, 0, 0, 1, 2]), (middle, [0, 1, 2, 3, 4])):
        np.testing.assert_allclose(unit_to_hu(item["A"]).numpy(), stack[positions], atol=0.01)
    np.testing.assert_allclose(unit_to_hu(middle["B"][0]).numpy(), stack[2] + 100, atol=0.01)


def test_flip_moves_every_context_channel_together(tmp_path):
    write_pair_tree(tmp_path, "train", {"p1": (8, 8, 3)})
    plain = train_set(tmp_path, context_slices=1)
    flipping = train_set(tmp_path, context_slices=1, flip=True)
    torch.manual_seed(0)
    for _ in range(20):
        a, b = flipping[1], plain[1]
        if not torch.equal(a["A"], b["A"]):
            torch.testing.assert_close(a["A"], torch.flip(b["A"], dims=(-1,)))
            torch.testing.assert_close(a["B"], torch.flip(b["B"], dims=(-1,)))
            return
    pytest.fail("no flipped sample in 20 draws")


def test_working_spacing_serves_slices_of_the_working_grid_padded_with_air(tmp_path):
    write_pair_tree(tmp_path, "train", {"p1": (21, 21, 9)})  # stack (9, 21, 21), 3/0.9/0.9 mm
    ds = train_set(tmp_path, working_spacing_mm=(6.0, 1.8, 1.8))
    ds.pad_slices_to(8)
    assert len(ds) == 5  # round(8 * 3 / 6) + 1 slices
    assert ds.slice_shapes() == {(16, 16)}  # 11 x 11 on the working grid, padded to 16
    item = ds[2]
    assert item["A"].shape == item["B"].shape == (1, 16, 16)
    a, b = unit_to_hu(item["A"][0]).numpy(), unit_to_hu(item["B"][0]).numpy()
    assert (a[:2] == -1024).all()  # air margins, input and target alike
    assert (b[:2] == -1024).all()
    np.testing.assert_allclose(b[2:13, 2:13] - a[2:13, 2:13], 100.0, atol=0.05)
    held = ds.stacks_a[0]
    np.testing.assert_allclose(held.stack_spacing_mm, (6.0, 1.8, 1.8))
    np.testing.assert_allclose(stack_affine(held.info.affine, held.info.shape)[:3, 3],
                               stack_affine(ds.infos_a[0].affine, ds.infos_a[0].shape)[:3, 3])
    assert ds.infos_a[0].shape == (21, 21, 9)  # the source geometry is kept


def test_working_spacing_refuses_volumes_decoded_on_use(tmp_path):
    write_pair_tree(tmp_path, "train", {"p1": (8, 8, 5)})
    with pytest.raises(ConfigError, match="--volume_cache"):
        train_set(tmp_path, working_spacing_mm=(6.0, 0.0, 0.0), volume_cache=1)
