"""Build the pix2pix dataset from a 4DCT export: AVG (A) -> phase 0 (B), split by patient.

    python prepare_dataset.py --avg_root ./res_avg --phases_root ./res_phases \\
        --output ./datasets/ct_phases_dataset --val_fraction 0.1 --test_fraction 0.2 --seed 0

``avg_root/<patient>/`` and ``phases_root/<patient>/`` are paired by folder name. Each patient needs
exactly one AVG file and one phase-0 file, both readable and not constant, on the same world grid:
the same shape and affine (within ``--geometry_atol_mm``) once phase 0 is in the AVG's voxel order.
Every entry of both trees is accounted for: paired, or reported with all its reasons
(``unpaired.json``, ``unpaired.txt``), including broken links, link loops, stray files and two
folders that would share one file name; only hidden files (``.DS_Store``) are skipped. Paired
patients are split by patient (never by slice) and written as
``output/{train,val,test}{A,B}/<safe id>.nii.gz``: ``.nii.gz`` sources byte for byte, ``.nii``
sources gzip-compressed (same header and voxels), and a phase 0 stored in another voxel order
than its AVG (RAS vs LPS) reordered into the AVG's order with its raw values, type and scaling
unchanged. ``manifest.json`` records every patient, its split, sources (with SHA-256), shape,
spacing and any reordering. The source trees are only read; an ``--output`` that cannot be
written is refused before anything is. Re-running is safe: identical destinations are kept, NIfTI
files that no longer belong in a split folder are removed, and temp files left by an interrupted
run are cleaned.

A patient folder holding DICOM series instead of NIfTI files (a planning-system export: one
folder per series, anywhere below the patient folder) is read as DICOM: the AVG and phase-0
series are picked by description (``--avg_series``, default ``*AVG*``; ``--phase0_series``,
default ``*Gated 0.0A*``; case-insensitive) and converted to ``.nii.gz`` with the same HU, stored
type and rescale, and the exact affine (:mod:`data.dicom_io`; a series that cannot be read whole,
e.g. with a missing slice, is reported with the reason). The manifest then names the series
(folder, SeriesInstanceUID, description, slices) as the source, and its ``*_sha256`` is that of
the SHA-256 digests of the series' files, in path order.

``--phases all`` (or a list such as ``--phases 0,50``) prepares the whole 4DCT: phase 0 stays
the anchor and goes where it always does, and every other requested phase p a paired patient
has (found by the percentage its file name, or its series' description, names: ``Gated 50.0A``)
is checked like phase 0 (read in full, not constant, on the AVG's world grid, reordered into its
voxel order) and written to ``output/<split>B_p<p>/<id>.nii.gz`` by the same copy and convert
rules (with ``--structures_root``, its masks to ``<split>B_p<p>_structures/``). ``all`` means
the ten standard phases and any other a patient has. A phase a patient lacks is reported
missing; one named by two files (or series), unreadable or off the grid is left out with its
reason; the patient stays paired either way. ``manifest.json`` then records the phases prepared
and, per patient, ``phases`` (each written phase, 0 included, with its source, SHA-256, file and
reordering), ``missing_phases`` and ``phase_problems``; the summary and ``unpaired.txt`` list
every phase left out. Without ``--phases`` the dataset is the phase-0 one, and a re-run removes
what phase folders an earlier run left (as it does for files that no longer belong anywhere).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from data.ct_volumes import AFFINE_ATOL_MM
from data.dicom_io import SeriesInfo, read_series
from data.nifti_io import VolumeInfo, read_info, save_volume
from data.pairing import (
    SPLITS,
    ExportLayout,
    PairedPatient,
    PatientPhases,
    PhaseRequest,
    UnpairedPatient,
    assign_splits,
    pair_patients,
    prepared_phases,
)
from data.split_folders import (
    make_folder,
    phase_dir,
    place_source,
    plain_folder,
    sweep_phase_folders,
    sync_phase_folders,
    sync_split_folders,
    sync_structure_folders,
)
from data.structures import find_phase_structures, find_structures
from util.atomic import atomic_write_text
from util.cli import printable, run_cli
from util.digests import file_sha256
from util.errors import ConfigError, DataError
from util.paths import folder_problem
from util.phases import phase_label

logger = logging.getLogger("prepare_dataset")

@dataclass(frozen=True)
class PrepareOptions:
    """Everything :func:`prepare_dataset` needs; fractions are of the paired patients."""

    avg_root: Path = Path("./res_avg")
    phases_root: Path = Path("./res_phases")
    output: Path = Path("./datasets/ct_phases_dataset")
    phase0_pattern: str = ExportLayout.phase0_pattern
    avg_pattern: str = ExportLayout.avg_pattern
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    geometry_atol_mm: float = AFFINE_ATOL_MM
    structures_root: Path | None = None
    avg_series: str = ExportLayout.avg_series
    phase0_series: str = ExportLayout.phase0_series
    phases: str | None = None  # --phases as given: "all", "0,50"; None: phase 0 only

    @property
    def phase_request(self) -> PhaseRequest | None:
        """The parsed ``--phases`` (ConfigError when it cannot be), None without it."""
        return None if self.phases is None else PhaseRequest.parse(self.phases)

    @property
    def layout(self) -> ExportLayout:
        """The export trees and file patterns, as :mod:`data.pairing` takes them."""
        return ExportLayout(self.avg_root, self.phases_root, self.avg_pattern,
                            self.phase0_pattern, self.avg_series, self.phase0_series)


@dataclass(frozen=True)
class PrepareResult:
    """Outcome of a run: who went where, who was left out, and what changed on disk."""

    paired: tuple[PairedPatient, ...]
    unpaired: tuple[UnpairedPatient, ...]
    splits: dict[str, str]  # patient -> split
    copied: int
    skipped: int
    removed: int
    phases: tuple[float, ...] = ()  # the phases prepared (%, 0 first); () without --phases


def _write_if_changed(path: Path, text: str) -> None:
    """Atomically write ``text`` unless ``path`` already holds exactly it (keeps the mtime)."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)


