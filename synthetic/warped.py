"""A second synthetic 4DCT, built by another method: a static anatomy warped by a smooth breathing
displacement field.

The static volume is the end-exhale anatomy, built here independently of
:mod:`synthetic.phantom`: a superquadric body (exponent 2-3) with a subcutaneous fat layer and
muscle, ribs as oblique arcs in the chest wall, vertebral bodies with discs, two lungs whose
parenchyma is a smooth random texture (about -870 +- 40 HU) with vessel-like bright streaks and a
few low-density emphysema-like blobs, a heart, a liver under a dome-shaped right hemidiaphragm, a
stomach with a gas bubble (an air-fluid level) under the lower left dome, and a nodule in one lung.

Phase ``p`` (0..9; 0 = end-inhale) is that volume pulled back through a displacement field
``u_p`` (mm): ``phase_p(x) = static(x + u_p(x))``, trilinear
(:func:`scipy.ndimage.map_coordinates`).
With ``s(t) = cos(pi t) ** 4`` (the cos^2n model, n = 2, as in the phantom) and amplitude ``A``:

- superior-inferior: ``u_z = A s(p / 10) w(z) (m + f_wall (1 - m))``, with ``w`` 1 at the dome,
  falling linearly to 0 at the lung apex and slowly below the dome (the abdomen follows the
  diaphragm). ``m`` is 1 inside the thoracic cavity (lungs, mediastinum, abdominal contents) and 0
  in the chest wall, ribs and spine, with a ~1.5-voxel edge: the lungs **slide** along the chest
  wall, which moves only ``f_wall`` as much;
- anterior-posterior: the anterior chest wall and abdomen rise by up to ``A * ap_fraction``
  (nothing at the back), less towards the apex; lateral: the sides move out by up to
  ``A * lateral_fraction``. Both follow ``s(p / 10 - hysteresis_cycle)``: with a lag, the
  trajectory is a loop (hysteresis) rather than a line;
- irregular breathing: each phase comes from a different cycle, of amplitude ``A (1 + e)``,
  ``e ~ U(-irregularity, irregularity)``; with ``slab_slices`` > 0 each slab of that many slices
  also comes from its own cycle (a binning artefact: steps in the anatomy at slab boundaries).

Arrays are built in LPS voxel order and returned in the grid's voxel order; displacement
components are (right, anterior, superior) mm. Noise, kernel and the AVG are
:func:`synthetic.scanner.acquire`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from synthetic.grid import SyntheticGrid, to_grid_order
from synthetic.phantom import N_PHASES, SyntheticPatient
from synthetic.scanner import acquire
from util.errors import ConfigError

HU_AIR, HU_FAT, HU_MUSCLE, HU_SOFT, HU_LIVER = -1000.0, -100.0, 50.0, 35.0, 60.0
HU_LUNG, HU_LUNG_SD, HU_EMPHYSEMA, HU_VESSEL = -870.0, 40.0, -970.0, 40.0
HU_HEART, HU_BONE, HU_DISC, HU_RIB, HU_NODULE, HU_FLUID = 45.0, 450.0, 90.0, 600.0, 30.0, 20.0

_LUNG_HEIGHT_MM = 200.0  # dome to apex at lung_scale 1
_ABDOMEN_FADE_MM = 300.0  # below the dome, SI motion fades to zero over this distance
_MUSCLE_MM = 12.0  # chest wall muscle inside the fat layer
_RIB_PERIOD_MM, _RIB_HALF_HEIGHT_MM, _RIB_SLOPE = 28.0, 5.0, 0.35


@dataclass(frozen=True)
class WarpedParams:
    """One patient of the warped generator. Lengths in mm; ``*_fraction`` are of ``amplitude_mm``
    (``wall_fraction``: chest wall SI motion relative to the lungs'); ``hysteresis_cycle``: lag of
    the AP and lateral motion, as a fraction of the cycle; ``dome_level``: end-exhale dome top as a
    fraction of the volume's half SI extent (+ superior); ``seed``: texture, blobs, nodule place
    and the irregular cycles."""

    amplitude_mm: float = 15.0
    ap_fraction: float = 0.25
    lateral_fraction: float = 0.05
    wall_fraction: float = 0.1
    hysteresis_cycle: float = 0.0
    irregularity: float = 0.0
    slab_slices: int = 0
    body_half_width_mm: float = 150.0
    body_half_depth_mm: float = 100.0
    body_exponent: float = 2.5
    fat_mm: float = 12.0
    lung_scale: float = 1.0
    dome_level: float = -0.2
    nodule_radius_mm: float = 6.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {"amplitude_mm": 0 <= self.amplitude_mm <= 60,
                  "ap_fraction": 0 <= self.ap_fraction <= 1,
                  "lateral_fraction": 0 <= self.lateral_fraction <= 1,
                  "wall_fraction": 0 <= self.wall_fraction <= 1,
                  "hysteresis_cycle": 0 <= self.hysteresis_cycle <= 0.5,
                  "irregularity": 0 <= self.irregularity < 1, "slab_slices": self.slab_slices >= 0,
                  "body_exponent": 1.5 <= self.body_exponent <= 4,
                  "fat_mm": self.fat_mm >= 0, "lung_scale": 0.5 <= self.lung_scale <= 1.2,
                  "body_half_width_mm": self.body_half_width_mm > self.fat_mm + _MUSCLE_MM + 30,
                  "body_half_depth_mm": self.body_half_depth_mm > self.fat_mm + _MUSCLE_MM + 30,
                  "dome_level": -1 <= self.dome_level <= 1,
                  "nodule_radius_mm": self.nodule_radius_mm > 0}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"invalid warped-phantom parameters {bad} in {self}")


def _axes_mm(grid: SyntheticGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (I, 1, 1) + right, y (1, J, 1) + anterior, z (1, 1, K) + superior: voxel centres (mm)
    from the volume centre, LPS voxel order, float32."""
    dx, dy, dz = grid.spacing_mm
    x = -(np.arange(grid.size) - (grid.size - 1) / 2.0) * dx
    y = -(np.arange(grid.size) - (grid.size - 1) / 2.0) * dy
    z = (np.arange(grid.n_slices) - (grid.n_slices - 1) / 2.0) * dz
    return (x[:, None, None].astype(np.float32), y[None, :, None].astype(np.float32),
            z[None, None, :].astype(np.float32))


def _soft(sd_vox: np.ndarray) -> np.ndarray:
    """Occupancy in [0, 1] from a signed distance in voxels (negative inside), one voxel wide."""
    return np.clip(0.5 - sd_vox, 0.0, 1.0)


def _superquadric_sd_mm(x: np.ndarray, y: np.ndarray, half_x: float, half_y: float,
                        exponent: float) -> np.ndarray:
    """Approximate signed distance (mm, negative inside) to ``|x/a|^n + |y/b|^n = 1``."""
    rho = (np.abs(x / half_x) ** exponent + np.abs(y / half_y) ** exponent) ** (1.0 / exponent)
    return (rho - 1.0) * min(half_x, half_y)


def _landmarks_mm(params: WarpedParams, grid: SyntheticGrid) -> tuple[float, float, float, float]:
    """(cavity half width, cavity half depth, end-exhale dome top, lung apex) in mm."""
    wall = params.fat_mm + _MUSCLE_MM
    dome = params.dome_level * grid.n_slices * grid.slice_thickness_mm / 2.0
    return (params.body_half_width_mm - wall, params.body_half_depth_mm - wall, dome,
            dome + _LUNG_HEIGHT_MM * params.lung_scale)


def _cavity_sd_mm(params: WarpedParams, x: np.ndarray, y: np.ndarray, cx: float,
                  cy: float) -> np.ndarray:
    """Signed distance (mm) to the thoracic cavity (inside the muscle), (I, J, 1)."""
    return _superquadric_sd_mm(x, y, cx, cy, params.body_exponent)


def _spine_sd_mm(x: np.ndarray, y: np.ndarray, cx: float, cy: float) -> np.ndarray:
    """Signed distance (mm) to the vertebral body cylinder at the back of the cavity, (I, J, 1)."""
    return np.sqrt(x ** 2 + (y + 0.78 * cy) ** 2) - 0.16 * cx


def _lung_r2(params: WarpedParams, x: np.ndarray, y: np.ndarray, cx: float, cy: float,
             side: float) -> tuple[np.ndarray, float, float]:
    """(normalised in-plane radius squared (I, J, 1) of the ``side`` (+1 right, -1 left) lung's
    ellipse, its x and y radii in mm)."""
    rx, ry = 0.6 * cx * params.lung_scale, 0.95 * cy * params.lung_scale
    return ((x - side * 0.55 * cx) / rx) ** 2 + ((y + 0.05 * cy) / ry) ** 2, rx, ry


def _lung_occupancies(params: WarpedParams, grid: SyntheticGrid) -> list[np.ndarray]:
    """(I, J, K) occupancy of the right and the left lung: an ellipse against the cavity wall,
    narrowing to the apex and cut inferiorly by its dome."""
    x, y, z = _axes_mm(grid)
    cx, cy, dome, apex = _landmarks_mm(params, grid)
    dx, dz = grid.spacing_mm[0], grid.spacing_mm[2]
    cavity = _cavity_sd_mm(params, x, y, cx, cy)
    lungs = []
    for side in (1.0, -1.0):
        r2, rx, ry = _lung_r2(params, x, y, cx, cy, side)
        taper = np.maximum(z - dome - 0.4 * (apex - dome), 0.0) / (0.6 * (apex - dome))
        ellipse = (np.sqrt(r2 + taper ** 2) - 1.0) * min(rx, ry)
        walls = np.maximum(np.maximum(ellipse, cavity), 0.12 * cx - side * x)
        walls = np.maximum(walls, 8.0 - _spine_sd_mm(x, y, cx, cy))
        below = _dome_z(params, grid, side, r2) - z
        lungs.append(_soft(np.maximum(walls / dx, below / dz)))
    return lungs


def _dome_z(params: WarpedParams, grid: SyntheticGrid, side: float, r2: np.ndarray) -> np.ndarray:
    """Height (mm) of the ``side`` (+1 right, -1 left) hemidiaphragm over the lung's normalised
    in-plane radius squared ``r2``: highest at the centre, 35 mm lower at the rim; left 10 mm
    lower."""
    dome = _landmarks_mm(params, grid)[2]
    return dome - (0.0 if side > 0 else 10.0) - 35.0 * np.minimum(r2, 1.5)


def _texture(shape: tuple[int, int, int], sigma_mm: float, spacing_mm: tuple[float, ...],
             rng: np.random.Generator) -> np.ndarray:
    """(I, J, K) float32 smooth Gaussian random field, zero mean, unit standard deviation."""
    field = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32),
                                    sigma=[sigma_mm / s for s in spacing_mm], mode="wrap")
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def _balls(centres: np.ndarray, radii_mm: np.ndarray, grid: SyntheticGrid) -> np.ndarray:
    """(I, J, K) occupancy of balls at voxel ``centres`` (N, 3) of ``radii_mm`` (N,)."""
    x, y, z = _axes_mm(grid)
    occ = np.zeros(grid.shape, dtype=np.float32)
    for (i, j, k), r in zip(centres, radii_mm, strict=True):
        dist = np.sqrt((x - x[i, 0, 0]) ** 2 + (y - y[0, j, 0]) ** 2 + (z - z[0, 0, k]) ** 2)
        np.maximum(occ, _soft((dist - r) / grid.spacing_mm[0]), out=occ)
    return occ


