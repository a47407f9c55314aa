"""HU <-> [-1, 1] mapping."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from util.hu_window import DEFAULT_HU_MAX, DEFAULT_HU_MIN, hu_to_unit, unit_to_hu


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


# Property tests: any window of at least 1 HU within +-10000 HU, any HU values.
windows = st.tuples(st.floats(-10000, 9999), st.floats(1, 10000)).map(
    lambda w: (w[0], min(w[0] + w[1], 10000.0)))
hu_values = st.lists(st.floats(-20000, 20000, width=32), min_size=1, max_size=50).map(
    lambda v: np.array(v, dtype=np.float32))


@settings(max_examples=300, deadline=None)
@given(window=windows, hu=hu_values)
def test_property_unit_range_order_and_inverse(window, hu):
    hu_min, hu_max = window
    x = hu_to_unit(hu, hu_min, hu_max)
    assert x.dtype == np.float32
    assert np.all((x >= -1) & (x <= 1))
    order = np.argsort(hu, kind="stable")
    assert np.all(np.diff(x[order]) >= 0)  # monotonic: darker never maps brighter
    inside = (hu >= hu_min) & (hu <= hu_max)
    back = unit_to_hu(x, hu_min, hu_max)
    tol = 4e-7 * (hu_max - hu_min) + 4e-7 * max(abs(hu_min), abs(hu_max)) + 1e-3
    np.testing.assert_allclose(back[inside], hu[inside], atol=tol, rtol=0)
    np.testing.assert_allclose(x[hu <= hu_min], -1.0, atol=1e-6)  # float32 rounding only
    np.testing.assert_allclose(x[hu >= hu_max], 1.0, atol=1e-6)
    t = hu_to_unit(torch.from_numpy(hu), hu_min, hu_max)
    np.testing.assert_allclose(t.numpy(), x, atol=1e-6)