def phase_report(paired: Sequence[PairedPatient]) -> list[str]:
    """``<patient>: phase <p>: <reason>`` for every phase missing or left out of a paired
    patient, by patient then phase."""
    return [f"{pair.patient}: phase {phase_label(percent)}: {reason}" for pair in paired
            if pair.phases is not None for percent, reason in pair.phases.left_out()]


def _phases_text(percents: tuple[float, ...], paired: Sequence[PairedPatient]) -> list[str]:
    """Lines naming the phases prepared, then every phase left out with its reason."""
    left_out = phase_report(paired)
    patients = sum(bool(p.phases.left_out()) for p in paired if p.phases is not None)
    count = f"{len(left_out)} (of {patients} patients)" if left_out else "0"
    return [f"phases: {', '.join(phase_label(p) for p in percents)}",
            f"phases left out: {count}", *left_out]


def unpaired_text(unpaired: list[UnpairedPatient], opts: PrepareOptions, n_paired: int,
                  phases: tuple[float, ...] = (), paired: Sequence[PairedPatient] = ()) -> str:
    """Human-readable list of the patients left out and why; with ``phases`` (a ``--phases``
    run) also the phases prepared and every phase left out of a ``paired`` patient."""
    patients = sorted({u.patient for u in unpaired})
    lines = [f"avg_root: {opts.avg_root.absolute()}", f"phases_root: "
             f"{opts.phases_root.absolute()}", f"paired patients: {n_paired}",
             f"unpaired patients: {len(patients)} ({len(unpaired)} problems)", ""]
    lines += [f"{u.patient}: {u.reason}" for u in unpaired]
    if phases:
        lines += ["", *_phases_text(phases, paired)] if unpaired else \
            _phases_text(phases, paired)
    return printable("\n".join(lines) + "\n")


