"""CT volumes as compact axial slice stacks, and predicted slices back to HU volumes.

A stack holds HU in the canonical slice frame of :mod:`util.geometry` as int16 when that is
lossless (the usual case for CT), else float32; it becomes float only one slice at a time.

A CT volume comes from a NIfTI file or from a folder holding a DICOM CT series
(:func:`load_ct_stack`): one CT series is read as it is; of several, the one whose
SeriesDescription matches a pattern (:class:`SeriesChoice`) is read. A stack read from DICOM keeps
its :class:`~data.dicom_io.DicomSource`, what a derived series written beside it needs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data.dicom_io import (
    DicomSource,
    SeriesInfo,
    find_series,
    load_series,
    matching_series,
    pick_series,
)
from data.nifti_io import Volume, VolumeInfo, load_volume
from data.voxel_grid import compare_grids, mismatch_text
from util.errors import DataError
from util.geometry import (
    axial_axis,
    obliquity_deg,
    resize_slices,
    stack_affine,
    stack_spacing_mm,
    to_slice_stack,
)
from util.hu_window import hu_to_unit, unit_to_hu
from util.resample import effective_spacing_mm, resample_stack, working_shape

logger = logging.getLogger(__name__)

#: Largest difference (mm) between two affines' entries for AVG and phase 0 to count as aligned.
AFFINE_ATOL_MM = 1e-3
#: Obliquity (degrees) above which slicing along the nearest voxel axis is reported in the log.
OBLIQUE_LOG_DEG = 0.5


@dataclass(frozen=True)
class SliceStack:
    """One volume as axial slices: ``hu`` (S, H, W) int16 or float32 HU, and its source geometry;
    ``dicom``: the series it was read from (None for a NIfTI file)."""

    hu: np.ndarray
    info: VolumeInfo
    dicom: DicomSource | None = None

    @property
    def stack_spacing_mm(self) -> tuple[float, float, float]:
        """(slice thickness, row spacing, column spacing) in mm: the stack's axis order (S, H,
        W), not the voxel order of :attr:`VolumeInfo.spacing_mm`."""
        return stack_spacing_mm(self.info.affine)


def compact_hu(hu: np.ndarray) -> np.ndarray:
    """The smallest lossless array for HU values: int16 when all are integers in its range."""
    hu = np.ascontiguousarray(hu)
    info = np.iinfo(np.int16)
    if hu.size and hu.min() >= info.min and hu.max() <= info.max and np.all(np.rint(hu) == hu):
        return hu.astype(np.int16)
    return hu.astype(np.float32, copy=False)


def _refuse_constant(vol: Volume, where: str | os.PathLike[str]) -> Volume:
    """``vol``, or DataError naming ``where`` when every voxel has the same HU (an empty or
    failed export)."""
    lowest, highest = float(vol.hu.min()), float(vol.hu.max())
    if lowest == highest:
        raise DataError(f"{where}: constant volume, every voxel is {lowest:g} HU; not a CT image "
                        f"(an empty or failed export?)")
    return vol


def working_grid_stack(stack: SliceStack, working_spacing_mm: Sequence[float]) -> SliceStack:
    """``stack`` resampled to ``working_spacing_mm`` (slice, row, column mm; 0 = native axis):
    trilinear, corner-aligned (:mod:`util.resample`), as inference resamples the AVG. ``hu``
    (S', H', W') float32 HU; ``info`` describes that grid in stack order (voxel axes = (S, H, W),
    the affine of :func:`util.geometry.stack_affine` with its columns scaled to the effective
    step, the first voxel centre where it was; ``path``: the source file). The stack itself when
    the working grid has its shape."""
    native = stack.hu.shape
    shape = working_shape(native, stack.stack_spacing_mm, working_spacing_mm)
    if shape == native:
        return stack
    steps = effective_spacing_mm(native, stack.stack_spacing_mm, working_spacing_mm)
    affine = stack_affine(stack.info.affine, stack.info.shape)
    affine[:3, :3] = affine[:3, :3] * (np.array(steps) / np.array(stack.stack_spacing_mm))
    header = stack.info.header.copy()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header.set_slope_inter(1.0, 0.0)
    header.set_sform(affine, code=2)
    header.set_qform(affine, code=2)
    info = dataclasses.replace(stack.info, shape=shape, affine=affine, header=header)
    return SliceStack(hu=resample_stack(stack.hu, shape), info=info)


def load_ct_volume(path: str | os.PathLike[str]) -> Volume:
    """:func:`data.nifti_io.load_volume`, also refusing a volume without contrast (every voxel
    the same HU: an empty or failed export), with a DataError naming the file."""
    return _refuse_constant(load_volume(path), path)


def slice_stack(vol: Volume, dicom: DicomSource | None = None) -> SliceStack:
    """``vol`` ((I, J, K) float32 HU) as a compact axial slice stack (S, H, W) with its
    geometry (``dicom``: the series it was read from, if any); DataError naming ``vol.path``
    when it cannot be sliced axially. An oblique volume is sliced along the voxel axis closest
    to superior-inferior (logged)."""
    try:
        angle = obliquity_deg(vol.affine)
        if angle > OBLIQUE_LOG_DEG:
            logger.info("%s: oblique acquisition (%.1f deg); slicing along voxel axis %d, the "
                        "one closest to superior-inferior", vol.path, angle,
                        axial_axis(vol.affine))
        stack = to_slice_stack(vol.hu, vol.affine)
    except ValueError as exc:
        raise DataError(f"{vol.path}: cannot slice axially ({exc})") from exc
    return SliceStack(hu=compact_hu(stack), info=vol.info, dicom=dicom)


def load_slice_stack(path: str | os.PathLike[str]) -> SliceStack:
    """Read a NIfTI CT volume (HU, header scaling applied; see :func:`load_ct_volume`) as a
    compact axial slice stack."""
    return slice_stack(load_ct_volume(path))


@dataclass(frozen=True)
class SeriesChoice:
    """How to pick a CT series in a folder holding several: ``pattern``, an fnmatch pattern
    of the SeriesDescription (case-insensitive, e.g. ``"*AVG*"``), and the command-line
    ``option`` that sets it, named in refusals."""

    pattern: str
    option: str


def pick_ct_series(folder: str | os.PathLike[str], choice: SeriesChoice) -> SeriesInfo:
    """The CT series to read under ``folder`` (searched recursively): the only one, or the one
    whose description matches ``choice.pattern``. DataError in one line naming the folder when
    there is no CT series, or several and not exactly one matching (the series found and the
    option to set are named)."""
    folder = Path(folder)
    found = find_series(folder)
    ct = [s for s in found if s.modality == "CT"]
    if not ct:
        listing = "; ".join(s.label() for s in found) or "none"
        raise DataError(f"{folder}: no DICOM CT series found (series found: {listing})")
    if len(ct) == 1:
        if not matching_series(ct, choice.pattern):
            logger.warning("%s: taking the only CT series %s, although its description does "
                           "not match %s %r", folder, ct[0].label(), choice.option,
                           choice.pattern)
        return ct[0]
    try:
        return pick_series(ct, choice.pattern, folder)
    except DataError as exc:
        raise DataError(f"{exc}; choose the series with {choice.option} PATTERN") from exc


def load_dicom_stack(folder: str | os.PathLike[str], choice: SeriesChoice) -> SliceStack:
    """The CT series :func:`pick_ct_series` picks under ``folder``, read whole
    (:func:`data.dicom_io.load_series`: HU, RAS affine, every geometry check) as a compact
    axial slice stack that keeps its :class:`~data.dicom_io.DicomSource`. DataError naming the
    folder for a series that cannot be read, or a constant one."""
    series = load_series(pick_ct_series(folder, choice))
    return slice_stack(_refuse_constant(series.volume, folder), series.source)


def load_ct_stack(path: str | os.PathLike[str], choice: SeriesChoice) -> SliceStack:
    """A CT volume as a compact axial slice stack: a NIfTI file (:func:`load_slice_stack`) or a
    folder holding DICOM series (:func:`load_dicom_stack`, ``choice`` picking one of several)."""
    if Path(path).is_dir():
        return load_dicom_stack(path, choice)
    return load_slice_stack(path)


def check_same_geometry(a: VolumeInfo, b: VolumeInfo, atol_mm: float = AFFINE_ATOL_MM) -> None:
    """Raise DataError naming both files unless they have the same shape and affine (entries
    within ``atol_mm``), saying what differs: shape, voxel spacing, axis directions, origin, or
    only the order in which the same world grid's voxels are stored (:mod:`data.voxel_grid`)."""
    match = compare_grids(a, b, atol_mm)
    if match.differences:
        raise DataError(f"{a.path} and {b.path}: {mismatch_text(match, atol_mm)}")
    if match.reordered:
        raise DataError(f"{a.path} and {b.path}: same world grid, but the voxels are stored in "
                        f"another order ({match.to_axcodes} vs {match.from_axcodes})")


