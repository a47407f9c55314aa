"""The synthetic 4DCT as DICOM CT series, laid out as a scanner export:
``res_avg/<pid>/<pid>_AVG/`` and ``res_phases/<pid>/<pid>_4DCT_Gated {0,...,90}.0A/``, one file
per slice (``CT_0001.dcm`` ..., written by :func:`data.dicom_write.write_series`).

One patient is one study and one frame of reference; series descriptions are ``"AVG"`` and
``"Gated 0.0A"`` ... ``"Gated 90.0A"``, as real exports name them. Slices are LPS (IOP
``1\\0\\0\\0\\1\\0``) and store the same integer HU as the NIfTI export: int16 with rescale 1 / 0,
or 12-bit unsigned in uint16 with intercept -1024.

UIDs are deterministic: ``2.25.<integer>`` UIDs (the UUID form of DICOM PS3.5 B.2) of
name-based UUIDs (version 5, SHA-1) of this writer's name, the seed, the patient's parameters and
id, the grid, the storage, and the series and slice. They are valid DICOM UIDs; writing the same
tree again gives the same UIDs, and any difference in content gives different ones (a collision
is as likely as one of 122-bit hashes).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from data.dicom_io import PixelStorage
from data.dicom_write import geometry_from_affine, write_series
from synthetic.grid import SyntheticGrid
from synthetic.phantom import N_PHASES, SyntheticPatient
from util.errors import ConfigError

_UID_ROOT = "ct-phase-pix2pix synthetic 4DCT"
_AVG_IMAGE_TYPE = ["DERIVED", "SECONDARY", "AVERAGE"]
_PHASE_IMAGE_TYPE = ["ORIGINAL", "PRIMARY", "AXIAL"]


def avg_series_folder(pid: str) -> str:
    """Folder of a patient's AVG series: ``PT001_AVG``."""
    return f"{pid}_AVG"


def phase_series_folder(pid: str, phase: int) -> str:
    """Folder of a gated phase series: ``PT001_4DCT_Gated 0.0A`` ... ``Gated 90.0A``."""
    return f"{pid}_4DCT_Gated {10 * phase}.0A"


def phase_description(phase: int) -> str:
    """SeriesDescription of phase ``phase`` (0..9): ``"Gated 0.0A"`` ... ``"Gated 90.0A"``."""
    return f"Gated {10 * phase}.0A"


def synthetic_uid(key: str, *parts: object) -> str:
    """A deterministic ``2.25.`` UID of ``key`` (what makes the content) and ``parts``."""
    name = "|".join([_UID_ROOT, key, *map(str, parts)])
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"


def pixel_storage(storage: str, n_slices: int) -> PixelStorage:
    """int16 (slope 1, intercept 0) or 12-bit uint16 (intercept -1024), as in the NIfTI export."""
    if storage == "int16":
        return PixelStorage(16, 16, 1, ((1.0, 0.0),) * n_slices)
    if storage == "uint16":
        return PixelStorage(16, 12, 0, ((1.0, -1024.0),) * n_slices)
    raise ConfigError(f"unknown storage {storage!r}; valid: ('int16', 'uint16')")


def study_tags(pid: str, key: str) -> Dataset:
    """Patient, study and frame-of-reference tags shared by all series of one patient."""
    tags = Dataset()
    tags.PatientName, tags.PatientID = f"SYNTHETIC^{pid}", pid
    tags.PatientBirthDate, tags.PatientSex, tags.PatientPosition = "", "O", "HFS"
    tags.StudyInstanceUID = synthetic_uid(key, "study")
    tags.StudyDate, tags.StudyTime, tags.StudyID = "20000101", "120000", "1"
    tags.AccessionNumber, tags.ReferringPhysicianName = "", ""
    tags.StudyDescription = "Synthetic 4DCT"
    tags.FrameOfReferenceUID = synthetic_uid(key, "frame of reference")
    tags.PositionReferenceIndicator = ""
    tags.Manufacturer, tags.KVP, tags.AcquisitionNumber = "ct-phase-pix2pix synthetic", "", ""
    tags.Modality = "CT"
    return tags


def check_dicom_grid(grid: SyntheticGrid) -> None:
    """ConfigError unless ``grid`` is LPS, the voxel order the DICOM export writes."""
    if grid.orientation != "LPS":
        raise ConfigError(f"DICOM series are written in LPS voxel order, as scanners export "
                          f"them; orientation {grid.orientation!r} is for NIfTI only")


def _write_one(hu: np.ndarray, patient: SyntheticPatient, grid: SyntheticGrid, storage: str,
               tags: Dataset, series: tuple[str, str, int, list[str]], key: str,
               folder: Path) -> None:
    """Write one series ((I, J, K) HU); ``series``: (name in UIDs, description, number,
    ImageType)."""
    name, description, number, image_type = series
    series_tags = Dataset()
    series_tags.update(tags)
    series_tags.SeriesInstanceUID = synthetic_uid(key, name)
    series_tags.SeriesDescription, series_tags.SeriesNumber = description, number
    series_tags.ImageType = image_type
    series_tags.SeriesDate, series_tags.SeriesTime = tags.StudyDate, tags.StudyTime
    geometry = geometry_from_affine(patient.affine, grid.shape, grid.slice_thickness_mm)
    sop_uids = [synthetic_uid(key, name, "slice", k) for k in range(grid.n_slices)]
    write_series(hu, geometry, pixel_storage(storage, grid.n_slices), series_tags, sop_uids,
                 folder, overwrite=True)


def write_patient_dicom(patient: SyntheticPatient, pid: str, grid: SyntheticGrid, storage: str,
                        key: str, out_root: Path) -> None:
    """Write a patient's AVG and ten phases as DICOM series under ``out_root/res_avg/<pid>/``
    and ``out_root/res_phases/<pid>/``. ``key`` names the content (parameters, grid, storage,
    seed) for the UIDs; the grid must be LPS."""
    check_dicom_grid(grid)
    key = f"{key}|{pid}"
    tags = study_tags(pid, key)
    _write_one(patient.avg_hu, patient, grid, storage, tags, ("AVG", "AVG", 2, _AVG_IMAGE_TYPE),
               key, out_root / "res_avg" / pid / avg_series_folder(pid))
    for phase in range(N_PHASES):
        series = (f"phase {phase}", phase_description(phase), 10 + phase, _PHASE_IMAGE_TYPE)
        _write_one(patient.phases_hu[phase], patient, grid, storage, tags, series, key,
                   out_root / "res_phases" / pid / phase_series_folder(pid, phase))
