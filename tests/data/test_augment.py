"""Intensity augmentation: offsets and kernels on input and target alike, noise on the input
alone, drawn from torch's seeded generator, nothing when off."""

import numpy as np
import pytest
import torch

from data.augment import IntensityAugment
from util.errors import ConfigError


def _pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    avg = rng.uniform(-1000, 200, (5, 16, 16)).astype(np.float32)  # 2.5-D input, 5 channels
    return avg, avg[2] + 50.0


def test_offset_alone_shifts_input_and_target_alike():
    avg, truth = _pair()
    torch.manual_seed(1)
    out_in, out_target = IntensityAugment(offset_hu=30.0)(avg, truth)
    shift = out_in - avg
    assert np.ptp(shift) < 1e-3
    assert 0 < abs(float(shift.mean())) <= 30.0
    np.testing.assert_allclose(out_target - truth, shift[0], atol=1e-3)


def test_blur_alone_is_the_same_kernel_on_both_and_noise_touches_the_input_only():
    avg, truth = _pair()
    torch.manual_seed(2)
    blurred_in, blurred_target = IntensityAugment(blur_px=1.5)(avg, truth)
    assert blurred_in.std() < avg.std()  # smoothed in-plane
    np.testing.assert_allclose(blurred_target - 50.0, blurred_in[2], atol=1e-3)
    torch.manual_seed(3)
    noisy_in, noisy_target = IntensityAugment(noise_hu=20.0)(avg, truth)
    np.testing.assert_array_equal(noisy_target, truth)
    assert 0 < float((noisy_in - avg).std()) <= 20.0


def test_draws_are_repeatable_with_torchs_seed_and_off_changes_nothing():
    avg, truth = _pair()
    augment = IntensityAugment(noise_hu=10.0, blur_px=1.0, offset_hu=20.0)
    torch.manual_seed(5)
    first = augment(avg, truth)
    torch.manual_seed(5)
    second = augment(avg, truth)
    np.testing.assert_array_equal(first[0], second[0])
    assert not IntensityAugment().enabled
    with pytest.raises(ConfigError, match="NOISE_HU BLUR_PX OFFSET_HU"):
        IntensityAugment.from_values([1.0, -1.0, 0.0])


def test_the_training_dataset_serves_augmented_slices_and_the_test_one_does_not(tmp_path):
    from data.nifti_aligned_dataset import NiftiAlignedDataset
    from tests.conftest import write_nifti

    rng = np.random.default_rng(1)
    avg = rng.uniform(-1000, 200, (16, 16, 6)).astype(np.float32)
    write_nifti(tmp_path / "A" / "p1.nii.gz", avg)
    write_nifti(tmp_path / "B" / "p1.nii.gz", avg + 50)
    plain = NiftiAlignedDataset(tmp_path / "A", tmp_path / "B", context_slices=1)
    noisy = NiftiAlignedDataset(tmp_path / "A", tmp_path / "B", context_slices=1,
                                augment=IntensityAugment(noise_hu=40.0))
    torch.manual_seed(0)
    a, b = plain[3], noisy[3]
    assert torch.equal(a["B"], b["B"])  # the target has no noise
    assert not torch.equal(a["A"], b["A"])
    assert a["A"].shape == b["A"].shape == (3, 16, 16)