def context_indices(n_slices: int, index: int, context_slices: int) -> np.ndarray:
    """Stack positions of slice ``index`` and its ``context_slices`` neighbours on each side,
    inferior first: (2 * context_slices + 1,) int; beyond the first or last slice the edge slice
    is repeated."""
    if not 0 <= index < n_slices:
        raise IndexError(f"slice {index} outside a stack of {n_slices}")
    if context_slices < 0:
        raise ValueError(f"context_slices must be >= 0, got {context_slices}")
    offsets = np.arange(-context_slices, context_slices + 1)
    return np.clip(index + offsets, 0, n_slices - 1)


def context_window(stack_hu: np.ndarray, index: int, context_slices: int) -> np.ndarray:
    """The 2.5-D input of slice ``index``: (S, H, W) HU -> (2 * context_slices + 1, H, W) HU,
    the slice itself in the middle channel (see :func:`context_indices`)."""
    return stack_hu[context_indices(stack_hu.shape[0], index, context_slices)]


def slice_to_unit(hu_slice: np.ndarray, hu_min: float, hu_max: float,
                  resize_to: int = 0) -> torch.Tensor:
    """(H, W) or (C, H, W) HU -> (C, H', W') float32 tensor in [-1, 1] (C = 1 for a single
    slice); H' = W' = resize_to when > 0."""
    channels = hu_slice[None] if hu_slice.ndim == 2 else hu_slice
    return slices_to_unit(channels[None], hu_min, hu_max, resize_to)[0]


