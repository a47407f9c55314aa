"""Every respiratory phase served to a phase-conditioned generator (``phases=`` / ``--phases``),
by the slice and the patch datasets: samples per (patient, phase), their truth and phase planes,
missing phases, lazy volumes, options."""

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from data import create_dataloader
from data.nifti_aligned_dataset import NiftiAlignedDataset
from data.nifti_volume_dataset import NiftiVolumeDataset, crop_padded
from data.phase_volumes import dataset_phases, find_phases
from data.sampling import PatientBlockSampler
from data.settings import DataSettings
from data.volume_cache import LazyStacks
from tests.conftest import LPS_AFFINE, ct_like, write_nifti
from tests.parsed import parsed_settings
from util.errors import ConfigError, DataError
from util.geometry import from_slice_stack
from util.hu_window import unit_to_hu
from util.phases import STANDARD_PHASES, phase_folder

PATIENTS = ("p1", "p2", "p3")
PHASES = (0.0, 30.0, 60.0)
#: Stack shape (S, H, W) of the test volumes, stored LPS as (I, J, K) = (W, H, S).
STACK = (5, 7, 8)
#: Where each phase moves by 300 HU (stack frame); elsewhere it differs from the AVG by p / 2 HU,
#: below the 50 HU motion threshold, so that every slice tells the phases apart.
BOXES = {0.0: (slice(0, 2), slice(0, 2), slice(0, 2)),
         30.0: (slice(3, 5), slice(5, 7), slice(6, 8)),
         60.0: (slice(0, 2), slice(5, 7), slice(0, 2))}

Stacks = dict[tuple[str, float | None], np.ndarray]


def write_phase_tree(root: Path, missing: tuple[tuple[str, float], ...] = (("p2", 60.0),),
                     phases: tuple[float, ...] = PHASES) -> Stacks:
    """``root/trainA/<id>.nii.gz`` (AVG) and ``trainB``, ``trainB_p30``, ... as
    ``prepare_dataset.py --phases`` writes them, without the (patient, phase) files in
    ``missing``; returns the (S, H, W) HU stacks: {(id, None): AVG, (id, p): phase p}."""
    stacks: Stacks = {}
    for k, pid in enumerate(PATIENTS):
        avg = ct_like(STACK, seed=k)
        stacks[pid, None] = avg
        write_nifti(root / "trainA" / f"{pid}.nii.gz", from_slice_stack(avg, LPS_AFFINE),
                    LPS_AFFINE)
        for p in phases:
            if (pid, p) in missing:
                continue
            phase = avg + p / 2
            phase[BOXES[p]] += 300
            stacks[pid, p] = phase
            write_nifti(root / phase_folder("train", p) / f"{pid}.nii.gz",
                        from_slice_stack(phase, LPS_AFFINE), LPS_AFFINE)
    return stacks


def slice_set(root: Path, **kw) -> NiftiAlignedDataset:
    """The slice dataset of ``root/trainA`` and ``root/trainB``."""
    return NiftiAlignedDataset(root / "trainA", root / "trainB", **kw)


def patch_set(root: Path, **kw) -> NiftiVolumeDataset:
    """The patch dataset of ``root/trainA`` and ``root/trainB``."""
    return NiftiVolumeDataset(root / "trainA", root / "trainB", **kw)


def parsed(root: Path, *flags: str) -> DataSettings:
    """The data settings of a training as train.py builds them."""
    return parsed_settings("--dataroot", str(root), "--checkpoints_dir", str(root / "ck"),
                           "--gpu_ids", "-1", "--recipe", "pix2pix", *flags).data


def assert_planes(a: torch.Tensor, channels: int, percent: float) -> None:
    """``a``'s channels after the first ``channels`` are sin and cos of the phase's angle."""
    angle = 2 * math.pi * percent / 100
    assert a.shape[0] == channels + 2
    assert torch.equal(a[channels], torch.full(a.shape[1:], math.sin(angle)))
    assert torch.equal(a[channels + 1], torch.full(a.shape[1:], math.cos(angle)))