def _sync_phase_structures(opts: PrepareOptions, paired: list[PairedPatient],
                           splits: dict[str, str], output: Path, entries: list[dict],
                           avgs: dict[str, VolumeInfo]) -> list[str]:
    """Copy the masks of every phase written beside phase 0 into
    ``<split>B_p<p>_structures/``, record them under the phase's manifest entry; returns the
    problems, each naming the patient, phase and file."""
    root = opts.structures_root
    if root is None:
        return []
    by_entry, problems = {e["patient"]: e for e in entries}, []
    for percent in sorted({s.percent for p in paired if p.phases for s in p.phases.found}):
        label, sources = phase_label(percent), {}
        for pair in paired:
            if pair.phases and any(s.percent == percent for s in pair.phases.found):
                found, issues = find_phase_structures(root, pair.patient, percent,
                                                      avgs[pair.patient], opts.geometry_atol_mm)
                sources[pair.patient] = found
                problems += [f"{pair.patient}: phase {label}: {issue}" for issue in issues]
        by_patient, written = sync_structure_folders(sources, paired, splits, output, percent)
        for patient, masks in by_patient.items():
            by_entry[patient]["phases"][label]["structures"] = masks
        logger.info("%d phase-%s structure masks in <split>B_p%s_structures/ (%d written)",
                    sum(len(v) for v in by_patient.values()), label, label, written)
    return problems


def _sync_structures(opts: PrepareOptions, paired: list[PairedPatient], splits: dict[str, str],
                     output: Path, entries: list[dict]) -> list[str]:
    """Copy the phase-0 structure masks of ``--structures_root`` (when given) into
    ``<split>B_structures/``, add them to the manifest entries; returns the problems (masks that
    are missing, ambiguous or off the AVG's grid are left out, not the patient). With
    ``--phases``, the masks of the other phases written too."""
    if opts.structures_root is None:
        return []
    sources, problems = {}, []
    avgs = {pair.patient: read_info(pair.avg_path) for pair in paired}
    for pair in paired:
        found, issues = find_structures(opts.structures_root, pair.patient, opts.phase0_pattern,
                                        avgs[pair.patient], opts.geometry_atol_mm)
        sources[pair.patient] = found
        problems += [f"{pair.patient}: {issue}" for issue in issues]
    by_patient, written = sync_structure_folders(sources, paired, splits, output)
    for entry in entries:
        entry["structures"] = by_patient.get(entry["patient"], {})
    n_masks = sum(len(v) for v in by_patient.values())
    logger.info("%d phase-0 structure masks of %d patients in <split>B_structures/ (%d written)",
                n_masks, len(by_patient), written)
    problems += _sync_phase_structures(opts, paired, splits, output, entries, avgs)
    for problem in problems:
        logger.warning("structure left out: %s", problem)
    return problems


def write_reports(output: Path, opts: PrepareOptions, entries: list[dict],
                  unpaired: list[UnpairedPatient], n_paired: int,
                  structure_problems: list[str] | None = None, phases: tuple[float, ...] = (),
                  paired: Sequence[PairedPatient] = ()) -> None:
    """Write ``manifest.json``, ``unpaired.json`` and ``unpaired.txt`` atomically; with
    ``--phases``, the manifest names the option and the phases prepared (``phases``), and
    ``unpaired.txt`` every phase left out of a ``paired`` patient."""
    options = {"avg_root": str(opts.avg_root.absolute()),
               "phases_root": str(opts.phases_root.absolute()), "output": str(output),
               "avg_pattern": opts.avg_pattern, "phase0_pattern": opts.phase0_pattern,
               "val_fraction": opts.val_fraction, "test_fraction": opts.test_fraction,
               "seed": opts.seed, "geometry_atol_mm": opts.geometry_atol_mm,
               "avg_series": opts.avg_series, "phase0_series": opts.phase0_series,
               "structures_root": None if opts.structures_root is None
               else str(opts.structures_root.absolute())}
    counts = {split: sum(e["split"] == split for e in entries) for split in SPLITS}
    manifest = {"options": options, "counts": counts, "patients": entries,
                "unpaired_patients": sorted({u.patient for u in unpaired}),
                "structure_problems": structure_problems or []}
    if opts.phases is not None:
        options["phases"] = opts.phases
        manifest["phases"] = [phase_label(p) for p in phases]
    reasons = [{"patient": u.patient, "reason": u.reason} for u in unpaired]
    for name, text in (("manifest.json", json.dumps(manifest, indent=2, sort_keys=True)),
                       ("unpaired.json", json.dumps(reasons, indent=2))):
        _write_if_changed(output / name, text + "\n")
    _write_if_changed(output / "unpaired.txt", unpaired_text(unpaired, opts, n_paired, phases,
                                                             paired))


