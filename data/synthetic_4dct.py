"""The built-in synthetic 4DCT: a breathing thorax phantom, ten gated phases and their average.

Each patient is an elliptical body (soft tissue under a thin fat layer) holding two lungs whose
inferior boundary is the diaphragm dome, a heart between them, the spine posteriorly, the liver
under the right dome, a few vessels in the lungs and a tumour in one lung. Phase ``p`` (0..9, i.e.
0 %, 10 %, ..., 90 % of the cycle) moves the diaphragm inferiorly by

    d(p) = amplitude_mm * cos(pi p / 10) ** 4

(the cos^2n breathing model of Lujan et al., Med. Phys. 1999, with n = 2), so phase 0 is
end-inhale (diaphragm lowest, lungs largest) and phase 5 end-exhale. Breathing dwells near
exhale, as patients do: the mean displacement is 3/8 of the amplitude, so the AVG is blurred
towards exhale and phase 0 is the phase farthest from it. Everything
between the fixed lung apex and the dome is stretched with it (tissue near the dome moves the
most), the abdomen below follows the dome, and the anterior chest wall expands a little. The
phantom is built by pulling every output voxel back into the end-exhale anatomy, with soft
(one-voxel) edges, all in vectorised numpy. Independent Gaussian noise is added per phase, HU are
rounded to integers and clipped to [-1024, 3071] like a CT export, and the AVG is the mean of
those ten noisy phases.

The volume centre sits at a fixed, non-zero world position; the voxel order is LPS by default
(affine ``diag(-dx, -dy, dz)``) or RAS, and both describe the same physical phantom.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm import tqdm

from data.nifti_io import Volume, save_volume
from data.synthetic_params import (
    DEFAULT_RANGES,
    ParamRanges,
    PatientParams,
    sample_patient_params,
)
from util.errors import ConfigError

logger = logging.getLogger(__name__)

N_PHASES = 10
ORIENTATIONS = ("LPS", "RAS")
STORAGES = ("int16", "uint16")
HU_STORED_MIN, HU_STORED_MAX = -1024.0, 3071.0

HU_AIR, HU_FAT, HU_SOFT_TISSUE, HU_LUNG = -1000.0, -100.0, 40.0, -850.0
HU_HEART, HU_LIVER, HU_BONE, HU_VESSEL, HU_TUMOUR = 40.0, 60.0, 700.0, 40.0, 20.0

#: World position (RAS+, mm) of the volume centre: a non-zero origin, as scanners export.
_CENTRE_MM = np.array([1.5, -18.0, -142.0])
_DOME_DEPTH_MM = 15.0  # how much lower the dome is at the lung periphery than at its top
_LEFT_DOME_DROP_MM = 6.0  # the left hemidiaphragm sits a little lower than the right
_ABDOMEN_TAPER_MM = 100.0  # below the dome, motion fades to zero over this distance
_VESSEL_RADIUS_MM = 3.5


@dataclass(frozen=True)
class SyntheticGrid:
    """Voxel grid of the synthetic CT: ``size`` x ``size`` voxels over ``fov_mm``, then slices."""

    size: int = 64
    n_slices: int = 32
    fov_mm: float = 350.0
    slice_thickness_mm: float = 3.0
    orientation: str = "LPS"

    def __post_init__(self) -> None:
        if self.size < 8 or self.n_slices < 2:
            raise ConfigError(f"synthetic grid must be at least 8 x 8 x 2 voxels, "
                              f"got size={self.size}, n_slices={self.n_slices}")
        if not (self.fov_mm > 0 and self.slice_thickness_mm > 0):
            raise ConfigError(f"fov_mm and slice_thickness_mm must be > 0, "
                              f"got {self.fov_mm} and {self.slice_thickness_mm}")
        if self.orientation not in ORIENTATIONS:
            raise ConfigError(f"unknown orientation {self.orientation!r}; valid: {ORIENTATIONS}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(I, J, K) voxel shape."""
        return (self.size, self.size, self.n_slices)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size (mm) along I, J, K."""
        return (self.fov_mm / self.size, self.fov_mm / self.size, self.slice_thickness_mm)

    def affine(self) -> np.ndarray:
        """(4, 4) voxel -> world (RAS+, mm): ``diag(-dx, -dy, dz)`` for LPS, ``diag(dx, dy, dz)``
        for RAS, centred on a fixed non-zero world point."""
        sign = (-1.0, -1.0, 1.0) if self.orientation == "LPS" else (1.0, 1.0, 1.0)
        linear = np.diag(np.array(sign) * np.array(self.spacing_mm))
        centre_vox = (np.array(self.shape, dtype=np.float64) - 1.0) / 2.0
        affine = np.eye(4)
        affine[:3, :3] = linear
        affine[:3, 3] = _CENTRE_MM - linear @ centre_vox
        return affine


@dataclass(frozen=True)
class SyntheticPatient:
    """Arrays of one patient, in the grid's voxel order: ``phases_hu`` (10, I, J, K) float32
    integer-valued HU with noise; ``avg_hu`` (I, J, K) float32 mean of those phases;
    ``noiseless_hu`` (10, I, J, K) float32 HU; ``affine`` (4, 4)."""

    phases_hu: np.ndarray
    avg_hu: np.ndarray
    noiseless_hu: np.ndarray
    affine: np.ndarray


def phase_displacement_mm(phase: int, amplitude_mm: float) -> float:
    """Inferior displacement (mm) of the diaphragm at phase ``phase`` (0 = end-inhale):
    ``amplitude_mm * cos(pi * phase / 10) ** 4``."""
    return amplitude_mm * math.cos(math.pi * phase / N_PHASES) ** 4


def _soft(sd_vox: np.ndarray) -> np.ndarray:
    """Occupancy in [0, 1] from a signed distance in voxels (negative inside), one voxel wide."""
    return np.clip(0.5 - sd_vox, 0.0, 1.0)


def _ellipse_sd_mm(q: np.ndarray, radius_mm: float) -> np.ndarray:
    """Approximate signed distance (mm) from a normalised quadric ``q`` (1 on the surface)."""
    return (np.sqrt(q) - 1.0) * radius_mm


def _paint(vol: np.ndarray, occupancy: np.ndarray, hu: float) -> None:
    """Blend ``hu`` into ``vol`` in place where ``occupancy`` (broadcastable to it) is > 0."""
    vol += occupancy * (hu - vol)


def _si_landmarks_mm(params: PatientParams, grid: SyntheticGrid) -> tuple[float, float]:
    """(lung apex, end-exhale dome top) heights in mm from the volume centre (+ superior)."""
    half_mm = grid.n_slices * grid.slice_thickness_mm / 2.0
    return half_mm, min(params.amplitude_mm / 2.0, 0.4 * half_mm)


def _pull_back_z(z: np.ndarray, d_mm: float, apex: float, dome: float) -> tuple[np.ndarray,
                                                                                  np.ndarray]:
    """End-exhale height of the tissue found at height ``z`` (K,) mm when the dome is ``d_mm``
    lower, and the motion weight (K,) in [0, 1] (0 at the apex and far below the dome)."""
    length, low = apex - dome, dome - _ABDOMEN_TAPER_MM
    dome_now = dome - d_mm
    stretch = (z < apex) & (z >= dome_now)
    below = z < dome_now
    z_ref = z.copy()
    z_ref[stretch] = apex - (apex - z[stretch]) * length / (length + d_mm)
    z_ref[below] = z[below] + d_mm * np.clip((z[below] - low) / (dome_now - low), 0.0, 1.0)
    weight = np.where(z >= dome, np.clip((apex - z) / length, 0.0, 1.0),
                      np.clip((z - low) / (dome - low), 0.0, 1.0))
    return z_ref, weight


def _lung_frame(params: PatientParams, side: float) -> tuple[float, float, float, float]:
    """(x centre, y centre, x radius, y radius), mm, of the lung on ``side`` (+1 right, -1 left)."""
    bx, by = params.body_half_width_mm, params.body_half_depth_mm
    return (side * 0.42 * bx, -0.05 * by, 0.30 * bx * params.lung_scale,
            0.70 * by * params.lung_scale)


def _lungs(params: PatientParams, xyz: tuple[np.ndarray, ...], apex: float, dome: float,
           edge_mm: tuple[float, float]) -> list[np.ndarray]:
    """Occupancy (I, J, K) of the right and left lung: an in-plane ellipse narrowing to the apex,
    cut inferiorly by its dome."""
    x, y, z = xyz
    occupancies = []
    for side in (1.0, -1.0):
        xl, yl, rx, ry = _lung_frame(params, side)
        q_xy = ((x - xl) / rx) ** 2 + ((y - yl) / ry) ** 2
        q = q_xy + (np.maximum(z - dome, 0.0) / (apex - dome)) ** 2
        dome_top = dome if side > 0 else dome - _LEFT_DOME_DROP_MM
        below_dome_mm = dome_top - _DOME_DEPTH_MM * q_xy - z
        occupancies.append(_soft(np.maximum(_ellipse_sd_mm(q, min(rx, ry)) / edge_mm[0],
                                            below_dome_mm / edge_mm[1])))
    return occupancies


def _segment_distance_mm(xyz: tuple[np.ndarray, ...], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance (mm) from every point to the segment a -> b (both (3,) mm)."""
    ab = (b - a).astype(np.float32)
    rel = [c - np.float32(a[i]) for i, c in enumerate(xyz)]
    t = np.clip(sum(r * ab[i] for i, r in enumerate(rel)) / ab.dot(ab), 0.0, 1.0)
    return np.sqrt(sum((r - t * ab[i]) ** 2 for i, r in enumerate(rel)))


