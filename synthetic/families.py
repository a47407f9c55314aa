"""Families of synthetic 4DCT: named ranges of scanner, patient and breathing settings, and the
generator that builds them, for training on one family and testing on others never seen.

A :class:`Family` draws, per patient and deterministically from ``(seed, patient index)``:

- the scanner (:class:`ScannerRanges`): in-plane pixel size (so the field of view is ``size *
  pixel``, and small pixels truncate the body at the edges), slice thickness, slice count,
  reconstruction kernel (Gaussian blur sigma, mm), storage and voxel order; the in-plane
  ``size`` is fixed per family (a multiple of 64 for the 2-D U-Net);
- the patient (:class:`synthetic.params.ParamRanges`): breathing amplitude, body and lung size,
  tumour (nodule) radius and noise sigma;
- the breathing extras (:class:`MotionRanges`): anterior-posterior and lateral excursion,
  chest-wall sliding, hysteresis, irregular cycles and binning slabs. The ``phantom`` generator
  (:mod:`synthetic.phantom`) has only the anterior chest wall expansion; the ``warped`` generator
  (:mod:`synthetic.warped`) has them all.

:data:`FAMILIES` names the built-in families; :func:`write_family` writes one as the same
``res_avg/``, ``res_phases/`` (and ``res_structures/``) tree as
:func:`synthetic.export.write_synthetic_4dct`, and the ``phantom`` family is exactly that
function's default tree.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from synthetic.export import (
    STORAGES,
    TUMOUR_STRUCTURE,
    patient_id,
    write_nifti_patient,
    write_tumour_masks,
)
from synthetic.grid import DEFAULT_GRID, ORIENTATIONS, SyntheticGrid
from synthetic.params import DEFAULT_RANGES, ParamRanges, patient_params
from synthetic.phantom import SyntheticPatient, noiseless_phases, synthetic_patient, tumour_masks
from synthetic.scanner import acquire
from synthetic.warped import WarpedParams, warped_phases
from util.errors import ConfigError
from util.file_set import remove_stale_temp_files

logger = logging.getLogger(__name__)

Range = tuple[float, float]
GENERATORS = ("phantom", "warped")


def _check_range(name: str, bounds: tuple[float, float], low: float = 0.0) -> list[str]:
    """``[problem]`` if ``bounds`` is not ``low <= lo <= hi``, else ``[]``."""
    ok = len(bounds) == 2 and low <= bounds[0] <= bounds[1]
    return [] if ok else [f"{name}={bounds}"]


@dataclass(frozen=True)
class ScannerRanges:
    """Scanner settings drawn per patient: ``pixel_mm`` in-plane pixel size (mm),
    ``slice_thickness_mm`` (mm), ``n_slices`` (inclusive integer range), ``kernel_blur_mm``
    Gaussian blur sigma of the reconstruction kernel (mm; 0 = sharp), ``storages`` and
    ``orientations`` chosen uniformly; ``size`` in-plane voxels, fixed."""

    size: int = 64
    pixel_mm: Range = (350.0 / 64, 350.0 / 64)
    slice_thickness_mm: Range = (3.0, 3.0)
    n_slices: tuple[int, int] = (32, 32)
    kernel_blur_mm: Range = (0.0, 0.0)
    storages: tuple[str, ...] = ("int16",)
    orientations: tuple[str, ...] = ("LPS",)

    def __post_init__(self) -> None:
        bad = (_check_range("pixel_mm", self.pixel_mm, 1e-3)
               + _check_range("slice_thickness_mm", self.slice_thickness_mm, 1e-3)
               + _check_range("n_slices", self.n_slices, 2)
               + _check_range("kernel_blur_mm", self.kernel_blur_mm))
        if self.size < 8:
            bad.append(f"size={self.size} (at least 8)")
        if not self.storages or set(self.storages) - set(STORAGES):
            bad.append(f"storages={self.storages} (valid: {STORAGES})")
        if not self.orientations or set(self.orientations) - set(ORIENTATIONS):
            bad.append(f"orientations={self.orientations} (valid: {ORIENTATIONS})")
        if bad:
            raise ConfigError(f"invalid scanner ranges: {', '.join(bad)}")


@dataclass(frozen=True)
class MotionRanges:
    """Breathing beyond the superior-inferior amplitude, drawn per patient: ``ap_fraction`` and
    ``lateral_fraction`` of the amplitude; ``wall_fraction``: chest-wall SI motion relative to the
    lungs' (sliding; warped only); ``hysteresis_cycle``: lag of AP/lateral motion (fraction of a
    cycle); ``irregularity``: each phase's cycle amplitude ``A (1 + U(-irr, irr))``;
    ``slab_slices``: choices of the binning slab (0 = none)."""

    ap_fraction: Range = (0.2, 0.2)
    lateral_fraction: Range = (0.0, 0.0)
    wall_fraction: Range = (0.1, 0.1)
    hysteresis_cycle: Range = (0.0, 0.0)
    irregularity: Range = (0.0, 0.0)
    slab_slices: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        bad = [problem for f in dataclasses.fields(self) if f.name != "slab_slices"
               for problem in _check_range(f.name, getattr(self, f.name))]
        if not self.slab_slices or min(self.slab_slices) < 0:
            bad.append(f"slab_slices={self.slab_slices}")
        if bad:
            raise ConfigError(f"invalid motion ranges: {', '.join(bad)}")

    def phantom_unsupported(self) -> list[str]:
        """Settings the ``phantom`` generator cannot make (it has SI motion and chest expansion
        only)."""
        extras = {"lateral_fraction": self.lateral_fraction != (0.0, 0.0),
                  "hysteresis_cycle": self.hysteresis_cycle != (0.0, 0.0),
                  "irregularity": self.irregularity != (0.0, 0.0),
                  "slab_slices": self.slab_slices != (0,)}
        return [name for name, used in extras.items() if used]


@dataclass(frozen=True)
class Family:
    """A named family of synthetic 4DCT: its ``generator`` (``"phantom"`` or ``"warped"``) and the
    ranges every patient's scanner, anatomy and breathing are drawn from."""

    name: str
    description: str
    generator: str = "phantom"
    scanner: ScannerRanges = ScannerRanges()
    ranges: ParamRanges = DEFAULT_RANGES
    motion: MotionRanges = MotionRanges()

    def __post_init__(self) -> None:
        if self.generator not in GENERATORS:
            raise ConfigError(f"family {self.name!r}: unknown generator {self.generator!r}; "
                              f"valid: {GENERATORS}")
        unsupported = self.motion.phantom_unsupported() if self.generator == "phantom" else []
        if unsupported:
            raise ConfigError(f"family {self.name!r}: the phantom generator cannot vary "
                              f"{unsupported}; use the warped generator")