def test_slices_of_every_patient_and_phase_with_their_truth_and_planes(tmp_path):
    stacks = write_phase_tree(tmp_path)
    ds = slice_set(tmp_path, phases=PHASES, context_slices=1)
    assert ds.phases == PHASES
    assert len(ds) == (3 + 2 + 3) * STACK[0]
    seen = set()
    for i in range(len(ds)):
        item = ds[i]
        pid, p, s = item["patient_id"], item["phase_pct"], item["slice_index"]
        assert isinstance(p, float)
        seen.add((pid, p, s))
        assert item["A"].shape == (3 + 2, 7, 8)
        neighbours = [max(s - 1, 0), s, min(s + 1, STACK[0] - 1)]
        np.testing.assert_allclose(unit_to_hu(item["A"][:3]).numpy(),
                                   stacks[pid, None][neighbours], atol=0.01)
        assert_planes(item["A"], 3, p)
        assert item["B"].shape == (1, 7, 8)
        np.testing.assert_allclose(unit_to_hu(item["B"][0]).numpy(), stacks[pid, p][s],
                                   atol=0.01)
        assert item["B_paths"].endswith(f"{phase_folder('train', p)}/{pid}.nii.gz")
        assert item["A_paths"].endswith(f"trainA/{pid}.nii.gz")
    want = {(pid, p, s) for pid in PATIENTS for p in PHASES for s in range(STACK[0])
            if (pid, p) != ("p2", 60.0)}
    assert seen == want


def test_patients_stay_one_entry_each_and_phase_stack_gives_the_truth(tmp_path):
    stacks = write_phase_tree(tmp_path)
    ds = slice_set(tmp_path, phases=PHASES)
    assert ds.patient_ids == list(PATIENTS)
    assert len(ds.stacks_a) == len(ds.stacks_b) == len(ds.infos_a) == 3
    for v, pid in enumerate(PATIENTS):
        assert ds.stacks_b[v].info.path.parent.name == "trainB"
        assert ds.phase_stack(v, 0) is ds.stacks_b[v]
        assert ds.volume_info(v).path.name == f"{pid}.nii.gz"
    p3_30 = ds.phase_stack(2, 30)
    assert p3_30 is not None
    np.testing.assert_array_equal(p3_30.hu, stacks["p3", 30.0])
    assert ds.phase_stack(1, 60) is None  # p2 has no phase 60
    assert ds.phase_stack(0, 50) is None  # not served
    assert ds.sample_patients() == [0] * 15 + [1] * 10 + [2] * 15


def test_a_missing_phase_file_is_left_out_and_logged_once(tmp_path, caplog):
    write_phase_tree(tmp_path, missing=(("p2", 30.0), ("p2", 60.0), ("p3", 60.0)))
    with caplog.at_level(logging.WARNING, logger="data.nifti_aligned_dataset"):
        ds = slice_set(tmp_path, phases=PHASES)
    lines = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(lines) == 2  # once per patient
    assert lines[0].startswith("p2: no volume of phase(s) 30,60 %")
    assert lines[1].startswith("p3: no volume of phase(s) 60 %")
    assert len(ds) == (3 + 1 + 2) * STACK[0]


def test_without_phases_the_samples_are_those_of_before(tmp_path):
    write_phase_tree(tmp_path)
    before, none = slice_set(tmp_path, context_slices=1), slice_set(tmp_path, context_slices=1,
                                                                     phases=None)
    phase0 = slice_set(tmp_path, context_slices=1, phases=[0])
    assert before.phases == none.phases == ()
    assert len(before) == len(none) == len(phase0) == 3 * STACK[0]
    for i in range(len(before)):
        x, y, z = before[i], none[i], phase0[i]
        assert set(x) == set(y) == {"A", "B", "A_paths", "B_paths", "patient_id",
                                    "slice_index", "patient_index"}
        assert x["A"].shape == (3, 7, 8)
        for key in ("A", "B"):
            assert torch.equal(x[key], y[key])
        assert torch.equal(z["A"][:3], x["A"])  # phase 0 alone: the same slices, with planes
        assert torch.equal(z["B"], x["B"])
        assert_planes(z["A"], 3, 0.0)
    volumes = patch_set(tmp_path, patch_size=(2, 3, 4), patches_per_volume=2)
    torch.manual_seed(0)
    items = [volumes[i] for i in range(len(volumes))]
    assert set(items[0]) == {"A", "B", "A_paths", "B_paths", "patient_id", "patient_index",
                             "patch_origin"}
    assert items[0]["A"].shape == (1, 2, 3, 4)