def _check_output(output: Path) -> None:
    """ConfigError unless ``output`` is a writable folder or can be created as one; creates
    nothing."""
    problem = folder_problem(output)
    if problem is None:
        if not os.access(output, os.W_OK | os.X_OK):
            raise ConfigError(f"--output {output}: is not writable")
        return
    if problem != "does not exist":
        raise ConfigError(f"--output {output}: {problem}")
    ancestor = output.absolute().parent
    while folder_problem(ancestor) == "does not exist" and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    problem = folder_problem(ancestor)
    if problem is None and not os.access(ancestor, os.W_OK | os.X_OK):
        problem = "is not writable"
    if problem is not None:
        raise ConfigError(f"--output {output}: cannot be created: {ancestor} {problem}")


def _check_options(opts: PrepareOptions) -> None:
    """Raise ConfigError/DataError for impossible options or missing roots."""
    if not (0 <= opts.val_fraction < 1 and 0 <= opts.test_fraction < 1
            and opts.val_fraction + opts.test_fraction < 1):
        raise ConfigError(f"--val_fraction {opts.val_fraction} and --test_fraction "
                          f"{opts.test_fraction} must be in [0, 1) and sum to less than 1")
    if opts.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {opts.seed}")
    if not 0 <= opts.geometry_atol_mm < float("inf"):
        raise ConfigError(f"--geometry_atol_mm must be a finite distance >= 0 mm, got "
                          f"{opts.geometry_atol_mm}")
    if opts.phases is not None:
        PhaseRequest.parse(opts.phases)  # ConfigError unless "all" or a list of percentages
    _check_output(opts.output)
    roots = [("--avg_root", opts.avg_root), ("--phases_root", opts.phases_root)]
    roots += [("--structures_root", opts.structures_root)] if opts.structures_root else []
    for flag, root in roots:
        if not root.is_dir():
            raise DataError(f"{flag} {root}: no such folder")
        out, src = opts.output.resolve(), root.resolve()
        if out.is_relative_to(src) or src.is_relative_to(out):
            raise ConfigError(f"--output {opts.output} and {flag} {root} overlap; the dataset "
                              f"must live outside the source tree (and vice versa)")


def _sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes; DataError naming it when it cannot be read."""
    try:
        return file_sha256(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def series_sha256(series: SeriesInfo) -> str:
    """Hex SHA-256 of the SHA-256 hex digests of a series' files, in path order."""
    return hashlib.sha256("".join(_sha256(p) for p in series.files).encode()).hexdigest()


def convert_series(series: SeriesInfo, dest: Path, reorder: tuple[str, str] | None) -> bool:
    """Make ``dest`` (.nii.gz) hold the series as NIfTI (stored type, rescale and affine of
    :func:`data.dicom_io.read_series`), its voxels reordered ``reorder[0]`` -> ``reorder[1]``
    when given. False when ``dest`` already held exactly that (nothing written)."""
    vol = read_series(series)
    with tempfile.TemporaryDirectory(prefix="ct_dicom_") as tmp:
        staged = save_volume(vol.hu, vol, Path(tmp) / "series.nii")
        return place_source(staged, _sha256(staged), dest, reorder)


def _convert_dicom_phases(pair: PairedPatient, split: str, output: Path
                          ) -> tuple[PatientPhases | None, int]:
    """Convert the DICOM phases (other than 0) of ``pair`` into ``<split>B_p<p>/``; returns its
    phases as :func:`sync_phase_folders` should see them (the converted files as their sources,
    nothing left to reorder) and the number of files written."""
    if pair.phases is None:
        return None, 0
    found, written = [], 0
    for source in pair.phases.found:
        if source.series is not None:
            dest = phase_dir(output, split, source.percent) / f"{pair.safe_id}.nii.gz"
            written += convert_series(source.series, dest, source.reorder)
            source = dataclasses.replace(source, path=dest, reorder=None, series=None)
        found.append(source)
    return dataclasses.replace(pair.phases, found=tuple(found)), written