@dataclass(frozen=True)
class FamilyPatient:
    """What was drawn for one patient of a family: id, generator, grid, storage, the nominal
    superior-inferior diaphragm amplitude (mm), noise sigma (HU) and kernel blur sigma (mm)."""

    pid: str
    family: str
    generator: str
    grid: SyntheticGrid
    storage: str
    amplitude_mm: float
    noise_hu: float
    kernel_blur_mm: float


def _rng(family: Family, seed: int, index: int, stream: int) -> np.random.Generator:
    """Random stream ``stream`` of patient ``index``: from ``(seed, index)`` and the family's name,
    so two families drawn with one seed are independent."""
    return np.random.default_rng([seed, index, stream, zlib.crc32(family.name.encode())])


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """One uniform draw in ``bounds`` (low, high); ``low`` itself when they are equal."""
    return float(rng.uniform(bounds[0], bounds[1]))


def draw_scanner(family: Family, seed: int, index: int) -> tuple[SyntheticGrid, str, float]:
    """(grid, storage, kernel blur sigma mm) of patient ``index``: from ``(seed, index)`` and the
    family only, and independent of the patient's anatomy and breathing draws."""
    rng = _rng(family, seed, index, 1)
    s = family.scanner
    pixel_mm = _uniform(rng, s.pixel_mm)
    thickness_mm = _uniform(rng, s.slice_thickness_mm)
    n_slices = int(rng.integers(s.n_slices[0], s.n_slices[1] + 1))
    blur_mm = _uniform(rng, s.kernel_blur_mm)
    storage = str(rng.choice(list(s.storages)))
    orientation = str(rng.choice(list(s.orientations)))
    grid = SyntheticGrid(size=s.size, n_slices=n_slices, fov_mm=s.size * pixel_mm,
                         slice_thickness_mm=thickness_mm, orientation=orientation)
    return grid, storage, blur_mm


