"""Structure masks of phase 0 (a tumour or GTV contour exported as a binary NIfTI mask), the
geometry a physicist checks a synthetic phase 0 against.

In a dataset they sit beside the phase-0 folder, one folder per structure, matched by patient id
like ``testA/`` and ``testB/``::

    <dataroot>/testB_structures/<structure>/<id>.nii.gz

``prepare_dataset.py --structures_root R`` fills them from an export tree
``R/<patient>/<structure>/`` whose file matching the phase-0 pattern (``*Gated 0.0A*``) is the
phase-0 mask, checked to lie on the AVG's world grid and stored in the AVG's voxel order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.ct_volumes import check_same_geometry
from data.nifti_io import VolumeInfo, is_nifti_file, load_volume, nifti_stem, read_info
from data.voxel_grid import compare_grids, mismatch_text
from util.errors import DataError
from util.names import safe_name

logger = logging.getLogger(__name__)

#: Suffix of the structure folder beside ``<split>B``.
STRUCTURES_SUFFIX = "_structures"


def structures_dir(root: Path, split: str) -> Path:
    """``<root>/<split>B_structures``: the phase-0 structure masks of a split."""
    return root / f"{split}B{STRUCTURES_SUFFIX}"


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
    folder = root / patient
    if not folder.is_dir():
        return [], []
    found, problems = [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(p for p in sub.glob(pattern) if is_nifti_file(p))
        if len(files) != 1:
            problems.append(f"{sub}: {len(files)} files match {pattern!r}, expected one "
                            f"phase-0 mask")
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