def _convert_dicom(paired: list[PairedPatient], splits: dict[str, str], output: Path,
                   progress: bool) -> tuple[list[PairedPatient], int]:
    """Convert every DICOM side (and DICOM phase) into its split (or phase) folder. Returns the
    pairs as :func:`sync_split_folders` should see them (the converted files as their sources,
    nothing left to reorder) and the number of files written (the others were up to date)."""
    as_files, written = [], 0
    dicom = [p for p in paired if p.avg_series is not None or p.phase0_series is not None]
    for pair in tqdm(dicom, desc="converting DICOM", unit="patient",
                     disable=not progress or not dicom):
        changes: dict = {}
        for side, series, key in (("A", pair.avg_series, "avg_path"),
                                  ("B", pair.phase0_series, "phase0_path")):
            if series is None:
                continue
            dest = plain_folder(output, f"{splits[pair.patient]}{side}") / \
                f"{pair.safe_id}.nii.gz"
            reorder = pair.phase0_reorder if side == "B" else None
            written += convert_series(series, dest, reorder)
            changes[key] = dest
        if pair.phase0_series is not None:  # reordered while converted
            changes["phase0_reorder"] = None
        changes["phases"], n_phases = _convert_dicom_phases(pair, splits[pair.patient], output)
        written += n_phases
        as_files.append(dataclasses.replace(pair, **changes))
    by_patient = {p.patient: p for p in as_files}
    return [by_patient.get(p.patient, p) for p in paired], written


def _record_dicom_sources(entries: list[dict], paired: list[PairedPatient]) -> None:
    """Name the DICOM series (folder, UID, description, slices, digest) as the sources of the
    manifest entries of patients read from DICOM, and any reordering of their phase 0."""
    by_patient = {p.patient: p for p in paired}
    for entry in entries:
        pair = by_patient[entry["patient"]]
        for key, series in (("avg", pair.avg_series), ("phase0", pair.phase0_series)):
            if series is None:
                continue
            entry[key] = str(series.folder.absolute())
            entry[f"{key}_sha256"] = series_sha256(series)
            entry[f"{key}_series"] = {"series_instance_uid": series.uid,
                                      "series_description": series.description,
                                      "n_slices": series.n_slices}
        if pair.phase0_series is not None and pair.phase0_reorder is not None:
            entry["phase0_reoriented"] = dict(zip(("from", "to"), pair.phase0_reorder,
                                                  strict=True))


def _series_record(series: SeriesInfo) -> dict:
    """The manifest's description of a DICOM series: UID, description, slices."""
    return {"series_instance_uid": series.uid, "series_description": series.description,
            "n_slices": series.n_slices}


def _record_phases(entries: list[dict], paired: list[PairedPatient],
                   written: dict[str, dict[str, dict]]) -> None:
    """Add ``phases`` ({label: source, sha256, file, reoriented[, series]}, phase 0 first, as
    its own entry says), ``missing_phases`` and ``phase_problems`` to the manifest entries."""
    by_patient = {p.patient: p for p in paired}
    for entry in entries:
        pair = by_patient[entry["patient"]]
        if pair.phases is None:
            continue
        phases = {"0": {"source": entry["phase0"], "sha256": entry["phase0_sha256"],
                        "file": entry["files"]["B"], "reoriented": entry["phase0_reoriented"]}}
        if "phase0_series" in entry:
            phases["0"]["series"] = entry["phase0_series"]
        phases.update(written.get(pair.patient, {}))
        for source in pair.phases.found:
            if source.series is not None:  # converted: name the series, not the file written
                phases[phase_label(source.percent)].update(
                    source=str(source.series.folder.absolute()),
                    sha256=series_sha256(source.series), series=_series_record(source.series),
                    reoriented=None if source.reorder is None else
                    dict(zip(("from", "to"), source.reorder, strict=True)))
        entry["phases"] = phases
        entry["missing_phases"] = [phase_label(p) for p in pair.phases.missing]
        entry["phase_problems"] = [{"phase": phase_label(p.percent), "reason": p.reason}
                                   for p in pair.phases.problems]