def _warped_params(family: Family, seed: int, index: int) -> tuple[WarpedParams, float, int]:
    """(warped-generator parameters, noise sigma HU, noise seed) of patient ``index``."""
    rng, motion_rng = _rng(family, seed, index, 3), _rng(family, seed, index, 2)
    r, m = family.ranges, family.motion
    params = WarpedParams(
        amplitude_mm=_uniform(rng, r.amplitude_mm),
        body_half_width_mm=_uniform(rng, r.body_half_width_mm),
        body_half_depth_mm=_uniform(rng, r.body_half_depth_mm),
        lung_scale=float(np.clip(_uniform(rng, r.lung_scale), 0.5, 1.2)),
        nodule_radius_mm=_uniform(rng, r.tumour_radius_mm),
        body_exponent=_uniform(rng, (2.0, 3.0)), fat_mm=_uniform(rng, (5.0, 25.0)),
        dome_level=_uniform(rng, (-0.4, 0.1)), seed=int(rng.integers(0, 2**31 - 1)),
        ap_fraction=_uniform(motion_rng, m.ap_fraction),
        lateral_fraction=_uniform(motion_rng, m.lateral_fraction),
        wall_fraction=_uniform(motion_rng, m.wall_fraction),
        hysteresis_cycle=_uniform(motion_rng, m.hysteresis_cycle),
        irregularity=_uniform(motion_rng, m.irregularity),
        slab_slices=int(motion_rng.choice(list(m.slab_slices))))
    return params, _uniform(rng, r.noise_hu), int(rng.integers(0, 2**31 - 1))


def _phantom_patient(family: Family, seed: int, index: int, grid: SyntheticGrid, blur_mm: float,
                     with_masks: bool) -> tuple[SyntheticPatient, np.ndarray | None, float, float]:
    """(patient, tumour masks or None, amplitude mm, noise HU) from the project's phantom; with
    no kernel blur exactly :func:`synthetic.export.write_synthetic_4dct`'s patient."""
    params = patient_params(seed, index, family.ranges)
    ap = _uniform(_rng(family, seed, index, 2), family.motion.ap_fraction)
    params = dataclasses.replace(params, chest_expansion_mm=ap * params.amplitude_mm)
    if blur_mm == 0:
        patient = synthetic_patient(params, grid)
    else:
        clean = noiseless_phases(params, grid)
        phases, avg = acquire(clean, grid.spacing_mm, params.noise_hu, blur_mm,
                              np.random.default_rng(params.noise_seed))
        patient = SyntheticPatient(phases_hu=phases, avg_hu=avg, noiseless_hu=clean,
                                   affine=grid.affine())
    masks = tumour_masks(params, grid) if with_masks else None
    return patient, masks, params.amplitude_mm, params.noise_hu


def family_patient(family: str | Family, seed: int, index: int, *, id_prefix: str = "PT",
                   with_masks: bool = False) -> tuple[FamilyPatient, SyntheticPatient,
                                                      np.ndarray | None]:
    """Patient ``index`` of ``family`` drawn with ``seed``: (what was drawn, the volumes, the
    tumour/nodule masks (10, I, J, K) bool or None). Depends on ``(seed, index)`` only."""
    fam = get_family(family)
    grid, storage, blur_mm = draw_scanner(fam, seed, index)
    masks: np.ndarray | None
    if fam.generator == "phantom":
        patient, masks, amplitude, noise = _phantom_patient(fam, seed, index, grid, blur_mm,
                                                            with_masks)
    else:
        params, noise, noise_seed = _warped_params(fam, seed, index)
        clean, masks = warped_phases(params, grid)
        phases, avg = acquire(clean, grid.spacing_mm, noise, blur_mm,
                              np.random.default_rng(noise_seed))
        patient = SyntheticPatient(phases_hu=phases, avg_hu=avg, noiseless_hu=clean,
                                   affine=grid.affine())
        amplitude = params.amplitude_mm
    info = FamilyPatient(pid=patient_id(index, id_prefix), family=fam.name,
                         generator=fam.generator, grid=grid, storage=storage,
                         amplitude_mm=amplitude, noise_hu=noise, kernel_blur_mm=blur_mm)
    return info, patient, masks if with_masks else None


