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

Arrays are built in LPS voxel order on a :class:`synthetic.grid.SyntheticGrid` and returned in
the grid's voxel order (LPS or RAS), with its affine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from synthetic.grid import SyntheticGrid, to_grid_order
from synthetic.params import PatientParams

N_PHASES = 10
HU_STORED_MIN, HU_STORED_MAX = -1024.0, 3071.0

HU_AIR, HU_FAT, HU_SOFT_TISSUE, HU_LUNG = -1000.0, -100.0, 40.0, -850.0
HU_HEART, HU_LIVER, HU_BONE, HU_VESSEL, HU_TUMOUR = 40.0, 60.0, 700.0, 40.0, 20.0

_DOME_DEPTH_MM = 15.0  # how much lower the dome is at the lung periphery than at its top
_LEFT_DOME_DROP_MM = 6.0  # the left hemidiaphragm sits a little lower than the right
_ABDOMEN_TAPER_MM = 100.0  # below the dome, motion fades to zero over this distance
_VESSEL_RADIUS_MM = 3.5


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


@dataclass(frozen=True)
class _PhaseFrame:
    """Where each output voxel of one phase comes from in the end-exhale anatomy: pulled-back
    coordinates ``xs, ys, zs`` (mm, broadcastable to (I, J, K) in LPS order), the lung apex and
    dome heights (mm), the voxel size (mm) and the plain output coordinates ``x, y``."""

    xs: np.ndarray
    ys: np.ndarray
    zs: np.ndarray
    apex: float
    dome: float
    dx: float
    dz: float
    x: np.ndarray
    y: np.ndarray


def _phase_frame(params: PatientParams, grid: SyntheticGrid, phase: int) -> _PhaseFrame:
    """The pulled-back coordinates of phase ``phase`` (see the module docstring)."""
    dx, dy, dz = grid.spacing_mm
    x = -(np.arange(grid.size) - (grid.size - 1) / 2.0) * dx  # + towards the patient's right
    y = -(np.arange(grid.size) - (grid.size - 1) / 2.0) * dy  # + anterior
    z = (np.arange(grid.n_slices) - (grid.n_slices - 1) / 2.0) * dz  # + superior
    apex, dome = _si_landmarks_mm(params, grid)
    z_ref, weight = _pull_back_z(z, phase_displacement_mm(phase, params.amplitude_mm), apex, dome)
    by = params.body_half_depth_mm
    expansion = params.chest_expansion_mm * (1.0 + math.cos(2.0 * math.pi * phase / N_PHASES)) / 2
    y_ref = -by + (y[:, None] + by) * (2 * by) / (2 * by + expansion * weight[None, :])
    return _PhaseFrame(xs=x[:, None, None].astype(np.float32),
                       ys=y_ref[None, :, :].astype(np.float32),
                       zs=z_ref[None, None, :].astype(np.float32), apex=apex, dome=dome,
                       dx=dx, dz=dz, x=x, y=y)


def _canonical_phase(params: PatientParams, grid: SyntheticGrid, phase: int) -> np.ndarray:
    """Noiseless phase ``phase`` as (I, J, K) float32 HU in LPS voxel order."""
    f = _phase_frame(params, grid, phase)
    xs, ys, zs, apex, dome, dx, dz, x, y = f.xs, f.ys, f.zs, f.apex, f.dome, f.dx, f.dz, f.x, f.y
    bx, by, fat = params.body_half_width_mm, params.body_half_depth_mm, params.fat_mm
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


def tumour_masks(params: PatientParams, grid: SyntheticGrid) -> np.ndarray:
    """The tumour (a GTV) of each phase: (10, I, J, K) bool in the grid's voxel order, the
    voxels whose tumour occupancy is at least one half (the phantom's soft edges)."""
    masks = []
    for phase in range(N_PHASES):
        f = _phase_frame(params, grid, phase)
        masks.append(_tumour(params, (f.xs, f.ys, f.zs), f.apex, f.dome, f.dx) >= 0.5)
    return to_grid_order(np.stack(masks), grid)


def noiseless_phases(params: PatientParams, grid: SyntheticGrid) -> np.ndarray:
    """The ten noiseless phases: (10, I, J, K) float32 HU in the grid's voxel order."""
    clean = np.stack([_canonical_phase(params, grid, p) for p in range(N_PHASES)])
    return to_grid_order(clean, grid)


def synthetic_patient(params: PatientParams, grid: SyntheticGrid) -> SyntheticPatient:
    """Noisy phases (integer HU clipped to [-1024, 3071]), their mean (AVG), and the noiseless
    phases, all in the grid's voxel order, with the grid's affine."""
    clean = np.stack([_canonical_phase(params, grid, p) for p in range(N_PHASES)])
    rng = np.random.default_rng(params.noise_seed)
    noisy = clean + rng.normal(0.0, params.noise_hu, size=clean.shape)
    phases = np.clip(np.rint(noisy), HU_STORED_MIN, HU_STORED_MAX).astype(np.float32)
    phases = to_grid_order(phases, grid)
    return SyntheticPatient(phases_hu=phases, avg_hu=phases.mean(axis=0, dtype=np.float64)
                            .astype(np.float32), noiseless_hu=to_grid_order(clean, grid),
                            affine=grid.affine())
