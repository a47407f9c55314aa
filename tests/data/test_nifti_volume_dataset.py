"""The 3-D patch dataset: shapes, whole volumes, padding, motion-biased placement, seeds, flips,
options, lazily decoded volumes."""

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from data import create_dataloader, find_dataset_using_name
from data.nifti_volume_dataset import (
    NiftiVolumeDataset,
    crop_padded,
    find_moving_voxels,
    origin_bounds,
)
from data.sampling import PatientBlockSampler
from data.settings import DataSettings
from data.volume_cache import LazyStacks
from tests.conftest import LPS_AFFINE, ct_like, write_nifti, write_pair_tree
from tests.parsed import parsed_settings
from util.errors import ConfigError
from util.geometry import from_slice_stack, to_slice_stack
from util.hu_window import hu_to_unit, unit_to_hu

#: Stack shape (S, H, W) of a volume (I, J, K) = (W, H, S) stored LPS: (K, J, I).
LPS_SHAPE = (12, 10, 9)


def volume_set(root: Path, **kw) -> NiftiVolumeDataset:
    """``root/trainA`` with ``root/trainB``, built with the keyword constructor."""
    return NiftiVolumeDataset(root / "trainA", root / "trainB", **kw)


def write_moving_pair(root: Path, pid: str = "p1", box: tuple[slice, ...] | None = None,
                      affine: np.ndarray = LPS_AFFINE) -> tuple[np.ndarray, np.ndarray]:
    """A pair stored LPS, (I, J, K) = (9, 10, 12), whose phase 0 differs from the AVG by 300 HU
    inside ``box`` (stack-frame slices; default a 2 x 2 x 2 corner at the top right back) and
    by 20 HU (below the 50 HU threshold) elsewhere; returns the (S, H, W) stacks (A, B) in HU."""
    hu = ct_like((9, 10, 12), seed=len(pid))
    a_stack = to_slice_stack(hu, affine)
    b_stack = a_stack + 20
    box = box if box is not None else (slice(10, 12), slice(8, 10), slice(0, 2))
    b_stack[box] += 280
    b = from_slice_stack(b_stack, affine)
    np.testing.assert_array_equal(to_slice_stack(b, affine), b_stack)
    write_nifti(root / "trainA" / f"{pid}.nii.gz", hu, affine)
    write_nifti(root / "trainB" / f"{pid}.nii.gz", b, affine)
    return a_stack, b_stack


def volume_options(root: Path, *flags: str, patch_size=(0, 0, 0)) -> DataSettings:
    """The data settings of a training as train.py builds them for ``--dataset_mode
    nifti_volume``, with ``patch_size`` (any value, for the dataset to judge)."""
    data = parsed_settings("--dataroot", str(root), "--checkpoints_dir", str(root / "ck"),
                           "--gpu_ids", "-1", "--dataset_mode", "nifti_volume", "--recipe",
                           "pix2pix", *flags).data
    return dataclasses.replace(data, patch_size=tuple(patch_size))


def contains_moving(item: dict, b_minus_a_threshold_hu: float = 50.0) -> bool:
    """Whether the sample's patch holds a voxel with |B - A| above the threshold."""
    diff = (unit_to_hu(item["B"]) - unit_to_hu(item["A"])).abs()
    return bool((diff > b_minus_a_threshold_hu).any())


