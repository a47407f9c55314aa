"""Write the built-in synthetic 4DCT tree (``res_avg/`` and ``res_phases/``) for trying the tool.

    python scripts/make_synthetic_4dct.py --out ./synthetic_4dct --n_patients 6 --size 64 \\
        --n_slices 32 --seed 0

``--family NAME`` writes a named family of scanner, patient and breathing ranges instead
(:data:`synthetic.FAMILIES`; the grid, range and storage options are then the family's), e.g.
``--family warped_wide`` for the deformation-based generator over wide scanner ranges.

``--format dicom`` writes each volume as a DICOM CT series (a folder of slices) instead of a NIfTI
file, so the DICOM input path can be tried on the same phantom.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthetic import (
    DEFAULT_RANGES,
    FAMILIES,
    ORIENTATIONS,
    STORAGES,
    ParamRanges,
    SyntheticGrid,
    write_family,
    write_synthetic_4dct,
)
from synthetic.export import FORMATS
from util.cli import run_cli
from util.errors import ConfigError

#: (ParamRanges field, option unit suffix, description) of the per-patient ranges.
RANGE_OPTIONS = (("amplitude", "_mm", "superior-inferior breathing amplitude, mm"),
                 ("body_half_width", "_mm", "half width of the body, mm"),
                 ("body_half_depth", "_mm", "half depth (anterior-posterior) of the body, mm"),
                 ("lung_scale", "", "lung size factor (1 = nominal)"),
                 ("tumour_radius", "_mm", "tumour radius, mm"),
                 ("noise", "_hu", "Gaussian noise sigma per phase, HU"))


def ranges_from_args(args: argparse.Namespace) -> ParamRanges:
    """The per-patient parameter ranges the command line asks for."""
    given = {name + unit: tuple(getattr(args, f"{name}_range{unit}"))
             for name, unit, _ in RANGE_OPTIONS}
    if args.amplitude_mm is not None:
        given["amplitude_mm"] = (args.amplitude_mm, args.amplitude_mm)
    if args.noise_hu is not None:
        given["noise_hu"] = (args.noise_hu, args.noise_hu)
    return ParamRanges(**given)


def families_epilog() -> str:
    """The ``--help`` text listing the synthetic families, one line each."""
    width = max(len(name) for name in FAMILIES)
    return "families (--family):\n" + "\n".join(
        f"  {name:<{width}}  {family.description}" for name, family in FAMILIES.items())


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the synthetic 4DCT writer."""
    parser = argparse.ArgumentParser(
        description="Write a synthetic 4DCT tree: OUT/res_avg/<pid>/<pid>_AVG.nii.gz and "
                    "OUT/res_phases/<pid>/<pid>_4DCT_Gated {0,...,90}.0A.nii.gz, and the tumour "
                    "masks OUT/res_structures/<pid>/GTV/<pid>_GTV_Gated {0,...,90}.0A.nii.gz.",
        epilog=families_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("./synthetic_4dct"),
                        help="root folder to write res_avg/ and res_phases/ into")
    parser.add_argument("--n_patients", type=int, default=6)
    parser.add_argument("--size", type=int, default=64, help="in-plane voxels (N x N)")
    parser.add_argument("--n_slices", type=int, default=32, help="axial slices")
    parser.add_argument("--seed", type=int, default=0, help="patient k depends on (seed, k) only")
    parser.add_argument("--fov_mm", type=float, default=350.0, help="in-plane field of view, mm")
    parser.add_argument("--slice_thickness_mm", type=float, default=3.0)
    defaults = DEFAULT_RANGES
    for name, unit, what in RANGE_OPTIONS:
        parser.add_argument(f"--{name}_range{unit}", type=float, nargs=2, metavar=("LOW", "HIGH"),
                            default=getattr(defaults, name + unit),
                            help=f"{what}: drawn per patient in [LOW, HIGH] "
                                 f"(default {getattr(defaults, name + unit)})")
    parser.add_argument("--amplitude_mm", type=float, default=None,
                        help="fix the breathing amplitude (mm) of every patient (shorthand for "
                             "--amplitude_range_mm A A)")
    parser.add_argument("--noise_hu", type=float, default=None,
                        help="fix the noise sigma per phase (HU) (shorthand for "
                             "--noise_range_hu N N)")
    parser.add_argument("--chest_expansion_mm", type=float, default=None,
                        help="anterior chest wall excursion, mm (default: amplitude / 5)")
    parser.add_argument("--fat_mm", type=float, default=8.0,
                        help="subcutaneous fat thickness, mm (0: no fat layer)")
    parser.add_argument("--orientation", choices=ORIENTATIONS, default="LPS",
                        help="voxel order of the written volumes")
    parser.add_argument("--storage", choices=STORAGES, default="int16",
                        help="int16 (slope 1, inter 0) or uint16 with scl_inter = -1024")
    parser.add_argument("--format", choices=FORMATS, default="nifti", dest="file_format",
                        help="nifti: one .nii.gz file per volume; dicom: one DICOM CT series "
                             "per volume, OUT/res_avg/<pid>/<pid>_AVG/ and "
                             "OUT/res_phases/<pid>/<pid>_4DCT_Gated {0,...,90}.0A/ (series "
                             "descriptions 'AVG', 'Gated 0.0A' ...; LPS only; tumour masks stay "
                             "NIfTI)")
    parser.add_argument("--family", choices=sorted(FAMILIES), default=None,
                        help="write this family of scanner, patient and breathing ranges (listed "
                             "below; NIfTI only) instead of the phantom on the grid and ranges "
                             "given by the options above, which it ignores")
    parser.add_argument("--id_prefix", default="PT",
                        help="patient ids are <prefix>001, <prefix>002, ... (letters, digits)")
    parser.add_argument("--no_structures", action="store_true",
                        help="do not write the tumour masks (res_structures/<pid>/GTV/)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    return parser


def write_named_family(args: argparse.Namespace) -> int:
    """Write ``args.family`` and print a summary (with the small breathers, amplitude < 10 mm)."""
    if args.file_format != "nifti":
        raise ConfigError(f"--family writes NIfTI only, not --format {args.file_format}")
    drawn = write_family(args.out, args.family, args.n_patients, seed=args.seed,
                         id_prefix=args.id_prefix, structures=not args.no_structures,
                         progress=not args.no_progress)
    small = ", ".join(p.pid for p in drawn if p.amplitude_mm < 10.0) or "none"
    summary = (f"wrote {len(drawn)} patients of family {args.family} ({drawn[0].pid}.."
               f"{drawn[-1].pid}) under {args.out}; amplitude < 10 mm: {small}")
    print(summary)  # noqa: T201
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, write the tree; 0 on success, 1 (message on stderr) on a project error."""
    args = build_parser().parse_args(argv)

    def go() -> int:
        if args.family is not None:
            return write_named_family(args)
        grid = SyntheticGrid(size=args.size, n_slices=args.n_slices, fov_mm=args.fov_mm,
                             slice_thickness_mm=args.slice_thickness_mm,
                             orientation=args.orientation)
        ids = write_synthetic_4dct(
            args.out, args.n_patients, grid=grid, seed=args.seed, ranges=ranges_from_args(args),
            chest_expansion_mm=args.chest_expansion_mm, fat_mm=args.fat_mm,
            storage=args.storage, id_prefix=args.id_prefix, structures=not args.no_structures,
            progress=not args.no_progress, file_format=args.file_format)
        print(f"wrote {len(ids)} patients ({ids[0]}..{ids[-1]}) under {args.out}")  # noqa: T201
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