def test_max_slices_spreads_over_patients_and_phases(tmp_path):
    write_phase_tree(tmp_path)
    ds = slice_set(tmp_path, phases=PHASES, max_slices=16)
    assert len(ds) == 16
    pairs = {(ds[i]["patient_id"], ds[i]["phase_pct"]) for i in range(len(ds))}
    assert len(pairs) == 8  # each of the 8 (patient, phase) pairs keeps 2 of its 5 slices


def test_lazy_volumes_serve_the_same_samples_decoding_each_once_per_block(tmp_path):
    write_phase_tree(tmp_path)
    eager = slice_set(tmp_path, phases=PHASES, flip=True)
    lazy = slice_set(tmp_path, phases=PHASES, flip=True, volume_cache=1)
    assert isinstance(lazy.stacks_a, LazyStacks)
    tables = [t for p in PHASES if isinstance(t := lazy._by_phase[p].stacks, LazyStacks)]
    assert len(tables) == 3
    assert sum(t.decodes for t in tables) == 0  # headers only so far
    order = list(PatientBlockSampler(lazy.sample_patients(), block=1, seed=0))
    torch.manual_seed(3)
    want = [eager[i] for i in order]
    torch.manual_seed(3)
    got = [lazy[i] for i in order]
    for x, y in zip(want, got, strict=True):
        assert (x["patient_id"], x["phase_pct"], x["B_paths"]) == (y["patient_id"],
                                                                   y["phase_pct"], y["B_paths"])
        assert torch.equal(x["A"], y["A"])
        assert torch.equal(x["B"], y["B"])
    assert lazy.stacks_a.decodes == 3  # each AVG once: blocks of one patient
    assert [t.decodes for t in tables] == [3, 3, 2]  # each phase volume once
    assert all(len(t._cache) <= 1 for t in tables)  # at most volume_cache per phase


def test_a_missing_phase_folder_is_refused_naming_it(tmp_path):
    write_phase_tree(tmp_path)
    with pytest.raises(ConfigError) as err:
        slice_set(tmp_path, phases=[0, 30, 50, 90])
    message = str(err.value)
    assert str(tmp_path / "trainB_p50") in message
    assert str(tmp_path / "trainB_p90") in message
    assert "trainB_p30" not in message
    assert "prepare_dataset.py --phases" in message
    with pytest.raises(ConfigError, match="trainB_p50"):
        patch_set(tmp_path, phases=[50])


def test_phase_files_without_avg_and_phase_grids_that_differ_are_reported(tmp_path):
    stacks = write_phase_tree(tmp_path)
    write_nifti(tmp_path / "trainB_p30" / "stray.nii.gz", from_slice_stack(stacks["p1", 30.0],
                                                                          LPS_AFFINE), LPS_AFFINE)
    with pytest.raises(DataError, match=r"stray\.nii\.gz: no matching AVG file"):
        slice_set(tmp_path, phases=PHASES)
    (tmp_path / "trainB_p30" / "stray.nii.gz").unlink()
    shifted = LPS_AFFINE.copy()
    shifted[:3, 3] += 5.0
    for p in (30.0, 60.0):
        write_nifti(tmp_path / phase_folder("train", p) / "p3.nii.gz",
                    from_slice_stack(stacks["p3", p], LPS_AFFINE), shifted)
    for cache in (0, 2):
        with pytest.raises(DataError) as err:
            slice_set(tmp_path, phases=PHASES, volume_cache=cache)
        assert "2 phase volume(s) cannot be used" in str(err.value)
        assert "trainB_p30/p3.nii.gz" in str(err.value)
        assert "trainB_p60/p3.nii.gz" in str(err.value)


def test_direction_b_to_a_with_phases_is_refused(tmp_path):
    write_phase_tree(tmp_path)
    with pytest.raises(ConfigError, match="--direction AtoB"):
        slice_set(tmp_path, phases=PHASES, a_to_b=False)
    with pytest.raises(ConfigError, match="--direction AtoB"):
        NiftiAlignedDataset.from_settings(parsed(tmp_path, "--axial_slice", "--phases", "all",
                                                 "--input_nc", "3", "--direction", "BtoA"))


