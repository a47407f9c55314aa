"""Slice stacks between their native spacing and a working spacing (``--working_spacing_mm``).

Breathing moves tissue by millimetres, a network counts voxels: resampling every patient to one
working spacing gives the model one physical frame, whatever the scanner's slice thickness or
pixel size.

Grid convention (nnU-Net-like, corner-aligned): along an axis of n voxels spaced s mm, the
working grid has ``n' = round((n - 1) * s / s') + 1`` voxels and keeps the world positions of
the first and last voxel centres (trilinear interpolation with ``align_corners=True``). Its
actual step is therefore ``s * (n - 1) / (n' - 1)`` (:func:`effective_spacing_mm`), within half a
step of ``s'`` over the extent. A working spacing of 0 on an axis keeps it native. The way back
to the native grid is the same interpolation onto the native size, so a voxel centre maps to
the same world point both ways.

Axes are those of the slice stack (:mod:`util.geometry`): (slice, row, column).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from util.errors import ConfigError

#: (slice, row, column) sizes: voxel counts or spacings in mm.
Shape3 = tuple[int, int, int]
Spacing3 = tuple[float, float, float]
#: The working spacing that keeps every axis native.
NATIVE: Spacing3 = (0.0, 0.0, 0.0)


def checked_working_spacing(spacing_mm: Sequence[float]) -> Spacing3:
    """``spacing_mm`` as (slice, row, column) mm; ConfigError unless 3 finite values >= 0."""
    try:
        values = [float(v) for v in spacing_mm]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--working_spacing_mm takes 3 spacings in mm, got {spacing_mm!r}"
                          ) from exc
    if len(values) != 3 or not all(np.isfinite(v) and v >= 0 for v in values):
        raise ConfigError(f"--working_spacing_mm takes 3 spacings in mm (slice, row, column; "
                         f"0 = keep that axis native), each >= 0, got {values}")
    return values[0], values[1], values[2]


def is_native(working_spacing_mm: Sequence[float]) -> bool:
    """Whether ``working_spacing_mm`` keeps every axis native (all 0)."""
    return all(float(v) == 0.0 for v in working_spacing_mm)


def working_shape(shape: Sequence[int], spacing_mm: Sequence[float],
                  working_spacing_mm: Sequence[float]) -> Shape3:
    """(S', H', W') voxels of a stack of ``shape`` (S, H, W) spaced ``spacing_mm`` on the working
    grid: ``round((n - 1) * s / s') + 1`` per axis, n where ``s'`` is 0 (native)."""
    if len(shape) != 3 or len(spacing_mm) != 3 or len(working_spacing_mm) != 3:
        raise ValueError(f"expected 3 sizes, spacings and working spacings, got {tuple(shape)}, "
                         f"{tuple(spacing_mm)}, {tuple(working_spacing_mm)}")
    sizes = [n if w == 0 else round((n - 1) * s / w) + 1
             for n, s, w in zip(shape, spacing_mm, working_spacing_mm, strict=True)]
    return sizes[0], sizes[1], sizes[2]


def effective_spacing_mm(shape: Sequence[int], spacing_mm: Sequence[float],
                         working_spacing_mm: Sequence[float]) -> Spacing3:
    """The actual (slice, row, column) step in mm of the working grid of :func:`working_shape`:
    ``s * (n - 1) / (n' - 1)`` (the native ``s`` where the axis keeps its size)."""
    new = working_shape(shape, spacing_mm, working_spacing_mm)
    steps = [float(s) if m == n or m == 1 else float(s) * (n - 1) / (m - 1)
             for n, m, s in zip(shape, new, spacing_mm, strict=True)]
    return steps[0], steps[1], steps[2]


def resample_stack(stack: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Trilinear, corner-aligned resampling of ``stack`` (S, H, W) (any real dtype; HU, std or a
    displacement component) to ``shape`` (S', H', W'): float32. The array itself (as float32)
    when the shape is unchanged: no interpolation at all, bit for bit."""
    if stack.ndim != 3 or len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected an (S, H, W) stack and 3 positive sizes, got "
                         f"{stack.shape} -> {tuple(shape)}")
    if tuple(stack.shape) == tuple(shape):
        return stack.astype(np.float32, copy=False)
    x = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[None, None]
    out = F.interpolate(x, size=tuple(int(n) for n in shape), mode="trilinear",
                        align_corners=True)
    return out[0, 0].numpy()


def median_spacing_mm(spacings: Iterable[Sequence[float]]) -> Spacing3:
    """The median (slice, row, column) spacing in mm of a dataset's stacks, axis by axis: the
    working spacing a planner would pick (nnU-Net's target spacing). ValueError when there is
    none or one is not 3 positive values."""
    rows = [tuple(float(v) for v in s) for s in spacings]
    if not rows or any(len(r) != 3 or min(r) <= 0 for r in rows):
        raise ValueError(f"expected one or more (slice, row, column) spacings > 0 mm, got {rows}")
    median = np.median(np.asarray(rows, dtype=np.float64), axis=0)
    return float(median[0]), float(median[1]), float(median[2])
