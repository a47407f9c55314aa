"""Slice stacks: the axial axis from the affine, canonical frame, exact inverse."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import LPS_AFFINE, OBLIQUE_AFFINE, RAS_AFFINE
from util.geometry import (
    axial_axis,
    from_slice_stack,
    obliquity_deg,
    resize_slices,
    stack_shape,
    stack_spacing_mm,
    to_slice_stack,
    voxel_spacing_mm,
    voxel_volume_ml,
)

# Voxel axis 0 -> world z (3 mm), axis 1 -> world x (0.9 mm), axis 2 -> world y (-0.8 mm).
PERMUTED_AFFINE = np.array([[0, 0.9, 0, 0], [0, 0, -0.8, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]])


@pytest.mark.parametrize(("affine", "axis"), [(RAS_AFFINE, 2), (LPS_AFFINE, 2),
                                              (OBLIQUE_AFFINE, 2), (PERMUTED_AFFINE, 0)])
def test_axial_axis_is_the_one_closest_to_superior_inferior(affine, axis):
    assert axial_axis(affine) == axis


@pytest.mark.parametrize("affine", [RAS_AFFINE, LPS_AFFINE, OBLIQUE_AFFINE, PERMUTED_AFFINE])
@pytest.mark.parametrize("shape", [(4, 5, 6), (5, 5, 7)])
def test_stack_round_trip_is_exact(affine, shape):
    vol = np.arange(np.prod(shape)).reshape(shape)
    stack = to_slice_stack(vol, affine)
    assert stack.shape == stack_shape(shape, affine)
    np.testing.assert_array_equal(from_slice_stack(stack, affine), vol)


def test_ras_and_lps_storage_of_one_anatomy_give_identical_stacks():
    rng = np.random.default_rng(0)
    anatomy_ras = rng.integers(-1000, 1000, size=(4, 5, 6))
    anatomy_lps = anatomy_ras[::-1, ::-1, :]  # same voxels, x and y stored reversed
    np.testing.assert_array_equal(to_slice_stack(anatomy_ras, RAS_AFFINE),
                                  to_slice_stack(anatomy_lps, LPS_AFFINE))


def test_stack_frame_is_inferior_first_anterior_top_patient_right_left():
    vol = np.zeros((3, 3, 2))
    vol[2, 2, 1] = 1  # RAS+: largest x is patient right, largest y anterior, k=1 superior
    stack = to_slice_stack(vol, RAS_AFFINE)
    assert stack[1, 0, 0] == 1  # last slice (superior), top row (anterior), left column (right)


def test_stack_spacing_and_obliquity():
    assert stack_spacing_mm(RAS_AFFINE) == pytest.approx((3.0, 0.9, 0.9))
    assert stack_spacing_mm(PERMUTED_AFFINE) == pytest.approx((3.0, 0.8, 0.9))
    assert obliquity_deg(RAS_AFFINE) == pytest.approx(0.0)
    assert 5.0 < obliquity_deg(OBLIQUE_AFFINE) < 8.0


def test_bad_affine_refused():
    with pytest.raises(ValueError, match=r"affine must be \(4, 4\), not \(3, 3\)"):
        axial_axis(np.eye(3))
    # found by the NIfTI fuzz test: finite, invertible, but two voxel axes point almost along y
    degenerate = np.array([[0.9, 0, 0, 0], [0, 1e30, 1e30, 0], [0, 0, 3.0, 0], [0, 0, 0, 1]])
    with pytest.raises(ValueError, match="cannot be matched to the three world axes"):
        to_slice_stack(np.zeros((2, 2, 2)), degenerate)


def test_resize_slices_keeps_floats_and_identity_size():
    x = torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8)
    assert resize_slices(x, (8, 8)) is x
    up = resize_slices(x, (16, 16))
    assert up.shape == (1, 1, 16, 16)
    assert up.dtype == torch.float32
    assert len(torch.unique(up)) > 200  # no 8-bit quantisation


def _rotation(angles_deg: tuple[float, float, float]) -> np.ndarray:
    """Rotation about x, then y, then z by the given angles (degrees)."""
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@st.composite
def volume_geometries(draw) -> tuple[np.ndarray, np.ndarray]:
    """A small volume (values = voxel numbers) with any axis order, flips, spacing, a tilt of
    up to 20 degrees per axis and any origin."""
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=3, max_size=3)))
    perm = draw(st.permutations([0, 1, 2]))
    signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=3, max_size=3))
    spacing = draw(st.lists(st.floats(0.3, 5.0), min_size=3, max_size=3))
    tilt = draw(st.tuples(*[st.floats(-20, 20)] * 3))
    axes = np.zeros((3, 3))
    for voxel_axis, world_axis in enumerate(perm):
        axes[world_axis, voxel_axis] = signs[voxel_axis] * spacing[voxel_axis]
    affine = np.eye(4)
    affine[:3, :3] = _rotation(tilt) @ axes
    affine[:3, 3] = draw(st.lists(st.floats(-500, 500), min_size=3, max_size=3))
    return np.arange(np.prod(shape)).reshape(shape), affine


@settings(max_examples=300, deadline=None)
@given(geometry=volume_geometries())
def test_property_stack_round_trip_and_canonical_frame(geometry):
    vol, affine = geometry
    stack = to_slice_stack(vol, affine)
    assert stack.shape == stack_shape(vol.shape, affine)
    np.testing.assert_array_equal(from_slice_stack(stack, affine), vol)
    np.testing.assert_allclose(sorted(stack_spacing_mm(affine)),
                               sorted(np.linalg.norm(affine[:3, :3], axis=0)))
    # each stack axis steps through the world mostly towards S, P and L respectively
    ijk = np.stack(np.unravel_index(stack, vol.shape), axis=-1).astype(float)
    world = ijk @ affine[:3, :3].T
    for axis, (world_axis, sign) in enumerate([(2, 1), (1, -1), (0, -1)]):
        if stack.shape[axis] > 1:
            step = np.take(world, 1, axis=axis) - np.take(world, 0, axis=axis)
            assert np.all(sign * step[..., world_axis] > 0)
            assert np.all(np.abs(step[..., world_axis]) >= np.abs(step).max(axis=-1) - 1e-9)


def test_voxel_spacing_and_volume_of_a_sheared_affine():
    # columns of lengths 0.5, 2 and 5 mm; the third is tilted 30 degrees towards the second
    tilt = math.radians(30.0)
    affine = np.array([[0.5, 0.0, 0.0, 10.0],
                       [0.0, 2.0, 5.0 * math.sin(tilt), -3.0],
                       [0.0, 0.0, 5.0 * math.cos(tilt), 7.0],
                       [0.0, 0.0, 0.0, 1.0]])
    assert voxel_spacing_mm(affine) == pytest.approx((0.5, 2.0, 5.0))
    assert voxel_volume_ml(affine) == pytest.approx(0.5 * 2.0 * 5.0 * math.cos(tilt) / 1000)
    with pytest.raises(ValueError, match=r"affine must be \(4, 4\), not \(3, 3\)"):
        voxel_spacing_mm(np.eye(3))
