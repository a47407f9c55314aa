"""HU <-> [-1, 1] mapping."""

import numpy as np
import pytest
import torch

from data.hu_window import DEFAULT_HU_MAX, DEFAULT_HU_MIN, hu_to_unit, unit_to_hu


def test_window_ends_map_to_minus_one_and_one():
    x = hu_to_unit(np.array([DEFAULT_HU_MIN, DEFAULT_HU_MAX, 1023.5], dtype=np.float32))
    np.testing.assert_allclose(x, [-1.0, 1.0, 0.0], atol=1e-6)


@pytest.mark.parametrize(("hu_min", "hu_max"), [(-1024.0, 3071.0), (-1000.0, 500.0)])
def test_round_trip_inside_window_numpy_and_torch(hu_min, hu_max):
    hu = np.linspace(hu_min, hu_max, 101, dtype=np.float32)
    np.testing.assert_allclose(unit_to_hu(hu_to_unit(hu, hu_min, hu_max), hu_min, hu_max), hu,
                               atol=1e-3)
    t = torch.from_numpy(hu)
    back = unit_to_hu(hu_to_unit(t, hu_min, hu_max), hu_min, hu_max)
    assert isinstance(back, torch.Tensor)
    np.testing.assert_allclose(back.numpy(), hu, atol=1e-3)


def test_values_outside_window_are_clipped():
    x = hu_to_unit(np.array([-3000.0, 5000.0], dtype=np.float32), -1000.0, 1000.0)
    np.testing.assert_allclose(x, [-1.0, 1.0])
    assert x.dtype == np.float32


def test_empty_window_refused():
    with pytest.raises(ValueError, match="hu_min < hu_max"):
        hu_to_unit(np.zeros(3), 100.0, 100.0)
