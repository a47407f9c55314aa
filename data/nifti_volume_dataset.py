"""Paired NIfTI volumes served as 3-D patches (``--dataset_mode nifti_volume``), for volumetric
generators.

Pairing, loading (``--volume_cache`` included) and the geometry checks are those of
:class:`data.nifti_aligned_dataset.NiftiAlignedDataset`; the volumes are held as the same slice
stacks, in the stack frame of :mod:`util.geometry` (S inferior -> superior, H anterior ->
posterior, W patient right -> left). A sample is a (D, H, W) box of that frame:

- ``--patch_size D H W`` voxels, 0 on an axis = the whole axis (``0 0 0``: whole volumes). A
  volume smaller than the patch on an axis is centred in it and padded with air (-1024 HU).
- With probability ``--motion_fraction`` the box is centred on a voxel drawn uniformly from the
  patient's moving voxels (|phase 0 - AVG| > ``--motion_threshold_hu``), then moved the least
  needed to lie inside the volume; otherwise its origin is uniform over all positions inside.
  A patient without moving voxels always gets uniform boxes.
- Every draw (box, flip) comes from torch's global generator inside ``__getitem__``, seeded per
  DataLoader worker, so a seeded run draws the same patches and resumes exactly.

With ``--phases`` the patches are drawn for every (patient, phase) that exists, the moving voxels
being those of that phase (|phase p - AVG| > ``--motion_threshold_hu``); the input carries the
phase as two constant volumes (sin, cos) after the image channel. With ``--working_spacing_mm``
(training) the stacks are held, and patches drawn, on that grid.
"""

from __future__ import annotations

import argparse
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.ct_volumes import AFFINE_ATOL_MM
from data.nifti_aligned_dataset import (
    NiftiAlignedDataset,
    check_phase_direction,
    dataroot_folders,
    input_channels,
)
from data.phase_volumes import dataset_phases
from data.settings import DataSettings
from util.errors import ConfigError
from util.hu_window import DEFAULT_HU_MAX, DEFAULT_HU_MIN, hu_to_unit
from util.phases import PHASE_CHANNELS
from util.resample import NATIVE

logger = logging.getLogger(__name__)

#: HU of the padding around a volume smaller than the patch (air).
AIR_HU = -1024
#: Slices compared at a time when finding moving voxels (bounds the temporary memory).
MOTION_CHUNK_SLICES = 16

Shape3 = tuple[int, int, int]