@pytest.mark.parametrize("phases", [[], [100.0], [-10.0]])
def test_phases_outside_the_cycle_are_refused(tmp_path, phases):
    write_phase_tree(tmp_path)
    with pytest.raises(ConfigError, match=r"percentages in \[0, 100\)"):
        slice_set(tmp_path, phases=phases)


def test_phases_option_resolves_folders_lists_and_off(tmp_path):
    write_phase_tree(tmp_path)
    (tmp_path / "valB_p50").mkdir()  # another split's phase: not train's
    assert find_phases(tmp_path, "train") == PHASES
    assert dataset_phases("", tmp_path, "train") is None
    assert dataset_phases("all", tmp_path, "train") == PHASES
    assert dataset_phases("ALL", tmp_path, "test") == STANDARD_PHASES  # no testB: no truth
    assert dataset_phases("60, 0", tmp_path, "train") == (0.0, 60.0)
    with pytest.raises(ConfigError, match="--phases takes"):
        dataset_phases("half", tmp_path, "train")


def test_from_settings_builds_the_phase_datasets(tmp_path):
    write_phase_tree(tmp_path)
    slices = NiftiAlignedDataset.from_settings(parsed(
        tmp_path, "--axial_slice", "--phases", "all", "--context_slices", "1", "--input_nc", "5"))
    assert slices.phases == PHASES
    assert slices[0]["A"].shape == (5, 7, 8)
    listed = NiftiAlignedDataset.from_settings(parsed(tmp_path, "--axial_slice", "--phases",
                                                      "30", "--input_nc", "3"))
    assert listed.phases == (30.0,)
    assert len(listed) == 3 * STACK[0]
    volumes = NiftiVolumeDataset.from_settings(parsed(
        tmp_path, "--dataset_mode", "nifti_volume", "--phases", "0,60", "--input_nc", "3",
        "--patch_size", "2", "3", "4"))
    assert volumes.phases == (0.0, 60.0)
    assert len(volumes) == 5  # p2 has no phase 60
    assert volumes[0]["A"].shape == (3, 2, 3, 4)
    assert not parsed(tmp_path, "--axial_slice").phases  # off by default


@pytest.mark.parametrize(("flags", "message"), [
    (["--axial_slice", "--phases", "all", "--input_nc", "1"],
     r"--context_slices 0 and --phases all serves 3 input channels \(1 image, then 2 phase "
     r"planes: sin, cos\).*pass --input_nc 3 --output_nc 1"),
    (["--axial_slice", "--phases", "0,30", "--context_slices", "2", "--input_nc", "5"],
     r"serves 7 input channels \(5 image, then 2 phase planes.*pass --input_nc 7"),
    (["--dataset_mode", "nifti_volume", "--phases", "all", "--input_nc", "1"],
     r"nifti_volume with --phases all serves 3 input channels \(1 image, then 2 phase "
     r"volumes: sin, cos\).*pass --input_nc 3 --output_nc 1"),
    (["--dataset_mode", "nifti_volume", "--input_nc", "3"], "pass --input_nc 1 --output_nc 1"),
])
def test_input_nc_messages_count_the_phase_planes(tmp_path, flags, message):
    write_phase_tree(tmp_path)
    cls = NiftiVolumeDataset if "nifti_volume" in flags else NiftiAlignedDataset
    with pytest.raises(ConfigError, match=message) as err:
        cls.from_settings(parsed(tmp_path, *flags))
    assert "\n" not in str(err.value)