def _write_phases(paired: list[PairedPatient], as_files: list[PairedPatient],
                  splits: dict[str, str], output: Path, percents: tuple[float, ...],
                  entries: list[dict], progress: bool) -> tuple[int, int, set[Path]]:
    """Write the phases other than 0 into their folders and record every phase in the
    manifest entries (with ``percents``, a ``--phases`` run; phase folders are still swept by
    the caller without). Returns (files copied, files already identical, files written)."""
    written, copied, skipped, dests = sync_phase_folders(as_files, splits, output, percents,
                                                         progress)
    if percents:
        _record_phases(entries, paired, written)
    left_out = phase_report(paired)
    for line in left_out:
        logger.warning("phase left out: %s", line)
    if percents:
        logger.info("%d phases (%s): %d files of phases other than 0 in <split>B_p<p>/, %d "
                    "phases missing or left out", len(percents),
                    ", ".join(phase_label(p) for p in percents), len(dests), len(left_out))
    return copied, skipped, dests


def prepare_dataset(opts: PrepareOptions, progress: bool = True) -> PrepareResult:
    """Pair, split and write the dataset described by ``opts``.

    Raises :class:`DataError` (output left untouched) when no patient can be paired.
    """
    _check_options(opts)
    request = opts.phase_request
    paired, unpaired = pair_patients(opts.layout, progress, opts.geometry_atol_mm, request)
    n_unpaired = len({u.patient for u in unpaired})
    logger.info("%d patients: %d paired, %d unpaired (folder names under --avg_root and "
                "--phases_root)", len(paired) + n_unpaired, len(paired), n_unpaired)
    if not paired:
        details = "\n".join(f"  {u.patient}: {u.reason}" for u in unpaired) or "  (no folders)"
        raise DataError(f"no patient could be paired between {opts.avg_root} and "
                        f"{opts.phases_root}:\n{details}")
    if len(paired) == 1:
        logger.warning("only one patient could be paired: it goes to train, val and test are "
                       "empty")
    splits = assign_splits([p.patient for p in paired], opts.val_fraction, opts.test_fraction,
                           opts.seed)
    output = opts.output.resolve()
    make_folder(output)
    percents = () if request is None else prepared_phases(paired, request)
    as_files, converted = _convert_dicom(paired, splits, output, progress)
    entries, copied, skipped, removed = sync_split_folders(as_files, splits, output, progress)
    _record_dicom_sources(entries, paired)
    n_copied, n_skipped, dests = _write_phases(paired, as_files, splits, output, percents,
                                               entries, progress)
    copied += n_copied + converted  # converted files show as kept in the sync
    skipped += n_skipped - converted
    structure_problems = _sync_structures(opts, as_files, splits, output, entries)
    removed += sweep_phase_folders(output, percents, dests)
    write_reports(output, opts, entries, unpaired, len(paired), structure_problems, percents,
                  paired)
    _log_totals(paired, converted, copied, skipped, removed)
    return PrepareResult(tuple(paired), tuple(unpaired), splits, copied, skipped, removed,
                         percents)


def _log_totals(paired: list[PairedPatient], converted: int, copied: int, skipped: int,
                removed: int) -> None:
    """Log the DICOM series converted, the files written, kept and removed, and the volumes
    stored reordered."""
    phases = [s for p in paired if p.phases is not None for s in p.phases.found]
    n_dicom = sum((p.avg_series is not None) + (p.phase0_series is not None) for p in paired)
    n_dicom += sum(s.series is not None for s in phases)
    if n_dicom:
        logger.info("%d DICOM series converted to NIfTI (%d written, %d already up to date)",
                    n_dicom, converted, n_dicom - converted)
    logger.info("%d files copied, %d already up to date, %d stale files removed", copied,
                skipped, removed)
    reordered = sum(p.phase0_reorder is not None for p in paired)
    if reordered:
        logger.info("%d phase-0 files are stored reordered into their AVG's voxel order (see "
                    "phase0_reoriented in manifest.json)", reordered)
    reordered = sum(s.reorder is not None for s in phases)
    if reordered:
        logger.info("%d files of other phases are stored reordered into their AVG's voxel "
                    "order (see phases in manifest.json)", reordered)


