"""The results folder of ``test.py``: where each patient's outputs go, and what an earlier run
left there that this one removes.

``<results_dir>/<name>/<phase>_<epoch>/`` holds ``volumes/`` (``<id>_fake_B.nii.gz``, its
``_std``, ``<id>_displacement.nii.gz``, and with ``--phases`` ``<id>_fake_B_p50.nii.gz``,
``_mip``, ``_avg``/``_mean`` and the other phases' fields), ``images/`` and ``patients/`` (the
pictures and patient pages, :mod:`inference.pictures`), and with ``--output_format dicom``
``dicom/<id>/``, ``dicom/<id>_p50/`` ... (derived series). ``<id>`` is the patient id made safe
(:func:`util.names.safe_name`).
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Collection, Iterable
from pathlib import Path

from display.patient_page import PATIENT_DIR
from inference.pipeline import OutputPaths
from models.cycle import cycle_volumes
from util.atomic import ensure_writable_dir
from util.errors import DataError, OutputError
from util.file_set import remove_stale_temp_files
from util.names import (
    DISPLACEMENT_SUFFIX,
    PREDICTION_SUFFIX,
    STD_SUFFIX,
    cycle_file_name,
    cycle_suffix,
    displacement_file_name,
    phase_prediction_file_name,
    prediction_file_name,
    safe_name,
    std_file_name,
)

logger = logging.getLogger(__name__)

#: Sub-folders of the results: volumes, pictures, and derived DICOM series (one per folder).
VOLUMES_DIR, IMAGES_DIR, DICOM_DIR = "volumes", "images", "dicom"
#: The volumes of a cycle (``--phases``) besides phase 0: phases, MIP, mean, fields of phases.
_CYCLE_NAME = re.compile(r"^(?P<stem>.+)(_fake_B_(p[0-9.]+|mip|avg|mean)|_displacement_p[0-9.]+)"
                         r"\.nii\.gz$")
#: The per-patient pictures: ``<stem>_views_<what>.png``, ``<stem>_slice<NNN>_<visual>.png``.
_PICTURE_NAME = re.compile(r"^(?P<stem>.+)_(views_[a-z_]+|slice\d{3}_(real_A|fake_B|real_B))\.png$")
#: Slice files of a series this project wrote (:func:`data.dicom_write.write_series`).
_SERIES_FILE = re.compile(r"^CT_\d{4,}\.dcm$")


def series_folder_name(patient_id: str, kind: float | str = 0.0) -> str:
    """The folder of a patient's derived series in ``dicom/``: ``<safe id>`` for phase 0,
    ``<safe id>_p50``, ``_mip``, ``_avg``/``_mean`` for the rest of a cycle."""
    return f"{safe_name(patient_id)}{cycle_suffix(kind)}"


def patient_paths(out_dir: Path, patient_id: str, phases: tuple[float, ...] = (), *,
                  dicom: bool = False, series_description: str = "phase 0") -> OutputPaths:
    """Where the outputs of ``patient_id`` go in ``out_dir``: its volumes (with ``phases``, the
    cycle's too) and, with ``dicom``, its derived series (replacing an earlier run's)."""
    volumes, series = out_dir / VOLUMES_DIR, out_dir / DICOM_DIR
    kinds = [v.kind for v in cycle_volumes(phases) if v.kind != 0]
    return OutputPaths(
        volume=volumes / prediction_file_name(patient_id),
        series=series / series_folder_name(patient_id) if dicom else None,
        std=volumes / std_file_name(patient_id),
        field=volumes / displacement_file_name(patient_id),
        cycle_volumes=tuple((k, volumes / (cycle_file_name(patient_id, k) if isinstance(k, str)
                                           else phase_prediction_file_name(patient_id, k)))
                            for k in kinds),
        cycle_series=tuple((k, series / series_folder_name(patient_id, k)) for k in kinds)
        if dicom else (),
        cycle_fields=tuple((k, volumes / displacement_file_name(patient_id, k)) for k in kinds
                           if not isinstance(k, str)),
        series_description=series_description, overwrite_series=True)


def cycle_file_names(patient_ids: Iterable[str], phases: tuple[float, ...]) -> set[str]:
    """The files of ``volumes/`` a run of ``phases`` writes besides phase 0 (each phase, its
    displacement field when the generator makes one, the MIP and the mean)."""
    names: set[str] = set()
    for pid in patient_ids:
        paths = patient_paths(Path(), pid, phases)
        names |= {path.name for _kind, path in (*paths.cycle_volumes, *paths.cycle_fields)}
    return names


def series_folder_names(patient_ids: Iterable[str], phases: tuple[float, ...]) -> set[str]:
    """The series folders of ``dicom/`` a run writes for ``patient_ids`` (phase 0 and, with
    ``phases``, their cycles), case-folded; DataError naming both patients when two would share
    a folder (``PT1``'s phase 50 and a patient ``PT1_p50``)."""
    owner: dict[str, str] = {}
    for pid in patient_ids:
        cycle = patient_paths(Path(), pid, phases, dicom=True).cycle_series
        for name in [series_folder_name(pid), *(path.name for _kind, path in cycle)]:
            first = owner.setdefault(name.casefold(), pid)
            if first != pid:
                raise DataError(f"patients {first!r} and {pid!r} would both write the DICOM "
                                f"series folder {DICOM_DIR}/{name}; rename one of them")
    return set(owner)


def prepare_results_folder(out_dir: Path, *, pictures: bool, dicom: bool) -> None:
    """Create the folders this run writes into and check that they are writable (OutputError
    naming one that is not), then remove the temp files an interrupted earlier run left."""
    folders = [VOLUMES_DIR] + ([IMAGES_DIR, PATIENT_DIR] if pictures else []) \
        + ([DICOM_DIR] if dicom else [])
    for folder in folders:
        ensure_writable_dir(out_dir / folder)
    for folder in ["", VOLUMES_DIR, IMAGES_DIR, PATIENT_DIR, DICOM_DIR]:
        remove_stale_temp_files(out_dir / folder)


def remove_stale_outputs(out_dir: Path, patient_ids: Iterable[str], keep_std: bool = False,
                         keep_pictures: bool = True, keep_cycle: Collection[str] = ()
                         ) -> list[Path]:
    """Delete the volumes, pictures and patient pages an earlier run wrote into ``out_dir`` for
    patients that are not in ``patient_ids``, so that the folder holds this run's patients only
    (a changed split or dataset would otherwise leave another model's predictions beside the
    new ones); standard deviations (``--samples``) of every patient too unless ``keep_std``
    (this run wrote them), and pictures and patient pages of every patient unless
    ``keep_pictures`` (this run wrote them), and the other phases, MIPs, means and their fields
    (``--phases``) but those named in ``keep_cycle`` (this run's, :func:`cycle_file_names`).
    Other files are not touched. Returns the deleted paths; OutputError naming a file that
    cannot be deleted."""
    stems = {safe_name(pid) for pid in patient_ids}
    volumes = out_dir / VOLUMES_DIR
    suffix = f"{PREDICTION_SUFFIX}.nii.gz"  # volumes are prediction_file_name(patient id)
    std_suffix = f"{PREDICTION_SUFFIX}{STD_SUFFIX}.nii.gz"  # and std_file_name(patient id)
    field_suffix = f"{DISPLACEMENT_SUFFIX}.nii.gz"  # and displacement_file_name(patient id)
    stale = [path for path in sorted(volumes.glob(f"*{suffix}"))
             if path.name.removesuffix(suffix) not in stems]
    stale += [path for path in sorted(volumes.glob(f"*{field_suffix}"))
              if path.name.removesuffix(field_suffix) not in stems]
    stale += [path for path in sorted(volumes.glob(f"*{std_suffix}"))
              if not keep_std or path.name.removesuffix(std_suffix) not in stems]
    stale += [path for path in sorted(volumes.glob("*.nii.gz"))
              if _CYCLE_NAME.match(path.name) and path.name not in keep_cycle]
    for path in sorted((out_dir / IMAGES_DIR).glob("*.png")):
        match = _PICTURE_NAME.match(path.name)
        if match is not None and (not keep_pictures or match["stem"] not in stems):
            stale.append(path)
    stale += [path for path in sorted((out_dir / PATIENT_DIR).glob("*.html"))
              if not keep_pictures or path.stem not in stems]
    for path in stale:
        try:
            path.unlink()
        except OSError as exc:
            raise OutputError(f"{path}: cannot remove this output of an earlier run "
                              f"({exc.strerror or exc})") from exc
    if stale:
        logger.info("removed %d files of an earlier run from %s", len(stale), out_dir)
    return stale


def _is_series_folder(folder: Path) -> bool:
    """True for a folder holding slice files ``CT_NNNN.dcm`` and nothing else (a series this
    project wrote)."""
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    return bool(names) and all(_SERIES_FILE.match(n) for n in names)


def remove_stale_series(out_dir: Path, keep: set[str]) -> list[Path]:
    """Delete the DICOM series folders ``dicom/<name>/`` an earlier run wrote whose names are
    not in ``keep`` (this run's, :func:`series_folder_names`, compared case-insensitively;
    empty: this run wrote none), and the temp folders an interrupted write left in ``dicom/``;
    an emptied ``dicom/`` goes too. Folders holding anything but ``CT_NNNN.dcm`` files are not
    touched. Returns the deleted folders; OutputError naming one that cannot be deleted."""
    folder = out_dir / DICOM_DIR
    if not folder.is_dir():
        return []
    remove_stale_temp_files(folder)
    stale = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.is_symlink()
             and p.name.casefold() not in keep and _is_series_folder(p)]
    for path in stale:
        try:
            shutil.rmtree(path)
        except OSError as exc:
            raise OutputError(f"{path}: cannot remove this DICOM series of an earlier run "
                              f"({exc.strerror or exc})") from exc
    if stale:
        logger.info("removed %d DICOM series folders of an earlier run from %s", len(stale),
                    folder)
    if not any(folder.iterdir()):
        folder.rmdir()
    return stale