def _vessels(params: PatientParams, xyz: tuple[np.ndarray, ...], apex: float, dome: float,
             edge_mm: float) -> np.ndarray:
    """Occupancy of three tubes per lung fanning out from the hilum (before masking to the lung)."""
    rz = apex - dome
    nearest = np.full(np.broadcast_shapes(*(c.shape for c in xyz)), np.inf, dtype=np.float32)
    for side in (1.0, -1.0):
        xl, yl, rx, ry = _lung_frame(params, side)
        hilum = np.array([xl - side * 0.55 * rx, yl + 0.1 * ry, dome + 0.3 * rz])
        ends = ([xl + side * 0.6 * rx, yl + 0.3 * ry, dome + 0.75 * rz],
                [xl + side * 0.5 * rx, yl - 0.5 * ry, dome + 0.05 * rz],
                [xl, yl + 0.7 * ry, dome + 0.2 * rz])
        for end in ends:
            np.minimum(nearest, _segment_distance_mm(xyz, hilum, np.array(end)), out=nearest)
    return _soft((nearest - _VESSEL_RADIUS_MM) / edge_mm)


def _tumour(params: PatientParams, xyz: tuple[np.ndarray, ...], apex: float, dome: float,
            edge_mm: float) -> np.ndarray:
    """Occupancy of the spherical tumour, placed inside the lower part of one lung."""
    xl, yl, rx, ry = _lung_frame(params, 1.0 if params.tumour_side == "right" else -1.0)
    u, v, w = params.tumour_offset
    r = params.tumour_radius_mm
    centre = (xl + u * 0.45 * rx, yl + v * 0.45 * ry,
              dome + r + w * max(0.0, 0.5 * (apex - dome) - r))
    dist = np.sqrt(sum((c - centre[i]) ** 2 for i, c in enumerate(xyz)))
    return _soft((dist - r) / edge_mm)


