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
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from data.ct_volumes import AFFINE_ATOL_MM
from data.dicom_io import SeriesInfo, read_series
from data.nifti_io import read_info, save_volume
from data.pairing import (
    SPLITS,
    ExportLayout,
    PairedPatient,
    UnpairedPatient,
    assign_splits,
    pair_patients,
)
from data.split_folders import (
    make_folder,
    place_source,
    sync_split_folders,
    sync_structure_folders,
)
from data.structures import find_structures
from util.atomic import atomic_write_text, make_dirs
from util.cli import printable, run_cli
from util.errors import ConfigError, DataError
from util.paths import folder_problem

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


def _write_if_changed(path: Path, text: str) -> None:
    """Atomically write ``text`` unless ``path`` already holds exactly it (keeps the mtime)."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)


def unpaired_text(unpaired: list[UnpairedPatient], opts: PrepareOptions, n_paired: int) -> str:
    """Human-readable list of the patients left out and why."""
    patients = sorted({u.patient for u in unpaired})
    lines = [f"avg_root: {opts.avg_root.absolute()}", f"phases_root: "
             f"{opts.phases_root.absolute()}", f"paired patients: {n_paired}",
             f"unpaired patients: {len(patients)} ({len(unpaired)} problems)", ""]
    lines += [f"{u.patient}: {u.reason}" for u in unpaired]
    return printable("\n".join(lines) + "\n")


def _sync_structures(opts: PrepareOptions, paired: list[PairedPatient], splits: dict[str, str],
                     output: Path, entries: list[dict]) -> list[str]:
    """Copy the phase-0 structure masks of ``--structures_root`` (when given) into
    ``<split>B_structures/``, add them to the manifest entries; returns the problems (masks that
    are missing, ambiguous or off the AVG's grid are left out, not the patient)."""
    if opts.structures_root is None:
        return []
    sources, problems = {}, []
    for pair in paired:
        found, issues = find_structures(opts.structures_root, pair.patient, opts.phase0_pattern,
                                        read_info(pair.avg_path), opts.geometry_atol_mm)
        sources[pair.patient] = found
        problems += [f"{pair.patient}: {issue}" for issue in issues]
    by_patient, written = sync_structure_folders(sources, paired, splits, output)
    for entry in entries:
        entry["structures"] = by_patient.get(entry["patient"], {})
    n_masks = sum(len(v) for v in by_patient.values())
    logger.info("%d phase-0 structure masks of %d patients in <split>B_structures/ (%d written)",
                n_masks, len(by_patient), written)
    for problem in problems:
        logger.warning("structure left out: %s", problem)
    return problems


def write_reports(output: Path, opts: PrepareOptions, entries: list[dict],
                  unpaired: list[UnpairedPatient], n_paired: int,
                  structure_problems: list[str] | None = None) -> None:
    """Write ``manifest.json``, ``unpaired.json`` and ``unpaired.txt`` atomically."""
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
    reasons = [{"patient": u.patient, "reason": u.reason} for u in unpaired]
    for name, text in (("manifest.json", json.dumps(manifest, indent=2, sort_keys=True)),
                       ("unpaired.json", json.dumps(reasons, indent=2))):
        _write_if_changed(output / name, text + "\n")
    _write_if_changed(output / "unpaired.txt", unpaired_text(unpaired, opts, n_paired))


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
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    return digest.hexdigest()


def series_sha256(series: SeriesInfo) -> str:
    """Hex SHA-256 of the SHA-256 hex digests of a series' files, in path order."""
    return hashlib.sha256("".join(_sha256(p) for p in series.files).encode()).hexdigest()


def _split_folder(output: Path, split: str, side: str) -> Path:
    """``output/<split><side>``, created; DataError unless it is a plain folder inside it."""
    folder = output / f"{split}{side}"
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()) \
            or not folder.resolve().is_relative_to(output):
        raise DataError(f"{folder}: expected a plain folder inside {output}; move it away and "
                        f"run again")
    return make_dirs(folder)


