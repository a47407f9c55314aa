"""Whole-volume inference and validation: batching, geometry, and the validator's scores."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from data.ct_volumes import SliceStack, load_slice_stack, slice_to_unit, slices_to_unit
from evaluation.metrics import RegionSettings
from models.inference import predict_stack, predict_volume
from models.networks import GENERATORS, SliceSizeRule, define_G, is_volumetric, slice_size_rule
from models.validation import Validator, selection_score
from tests.conftest import LPS_AFFINE, ct_like, write_nifti


class Shift(nn.Module):
    """A 'generator' that adds a constant in [-1, 1] units (so a known number of HU)."""

    def __init__(self, shift: float = 0.0) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


def test_batches_do_not_change_the_prediction():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.InstanceNorm2d(4), nn.Conv2d(4, 1, 1),
                        nn.Tanh()).eval()
    stack = ct_like((16, 16, 7)).transpose(2, 0, 1).astype(np.int16)
    one = predict_stack(net, stack, hu_min=-1024, hu_max=3071, batch_size=1)
    three = predict_stack(net, stack, hu_min=-1024, hu_max=3071, batch_size=3)
    assert one.shape == (7, 1, 16, 16)
    torch.testing.assert_close(one, three)
    resized = predict_stack(net, stack, hu_min=-1024, hu_max=3071, resize_to=32, batch_size=4)
    assert resized.shape == (7, 1, 32, 32)


def test_identity_network_returns_the_input_volume_in_its_geometry(tmp_path):
    hu = ct_like((12, 10, 5))
    stack = load_slice_stack(write_nifti(tmp_path / "a.nii.gz", hu, LPS_AFFINE))
    out = predict_volume(Shift(), stack, hu_min=-1024, hu_max=3071, batch_size=2)
    assert out.shape == hu.shape
    np.testing.assert_allclose(out, np.clip(hu, -1024, 3071), atol=0.05)


def test_predict_stack_refuses_an_empty_stack():
    with pytest.raises(ValueError, match=r"non-empty \(S, H, W\)"):
        predict_stack(Shift(), np.zeros((0, 8, 8)), hu_min=-1024, hu_max=3071)


def _val_patient(tmp_path, name, motion_hu):
    avg = ct_like((16, 16, 8)).astype(np.float32)
    truth = avg.copy()
    truth[4:10, 4:10, 2:6] += motion_hu  # a moving block: the motion region
    a = load_slice_stack(write_nifti(tmp_path / f"{name}_a.nii.gz", avg))
    b = load_slice_stack(write_nifti(tmp_path / f"{name}_b.nii.gz", truth))
    return name, a, b


def test_validator_scores_model_and_baseline_and_restores_training_mode(tmp_path):
    patients = [_val_patient(tmp_path, "p1", 300.0), _val_patient(tmp_path, "p2", 300.0)]
    # 0.9 mm pixels, 3 mm slices: a 0.9 mm margin adds one voxel across each in-plane face
    validator = Validator(patients, RegionSettings(motion_margin_mm=0.9), batch_size=4)
    net = Shift().train()
    metrics = validator(net)
    assert net.training
    # the identity answer is the AVG itself: model == baseline, the AVG is 300 HU off inside
    # the moving block, and the motion region is the block grown in-plane: 8 x 8 - 4 corners
    assert metrics["val_motion_mae_hu"] == pytest.approx(metrics["baseline_motion_mae_hu"],
                                                         abs=0.1)
    block, region = 6 * 6 * 4, (8 * 8 - 4) * 4
    assert metrics["baseline_motion_mae_hu"] == pytest.approx(300.0 * block / region, rel=1e-3)
    assert selection_score(metrics) == pytest.approx(1.0, abs=1e-3)  # the AVG's own errors
    shifted = validator(Shift(100.0 / 2047.5))  # +100 HU everywhere
    assert shifted["val_body_mae_hu"] > metrics["val_body_mae_hu"] + 50
    assert shifted["val_whole_mae_hu"] > metrics["val_whole_mae_hu"] + 50
    assert selection_score(shifted) > selection_score(metrics) + 1


def test_selection_score_weighs_the_motion_region_and_the_whole_volume_against_the_avg():
    avg = {"baseline_motion_mae_hu": 200.0, "baseline_body_mae_hu": 20.0,
           "baseline_whole_mae_hu": 10.0}
    sharp_dark_air = avg | {"val_motion_mae_hu": 50.0, "val_whole_mae_hu": 14.0}
    balanced = avg | {"val_motion_mae_hu": 54.0, "val_whole_mae_hu": 9.0}
    assert selection_score(sharp_dark_air) == pytest.approx((0.25 + 1.4) / 2)
    assert selection_score(balanced) == pytest.approx((0.27 + 0.9) / 2)
    assert selection_score(balanced) < selection_score(sharp_dark_air)  # the motion region
    # alone would have chosen the epoch whose air is 4 HU worse than the AVG's


def test_selection_score_falls_back_to_the_motion_then_the_body_ratio_then_inf():
    before = {"val_motion_mae_hu": 50.0, "baseline_motion_mae_hu": 200.0}  # no whole volume
    assert selection_score(before) == pytest.approx(0.25)
    assert selection_score({"val_motion_mae_hu": math.nan, "val_body_mae_hu": 12.0,
                            "baseline_body_mae_hu": 24.0}) == pytest.approx(0.5)
    assert selection_score({"val_motion_mae_hu": 5.0, "baseline_motion_mae_hu": 0.0}) == math.inf
    assert selection_score({}) == math.inf


def test_validator_needs_no_gradients(tmp_path):
    validator = Validator([_val_patient(tmp_path, "p1", 200.0)], RegionSettings())
    net = nn.Conv2d(1, 1, 1)
    validator(net)
    assert all(p.grad is None for p in net.parameters())
    assert isinstance(validator.patients[0].avg, SliceStack)


class Centre(nn.Module):
    """A 'generator' that returns its middle input channel: 2.5-D inputs must carry the slice
    itself there, whatever the neighbours."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, x.shape[1] // 2:x.shape[1] // 2 + 1]