def _pick_voxels(mask: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) voxel indices drawn uniformly from ``mask`` (I, J, K) bool; (0, 3) if it is empty."""
    where = np.argwhere(mask)
    if len(where) == 0 or n == 0:
        return np.zeros((0, 3), dtype=np.int64)
    return where[rng.integers(0, len(where), size=n)]


def _paint(vol: np.ndarray, occupancy: np.ndarray, hu: float | np.ndarray) -> None:
    """Blend ``hu`` into ``vol`` in place with ``occupancy`` in [0, 1]."""
    vol += occupancy * (hu - vol)


def _body_and_wall(params: WarpedParams, grid: SyntheticGrid) -> np.ndarray:
    """(I, J, K) float32 HU: air, fat, muscle, ribs, the cavity's soft tissue and the spine."""
    x, y, z = _axes_mm(grid)
    cx, cy, _, _ = _landmarks_mm(params, grid)
    dx, dz = grid.spacing_mm[0], grid.spacing_mm[2]
    n, bx, by = params.body_exponent, params.body_half_width_mm, params.body_half_depth_mm
    vol = np.full(grid.shape, HU_AIR, dtype=np.float32)
    _paint(vol, _soft(_superquadric_sd_mm(x, y, bx, by, n) / dx), HU_FAT)
    fat = params.fat_mm
    _paint(vol, _soft(_superquadric_sd_mm(x, y, bx - fat, by - fat, n) / dx), HU_MUSCLE)
    cavity = _cavity_sd_mm(params, x, y, cx, cy)
    _paint(vol, _soft(cavity / dx), HU_SOFT)
    shell = _soft(np.maximum(2.0 - cavity, cavity - 9.0) / dx)
    rib_phase = np.mod((z + _RIB_SLOPE * y) / _RIB_PERIOD_MM, 1.0)
    band = _soft((np.abs(rib_phase - 0.5) * _RIB_PERIOD_MM - _RIB_HALF_HEIGHT_MM) / dz)
    _paint(vol, shell * band, HU_RIB)
    spine = _spine_sd_mm(x, y, cx, cy)
    disc = np.abs(np.mod(z / 30.0, 1.0) - 0.5) * 30.0 < 3.0
    _paint(vol, _soft(spine / dx), np.where(disc, HU_DISC, HU_BONE))
    return vol


