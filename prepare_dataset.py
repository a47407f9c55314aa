"""Build the pix2pix dataset from a 4DCT export: AVG (A) -> phase 0 (B), split by patient.

    python prepare_dataset.py --avg_root ./res_avg --phases_root ./res_phases \\
        --output ./datasets/ct_phases_dataset --val_fraction 0.1 --test_fraction 0.2 --seed 0

``avg_root/<patient>/`` and ``phases_root/<patient>/`` are paired by folder name. Each patient needs
exactly one AVG file and one phase-0 file, both readable and not constant, with the same shape
and affine (within ``--geometry_atol_mm``); every patient that fails is reported with all its
reasons (``unpaired.json``, ``unpaired.txt``). Paired patients are split by patient (never by
slice) and written as ``output/{train,val,test}{A,B}/<safe id>.nii.gz``: ``.nii.gz`` sources
byte for byte, ``.nii`` sources gzip-compressed (same header and voxels). ``manifest.json``
records every patient, its split, sources, shape and spacing. The source trees are only read.
Re-running is safe: identical destinations are kept, NIfTI files that no longer belong in a split
folder are removed, and temp files left by an interrupted run are cleaned.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import re
import shutil
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from data.ct_volumes import AFFINE_ATOL_MM
from data.nifti_io import is_nifti_file
from data.pairing import (
    SPLITS,
    ExportLayout,
    PairedPatient,
    UnpairedPatient,
    assign_splits,
    pair_patients,
)
from util.atomic import atomic_write_text, atomic_write_with
from util.cli import printable, run_cli
from util.errors import ConfigError, DataError

logger = logging.getLogger("prepare_dataset")

SIDES = ("A", "B")  # A: AVG (input), B: phase 0 (target)
REPORT_FILES = ("manifest.json", "unpaired.json", "unpaired.txt")
# util.atomic temp names: ".<dest name>.<8 mkstemp chars>.tmp<suffix>"
_SPLIT_TEMP = re.compile(r"^\..+\.nii\.gz\.[A-Za-z0-9_]{8}\.tmp\.nii\.gz$")
_REPORT_TEMP = re.compile(rf"^\.(?:{'|'.join(map(re.escape, REPORT_FILES))})\.[A-Za-z0-9_]{{8}}"
                          r"\.tmp$")
_CHUNK_BYTES = 1 << 20


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

    @property
    def layout(self) -> ExportLayout:
        """The export trees and file patterns, as :mod:`data.pairing` takes them."""
        return ExportLayout(self.avg_root, self.phases_root, self.avg_pattern,
                            self.phase0_pattern)


@dataclass(frozen=True)
class PrepareResult:
    """Outcome of a run: who went where, who was left out, and what changed on disk."""

    paired: tuple[PairedPatient, ...]
    unpaired: tuple[UnpairedPatient, ...]
    splits: dict[str, str]  # patient -> split
    copied: int
    skipped: int
    removed: int


def _sha256(path: Path, gunzip: bool = False) -> str:
    """Hex SHA-256 of a file's bytes, or of its decompressed bytes when ``gunzip``."""
    digest = hashlib.sha256()
    with (gzip.open(path, "rb") if gunzip else path.open("rb")) as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _is_gzipped_name(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _is_up_to_date(src: Path, src_sha256: str, dest: Path) -> bool:
    """True when ``dest`` already holds what copying ``src`` would write (same NIfTI bytes)."""
    if dest.is_symlink() or not dest.is_file():
        return False
    if _is_gzipped_name(src):
        return dest.stat().st_size == src.stat().st_size and _sha256(dest) == src_sha256
    try:
        return _sha256(dest, gunzip=True) == src_sha256
    except (OSError, EOFError, zlib.error):
        return False


def _gzip_into(src: Path, tmp: Path) -> None:
    """gzip ``src`` into ``tmp`` with a fixed header (no name, mtime 0), so output repeats."""
    with src.open("rb") as fin, tmp.open("wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        shutil.copyfileobj(fin, gz, _CHUNK_BYTES)


def _copy_source(src: Path, dest: Path) -> None:
    """Atomically place ``src`` at ``dest`` (.nii.gz): byte copy, or gzip of a ``.nii``."""
    if _is_gzipped_name(src):
        atomic_write_with(dest, lambda tmp: shutil.copyfile(src, tmp), suffix=".nii.gz")
    else:
        atomic_write_with(dest, lambda tmp: _gzip_into(src, tmp), suffix=".nii.gz")


def _inside(path: Path, root: Path) -> bool:
    """True when ``path`` (its folder resolved, links followed) lies inside resolved ``root``."""
    return (path.parent.resolve() / path.name).is_relative_to(root)


def _split_folders(output: Path) -> list[Path]:
    """The six split folders, created, each checked to resolve inside ``output``."""
    folders = [output / f"{split}{side}" for split in SPLITS for side in SIDES]
    for folder in folders:
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()) \
                or not folder.resolve().is_relative_to(output):
            raise DataError(f"{folder}: expected a plain folder inside {output}; "
                            f"move it away and run again")
        folder.mkdir(parents=True, exist_ok=True)
    return folders


def clean_temp_files(output: Path, folders: list[Path]) -> int:
    """Delete temp files an interrupted run left in ``output`` and the split folders."""
    removed = 0
    for folder, pattern in [(output, _REPORT_TEMP)] + [(f, _SPLIT_TEMP) for f in folders]:
        for path in folder.iterdir():
            if pattern.match(path.name) and (path.is_file() or path.is_symlink()):
                path.unlink()
                removed += 1
    if removed:
        logger.info("removed %d temp files left by an interrupted run", removed)
    return removed


def sync_split_folders(paired: list[PairedPatient], splits: dict[str, str], output: Path,
                       progress: bool = True) -> tuple[list[dict], int, int, int]:
    """Make the six split folders hold exactly the paired patients' files.

    Returns (manifest entries, files copied, files already identical, stale files removed).
    """
    folders = _split_folders(output)
    clean_temp_files(output, folders)
    entries, expected, copied, skipped = [], set(), 0, 0
    for pair in tqdm(paired, desc="copying", unit="patient", disable=not progress):
        split, files, digests = splits[pair.patient], {}, {}
        for side, src in zip(SIDES, (pair.avg_path, pair.phase0_path), strict=True):
            dest = output / f"{split}{side}" / f"{pair.safe_id}.nii.gz"
            if not _inside(dest, output):
                raise DataError(f"{dest}: destination for patient {pair.patient!r} resolves "
                                f"outside {output}")
            digests[side] = _sha256(src)
            if _is_up_to_date(src, digests[side], dest):
                skipped += 1
            else:
                _copy_source(src, dest)
                copied += 1
            expected.add(dest)
            files[side] = dest.relative_to(output).as_posix()
        entries.append({"patient": pair.patient, "safe_id": pair.safe_id, "split": split,
                        "avg": str(pair.avg_path.absolute()),
                        "phase0": str(pair.phase0_path.absolute()),
                        "avg_sha256": digests["A"], "phase0_sha256": digests["B"],
                        "shape": list(pair.shape), "spacing_mm": [round(s, 6) for s in
                                                                  pair.spacing_mm],
                        "files": files})
    removed = 0
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if is_nifti_file(path) and path not in expected and (path.is_file()
                                                                  or path.is_symlink()):
                logger.info("removing stale %s", path)
                path.unlink()
                removed += 1
    return entries, copied, skipped, removed


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


def write_reports(output: Path, opts: PrepareOptions, entries: list[dict],
                  unpaired: list[UnpairedPatient], n_paired: int) -> None:
    """Write ``manifest.json``, ``unpaired.json`` and ``unpaired.txt`` atomically."""
    options = {"avg_root": str(opts.avg_root.absolute()),
               "phases_root": str(opts.phases_root.absolute()), "output": str(output),
               "avg_pattern": opts.avg_pattern, "phase0_pattern": opts.phase0_pattern,
               "val_fraction": opts.val_fraction, "test_fraction": opts.test_fraction,
               "seed": opts.seed, "geometry_atol_mm": opts.geometry_atol_mm}
    counts = {split: sum(e["split"] == split for e in entries) for split in SPLITS}
    manifest = {"options": options, "counts": counts, "patients": entries,
                "unpaired_patients": sorted({u.patient for u in unpaired})}
    reasons = [{"patient": u.patient, "reason": u.reason} for u in unpaired]
    for name, text in (("manifest.json", json.dumps(manifest, indent=2, sort_keys=True)),
                       ("unpaired.json", json.dumps(reasons, indent=2))):
        _write_if_changed(output / name, text + "\n")
    _write_if_changed(output / "unpaired.txt", unpaired_text(unpaired, opts, n_paired))


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
    for flag, root in (("--avg_root", opts.avg_root), ("--phases_root", opts.phases_root)):
        if not root.is_dir():
            raise DataError(f"{flag} {root}: no such folder")
        out, src = opts.output.resolve(), root.resolve()
        if out.is_relative_to(src) or src.is_relative_to(out):
            raise ConfigError(f"--output {opts.output} and {flag} {root} overlap; the dataset "
                              f"must live outside the source tree (and vice versa)")


def prepare_dataset(opts: PrepareOptions, progress: bool = True) -> PrepareResult:
    """Pair, split and write the dataset described by ``opts``.

    Raises :class:`DataError` (output left untouched) when no patient can be paired.
    """
    _check_options(opts)
    paired, unpaired = pair_patients(opts.layout, progress, opts.geometry_atol_mm)
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
    output.mkdir(parents=True, exist_ok=True)
    entries, copied, skipped, removed = sync_split_folders(paired, splits, output, progress)
    write_reports(output, opts, entries, unpaired, len(paired))
    logger.info("%d files copied, %d already up to date, %d stale files removed", copied,
                skipped, removed)
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
    parser.add_argument("--val_fraction", type=float, default=defaults.val_fraction)
    parser.add_argument("--test_fraction", type=float, default=defaults.test_fraction)
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of the patient shuffle that decides the splits")
    parser.add_argument("--geometry_atol_mm", type=float, default=defaults.geometry_atol_mm,
                        help="largest difference (mm) between the affine entries of a patient's "
                             "AVG and phase 0 for them to count as one voxel grid")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run from the command line; 0 when at least one patient was paired, else 1."""
    args = build_parser().parse_args(argv)
    opts = PrepareOptions(avg_root=args.avg_root, phases_root=args.phases_root,
                          output=args.output, phase0_pattern=args.phase0_pattern,
                          avg_pattern=args.avg_pattern, val_fraction=args.val_fraction,
                          test_fraction=args.test_fraction, seed=args.seed,
                          geometry_atol_mm=args.geometry_atol_mm)

    def go() -> int:
        result = prepare_dataset(opts, progress=not args.no_progress)
        print(summary_table(result))  # noqa: T201
        print(f"dataset written to {opts.output.resolve()}")  # noqa: T201
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