class NiftiVolumeDataset(NiftiAlignedDataset):
    """3-D patches of paired CT volumes (see the module docstring for how they are drawn).

    A sample: ``A`` and ``B`` (1, D, H, W) float32 in [-1, 1] (HU window ``hu_min``..
    ``hu_max``), ``patch_origin`` (3,) int64, the patch's first voxel in the stack frame
    (negative on an axis where the volume is padded), ``patient_id``, ``patient_index``,
    ``A_paths``/``B_paths``. Without a ``<phase>B`` folder at test time, samples carry ``A``
    alone. ``stacks_a``/``stacks_b`` hold the whole volumes, as in the parent.

    With ``phases``: ``patches_per_volume`` patches of every (patient, phase) that exists;
    ``A`` (1+2, D, H, W), the image then the constant (sin, cos) volumes of the phase; ``B``
    that phase's patch, ``B_paths`` its file, ``phase_pct`` the phase in % (float).
    """

    sample_unit = "patches"

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser,
                                   is_train: bool) -> argparse.ArgumentParser:
        """The parent's options (``--volume_cache``) and how patches are drawn."""
        parser = NiftiAlignedDataset.modify_commandline_options(parser, is_train)
        parser.set_defaults(axial_slice=False)  # 3-D patches, not slices
        g = parser.add_argument_group("3-D patches (nifti_volume)")
        g.add_argument("--patches_per_volume", type=int, default=1,
                       help="3-D patches drawn from each patient per epoch")
        g.add_argument("--motion_fraction", type=float, default=0.7,
                       help="share of patches centred on a moving voxel (|phase 0 - AVG| > "
                            "--motion_threshold_hu), the others placed uniformly (0-1)")
        return parser

    def __init__(self, folder_a: str | Path, folder_b: str | Path | None = None, *,
                 patch_size: Sequence[int] = (0, 0, 0), patches_per_volume: int = 1,
                 motion_fraction: float = 0.7, motion_threshold_hu: float = 50.0,
                 hu_min: float = DEFAULT_HU_MIN, hu_max: float = DEFAULT_HU_MAX,
                 a_to_b: bool = True, flip: bool = False, max_patients: int | None = None,
                 max_samples: float = float("inf"), volume_cache: int = 0,
                 geometry_atol_mm: float = AFFINE_ATOL_MM,
                 phases: Sequence[float] | None = None,
                 working_spacing_mm: Sequence[float] = NATIVE) -> None:
        """Pair ``folder_a/<id>.nii[.gz]`` (AVG) with ``folder_b/<id>...`` (phase 0; None: no
        truth) and serve ``patches_per_volume`` patches of each patient per epoch.

        ``patch_size``: (D, H, W) voxels in the stack frame, 0 = the whole axis;
        ``motion_fraction``: share of patches centred on a moving voxel, where |B - A| >
        ``motion_threshold_hu`` (HU); ``max_samples``: at most that many samples per epoch,
        spread over the patients (and phases); the other arguments, ``phases`` and
        ``working_spacing_mm`` (patches then drawn from the working grid) included, as in
        :class:`NiftiAlignedDataset`.
        """
        self.patch_size = checked_patch_size(patch_size)
        self.whole_axis_multiple = 1
        if patches_per_volume < 1:
            raise ConfigError(f"--patches_per_volume must be at least 1, got {patches_per_volume}")
        if not 0.0 <= motion_fraction <= 1.0:
            raise ConfigError(f"--motion_fraction must be in [0, 1], got {motion_fraction}")
        self.patches_per_volume = patches_per_volume
        self.motion_fraction = motion_fraction
        self.motion_threshold_hu = motion_threshold_hu
        super().__init__(folder_a, folder_b, hu_min=hu_min, hu_max=hu_max, a_to_b=a_to_b,
                         flip=flip, max_patients=max_patients, max_slices=max_samples,
                         volume_cache=volume_cache, geometry_atol_mm=geometry_atol_mm,
                         phases=phases, working_spacing_mm=working_spacing_mm)
        # as many (patient, phase) as the lazy caches hold volumes of
        self.moving = MovingVoxelCache(volume_cache * len(self.slot_phases) if self.lazy
                                       else None)
        if not self.lazy and self.has_target and motion_fraction > 0:
            self._find_all_moving_voxels()

    @classmethod
    def from_settings(cls, settings: DataSettings) -> NiftiVolumeDataset:
        """The patch dataset of ``<dataroot>/<phase>A`` and ``<phase>B`` as ``settings``
        describe; ConfigError for settings it cannot serve."""
        _check_settings(settings)
        dir_a, dir_b = dataroot_folders(settings)
        s = settings
        return cls(dir_a, dir_b, patch_size=s.patch_size,
                   patches_per_volume=s.patches_per_volume, motion_fraction=s.motion_fraction,
                   motion_threshold_hu=s.motion_threshold_hu, hu_min=s.hu_min,
                   hu_max=s.hu_max, a_to_b=s.a_to_b, flip=s.flip,
                   max_patients=s.max_patients, max_samples=s.max_dataset_size,
                   volume_cache=s.volume_cache, geometry_atol_mm=s.geometry_atol_mm,
                   phases=dataset_phases(s.phases, Path(s.dataroot), s.phase),
                   working_spacing_mm=s.grid_spacing_mm)

    def samples_per_volume(self, patient_index: int) -> int:  # noqa: ARG002
        """Samples of one (patient, phase): ``patches_per_volume`` patch draws (the index
        holds (patient, phase slot, k) for the k-th)."""
        return self.patches_per_volume

    def moving_voxels(self, patient_index: int, percent: float = 0.0) -> np.ndarray:
        """Flat (C-order) indices into the patient's (S, H, W) stack of the voxels where
        |B - A| > ``motion_threshold_hu`` HU, B = the patient's phase ``percent`` (%): (N,)
        int32 (int64 for huge stacks); empty without that B."""
        if not self.has_phase(patient_index, percent):
            return np.empty(0, dtype=np.int64)
        return self.moving.get((patient_index, float(percent)), lambda: find_moving_voxels(
            self.stacks_a[patient_index].hu, self.target_stack(patient_index, percent).hu,
            self.motion_threshold_hu))

    def pad_whole_axes_to(self, multiple: int) -> None:
        """Serve whole-axis patch sides (``patch_size`` 0) padded with air up to a multiple of
        ``multiple`` voxels: the sides a volumetric network takes."""
        if multiple < 1:
            raise ValueError(f"multiple must be >= 1, got {multiple}")
        self.whole_axis_multiple = multiple

    def patch_shapes(self) -> set[Shape3]:
        """Distinct (D, H, W) voxel sizes of the patches served (from the headers, on the
        working grid)."""
        return {patch_extent(shape, self.patch_size, self.whole_axis_multiple)
                for shape in self.grid_shapes}

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Patch ``index``: see the class docstring for the keys."""
        v, k, _ = self.index[index]
        percent = self.slot_phases[k]
        shape = _shape3(self.stacks_a[v].hu.shape)
        size = patch_extent(shape, self.patch_size, self.whole_axis_multiple)
        origin = self._draw_origin(v, percent, shape, size)
        flip = self.flip and bool(torch.rand(()) < 0.5)
        item: dict[str, Any] = {"patient_id": self.patient_ids[v], "patient_index": v,
                                "patch_origin": torch.tensor(origin, dtype=torch.int64)}
        sides = [("A", self.stacks_a[v])]
        sides += [("B", self.target_stack(v, percent))] if self.has_target else []
        for key, stack in sides:
            patch = crop_padded(stack.hu, origin, size)
            unit = hu_to_unit(patch.astype(np.float32), self.hu_min, self.hu_max)
            unit = unit[..., ::-1] if flip else unit
            item[key] = torch.from_numpy(np.ascontiguousarray(unit))[None]
            item[f"{key}_paths"] = str(stack.info.path)
        if not self.a_to_b:
            item["A"], item["B"] = item["B"], item["A"]
            item["A_paths"], item["B_paths"] = item["B_paths"], item["A_paths"]
        return self.add_phase(item, percent)

    def _draw_origin(self, patient_index: int, percent: float, shape: Shape3,
                     size: Shape3) -> Shape3:
        """The first voxel of a patch of ``size`` in a stack of ``shape``: centred on a voxel
        moving in phase ``percent`` (with probability ``motion_fraction``, when the patient has
        any) and clamped inside, else uniform over the positions inside."""
        bounds = [origin_bounds(n, p) for n, p in zip(shape, size, strict=True)]
        if self.motion_fraction > 0 and bool(torch.rand(()) < self.motion_fraction):
            moving = self.moving_voxels(patient_index, percent)
            if moving.size:
                flat = int(moving[int(torch.randint(moving.size, ()))])
                centre = np.unravel_index(flat, shape)
                s, h, w = (int(np.clip(int(c) - p // 2, lo, hi))
                           for c, p, (lo, hi) in zip(centre, size, bounds, strict=True))
                return s, h, w
        s, h, w = (lo + int(torch.randint(hi - lo + 1, ())) for lo, hi in bounds)
        return s, h, w

    def _find_all_moving_voxels(self) -> None:
        """Find the moving voxels of every (patient, phase) now (before DataLoader workers
        fork) and log their share."""
        held = [(v, p) for v in range(len(self.patient_ids)) for p in self.slot_phases
                if self.has_phase(v, p)]
        counts = [self.moving_voxels(v, p).size for v, p in held]
        total = sum(self.stacks_a[v].hu.size for v, _ in held)
        still = sum(1 for c in counts if c == 0)
        logger.info("%s: moving voxels (|B - A| > %g HU): %.2f %% of all; %d of %d %s "
                    "without any (their patches are placed uniformly)", self.root,
                    self.motion_threshold_hu, 100.0 * sum(counts) / max(total, 1), still,
                    len(counts), "(patient, phase) pairs" if self.phases else "patients")


class MovingVoxelCache:
    """Moving-voxel indices per key (patient, phase), computed once; the ``capacity`` most
    recently used kept (None: all, for volumes held in memory anyway)."""

    def __init__(self, capacity: int | None) -> None:
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be at least 1 volume or None, got {capacity}")
        self.capacity = capacity
        self._found: OrderedDict[Hashable, np.ndarray] = OrderedDict()

    def get(self, key: Hashable, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The indices of ``key``, from ``compute()`` unless held; the least recently used key
        is dropped beyond ``capacity``."""
        found = self._found.pop(key, None)
        if found is None:
            found = compute()
            while self.capacity is not None and len(self._found) >= self.capacity:
                self._found.popitem(last=False)
        self._found[key] = found
        return found