def test_patches_have_the_documented_shapes_types_and_range(tmp_path):
    write_moving_pair(tmp_path, "p1")
    write_moving_pair(tmp_path, "p2")
    ds = volume_set(tmp_path, patch_size=(4, 6, 8), patches_per_volume=3, flip=True)
    assert len(ds) == 6
    assert ds.sample_patients() == [0, 0, 0, 1, 1, 1]
    torch.manual_seed(0)
    for i in range(len(ds)):
        item = ds[i]
        for key in ("A", "B"):
            assert item[key].shape == (1, 4, 6, 8)
            assert item[key].dtype == torch.float32
            assert -1.0 <= float(item[key].min()) <= float(item[key].max()) <= 1.0
        assert item["patch_origin"].dtype == torch.int64
        assert item["patch_origin"].shape == (3,)
        assert item["patient_id"] == ["p1", "p2"][i // 3]
        assert item["patient_index"] == i // 3
        assert item["A_paths"].endswith(f"trainA/{item['patient_id']}.nii.gz")
        assert item["B_paths"].endswith(f"trainB/{item['patient_id']}.nii.gz")


def test_registry_finds_the_class_and_its_options():
    assert find_dataset_using_name("nifti_volume") is NiftiVolumeDataset
    parser = NiftiVolumeDataset.modify_commandline_options(argparse.ArgumentParser(), True)
    defaults = parser.parse_args([])
    assert (defaults.patches_per_volume, defaults.motion_fraction) == (1, 0.7)
    assert defaults.volume_cache == 0


def test_whole_volume_mode_serves_each_volume_exactly(tmp_path):
    a_stack, b_stack = write_moving_pair(tmp_path)
    ds = volume_set(tmp_path, patch_size=(0, 0, 0))
    item = ds[0]
    assert tuple(item["patch_origin"].tolist()) == (0, 0, 0)
    assert torch.equal(item["A"][0], torch.from_numpy(hu_to_unit(a_stack.astype(np.float32))))
    assert torch.equal(item["B"][0], torch.from_numpy(hu_to_unit(b_stack.astype(np.float32))))


def test_small_volume_is_centred_in_the_patch_and_padded_with_air(tmp_path):
    a_stack, b_stack = write_moving_pair(tmp_path)  # stack (12, 10, 9)
    ds = volume_set(tmp_path, patch_size=(16, 0, 12), hu_min=-2000.0, hu_max=2000.0)
    item = ds[0]
    assert item["A"].shape == (1, 16, 10, 12)
    assert tuple(item["patch_origin"].tolist()) == (-2, 0, -1)
    for key, stack in (("A", a_stack), ("B", b_stack)):
        hu = unit_to_hu(item[key][0], -2000.0, 2000.0).numpy()
        np.testing.assert_allclose(hu[2:14, :, 1:10], stack, atol=0.01)
        pad = np.ones(hu.shape, dtype=bool)
        pad[2:14, :, 1:10] = False
        np.testing.assert_allclose(hu[pad], -1024.0, atol=0.01)


def test_crop_padded_and_origin_bounds_by_hand():
    hu = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    out = crop_padded(hu, (-1, 1, 2), (3, 2, 3), fill_hu=-7)
    assert out.dtype == np.int16
    expected = np.full((3, 2, 3), -7, dtype=np.int16)
    expected[1:3, :, :2] = hu[:, 1:3, 2:4]
    np.testing.assert_array_equal(out, expected)
    assert (crop_padded(hu, (5, 0, 0), (1, 1, 1), fill_hu=-7) == -7).all()
    assert origin_bounds(10, 4) == (0, 6)
    assert origin_bounds(10, 10) == (0, 0)
    assert origin_bounds(9, 12) == (-1, -1)
    assert origin_bounds(9, 14) == (-2, -2)


def test_find_moving_voxels_crosses_chunks():
    a = np.zeros((40, 3, 2), dtype=np.int16)
    b = a.copy()
    b[0, 0, 0], b[17, 2, 1], b[39, 1, 0] = 60, -200, 50  # the last is not above 50 HU
    found = find_moving_voxels(a, b, 50.0)
    assert found.dtype == np.int32
    np.testing.assert_array_equal(found, np.ravel_multi_index(([0, 17], [0, 2], [0, 1]),
                                                              a.shape))


def test_patch_origins_stay_inside_the_volume(tmp_path):
    write_moving_pair(tmp_path)
    ds = volume_set(tmp_path, patch_size=(5, 4, 9), patches_per_volume=200, motion_fraction=0.5)
    torch.manual_seed(1)
    origins = np.array([ds[i]["patch_origin"].tolist() for i in range(len(ds))])
    assert origins.min(axis=0).tolist() == [0, 0, 0]  # W: 9 of 9, the only origin is 0
    assert (origins.max(axis=0) <= np.array(LPS_SHAPE) - (5, 4, 9)).all()
    assert origins.max(axis=0).tolist()[:2] == [7, 6]  # both extremes reached


def test_motion_fraction_one_puts_moving_voxels_in_every_patch(tmp_path):
    write_moving_pair(tmp_path)
    ds = volume_set(tmp_path, patch_size=(4, 4, 4), patches_per_volume=100, motion_fraction=1.0,
                    flip=True)
    torch.manual_seed(2)
    assert all(contains_moving(ds[i]) for i in range(len(ds)))


def test_motion_fraction_zero_places_patches_uniformly(tmp_path):
    """The moving box (2 x 2 x 2 in a corner) is in a known share of the uniform origins."""
    write_moving_pair(tmp_path)
    size = (4, 4, 4)
    ds = volume_set(tmp_path, patch_size=size, patches_per_volume=600, motion_fraction=0.0)
    torch.manual_seed(3)
    items = [ds[i] for i in range(len(ds))]
    origins = np.array([it["patch_origin"].tolist() for it in items])
    # A patch of 4 starting at o covers the box [lo, lo + 2) when o in (lo - 4, lo + 2).
    covering = [len(set(range(lo - 3, lo + 2)) & set(range(n - p + 1)))
                for lo, n, p in zip((10, 8, 0), LPS_SHAPE, size, strict=True)]
    share = np.prod(covering) / np.prod([n - p + 1 for n, p in zip(LPS_SHAPE, size,
                                                                    strict=True)])
    hits = np.mean([contains_moving(it) for it in items])
    assert abs(hits - share) < 4 * np.sqrt(share * (1 - share) / len(items))
    counts = np.bincount(origins[:, 0], minlength=LPS_SHAPE[0] - 3)  # 9 equally likely starts
    expected = len(items) / (LPS_SHAPE[0] - 3)
    assert ((counts - expected) ** 2 / expected).sum() < 26.1  # chi-square, 8 dof, p = 0.001


def test_patients_without_moving_voxels_fall_back_to_uniform(tmp_path):
    write_pair_tree(tmp_path, "train", {"still": (6, 6, 8)})  # B = A + 100 HU everywhere
    ds = volume_set(tmp_path, patch_size=(2, 2, 2), patches_per_volume=40, motion_fraction=1.0,
                    motion_threshold_hu=150.0)
    assert ds.moving_voxels(0).size == 0
    torch.manual_seed(4)
    origins = {tuple(ds[i]["patch_origin"].tolist()) for i in range(len(ds))}
    assert len(origins) > 20


def test_motion_centre_is_uniform_over_moving_voxels(tmp_path):
    """Two moving boxes, 1 and 8 voxels: patches land on them about 1 : 8."""
    box = (slice(0, 2), slice(0, 2), slice(0, 2))
    _, b_stack = write_moving_pair(tmp_path, box=box)
    b_stack = b_stack.copy()
    b_stack[11, 9, 8] += 280
    write_nifti(tmp_path / "trainB" / "p1.nii.gz", from_slice_stack(b_stack, LPS_AFFINE),
                LPS_AFFINE)
    ds = volume_set(tmp_path, patch_size=(3, 3, 3), patches_per_volume=450, motion_fraction=1.0)
    torch.manual_seed(5)
    near_single = sum(ds[i]["patch_origin"].tolist() == [9, 7, 6] for i in range(len(ds)))
    share = 1 / 9
    assert abs(near_single / len(ds) - share) < 4 * np.sqrt(share * (1 - share) / len(ds))


def test_same_seed_same_samples_and_another_seed_others(tmp_path):
    write_moving_pair(tmp_path)
    ds = volume_set(tmp_path, patch_size=(4, 4, 4), patches_per_volume=10, flip=True)

    def draw(seed: int) -> list[dict]:
        torch.manual_seed(seed)
        return [ds[i] for i in range(len(ds))]

    first, again, other = draw(7), draw(7), draw(8)
    for x, y in zip(first, again, strict=True):
        assert torch.equal(x["patch_origin"], y["patch_origin"])
        assert torch.equal(x["A"], y["A"])
        assert torch.equal(x["B"], y["B"])
    assert any(not torch.equal(x["A"], y["A"]) for x, y in zip(first, other, strict=True))


def test_flips_move_a_and_b_together(tmp_path):
    write_moving_pair(tmp_path)
    plain = volume_set(tmp_path)[0]
    flipping = volume_set(tmp_path, flip=True)
    torch.manual_seed(9)
    seen = set()
    for _ in range(30):
        item = flipping[0]
        flipped = not torch.equal(item["A"], plain["A"])
        seen.add(flipped)
        want = {key: torch.flip(plain[key], dims=(-1,)) if flipped else plain[key]
                for key in ("A", "B")}
        torch.testing.assert_close(item["A"], want["A"], rtol=0, atol=0)
        torch.testing.assert_close(item["B"], want["B"], rtol=0, atol=0)
    assert seen == {True, False}


def test_direction_b_to_a_and_no_truth(tmp_path):
    _, b_stack = write_moving_pair(tmp_path)
    swapped = volume_set(tmp_path, a_to_b=False)[0]
    assert swapped["A_paths"].endswith("trainB/p1.nii.gz")
    np.testing.assert_allclose(unit_to_hu(swapped["A"][0]).numpy(), b_stack, atol=0.01)
    alone = NiftiVolumeDataset(tmp_path / "trainA", None, patch_size=(4, 4, 4))
    torch.manual_seed(0)
    item = alone[0]
    assert set(item) == {"A", "A_paths", "patient_id", "patient_index", "patch_origin"}
    assert alone.moving_voxels(0).size == 0


def test_volume_cache_serves_the_same_patches_and_keeps_few_volumes(tmp_path):
    for pid in ("p1", "p2", "p3"):
        write_moving_pair(tmp_path, pid)
    kw = {"patch_size": (4, 4, 4), "patches_per_volume": 4, "flip": True}
    eager, lazy = volume_set(tmp_path, **kw), volume_set(tmp_path, volume_cache=1, **kw)
    assert isinstance(lazy.stacks_a, LazyStacks)
    sampler = PatientBlockSampler(lazy.sample_patients(), block=1, seed=0)
    order = list(sampler)
    torch.manual_seed(11)
    want = [eager[i] for i in order]
    torch.manual_seed(11)
    got = [lazy[i] for i in order]
    for x, y in zip(want, got, strict=True):
        assert torch.equal(x["A"], y["A"])
        assert torch.equal(x["B"], y["B"])
    assert lazy.stacks_a.decodes == 3  # each patient decoded once, in blocks of one
    assert len(lazy.moving._found) == 1  # moving voxels kept for as many patients as volumes


def test_max_dataset_size_spreads_over_patients(tmp_path):
    for pid in ("p1", "p2"):
        write_moving_pair(tmp_path, pid)
    ds = volume_set(tmp_path, patch_size=(4, 4, 4), patches_per_volume=5, max_samples=4)
    assert len(ds) == 4
    assert set(ds.sample_patients()) == {0, 1}


def test_from_settings_builds_the_patch_dataset(tmp_path):
    write_moving_pair(tmp_path)
    opt = volume_options(tmp_path, "--patches_per_volume", "3", "--motion_fraction", "0.25",
                         "--motion_threshold_hu", "80", "--no_flip", patch_size=(4, 0, 6))
    ds = NiftiVolumeDataset.from_settings(opt)
    assert (ds.patch_size, ds.patches_per_volume, ds.motion_fraction) == ((4, 0, 6), 3, 0.25)
    assert (ds.motion_threshold_hu, ds.flip, len(ds)) == (80.0, False, 3)
    assert ds[0]["A"].shape == (1, 4, 10, 6)


@pytest.mark.parametrize(("flags", "patch_size", "message"), [
    (["--input_nc", "3"], (0, 0, 0), "pass --input_nc 1 --output_nc 1"),
    (["--output_nc", "2"], (0, 0, 0), "--output_nc 2: pass"),
    (["--context_slices", "1"], (0, 0, 0), "pass --context_slices 0"),
    (["--resize_to", "64"], (0, 0, 0), "pass --resize_to 0"),
    (["--preprocess", "crop"], (0, 0, 0), "--preprocess none only"),
    ([], (-1, 8, 8), "--patch_size sides must be"),
    ([], (8, 8), "--patch_size takes 3 sizes"),
    (["--motion_fraction", "1.5"], (0, 0, 0), r"--motion_fraction must be in \[0, 1\], got 1.5"),
    (["--motion_fraction", "-0.1"], (0, 0, 0), r"--motion_fraction must be in \[0, 1\]"),
    (["--patches_per_volume", "0"], (0, 0, 0), "--patches_per_volume must be at least 1, got 0"),
])
def test_from_settings_refuses_what_it_cannot_serve(tmp_path, flags, patch_size, message):
    write_moving_pair(tmp_path)
    opt = volume_options(tmp_path, *flags, patch_size=patch_size)
    with pytest.raises(ConfigError, match=message) as err:
        NiftiVolumeDataset.from_settings(opt)
    assert "\n" not in str(err.value)


def test_from_settings_needs_no_axial_slice_flag(tmp_path):
    write_moving_pair(tmp_path)
    data = volume_options(tmp_path)
    assert not data.axial_slice
    assert len(NiftiVolumeDataset.from_settings(data)) == 1


def test_loader_batches_patches_and_origins(tmp_path):
    for pid in ("p1", "p2"):
        write_moving_pair(tmp_path, pid)
    ds = volume_set(tmp_path, patch_size=(4, 6, 8), patches_per_volume=2)
    torch.manual_seed(0)
    batch = next(iter(create_dataloader(ds, batch_size=3, num_workers=0)))
    assert batch["A"].shape == batch["B"].shape == (3, 1, 4, 6, 8)
    assert batch["patch_origin"].shape == (3, 3)
    assert batch["patient_index"].tolist() == [0, 0, 1]