class Edges(nn.Module):
    """Returns the first (most inferior) input channel minus the last (most superior)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] - x[:, -1:]


def test_context_inputs_carry_the_slice_in_the_middle_and_neighbours_around(tmp_path):
    hu = ct_like((12, 10, 6))
    stack = load_slice_stack(write_nifti(tmp_path / "a.nii.gz", hu, LPS_AFFINE))
    for k in (0, 1, 2):
        out = predict_volume(Centre(), stack, hu_min=-1024, hu_max=3071, batch_size=4,
                             context_slices=k)
        np.testing.assert_allclose(out, np.clip(hu, -1024, 3071), atol=0.05)
    diff = predict_stack(Edges(), stack.hu, hu_min=-1024, hu_max=3071, batch_size=4,
                         context_slices=1)[:, 0]
    unit = (stack.hu.astype(np.float32) + 1024) * 2 / 4095 - 1
    expected = unit[[0, 0, 1, 2, 3, 4]] - unit[[1, 2, 3, 4, 5, 5]]  # edges repeat
    np.testing.assert_allclose(diff.numpy(), expected, atol=1e-5)


class CountingNet(nn.Module):
    """Identity that records the batch size of every forward pass and the dtype it ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.calls: list[tuple[int, torch.dtype]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        self.calls.append((x.shape[0], y.dtype))
        return y


def test_batch_size_sets_the_forward_passes_and_amp_runs_under_autocast():
    net = CountingNet()
    stack = ct_like((8, 8, 10)).transpose(2, 0, 1).astype(np.int16)
    ref = predict_stack(net, stack, hu_min=-1024, hu_max=3071, batch_size=4)
    assert net.calls == [(4, torch.float32), (4, torch.float32), (2, torch.float32)]
    net.calls.clear()
    bf16 = predict_stack(net, stack, hu_min=-1024, hu_max=3071, batch_size=10,
                         amp_dtype=torch.bfloat16)
    assert net.calls == [(10, torch.bfloat16)]
    assert bf16.dtype == torch.float32
    assert (bf16 - ref).abs().max() < 0.02


def test_batched_windowing_equals_slice_by_slice():
    stack = ct_like((8, 8, 3)).transpose(2, 0, 1).astype(np.int16)
    batched = slices_to_unit(stack, -1024, 3071, resize_to=16)
    assert batched.shape == (3, 1, 16, 16)
    for s in range(3):
        torch.testing.assert_close(batched[s], slice_to_unit(stack[s], -1024, 3071, 16))


class FitChecking(nn.Module):
    """Identity that refuses a size its rule does not take (as a U-Net would) and keeps the
    last input it saw."""

    def __init__(self, rule: SliceSizeRule) -> None:
        super().__init__()
        self.rule = rule
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.rule.takes(*x.shape[-2:]), f"fed {tuple(x.shape)}"
        self.seen = x.clone()
        return x[:, x.shape[1] // 2:x.shape[1] // 2 + 1]


@pytest.mark.parametrize(("height", "width", "padded", "corner"), [
    (61, 75, (64, 128), (1, 26)), (12, 75, (64, 128), (26, 26)), (64, 64, (64, 64), (0, 0))])
def test_slices_are_padded_with_air_around_the_centre_and_cropped_back_exactly(
        height, width, padded, corner):
    net = FitChecking(SliceSizeRule(64, 64))
    stack = ct_like((3, height, width))
    out = predict_stack(net, stack, hu_min=-1024, hu_max=3071, batch_size=2,
                        size_rule=net.rule)
    unit = slices_to_unit(stack, -1024, 3071)
    torch.testing.assert_close(out, unit, rtol=0, atol=0)  # the crop is exact
    assert tuple(net.seen.shape[-2:]) == padded
    top, left = corner
    inside = torch.zeros(padded, dtype=torch.bool)
    inside[top:top + height, left:left + width] = True
    torch.testing.assert_close(net.seen[0, 0][inside], unit[2, 0].flatten(), rtol=0, atol=0)
    assert bool((net.seen[..., ~inside] == -1.0).all())  # air, -1024 HU, is -1 in this window


def test_padding_is_minus_1024_hu_in_any_window_and_respects_context_and_resize():
    net = FitChecking(SliceSizeRule(4, 8))
    stack = ct_like((4, 5, 7))
    out = predict_stack(net, stack, hu_min=-2048, hu_max=2047, context_slices=1,
                        size_rule=net.rule, batch_size=4)
    torch.testing.assert_close(out, slices_to_unit(stack, -2048, 2047), rtol=0, atol=0)
    assert net.seen.shape == (4, 3, 8, 8)
    assert float(net.seen[0, 0, 0, 0]) == pytest.approx(1024 * 2 / 4095 - 1)  # -1024 HU
    resized = predict_stack(net, stack, hu_min=-1024, hu_max=3071, resize_to=6,
                            size_rule=net.rule)
    assert resized.shape == (4, 1, 6, 6)
    assert net.seen.shape == (1, 1, 8, 8)


@pytest.mark.parametrize("netG", [name for name in sorted(GENERATORS) if not is_volumetric(name)])
@pytest.mark.parametrize("size", [(61, 75), (12, 75)])
def test_every_slice_generator_takes_any_slice_size_at_inference(netG, size):
    torch.manual_seed(0)
    net = define_G(3, 1, 2, netG, norm="instance", residual=True)
    stack = ct_like((2, *size))
    out = predict_stack(net, stack, hu_min=-1024, hu_max=3071, context_slices=1, batch_size=2,
                        size_rule=slice_size_rule(netG))
    assert out.shape == (2, 1, *size)
    assert bool(torch.isfinite(out).all())


def test_validator_pads_slices_its_generator_does_not_take(tmp_path):
    avg = ct_like((13, 11, 4))
    stack = load_slice_stack(write_nifti(tmp_path / "a.nii.gz", avg))
    net = FitChecking(SliceSizeRule(8, 8))
    validator = Validator([("p1", stack, stack)], RegionSettings(), size_rule=net.rule)
    assert validator(net)["val_body_mae_hu"] == pytest.approx(0.0, abs=0.05)
    assert tuple(net.seen.shape[-2:]) == (16, 16)
