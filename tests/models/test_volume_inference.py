"""Whole-volume inference of volumetric generators: windows, padding, blending, the field."""

import numpy as np
import pytest
import torch
from torch import nn

from models.inference import predict_hu, predict_stack
from models.networks import SliceSizeRule, define_G
from models.volume_inference import VolumeWindows, field_summary, is_volumetric, volume_forward

HU_MIN, HU_MAX = -1024.0, 1024.0


class Identity3d(nn.Module):
    """A volumetric 'generator' that returns its input: a 1x1x1 convolution of weight 1.

    Records the window shapes it was called on."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 1, kernel_size=1, bias=False)
        nn.init.ones_(self.conv.weight)
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        return self.conv(x)


def stack(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """(S, H, W) integer HU inside the window, so the identity returns them exactly."""
    return np.random.default_rng(seed).integers(-1000, 1000, size=shape).astype(np.float32)


@pytest.mark.parametrize(("patch", "shape", "expected"), [
    ((0, 0, 0), (7, 20, 24), (8, 24, 24)),     # whole volume, rounded up to multiples of 8
    ((16, 32, 32), (7, 20, 24), (16, 32, 32)),  # the training patch, larger than the volume
    ((8, 16, 0), (30, 64, 40), (8, 16, 40)),    # windowed in D and H, whole in W
])
def test_window_is_the_patch_or_the_whole_extent_rounded_to_the_rule(patch, shape, expected):
    assert VolumeWindows(patch, 0.5, SliceSizeRule(8, 8)).window(shape) == expected


@pytest.mark.parametrize(("shape", "patch"), [
    ((7, 20, 24), (0, 0, 0)),     # one padded window
    ((13, 37, 29), (4, 8, 8)),    # many overlapping windows, odd sides, edge windows
    ((5, 9, 11), (8, 16, 16)),    # a window larger than the volume on every axis
])
def test_identity_generator_gives_back_every_voxel_at_its_place(shape, patch):
    net = Identity3d()
    hu = stack(shape)
    pred = predict_hu(net, hu, hu_min=HU_MIN, hu_max=HU_MAX,
                      windows=VolumeWindows(patch, 0.5, SliceSizeRule(4, 4)))
    assert pred.hu.shape == shape
    np.testing.assert_allclose(pred.hu, hu, atol=0.05)  # a misplaced window would show
    assert pred.displacement_vox is None
    window = VolumeWindows(patch, 0.5, SliceSizeRule(4, 4)).window(shape)
    assert {s[2:] for s in net.seen} == {window}
    if patch == (4, 8, 8):
        assert len(net.seen) > 8  # really windowed


def test_windows_pad_with_air_not_with_zero():
    net = nn.Sequential(nn.Conv3d(1, 1, kernel_size=3, padding=1, bias=False))
    nn.init.constant_(net[0].weight, 1.0 / 27)  # a mean filter: sees the padding at the edges
    hu = np.full((4, 8, 8), -1024.0, dtype=np.float32)
    unit = predict_stack(net, hu, hu_min=HU_MIN, hu_max=HU_MAX,
                         windows=VolumeWindows((8, 16, 16), 0.25, SliceSizeRule(8, 8)))
    # the volume sits inside the window with 2+ voxels of air around it: every output voxel is
    # a mean of air; padding with 0 (mid-window HU) would raise the edge voxels
    np.testing.assert_allclose(unit.numpy(), -1.0, atol=1e-5)


def test_overlap_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="window_overlap"):
        volume_forward(Identity3d(), stack((4, 8, 8)), hu_min=HU_MIN, hu_max=HU_MAX,
                       windows=VolumeWindows((0, 0, 0), 1.0), device=torch.device("cpu"))


def test_motion_generator_at_start_returns_the_avg_and_a_zero_field():
    net = define_G(1, 1, 4, "motion3d_3", norm="instance")
    assert is_volumetric(net)
    hu = stack((10, 16, 20))
    pred = predict_hu(net, hu, hu_min=HU_MIN, hu_max=HU_MAX,
                      windows=VolumeWindows((8, 8, 8), 0.5, SliceSizeRule(8, 8)))
    assert pred.displacement_vox is not None
    assert pred.displacement_vox.shape == (3, 10, 16, 20)
    np.testing.assert_allclose(pred.displacement_vox, 0.0, atol=1e-6)
    np.testing.assert_allclose(pred.hu, hu, atol=0.1)


def test_predictions_are_identical_run_to_run():
    torch.manual_seed(0)
    net = define_G(1, 1, 4, "unet3d_3", norm="instance")
    hu = stack((9, 16, 16))
    windows = VolumeWindows((8, 8, 8), 0.5, SliceSizeRule(8, 8))
    first = predict_hu(net, hu, hu_min=HU_MIN, hu_max=HU_MAX, windows=windows).hu
    second = predict_hu(net, hu, hu_min=HU_MIN, hu_max=HU_MAX, windows=windows).hu
    assert np.array_equal(first, second)


def test_field_summary_in_mm_and_folding():
    field = np.zeros((3, 6, 8, 8), dtype=np.float32)
    field[0] = 2.0  # 2 slices superior, 3 mm slices: 6 mm everywhere
    summary = field_summary(field, (3.0, 1.0, 1.0))
    assert summary["max_mm"] == pytest.approx(6.0)
    assert summary["si_max_mm"] == pytest.approx(6.0)
    assert summary["folding_pct"] == 0.0
    folded = np.zeros((3, 6, 8, 8), dtype=np.float32)
    folded[0] = -3.0 * np.arange(6, dtype=np.float32)[:, None, None]  # d(u_s)/ds = -3: folds
    assert field_summary(folded, (3.0, 1.0, 1.0))["folding_pct"] > 50.0