def _organs(params: WarpedParams, grid: SyntheticGrid, vol: np.ndarray) -> None:
    """Paint the liver, stomach (with gas) and heart into ``vol`` (I, J, K) HU, in place."""
    x, y, z = _axes_mm(grid)
    cx, cy, dome, apex = _landmarks_mm(params, grid)
    dx, dz = grid.spacing_mm[0], grid.spacing_mm[2]
    inside = _soft(_cavity_sd_mm(params, x, y, cx, cy) / dx) * _soft(-_spine_sd_mm(x, y, cx, cy)
                                                                      / dx + 2.0)
    r2_right = _lung_r2(params, x, y, cx, cy, 1.0)[0]
    liver = _soft(np.maximum(-0.1 * cx - x, z - _dome_z(params, grid, 1.0, r2_right)) / dx)
    _paint(vol, inside * liver, HU_LIVER)
    sz = dome - 45.0
    stomach = np.sqrt(((x + 0.45 * cx) / (0.3 * cx)) ** 2 + ((y - 0.15 * cy) / (0.35 * cy)) ** 2
                      + ((z - sz) / 35.0) ** 2)
    occ = inside * _soft((stomach - 1.0) * 0.3 * cx / dx)
    _paint(vol, occ, np.where(z > sz + 8.0, HU_AIR, HU_FLUID))
    heart = np.sqrt(((x + 0.15 * cx) / (0.32 * cx)) ** 2 + ((y - 0.2 * cy) / (0.4 * cy)) ** 2
                    + ((z - dome - 0.3 * (apex - dome)) / (0.35 * (apex - dome))) ** 2)
    _paint(vol, _soft(np.maximum((heart - 1.0) * 0.32 * cx / dx, (dome - 3.0 - z) / dz)),
           HU_HEART)