def summary_table(result: PrepareResult) -> str:
    """Paired patients per split, then every unpaired patient with its reasons; after a
    ``--phases`` run, the phases prepared and every phase left out of a patient."""
    lines = [f"{'split':<8}{'patients':>9}"]
    lines += [f"{split:<8}{sum(s == split for s in result.splits.values()):>9}"
              for split in SPLITS]
    lines.append(f"{'unpaired':<8}{len({u.patient for u in result.unpaired}):>9}")
    lines += [f"  {u.patient}: {u.reason}" for u in result.unpaired]
    if result.phases:
        lines += [f"  {line}" if k > 1 else line for k, line in
                  enumerate(_phases_text(result.phases, result.paired))]
    return printable("\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
    """Command-line options; defaults match :class:`PrepareOptions`."""
    defaults = PrepareOptions()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--avg_root", type=Path, default=defaults.avg_root,
                        help="folder of per-patient AVG folders")
    parser.add_argument("--phases_root", type=Path, default=defaults.phases_root,
                        help="folder of per-patient phase folders")
    parser.add_argument("--output", type=Path, default=defaults.output,
                        help="dataset folder to write {train,val,test}{A,B}/ into")
    parser.add_argument("--phase0_pattern", default=defaults.phase0_pattern,
                        help="glob (case-sensitive) picking the phase-0 file of a patient")
    parser.add_argument("--avg_pattern", default=defaults.avg_pattern,
                        help="glob (case-sensitive) picking the AVG file of a patient")
    parser.add_argument("--avg_series", default=defaults.avg_series,
                        help="pattern (fnmatch, case-insensitive) of the SeriesDescription of the "
                             "AVG series, for patient folders holding DICOM series")
    parser.add_argument("--phase0_series", default=defaults.phase0_series,
                        help="pattern (fnmatch, case-insensitive) of the SeriesDescription of the "
                             "phase-0 series, for patient folders holding DICOM series")
    parser.add_argument("--val_fraction", type=float, default=defaults.val_fraction)
    parser.add_argument("--test_fraction", type=float, default=defaults.test_fraction)
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of the patient shuffle that decides the splits")
    parser.add_argument("--geometry_atol_mm", type=float, default=defaults.geometry_atol_mm,
                        help="largest difference (mm) between the affine entries of a patient's "
                             "AVG and phase 0 (in the AVG's voxel order) for them to count as one "
                             "voxel grid")
    parser.add_argument("--structures_root", type=Path, default=None,
                        help="optional folder of per-patient structure masks, "
                             "<root>/<patient>/<structure>/<file matching --phase0_pattern>: "
                             "copied to <split>B_structures/<structure>/<id>.nii.gz for the "
                             "structure metrics of test.py")
    parser.add_argument("--phases", default=None,
                        help="also prepare the other gated phases: 'all' (the ten standard ones "
                             "and any other a patient has) or a list such as 0,50; each phase "
                             "p found by the percentage its file name (or series description) "
                             "names goes to <split>B_p<p>/; phase 0 stays in <split>B/")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run from the command line; 0 when at least one patient was paired, else 1."""
    args = build_parser().parse_args(argv)
    opts = PrepareOptions(avg_root=args.avg_root, phases_root=args.phases_root,
                          output=args.output, phase0_pattern=args.phase0_pattern,
                          avg_pattern=args.avg_pattern, val_fraction=args.val_fraction,
                          test_fraction=args.test_fraction, seed=args.seed,
                          geometry_atol_mm=args.geometry_atol_mm,
                          structures_root=args.structures_root, avg_series=args.avg_series,
                          phase0_series=args.phase0_series, phases=args.phases)

    def go() -> int:
        result = prepare_dataset(opts, progress=not args.no_progress)
        print(summary_table(result))  # noqa: T201
        print(f"dataset written to {opts.output.resolve()}")  # noqa: T201
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
