"""Finding images in folders: ordinary picture formats and NIfTI volumes."""

from __future__ import annotations

import os
from pathlib import Path

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


def pair_by_name(dir_a: Path, dir_b: Path | None) -> list[tuple[str, Path, Path | None]]:
    """Pair ``dir_a/<id>.nii[.gz]`` with ``dir_b/<id>.nii[.gz]`` by file name.

    Returns (id, path_A, path_B) sorted by id; path_B is None when ``dir_b`` is None (no ground
    truth). Every A without its B, every B without its A and every duplicated id is reported
    together in one DataError.
    """
    files_a = make_dataset(dir_a, nifti_only=True)
    if not files_a:
        raise DataError(f"{dir_a}: no NIfTI volumes (.nii, .nii.gz) found")
    by_id_a = _index_by_stem(files_a)
    if dir_b is None:
        return [(pid, path, None) for pid, path in sorted(by_id_a.items())]
    by_id_b = _index_by_stem(make_dataset(dir_b, nifti_only=True))
    problems = [f"{by_id_a[i]}: no matching file in {dir_b}" for i in sorted(by_id_a.keys()
                                                                          - by_id_b.keys())]
    problems += [f"{by_id_b[i]}: no matching file in {dir_a}" for i in sorted(by_id_b.keys()
                                                                           - by_id_a.keys())]
    if problems:
        raise DataError("unpaired volumes:\n  " + "\n  ".join(problems))
    return [(pid, by_id_a[pid], by_id_b[pid]) for pid in sorted(by_id_a)]


def _index_by_stem(files: list[Path]) -> dict[str, Path]:
    """{id: path} keyed by the name without extension; DataError when two files share an id."""
    index: dict[str, Path] = {}
    for path in files:
        stem = nifti_stem(path)
        if stem in index:
            raise DataError(f"{path}: same patient id '{stem}' as {index[stem]}")
        index[stem] = path
    return index