def _canonical_phase(params: PatientParams, grid: SyntheticGrid, phase: int) -> np.ndarray:
    """Noiseless phase ``phase`` as (I, J, K) float32 HU in LPS voxel order."""
    dx, dy, dz = grid.spacing_mm
    x = -(np.arange(grid.size) - (grid.size - 1) / 2.0) * dx  # + towards the patient's right
    y = -(np.arange(grid.size) - (grid.size - 1) / 2.0) * dy  # + anterior
    z = (np.arange(grid.n_slices) - (grid.n_slices - 1) / 2.0) * dz  # + superior
    apex, dome = _si_landmarks_mm(params, grid)
    z_ref, weight = _pull_back_z(z, phase_displacement_mm(phase, params.amplitude_mm), apex, dome)
    bx, by, fat = params.body_half_width_mm, params.body_half_depth_mm, params.fat_mm
    expansion = params.chest_expansion_mm * (1.0 + math.cos(2.0 * math.pi * phase / N_PHASES)) / 2
    y_ref = -by + (y[:, None] + by) * (2 * by) / (2 * by + expansion * weight[None, :])
    xs, ys = x[:, None, None].astype(np.float32), y_ref[None, :, :].astype(np.float32)
    zs = z_ref[None, None, :].astype(np.float32)
    xyz = (xs, ys, zs)

    vol = np.full(grid.shape, HU_AIR, dtype=np.float32)
    _paint(vol, _soft(_ellipse_sd_mm((xs / bx) ** 2 + (ys / by) ** 2, by) / dx),
           HU_FAT if fat > 0 else HU_SOFT_TISSUE)
    if fat > 0:
        inner = (xs / (bx - fat)) ** 2 + (ys / (by - fat)) ** 2
        _paint(vol, _soft(_ellipse_sd_mm(inner, by - fat) / dx), HU_SOFT_TISSUE)
    wall = fat + 12.0
    cavity = _ellipse_sd_mm((xs / (bx - wall)) ** 2 + (ys / (by - wall)) ** 2, by - wall)
    xl, yl, rx, ry = _lung_frame(params, 1.0)
    right_dome = dome - _DOME_DEPTH_MM * (((xs - xl) / rx) ** 2 + ((ys - yl) / ry) ** 2)
    liver_xy = np.maximum(cavity, -0.25 * bx - xs) / dx
    _paint(vol, _soft(np.maximum(liver_xy, (zs - right_dome) / dz)), HU_LIVER)
    lungs = _lungs(params, xyz, apex, dome, (dx, dz))
    for lung in lungs:
        _paint(vol, lung, HU_LUNG)
    rz = apex - dome
    heart = ((xs + 0.1 * bx) / (0.25 * bx)) ** 2 + ((ys - 0.3 * by) / (0.35 * by)) ** 2 \
        + ((zs - dome - 0.35 * rz) / (0.5 * rz)) ** 2
    heart_sd = np.maximum(_ellipse_sd_mm(heart, 0.25 * bx) / dx, (dome - 4.0 - zs) / dz)
    _paint(vol, _soft(heart_sd), HU_HEART)
    spine = np.sqrt(x[:, None, None] ** 2 + (y[None, :, None] + 0.72 * by) ** 2)
    _paint(vol, _soft((spine - 0.11 * bx) / dx), HU_BONE)
    _paint(vol, _vessels(params, xyz, apex, dome, dx) * np.maximum(lungs[0], lungs[1]), HU_VESSEL)
    _paint(vol, _tumour(params, xyz, apex, dome, dx), HU_TUMOUR)
    return vol