def static_anatomy(params: WarpedParams, grid: SyntheticGrid) -> tuple[np.ndarray, np.ndarray]:
    """End-exhale anatomy in LPS voxel order: (HU (I, J, K) float32, nodule occupancy (I, J, K)
    float32 in [0, 1])."""
    rng = np.random.default_rng([params.seed, 0])
    spacing = grid.spacing_mm
    vol = _body_and_wall(params, grid)
    _organs(params, grid, vol)
    right, left = _lung_occupancies(params, grid)
    lungs = np.maximum(right, left)
    texture = HU_LUNG + HU_LUNG_SD * _texture(grid.shape, 6.0, spacing, rng)
    vessels = np.clip((_texture(grid.shape, 2.5, spacing, rng) - 1.8) / 0.4, 0.0, 1.0)
    texture += vessels * (HU_VESSEL - texture)
    _paint(vol, lungs, texture)
    n_blobs = int(rng.integers(1, 5))
    blobs = _balls(_pick_voxels(lungs > 0.99, n_blobs, rng), rng.uniform(5.0, 12.0, n_blobs), grid)
    _paint(vol, lungs * blobs, HU_EMPHYSEMA)
    side = right if rng.uniform() < 0.5 else left
    room = ndimage.distance_transform_edt(side > 0.5, sampling=spacing) > params.nodule_radius_mm
    nodule = _balls(_pick_voxels(room, 1, rng), np.array([params.nodule_radius_mm]), grid)
    _paint(vol, nodule, HU_NODULE)
    return vol, nodule


def breathing_scales(params: WarpedParams, n_slices: int) -> np.ndarray:
    """(10, K) amplitude factor ``1 + e`` of the cycle each phase (and slab of ``slab_slices``
    slices) was acquired in; all ones without irregularity."""
    rng = np.random.default_rng([params.seed, 1])
    n_slabs = 1 if params.slab_slices == 0 else math.ceil(n_slices / params.slab_slices)
    e = rng.uniform(-params.irregularity, params.irregularity, size=(N_PHASES, n_slabs))
    slab = np.arange(n_slices) // (params.slab_slices or n_slices)
    return (1.0 + e[:, slab]).astype(np.float32)


