"""Writing the synthetic 4DCT as a scanner export: ``res_avg/``, ``res_phases/`` and, as a
planning system exports contours, ``res_structures/``.

Each patient is one AVG file and ten gated-phase files, stored as int16 (slope 1, inter 0) or as
uint16 with ``scl_inter = -1024``, both holding the same integer HU (with ``file_format="dicom"``,
one DICOM series per volume instead, storing the same values: :mod:`synthetic.dicom_export`;
the masks stay NIfTI); and, per phase, the tumour
as a binary uint8 mask on the same grid (``res_structures/<pid>/GTV/<pid>_GTV_Gated 0.0A.nii.gz``
...), the structure a physicist follows over the cycle. Files are written through
:func:`data.nifti_io.save_volume`, the project's one NIfTI writer (atomic, HU rounded to the
header's storage).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm import tqdm

from data.nifti_io import Volume, save_volume
from synthetic.dicom_export import check_dicom_grid, write_patient_dicom
from synthetic.grid import DEFAULT_GRID, SyntheticGrid
from synthetic.params import DEFAULT_RANGES, ParamRanges, patient_params
from synthetic.phantom import N_PHASES, SyntheticPatient, synthetic_patient, tumour_masks
from util.errors import ConfigError
from util.file_set import remove_stale_temp_files

logger = logging.getLogger(__name__)

STORAGES = ("int16", "uint16")
#: How the CT volumes are written: NIfTI files, or DICOM series (one folder per volume).
FORMATS = ("nifti", "dicom")


def patient_id(index: int, prefix: str = "PT") -> str:
    """Id of the ``index``-th (0-based) synthetic patient: ``PT001``, ``PT002``, ..."""
    if not prefix.isalnum():
        raise ConfigError(f"patient id prefix must be letters and digits, not {prefix!r}")
    return f"{prefix}{index + 1:03d}"


def avg_file_name(pid: str) -> str:
    """File name of a patient's average CT: ``PT001_AVG.nii.gz``."""
    return f"{pid}_AVG.nii.gz"


def phase_file_name(pid: str, phase: int) -> str:
    """File name of a gated phase: ``PT001_4DCT_Gated 0.0A.nii.gz`` ... ``Gated 90.0A``."""
    return f"{pid}_4DCT_Gated {10 * phase}.0A.nii.gz"


#: Name of the phantom's tumour structure in ``res_structures/<pid>/``.
TUMOUR_STRUCTURE = "GTV"


def structure_file_name(pid: str, structure: str, phase: int) -> str:
    """File name of a structure mask of one phase: ``PT001_GTV_Gated 0.0A.nii.gz``."""
    return f"{pid}_{structure}_Gated {10 * phase}.0A.nii.gz"


def _mask_header(affine: np.ndarray, description: str) -> nib.Nifti1Header:
    """Header of a binary mask: uint8, no scaling, the volume's qform and sform."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(1.0, 0.0)
    header.set_xyzt_units("mm", "sec")
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header["descrip"] = description.encode("ascii")[:79]
    return header


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


def write_tumour_masks(masks: np.ndarray, affine: np.ndarray, pid: str, folder: Path) -> None:
    """Write the (10, I, J, K) bool tumour masks of one patient into ``folder``."""
    for phase, mask in enumerate(masks):
        path = folder / structure_file_name(pid, TUMOUR_STRUCTURE, phase)
        header = _mask_header(affine, f"synthetic 4DCT {pid} {TUMOUR_STRUCTURE} phase "
                                      f"{10 * phase}%")
        values = mask.astype(np.float32)
        save_volume(values, Volume(hu=values, affine=affine, header=header, path=path), path)


def write_nifti_patient(patient: SyntheticPatient, pid: str, storage: str,
                         out_root: Path) -> None:
    """Write a patient's AVG and ten phases as NIfTI files under ``out_root``."""
    _write(patient.avg_hu, patient.affine, storage, f"synthetic 4DCT {pid} AVG",
           out_root / "res_avg" / pid / avg_file_name(pid))
    for phase in range(N_PHASES):
        _write(patient.phases_hu[phase], patient.affine, storage,
               f"synthetic 4DCT {pid} phase {10 * phase}%",
               out_root / "res_phases" / pid / phase_file_name(pid, phase))


def _check_options(n_patients: int, seed: int, storage: str, file_format: str,
                   grid: SyntheticGrid) -> None:
    """ConfigError for options that cannot work."""
    if n_patients < 1:
        raise ConfigError(f"n_patients must be >= 1, got {n_patients}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if storage not in STORAGES:
        raise ConfigError(f"unknown storage {storage!r}; valid: {STORAGES}")
    if file_format not in FORMATS:
        raise ConfigError(f"unknown format {file_format!r}; valid: {FORMATS}")
    if file_format == "dicom":
        check_dicom_grid(grid)


def write_synthetic_4dct(out_root: str | os.PathLike[str], n_patients: int, *,
                         grid: SyntheticGrid = DEFAULT_GRID, seed: int = 0,
                         ranges: ParamRanges = DEFAULT_RANGES,
                         chest_expansion_mm: float | None = None, fat_mm: float = 8.0,
                         storage: str = "int16", id_prefix: str = "PT",
                         structures: bool = True, progress: bool = True,
                         file_format: str = "nifti") -> list[str]:
    """Write ``out_root/res_avg/<pid>/<pid>_AVG.nii.gz`` and the ten
    ``out_root/res_phases/<pid>/<pid>_4DCT_Gated {0,10,...,90}.0A.nii.gz``, and with
    ``structures`` the tumour masks ``out_root/res_structures/<pid>/GTV/<pid>_GTV_Gated
    {0,...,90}.0A.nii.gz``; return the ids. With ``file_format="dicom"`` the volumes are
    DICOM series in ``res_avg/<pid>/<pid>_AVG/`` and ``res_phases/<pid>/<pid>_4DCT_Gated
    {0,...,90}.0A/`` (:mod:`synthetic.dicom_export`; LPS grids only).

    Patient ``k`` is :func:`synthetic.params.patient_params` ``(seed, k, ranges, ...)`` on
    ``grid``.
    """
    _check_options(n_patients, seed, storage, file_format, grid)
    out_root = Path(out_root)
    ids = []
    for index in tqdm(range(n_patients), desc="synthetic 4DCT", unit="patient",
                      disable=not progress):
        pid = patient_id(index, id_prefix)
        params = patient_params(seed, index, ranges, chest_expansion_mm=chest_expansion_mm,
                                fat_mm=fat_mm)
        patient = synthetic_patient(params, grid)
        for folder in (out_root / "res_avg" / pid, out_root / "res_phases" / pid,
                       out_root / "res_structures" / pid / TUMOUR_STRUCTURE):
            remove_stale_temp_files(folder)  # what a write killed in an earlier run left
        if file_format == "dicom":
            write_patient_dicom(patient, pid, grid, storage, f"{seed}|{params!r}|{grid!r}|"
                                f"{storage}", out_root)
        else:
            write_nifti_patient(patient, pid, storage, out_root)
        if structures:
            write_tumour_masks(tumour_masks(params, grid), patient.affine, pid,
                                out_root / "res_structures" / pid / TUMOUR_STRUCTURE)
        logger.debug("%s: amplitude %.1f mm, tumour r=%.1f mm in the %s lung", pid,
                     params.amplitude_mm, params.tumour_radius_mm, params.tumour_side)
        ids.append(pid)
    logger.info("wrote %d synthetic patients (%d x %d x %d, %s, %s, %s) under %s", len(ids),
                *grid.shape, grid.orientation, storage, file_format, out_root)
    return ids