def convert_series(series: SeriesInfo, dest: Path, reorder: tuple[str, str] | None) -> bool:
    """Make ``dest`` (.nii.gz) hold the series as NIfTI (stored type, rescale and affine of
    :func:`data.dicom_io.read_series`), its voxels reordered ``reorder[0]`` -> ``reorder[1]``
    when given. False when ``dest`` already held exactly that (nothing written)."""
    vol = read_series(series)
    with tempfile.TemporaryDirectory(prefix="ct_dicom_") as tmp:
        staged = save_volume(vol.hu, vol, Path(tmp) / "series.nii")
        return place_source(staged, _sha256(staged), dest, reorder)


def _convert_dicom(paired: list[PairedPatient], splits: dict[str, str], output: Path,
                   progress: bool) -> tuple[list[PairedPatient], int]:
    """Convert every DICOM side into its split folder. Returns the pairs as
    :func:`sync_split_folders` should see them (the converted files as their sources, nothing
    left to reorder) and the number of files written (the others were up to date)."""
    as_files, written = [], 0
    dicom = [p for p in paired if p.avg_series is not None or p.phase0_series is not None]
    for pair in tqdm(dicom, desc="converting DICOM", unit="patient", disable=not progress):
        changes: dict = {}
        for side, series, key in (("A", pair.avg_series, "avg_path"),
                                  ("B", pair.phase0_series, "phase0_path")):
            if series is None:
                continue
            dest = _split_folder(output, splits[pair.patient], side) / f"{pair.safe_id}.nii.gz"
            reorder = pair.phase0_reorder if side == "B" else None
            written += convert_series(series, dest, reorder)
            changes[key] = dest
        if pair.phase0_series is not None:  # reordered while converted
            changes["phase0_reorder"] = None
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


def prepare_dataset(opts: PrepareOptions, progress: bool = True) -> PrepareResult:
    """Pair, split and write the dataset described by ``opts``.

    Raises :class:`DataError` (output left untouched) when no patient can be paired.
    """
    _check_options(opts)
    paired, unpaired = pair_patients(opts.layout, progress, opts.geometry_atol_mm)
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
    as_files, converted = _convert_dicom(paired, splits, output, progress)
    entries, copied, skipped, removed = sync_split_folders(as_files, splits, output, progress)
    copied, skipped = copied + converted, skipped - converted  # converted files show as kept
    _record_dicom_sources(entries, paired)
    structure_problems = _sync_structures(opts, as_files, splits, output, entries)
    write_reports(output, opts, entries, unpaired, len(paired), structure_problems)
    n_dicom = sum((p.avg_series is not None) + (p.phase0_series is not None) for p in paired)
    if n_dicom:
        logger.info("%d DICOM series converted to NIfTI (%d written, %d already up to date)",
                    n_dicom, converted, n_dicom - converted)
    logger.info("%d files copied, %d already up to date, %d stale files removed", copied,
                skipped, removed)
    reordered = sum(p.phase0_reorder is not None for p in paired)
    if reordered:
        logger.info("%d phase-0 files are stored reordered into their AVG's voxel order (see "
                    "phase0_reoriented in manifest.json)", reordered)
    return PrepareResult(tuple(paired), tuple(unpaired), splits, copied, skipped, removed)


def summary_table(result: PrepareResult) -> str:
    """Paired patients per split, then every unpaired patient with its reasons."""
    lines = [f"{'split':<8}{'patients':>9}"]
    lines += [f"{split:<8}{sum(s == split for s in result.splits.values()):>9}"
              for split in SPLITS]
    lines.append(f"{'unpaired':<8}{len({u.patient for u in result.unpaired}):>9}")
    lines += [f"  {u.patient}: {u.reason}" for u in result.unpaired]
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
                          phase0_series=args.phase0_series)

    def go() -> int:
        result = prepare_dataset(opts, progress=not args.no_progress)
        print(summary_table(result))  # noqa: T201
        print(f"dataset written to {opts.output.resolve()}")  # noqa: T201
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