def checked_patch_size(patch_size: Sequence[int]) -> Shape3:
    """``patch_size`` as (D, H, W) voxels, 0 = whole axis; ConfigError naming
    ``--patch_size`` unless it is 3 sizes >= 0."""
    sizes = list(patch_size)
    if len(sizes) != 3:
        raise ConfigError(f"--patch_size takes 3 sizes (D H W voxels in the slice-stack frame, "
                          f"0 = the whole axis), got {sizes}: pass e.g. --patch_size 32 64 64")
    if any(int(p) != p or p < 0 for p in sizes):
        raise ConfigError(f"--patch_size sides must be whole voxel counts, 0 (the whole axis) "
                          f"or more, got {sizes}")
    return int(sizes[0]), int(sizes[1]), int(sizes[2])


def patch_extent(shape: Shape3, patch_size: Shape3, whole_axis_multiple: int = 1) -> Shape3:
    """(D, H, W) voxels of a patch of ``patch_size`` in a stack of ``shape`` = (S, H, W): 0 on an
    axis = that axis of ``shape``, rounded up to a multiple of ``whole_axis_multiple``."""
    m = whole_axis_multiple
    d, h, w = (-(-n // m) * m if p == 0 else p for n, p in zip(shape, patch_size, strict=True))
    return d, h, w


def origin_bounds(n: int, p: int) -> tuple[int, int]:
    """Lowest and highest first voxel of a patch of ``p`` voxels on an axis of ``n`` voxels:
    inside the axis when it fits (0 .. n - p), else the one that centres the axis in the patch
    (negative: padded)."""
    if p <= n:
        return 0, n - p
    centred = -((p - n) // 2)
    return centred, centred


def crop_padded(hu: np.ndarray, origin: Shape3, size: Shape3,
                fill_hu: float = AIR_HU) -> np.ndarray:
    """The box of ``size`` voxels from ``origin`` (may lie partly outside) of ``hu`` (S, H, W)
    HU: (D, H, W) in ``hu``'s dtype, voxels outside the volume set to ``fill_hu``."""
    out = np.full(size, fill_hu, dtype=hu.dtype)
    src, dst = [], []
    for o, p, n in zip(origin, size, hu.shape, strict=True):
        lo, hi = max(o, 0), min(o + p, n)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - o, hi - o))
    out[tuple(dst)] = hu[tuple(src)]
    return out


def find_moving_voxels(a_hu: np.ndarray, b_hu: np.ndarray, threshold_hu: float) -> np.ndarray:
    """Flat (C-order) indices of the voxels where |b - a| > ``threshold_hu``: a, b (S, H, W)
    HU (int16 or float32) -> (N,) int32 (int64 beyond 2**31 voxels), ascending. Compared
    :data:`MOTION_CHUNK_SLICES` slices at a time, so the temporary memory stays small."""
    if a_hu.shape != b_hu.shape:
        raise ValueError(f"A and B stacks differ in shape: {a_hu.shape} vs {b_hu.shape}")
    dtype = np.int32 if a_hu.size <= np.iinfo(np.int32).max else np.int64
    per_slice = int(np.prod(a_hu.shape[1:]))
    parts = [np.empty(0, dtype=dtype)]
    for start in range(0, a_hu.shape[0], MOTION_CHUNK_SLICES):
        a = a_hu[start:start + MOTION_CHUNK_SLICES].astype(np.float32)
        b = b_hu[start:start + MOTION_CHUNK_SLICES].astype(np.float32)
        found = np.flatnonzero(np.abs(b - a) > threshold_hu) + start * per_slice
        parts.append(found.astype(dtype))
    return np.concatenate(parts)


def _shape3(shape: tuple[int, ...]) -> Shape3:
    """A stack's shape as (S, H, W)."""
    s, h, w = shape
    return s, h, w


def _check_settings(settings: DataSettings) -> None:
    """Refuse settings the patch dataset cannot serve (ConfigError saying what to pass); the
    patch and sampling settings are checked by the constructor."""
    mode, s = "--dataset_mode nifti_volume", settings
    check_phase_direction(s)
    expected_nc = input_channels(0, s.phase_planes)
    if s.input_nc != expected_nc or s.output_nc != 1:
        served = (f"with --phases {s.phases} serves {expected_nc} input channels (1 image, "
                  f"then {PHASE_CHANNELS} phase volumes: sin, cos)" if s.phase_planes
                  else "serves 1 input")
        raise ConfigError(f"{mode} {served} and 1 output channel; got --input_nc "
                          f"{s.input_nc} --output_nc {s.output_nc}: pass --input_nc "
                          f"{expected_nc} --output_nc 1")
    if s.context_slices != 0:
        raise ConfigError(f"{mode} serves 3-D patches, whose neighbours are in the patch: pass "
                          f"--context_slices 0 (got {s.context_slices})")
    if s.resize_to != 0:
        raise ConfigError(f"{mode} does not resize: pass --resize_to 0 (got {s.resize_to}) "
                          f"and choose the size with --patch_size")
    if s.preprocess != "none":
        raise ConfigError(f"{mode} supports --preprocess none only (got '{s.preprocess}')")
