"""Inference at a working spacing: the generator runs on that grid, its residual comes back."""

import numpy as np
import pytest
import torch
from torch import nn

from models.inference import _field_to_native, predict_hu
from util.errors import ConfigError

WINDOW = {"hu_min": -1024.0, "hu_max": 3071.0}


class Inferior(nn.Module):
    """A 'generator' returning its first context channel: the slice below, so anatomy moves up
    (superior) by one slice of the grid it runs on."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


class Middle(nn.Module):
    """A 'generator' returning its input slice unchanged: a residual of 0 everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, x.shape[1] // 2:x.shape[1] // 2 + 1]


def _stack(shape=(9, 12, 10), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1500, size=shape).astype(np.int16)


def test_working_spacing_equal_to_native_is_bit_identical_to_the_native_path():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.InstanceNorm2d(4), nn.Conv2d(4, 1, 1),
                        nn.Tanh())
    stack = _stack()
    native = predict_hu(net, stack, context_slices=1, **WINDOW).hu
    for working in ((3.0, 0.9, 0.8), (3.01, 0.0, 0.81)):  # same grid: nothing resampled
        same = predict_hu(net, stack, context_slices=1, spacing_mm=(3.0, 0.9, 0.8),
                          working_spacing_mm=working, **WINDOW).hu
        assert np.array_equal(same, native)


@pytest.mark.parametrize("working", [(5.0, 1.7, 0.5), (1.0, 0.0, 2.0)])
def test_a_zero_residual_generator_returns_the_native_avg_exactly(working):
    stack = _stack()
    pred = predict_hu(Middle(), stack, context_slices=1, spacing_mm=(3.0, 0.9, 0.8),
                      working_spacing_mm=working, **WINDOW)
    assert pred.hu.shape == stack.shape
    assert np.array_equal(pred.hu, np.clip(stack, -1024, 3071).astype(np.float32))


def test_a_shift_of_one_working_slice_moves_anatomy_by_its_millimetres():
    z_mm = 2.0 * np.arange(31, dtype=np.float32)  # native slices 2 mm apart
    stack = np.broadcast_to((10.0 * z_mm - 300.0)[:, None, None], (31, 4, 5)).copy()
    pred = predict_hu(Inferior(), stack, context_slices=1, spacing_mm=(2.0, 1.0, 1.0),
                      working_spacing_mm=(6.0, 0.0, 0.0), **WINDOW).hu
    # one 6 mm working slice up: the ramp reads 60 HU less from the second working slice on
    np.testing.assert_allclose(pred[3:], stack[3:] - 60.0, atol=1e-3)
    np.testing.assert_allclose(pred[0], stack[0], atol=1e-3)  # the edge slice repeats itself


def test_the_std_comes_back_on_the_native_grid():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Dropout2d(0.5), nn.Conv2d(4, 1, 1))
    pred = predict_hu(net, _stack(), samples=3, spacing_mm=(3.0, 0.9, 0.8),
                      working_spacing_mm=(5.0, 2.0, 2.0), **WINDOW)
    assert pred.std_hu is not None
    assert pred.std_hu.shape == (9, 12, 10)
    assert pred.std_hu.min() >= 0


def test_a_working_spacing_needs_the_stack_spacing():
    with pytest.raises(ConfigError, match="spacing_mm"):
        predict_hu(Middle(), _stack(), working_spacing_mm=(5.0, 0.0, 0.0), **WINDOW)


def test_a_displacement_field_comes_back_in_native_voxels():
    field = np.ones((3, 11, 4, 5), dtype=np.float32)  # one working voxel along every axis
    native = _field_to_native(field, (31, 7, 5), (11, 4, 5))
    assert native.shape == (3, 31, 7, 5)
    np.testing.assert_allclose(native[:, 0, 0, 0], [3.0, 2.0, 1.0])  # 6/2 mm, 3/1.5 mm, same