def _cycle(t: float) -> float:
    """Breathing schedule ``cos(pi t) ** 4``: 1 at end-inhale (t = 0), 0 at end-exhale."""
    return math.cos(math.pi * t) ** 4


def _displacement_lps(params: WarpedParams, grid: SyntheticGrid, phase: int) -> np.ndarray:
    """(3, I, J, K) float32 pull-back displacement (right, anterior, superior) mm, LPS order."""
    x, y, z = _axes_mm(grid)
    cx, cy, dome, apex = _landmarks_mm(params, grid)
    edge = 1.5 * grid.spacing_mm[0]
    moving = (_soft(_cavity_sd_mm(params, x, y, cx, cy) / edge)
              * (1.0 - _soft(_spine_sd_mm(x, y, cx, cy) / edge - 2.0)))
    si = np.where(z >= dome, np.clip((apex - z) / (apex - dome), 0.0, 1.0),
                  np.clip(1.0 - (dome - z) / _ABDOMEN_FADE_MM, 0.0, 1.0))
    scale = breathing_scales(params, grid.n_slices)[phase][None, None, :]
    amp = params.amplitude_mm * scale
    u_z = amp * _cycle(phase / N_PHASES) * si * (moving + params.wall_fraction * (1.0 - moving))
    lagged = amp * _cycle(phase / N_PHASES - params.hysteresis_cycle)
    rise = np.clip(0.5 + 0.5 * (apex - z) / (apex - dome), 0.5, 1.0)
    front = np.clip((y + params.body_half_depth_mm) / (2.0 * params.body_half_depth_mm), 0, 1)
    u_y = -params.ap_fraction * lagged * front * rise
    u_x = -params.lateral_fraction * lagged * np.clip(x / params.body_half_width_mm, -1, 1) * rise
    return np.stack(np.broadcast_arrays(u_x, u_y, u_z)).astype(np.float32)


def displacement_mm(params: WarpedParams, grid: SyntheticGrid, phase: int) -> np.ndarray:
    """Pull-back displacement of phase ``phase``: (3, I, J, K) float32 mm, components (right,
    anterior, superior), in the grid's voxel order: ``phase(x) = static(x + u(x))``."""
    return to_grid_order(_displacement_lps(params, grid, phase), grid)


def _warp(volume: np.ndarray, u_mm: np.ndarray, grid: SyntheticGrid) -> np.ndarray:
    """``volume`` (I, J, K), LPS order, sampled trilinearly at ``x + u`` for ``u_mm``
    (3, I, J, K) (right, anterior, superior) mm."""
    dx, dy, dz = grid.spacing_mm
    i, j, k = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in grid.shape), indexing="ij")
    coords = np.stack([i - u_mm[0] / dx, j - u_mm[1] / dy, k + u_mm[2] / dz])
    return ndimage.map_coordinates(volume, coords, order=1, mode="nearest").astype(np.float32)


def warped_phases(params: WarpedParams, grid: SyntheticGrid) -> tuple[np.ndarray, np.ndarray]:
    """The ten noiseless phases (10, I, J, K) float32 HU and the nodule of each phase
    (10, I, J, K) bool (warped occupancy >= 0.5), in the grid's voxel order."""
    static, nodule = static_anatomy(params, grid)
    phases, masks = [], []
    for phase in range(N_PHASES):
        u = _displacement_lps(params, grid, phase)
        phases.append(_warp(static, u, grid))
        masks.append(_warp(nodule, u, grid) >= 0.5)
    return to_grid_order(np.stack(phases), grid), to_grid_order(np.stack(masks), grid)


def warped_patient(params: WarpedParams, grid: SyntheticGrid, *, noise_hu: float = 15.0,
                   kernel_blur_mm: float = 0.0, noise_seed: int = 0) -> SyntheticPatient:
    """One warped patient as the scanner stores it (:func:`synthetic.scanner.acquire`): noisy
    integer-HU phases, their mean (AVG), the noiseless phases, the grid's affine."""
    clean, _ = warped_phases(params, grid)
    phases, avg = acquire(clean, grid.spacing_mm, noise_hu, kernel_blur_mm,
                          np.random.default_rng(noise_seed))
    return SyntheticPatient(phases_hu=phases, avg_hu=avg, noiseless_hu=clean,
                            affine=grid.affine())