def test_patches_of_every_patient_and_phase_with_their_truth_and_planes(tmp_path):
    stacks = write_phase_tree(tmp_path)
    ds = patch_set(tmp_path, phases=PHASES, patch_size=(2, 3, 4), patches_per_volume=3,
                   motion_fraction=0.5, flip=True)
    assert len(ds) == (3 + 2 + 3) * 3
    assert ds.sample_patients() == [0] * 9 + [1] * 6 + [2] * 9
    torch.manual_seed(0)
    seen: dict[tuple[str, float], int] = {}
    flips = set()
    for i in range(len(ds)):
        item = ds[i]
        pid, p = item["patient_id"], item["phase_pct"]
        seen[pid, p] = seen.get((pid, p), 0) + 1
        assert item["A"].shape == (3, 2, 3, 4)
        assert_planes(item["A"], 1, p)
        origin = tuple(item["patch_origin"].tolist())
        want_a = crop_padded(stacks[pid, None], origin, (2, 3, 4))
        want_b = crop_padded(stacks[pid, p], origin, (2, 3, 4))
        got_a = unit_to_hu(item["A"][0]).numpy()
        flipped = not np.allclose(got_a, want_a, atol=0.01)
        flips.add(flipped)
        if flipped:
            want_a, want_b = want_a[..., ::-1], want_b[..., ::-1]
        np.testing.assert_allclose(got_a, want_a, atol=0.01)
        np.testing.assert_allclose(unit_to_hu(item["B"][0]).numpy(), want_b, atol=0.01)
        assert item["B_paths"].endswith(f"{phase_folder('train', p)}/{pid}.nii.gz")
    assert seen == {(pid, p): 3 for pid in PATIENTS for p in PHASES if (pid, p) != ("p2", 60.0)}
    assert flips == {True, False}


def test_motion_placement_follows_each_phases_own_motion(tmp_path):
    write_phase_tree(tmp_path)
    ds = patch_set(tmp_path, phases=PHASES, patch_size=(2, 2, 2), patches_per_volume=20,
                   motion_fraction=1.0)
    for p, box in BOXES.items():
        want = np.zeros(STACK, dtype=bool)
        want[box] = True
        np.testing.assert_array_equal(ds.moving_voxels(0, p), np.flatnonzero(want))
    torch.manual_seed(1)
    for i in range(len(ds)):
        item = ds[i]
        origin = item["patch_origin"].tolist()
        for p, box in BOXES.items():  # the boxes lie too far apart for a patch to touch two
            touches = all(o < b.stop and b.start < o + 2 for o, b in zip(origin, box,
                                                                         strict=True))
            assert touches == (p == item["phase_pct"])
    lazy = patch_set(tmp_path, phases=PHASES, patch_size=(2, 2, 2), motion_fraction=1.0,
                     volume_cache=1)
    assert lazy.moving.capacity == 3  # one patient block: its phases


def test_lazy_patches_equal_eager_ones(tmp_path):
    write_phase_tree(tmp_path)
    kw = {"phases": PHASES, "patch_size": (2, 3, 4), "patches_per_volume": 2, "flip": True}
    eager, lazy = patch_set(tmp_path, **kw), patch_set(tmp_path, volume_cache=1, **kw)
    assert isinstance(lazy.stacks_a, LazyStacks)
    order = list(PatientBlockSampler(lazy.sample_patients(), block=1, seed=4))
    torch.manual_seed(5)
    want = [eager[i] for i in order]
    torch.manual_seed(5)
    got = [lazy[i] for i in order]
    for x, y in zip(want, got, strict=True):
        assert x["phase_pct"] == y["phase_pct"]
        assert torch.equal(x["patch_origin"], y["patch_origin"])
        assert torch.equal(x["A"], y["A"])
        assert torch.equal(x["B"], y["B"])
    assert lazy.stacks_a.decodes == 3


def test_loader_batches_carry_the_phase(tmp_path):
    write_phase_tree(tmp_path)
    ds = slice_set(tmp_path, phases=PHASES)
    batch = next(iter(create_dataloader(ds, batch_size=15, num_workers=0)))
    assert batch["A"].shape == (15, 3, 7, 8)
    assert batch["phase_pct"].tolist() == [0.0] * 5 + [30.0] * 5 + [60.0] * 5


def test_without_truth_every_listed_phase_is_served_as_input_planes(tmp_path):
    write_phase_tree(tmp_path)
    ds = NiftiAlignedDataset(tmp_path / "trainA", None, phases=[0, 50])
    assert not ds.has_target
    assert len(ds) == 2 * 3 * STACK[0]
    item = ds[STACK[0]]  # p1, phase 50, slice 0
    assert set(item) == {"A", "A_paths", "patient_id", "slice_index", "patient_index",
                         "phase_pct"}
    assert item["phase_pct"] == 50.0
    assert_planes(item["A"], 1, 50.0)
    assert ds.phase_stack(0, 0) is None