def write_family(out_root: str | os.PathLike[str], family: str | Family, n_patients: int, *,
                 seed: int = 0, id_prefix: str = "PT", structures: bool = False,
                 progress: bool = False) -> list[FamilyPatient]:
    """Write ``n_patients`` of ``family`` as NIfTI under ``out_root``: ``res_avg/<pid>/<pid>_AVG
    .nii.gz``, ``res_phases/<pid>/<pid>_4DCT_Gated {0,...,90}.0A.nii.gz`` and with ``structures``
    ``res_structures/<pid>/GTV/...`` (the tumour, or the warped generator's nodule), each patient
    on its own grid and storage; return what was drawn per patient (``amplitude_mm`` lists the
    small breathers)."""
    fam = get_family(family)
    if n_patients < 1 or seed < 0:
        raise ConfigError(f"n_patients must be >= 1 and seed >= 0, got {n_patients} and {seed}")
    out_root = Path(out_root)
    drawn = []
    for index in tqdm(range(n_patients), desc=f"synthetic 4DCT ({fam.name})", unit="patient",
                      disable=not progress):
        info, patient, masks = family_patient(fam, seed, index, id_prefix=id_prefix,
                                              with_masks=structures)
        folders = (out_root / "res_avg" / info.pid, out_root / "res_phases" / info.pid,
                   out_root / "res_structures" / info.pid / TUMOUR_STRUCTURE)
        for folder in folders:
            remove_stale_temp_files(folder)
        write_nifti_patient(patient, info.pid, info.storage, out_root)
        if masks is not None:
            write_tumour_masks(masks, patient.affine, info.pid, folders[2])
        logger.debug("%s: %s", info.pid, info)
        drawn.append(info)
    logger.info("wrote %d patients of family %r under %s", len(drawn), fam.name, out_root)
    return drawn


def get_family(family: str | Family) -> Family:
    """``family`` itself, or the registered family of that name (ConfigError listing the names)."""
    if isinstance(family, Family):
        return family
    if family not in FAMILIES:
        raise ConfigError(f"unknown synthetic family {family!r}; valid: {sorted(FAMILIES)}")
    return FAMILIES[family]


_WIDE_SCANNER = ScannerRanges(pixel_mm=(3.0, 8.0), slice_thickness_mm=(1.5, 5.0),
                              n_slices=(24, 40), kernel_blur_mm=(0.0, 3.0),
                              storages=STORAGES, orientations=ORIENTATIONS)
_WIDE_PATIENTS = ParamRanges(amplitude_mm=(3.0, 25.0), body_half_width_mm=(120.0, 185.0),
                             body_half_depth_mm=(80.0, 125.0), lung_scale=(0.8, 1.15),
                             tumour_radius_mm=(4.0, 12.0), noise_hu=(5.0, 40.0))

#: The built-in families, by name.
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("phantom", "the project's default phantom (write_synthetic_4dct's tree): 64 x 64 x 32, "
           "5.47 mm pixels, 3 mm slices, amplitude 5-25 mm, noise 15 HU",
           scanner=ScannerRanges(pixel_mm=(DEFAULT_GRID.fov_mm / 64, DEFAULT_GRID.fov_mm / 64))),
    Family("phantom_wide", "phantom generator, wide scanner and patient ranges: 3-8 mm pixels, "
           "1.5-5 mm slices, 24-40 slices, kernels 0-3 mm, noise 5-40 HU, amplitude 3-25 mm, "
           "int16/uint16, LPS/RAS",
           scanner=_WIDE_SCANNER, ranges=_WIDE_PATIENTS,
           motion=MotionRanges(ap_fraction=(0.05, 0.35))),
    Family("coarse", "phantom generator on unseen voxels only: 7.8 mm pixels, 5 mm slices",
           scanner=ScannerRanges(pixel_mm=(7.8, 7.8), slice_thickness_mm=(5.0, 5.0))),
    Family("warped", "deformation-based generator (static anatomy + smooth field with sliding, AP, "
           "lateral, hysteresis, irregular cycles): 5-6 mm pixels, 2.5-4 mm slices, "
           "amplitude 3-22 mm",
           generator="warped",
           scanner=ScannerRanges(pixel_mm=(5.0, 6.0), slice_thickness_mm=(2.5, 4.0),
                                 kernel_blur_mm=(0.5, 1.5)),
           ranges=ParamRanges(amplitude_mm=(3.0, 22.0), noise_hu=(10.0, 20.0)),
           motion=MotionRanges(ap_fraction=(0.15, 0.35), lateral_fraction=(0.03, 0.1),
                               wall_fraction=(0.05, 0.15), hysteresis_cycle=(0.0, 0.05),
                               irregularity=(0.0, 0.1))),
    Family("warped_wide", "warped generator, wide ranges: 3-8 mm pixels, 1.5-5 mm slices, "
           "kernels 0-3 mm, noise 5-40 HU, amplitude 3-25 mm, hysteresis, irregular cycles, "
           "binning slabs, int16/uint16, LPS/RAS",
           generator="warped", scanner=_WIDE_SCANNER, ranges=_WIDE_PATIENTS,
           motion=MotionRanges(ap_fraction=(0.0, 0.5), lateral_fraction=(0.0, 0.15),
                               wall_fraction=(0.0, 0.25), hysteresis_cycle=(0.0, 0.1),
                               irregularity=(0.0, 0.25), slab_slices=(0, 0, 4, 8))),
)}