def slices_to_unit(hu_slices: np.ndarray, hu_min: float, hu_max: float,
                   resize_to: int = 0) -> torch.Tensor:
    """(N, H, W) or (N, C, H, W) HU slices (int16 or float) -> (N, C, H', W') float32 in
    [-1, 1] (C = 1 for (N, H, W)), converted to float here and only here; H' = W' = resize_to
    when > 0.

    The window is applied in NumPy (one thread): torch's intra-op threads cost more than they
    save on one slice, far more on a busy machine, and DataLoader workers have one thread anyway.
    """
    unit = hu_to_unit(hu_slices.astype(np.float32), hu_min, hu_max)
    x = torch.from_numpy(np.ascontiguousarray(unit))
    x = x[:, None] if x.ndim == 3 else x
    if resize_to > 0:
        x = resize_slices(x, (resize_to, resize_to))
    return x


def unit_slices_to_hu(pred: torch.Tensor, size: tuple[int, int], hu_min: float,
                      hu_max: float) -> np.ndarray:
    """Network slices (S, 1, h, w) in [-1, 1] -> (S, H, W) float32 HU at ``size`` = (H, W)."""
    native = resize_slices(pred.float(), size)[:, 0]
    return unit_to_hu(native, hu_min, hu_max).cpu().numpy().astype(np.float32)


def describe_memory(stacks: list[SliceStack]) -> str:
    """Human summary of the voxel memory held by ``stacks`` (MiB and dtypes)."""
    total = sum(s.hu.nbytes for s in stacks)
    dtypes = sorted({str(s.hu.dtype) for s in stacks})
    return f"{total / 2**20:.1f} MiB ({', '.join(dtypes)})"