def _to_grid_order(arr: np.ndarray, grid: SyntheticGrid) -> np.ndarray:
    """(..., I, J, K) in LPS voxel order -> the grid's voxel order (a flip of I and J for RAS)."""
    if grid.orientation == "RAS":
        return np.ascontiguousarray(np.flip(arr, axis=(-3, -2)))
    return arr


def noiseless_phases(params: PatientParams, grid: SyntheticGrid) -> np.ndarray:
    """The ten noiseless phases: (10, I, J, K) float32 HU in the grid's voxel order."""
    clean = np.stack([_canonical_phase(params, grid, p) for p in range(N_PHASES)])
    return _to_grid_order(clean, grid)


def synthetic_patient(params: PatientParams, grid: SyntheticGrid) -> SyntheticPatient:
    """Noisy phases (integer HU clipped to [-1024, 3071]), their mean (AVG), and the noiseless
    phases, all in the grid's voxel order, with the grid's affine."""
    clean = np.stack([_canonical_phase(params, grid, p) for p in range(N_PHASES)])
    rng = np.random.default_rng(params.noise_seed)
    noisy = clean + rng.normal(0.0, params.noise_hu, size=clean.shape)
    phases = np.clip(np.rint(noisy), HU_STORED_MIN, HU_STORED_MAX).astype(np.float32)
    phases = _to_grid_order(phases, grid)
    return SyntheticPatient(phases_hu=phases, avg_hu=phases.mean(axis=0, dtype=np.float64)
                            .astype(np.float32), noiseless_hu=_to_grid_order(clean, grid),
                            affine=grid.affine())


def patient_id(index: int, prefix: str = "PT") -> str:
    """Id of the ``index``-th (0-based) synthetic patient: ``PT001``, ``PT002``, ..."""
    if not prefix.isalnum():
        raise ConfigError(f"patient id prefix must be letters and digits, not {prefix!r}")
    return f"{prefix}{index + 1:03d}"


