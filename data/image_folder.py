"""Finding images in folders: ordinary picture formats, NIfTI volumes and, where asked for,
patient folders holding DICOM series."""

from __future__ import annotations

import os
from pathlib import Path

from data.dicom_io import is_dicom_folder
from data.nifti_io import is_nifti_file, nifti_stem
from util.errors import DataError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True for picture files and NIfTI volumes (``.nii``, ``.nii.gz``), by extension."""
    return str(path).lower().endswith(IMG_EXTENSIONS) or is_nifti_file(path)


def make_dataset(folder: str | os.PathLike[str], max_dataset_size: float = float("inf"),
                 *, nifti_only: bool = False) -> list[Path]:
    """Sorted image files under ``folder`` (recursively), at most ``max_dataset_size`` of them.

    Hidden files (names starting with '.', e.g. temp files of an interrupted write) are skipped.
    Raises DataError when ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a directory")
    keep = is_nifti_file if nifti_only else is_image_file
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and not p.name.startswith(".") and keep(p))
    limit = len(files) if max_dataset_size == float("inf") else int(max_dataset_size)
    return files[:limit]


def pair_by_name(dir_a: Path, dir_b: Path | None, *, dicom_folders: bool = False
                 ) -> list[tuple[str, Path, Path | None]]:
    """Pair ``dir_a/<id>.nii[.gz]`` with ``dir_b/<id>.nii[.gz]`` by file name.

    With ``dicom_folders``, a folder ``dir_a/<id>/`` (or ``dir_b/<id>/``) holding DICOM files
    and no NIfTI file is the volume of patient ``<id>`` too (see :func:`dicom_patient_folders`),
    and pairs with a NIfTI file or a DICOM folder of the same id on the other side.

    Returns (id, path_A, path_B) sorted by id; path_B is None when ``dir_b`` is None (no ground
    truth). Every A without its B, every B without its A and every duplicated id is reported
    together in one DataError.
    """
    by_id_a = _volumes_by_id(dir_a, dicom_folders)
    if not by_id_a:
        also = " or patient folders holding a DICOM series" if dicom_folders else ""
        raise DataError(f"{dir_a}: no NIfTI volumes (.nii, .nii.gz) found{also}")
    if dir_b is None:
        return [(pid, path, None) for pid, path in sorted(by_id_a.items())]
    by_id_b = _volumes_by_id(dir_b, dicom_folders)
    problems = [f"{by_id_a[i]}: no matching file in {dir_b}" for i in sorted(by_id_a.keys()
                                                                          - by_id_b.keys())]
    problems += [f"{by_id_b[i]}: no matching file in {dir_a}" for i in sorted(by_id_b.keys()
                                                                           - by_id_a.keys())]
    if problems:
        raise DataError("unpaired volumes:\n  " + "\n  ".join(problems))
    return [(pid, by_id_a[pid], by_id_b[pid]) for pid in sorted(by_id_a)]


def dicom_patient_folders(folder: Path) -> dict[str, Path]:
    """{id: folder} of the sub-folders ``folder/<id>/`` that hold DICOM files (below them, at
    any depth) and no NIfTI file; hidden ones are skipped. DataError naming the folder when DICOM
    files lie directly in ``folder`` (no patient id), or a sub-folder holds both kinds."""
    loose = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")
             and not is_image_file(p) and _is_dicom_file(p)]
    if loose:
        raise DataError(f"{folder}: {len(loose)} DICOM files lie directly in this folder (e.g. "
                        f"{loose[0].name}); put each patient's series in a folder "
                        f"{folder}/<patient id>/")
    found: dict[str, Path] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not is_dicom_folder(sub):
            continue
        nifti = make_dataset(sub, nifti_only=True)
        if nifti:
            raise DataError(f"{sub}: holds both DICOM files and NIfTI volumes (e.g. "
                            f"{nifti[0].name}); keep one kind per patient folder")
        found[sub.name] = sub
    return found


def _is_dicom_file(path: Path) -> bool:
    """True when ``path`` is a DICOM Part 10 file (``DICM`` at byte 128)."""
    try:
        with path.open("rb") as stream:
            head = stream.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def _volumes_by_id(folder: Path, dicom_folders: bool) -> dict[str, Path]:
    """{id: NIfTI file} of ``folder`` (recursively), with its DICOM patient folders when
    ``dicom_folders``; DataError when two share an id."""
    index = _index_by_stem(make_dataset(folder, nifti_only=True))
    if dicom_folders:
        for pid, sub in dicom_patient_folders(folder).items():
            if pid in index:
                raise DataError(f"{sub}: same patient id '{pid}' as {index[pid]}")
            index[pid] = sub
    return index


def _index_by_stem(files: list[Path]) -> dict[str, Path]:
    """{id: path} keyed by the name without extension; DataError when two files share an id."""
    index: dict[str, Path] = {}
    for path in files:
        stem = nifti_stem(path)
        if stem in index:
            raise DataError(f"{path}: same patient id '{stem}' as {index[stem]}")
        index[stem] = path
    return index
