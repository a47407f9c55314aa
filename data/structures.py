"""Structure masks of phase 0 (a tumour or GTV contour exported as a binary NIfTI mask), the
geometry a physicist checks a synthetic phase 0 against.

In a dataset they sit beside the phase-0 folder, one folder per structure, matched by patient id
like ``testA/`` and ``testB/``::

    <dataroot>/testB_structures/<structure>/<id>.nii.gz

``prepare_dataset.py --structures_root R`` fills them from an export tree
``R/<patient>/<structure>/`` whose file matching the phase-0 pattern (``*Gated 0.0A*``) is the
phase-0 mask, checked to lie on the AVG's world grid and stored in the AVG's voxel order.

With ``--phases``, the masks of every other prepared phase p (the files of ``R/<patient>/
<structure>/`` whose name names p, e.g. ``PT001_GTV_Gated 50.0A.nii.gz``) sit beside that
phase's folder the same way, ``<dataroot>/<split>B_p<p>_structures/<structure>/<id>.nii.gz``
(:func:`phase_structures_dir`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.ct_volumes import check_same_geometry
from data.nifti_io import VolumeInfo, is_nifti_file, load_volume, nifti_stem, read_info
from data.voxel_grid import compare_grids, mismatch_text
from util.errors import DataError
from util.names import safe_name
from util.phases import folder_phase, gated_percent, phase_folder, phase_label

logger = logging.getLogger(__name__)

#: Suffix of the structure folder beside ``<split>B``.
STRUCTURES_SUFFIX = "_structures"


def structures_dir(root: Path, split: str) -> Path:
    """``<root>/<split>B_structures``: the phase-0 structure masks of a split."""
    return phase_structures_dir(root, split, 0.0)


def phase_structures_dir(root: Path, split: str, percent: float) -> Path:
    """``<root>/<split>B_p<p>_structures``: the structure masks of phase ``percent`` of a split
    (``<split>B_structures`` for phase 0), named after the phase's folder
    (:func:`util.phases.phase_folder`)."""
    return root / f"{phase_folder(split, percent)}{STRUCTURES_SUFFIX}"


def structures_folder_phase(name: str, split: str) -> float | None:
    """The phase (%) whose masks a folder of ``split`` holds (inverse of
    :func:`phase_structures_dir`), None for any other folder."""
    if not name.endswith(STRUCTURES_SUFFIX):
        return None
    return folder_phase(name[: -len(STRUCTURES_SUFFIX)], split)


@dataclass(frozen=True)
class StructureSource:
    """One phase-0 mask of a patient in an export tree; ``reorder`` as in
    :class:`data.pairing.PairedPatient` (its voxel order, the AVG's) or None."""

    name: str
    path: Path
    reorder: tuple[str, str] | None


def find_structures(root: Path, patient: str, pattern: str, avg: VolumeInfo,
                    atol_mm: float) -> tuple[list[StructureSource], list[str]]:
    """The phase-0 masks under ``root/<patient>/<structure>/`` (one file matching ``pattern``
    per structure) that lie on the AVG's world grid; and every problem, each naming the file or
    folder (a patient without structures has neither)."""
    def matching(sub: Path) -> list[Path]:
        return sorted(p for p in sub.glob(pattern) if is_nifti_file(p))

    return _find_masks(root / patient, matching, f"match {pattern!r}", "phase-0 mask", avg,
                       atol_mm, required=True)


def find_phase_structures(root: Path, patient: str, percent: float, avg: VolumeInfo,
                          atol_mm: float) -> tuple[list[StructureSource], list[str]]:
    """The masks of phase ``percent`` under ``root/<patient>/<structure>/`` (the file whose
    name names the phase, :func:`util.phases.gated_percent`) that lie on the AVG's world grid,
    and every problem naming the file or folder. A structure without a mask of that phase is no
    problem (not every structure is contoured on every phase); two masks of it are."""
    def naming(sub: Path) -> list[Path]:
        return sorted(p for p in sub.iterdir()
                      if p.is_file() and is_nifti_file(p) and gated_percent(p.name) == percent)

    label = phase_label(percent)
    return _find_masks(root / patient, naming, f"name phase {label} %", f"phase-{label} mask",
                       avg, atol_mm, required=False)


def _find_masks(folder: Path, pick: Callable[[Path], list[Path]], picked: str, what: str,
                avg: VolumeInfo, atol_mm: float, required: bool
                ) -> tuple[list[StructureSource], list[str]]:
    """One mask per structure folder of ``folder`` (the files ``pick`` returns), those on the
    AVG's world grid, and the problems (none or several files; absent ones only when
    ``required``)."""
    if not folder.is_dir():
        return [], []
    found, problems = [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = pick(sub)
        if len(files) != 1:
            if files or required:
                problems.append(f"{sub}: {len(files)} files {picked}, expected one {what}")
            continue
        try:
            match = compare_grids(avg, read_info(files[0]), atol_mm)
        except DataError as exc:
            problems.append(str(exc))
            continue
        if match.differences:
            problems.append(f"{files[0]}: not on the grid of {avg.path}: "
                            f"{mismatch_text(match, atol_mm)}")
            continue
        reorder = (match.from_axcodes, match.to_axcodes) if match.reordered else None
        found.append(StructureSource(safe_name(sub.name), files[0], reorder))
    return found, problems


def load_structures(folder: Path, patient_stem: str,
                    truth: VolumeInfo) -> dict[str, np.ndarray]:
    """{structure: (I, J, K) bool mask} of one patient from ``folder`` (a
    ``<split>B_structures`` folder): every ``<structure>/<patient_stem>.nii[.gz]`` there, each
    checked to lie on the truth's voxel grid (DataError naming the file otherwise). Voxels
    above 0.5 are inside. Empty when the folder or the patient's masks are absent."""
    if not folder.is_dir():
        return {}
    masks = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        paths = [p for p in sub.iterdir() if is_nifti_file(p) and nifti_stem(p) == patient_stem]
        if not paths:
            continue
        info = read_info(paths[0])
        check_same_geometry(truth, info)
        masks[sub.name] = _read_mask(paths[0])
    return masks


def _read_mask(path: Path) -> np.ndarray:
    """(I, J, K) bool of a mask file: voxels above 0.5 (DataError naming an empty mask)."""
    mask = load_volume(path).hu > 0.5
    if not mask.any():
        raise DataError(f"{path}: an empty structure mask (no voxel above 0.5)")
    return mask