def patient_params(seed: int, index: int, ranges: ParamRanges = DEFAULT_RANGES, *,
                   chest_expansion_mm: float | None = None, fat_mm: float = 8.0) -> PatientParams:
    """The parameters of patient ``index`` of the tree written with ``seed`` and ``ranges``:
    they depend on ``(seed, index)`` only, so adding patients never changes earlier ones."""
    return sample_patient_params(np.random.default_rng([seed, index]), ranges,
                                 chest_expansion_mm=chest_expansion_mm, fat_mm=fat_mm)


def avg_file_name(pid: str) -> str:
    """File name of a patient's average CT: ``PT001_AVG.nii.gz``."""
    return f"{pid}_AVG.nii.gz"


def phase_file_name(pid: str, phase: int) -> str:
    """File name of a gated phase: ``PT001_4DCT_Gated 0.0A.nii.gz`` ... ``Gated 90.0A``."""
    return f"{pid}_4DCT_Gated {10 * phase}.0A.nii.gz"


def _storage_header(affine: np.ndarray, storage: str, description: str) -> nib.Nifti1Header:
    """Header storing HU as int16 (slope 1, inter 0) or uint16 with ``scl_inter = -1024``."""
    if storage not in STORAGES:
        raise ConfigError(f"unknown storage {storage!r}; valid: {STORAGES}")
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16 if storage == "int16" else np.uint16)
    header.set_slope_inter(1.0, 0.0 if storage == "int16" else -1024.0)
    header.set_xyzt_units("mm", "sec")
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header["descrip"] = description.encode("ascii")[:79]
    return header


def _write(hu: np.ndarray, affine: np.ndarray, storage: str, description: str,
           path: Path) -> None:
    """Write (I, J, K) HU to ``path`` atomically with the chosen on-disk storage."""
    header = _storage_header(affine, storage, description)
    save_volume(hu, Volume(hu=hu, affine=affine, header=header, path=path), path)


def write_synthetic_4dct(out_root: str | os.PathLike[str], n_patients: int, *,
                         grid: SyntheticGrid = SyntheticGrid(), seed: int = 0,
                         ranges: ParamRanges = DEFAULT_RANGES,
                         chest_expansion_mm: float | None = None, fat_mm: float = 8.0,
                         storage: str = "int16", id_prefix: str = "PT",
                         progress: bool = True) -> list[str]:
    """Write ``out_root/res_avg/<pid>/<pid>_AVG.nii.gz`` and the ten
    ``out_root/res_phases/<pid>/<pid>_4DCT_Gated {0,10,...,90}.0A.nii.gz``; return the ids.

    Patient ``k`` is :func:`patient_params` ``(seed, k, ranges, ...)`` on ``grid``.
    """
    if n_patients < 1:
        raise ConfigError(f"n_patients must be >= 1, got {n_patients}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if storage not in STORAGES:
        raise ConfigError(f"unknown storage {storage!r}; valid: {STORAGES}")
    out_root = Path(out_root)
    ids = []
    for index in tqdm(range(n_patients), desc="synthetic 4DCT", unit="patient",
                      disable=not progress):
        pid = patient_id(index, id_prefix)
        params = patient_params(seed, index, ranges, chest_expansion_mm=chest_expansion_mm,
                                fat_mm=fat_mm)
        patient = synthetic_patient(params, grid)
        _write(patient.avg_hu, patient.affine, storage, f"synthetic 4DCT {pid} AVG",
               out_root / "res_avg" / pid / avg_file_name(pid))
        for phase in range(N_PHASES):
            _write(patient.phases_hu[phase], patient.affine, storage,
                   f"synthetic 4DCT {pid} phase {10 * phase}%",
                   out_root / "res_phases" / pid / phase_file_name(pid, phase))
        logger.debug("%s: amplitude %.1f mm, tumour r=%.1f mm in the %s lung", pid,
                     params.amplitude_mm, params.tumour_radius_mm, params.tumour_side)
        ids.append(pid)
    logger.info("wrote %d synthetic patients (%d x %d x %d, %s, %s) under %s", len(ids),
                *grid.shape, grid.orientation, storage, out_root)
    return ids
