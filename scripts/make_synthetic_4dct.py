"""Write the built-in synthetic 4DCT tree (``res_avg/`` and ``res_phases/``) for trying the tool.

    python scripts/make_synthetic_4dct.py --out ./synthetic_4dct --n_patients 6 --size 64 \\
        --n_slices 32 --seed 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.synthetic_4dct import ORIENTATIONS, STORAGES, write_synthetic_4dct
from util.cli import run_cli


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the synthetic 4DCT writer."""
    parser = argparse.ArgumentParser(
        description="Write a synthetic 4DCT tree: OUT/res_avg/<pid>/<pid>_AVG.nii.gz and "
                    "OUT/res_phases/<pid>/<pid>_4DCT_Gated {0,...,90}.0A.nii.gz.")
    parser.add_argument("--out", type=Path, default=Path("./synthetic_4dct"),
                        help="root folder to write res_avg/ and res_phases/ into")
    parser.add_argument("--n_patients", type=int, default=6)
    parser.add_argument("--size", type=int, default=64, help="in-plane voxels (N x N)")
    parser.add_argument("--n_slices", type=int, default=32, help="axial slices")
    parser.add_argument("--seed", type=int, default=0, help="patient k depends on (seed, k) only")
    parser.add_argument("--fov_mm", type=float, default=350.0, help="in-plane field of view, mm")
    parser.add_argument("--slice_thickness_mm", type=float, default=3.0)
    parser.add_argument("--amplitude_mm", type=float, default=None,
                        help="superior-inferior breathing amplitude, mm "
                             "(default: random in [5, 25] per patient)")
    parser.add_argument("--chest_expansion_mm", type=float, default=None,
                        help="anterior chest wall excursion, mm (default: amplitude / 5)")
    parser.add_argument("--noise_hu", type=float, default=15.0,
                        help="Gaussian noise sigma per phase, HU")
    parser.add_argument("--fat_mm", type=float, default=8.0,
                        help="subcutaneous fat thickness, mm (0: no fat layer)")
    parser.add_argument("--orientation", choices=ORIENTATIONS, default="LPS",
                        help="voxel order of the written volumes")
    parser.add_argument("--storage", choices=STORAGES, default="int16",
                        help="int16 (slope 1, inter 0) or uint16 with scl_inter = -1024")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, write the tree; 0 on success, 1 (message on stderr) on a project error."""
    args = build_parser().parse_args(argv)

    def go() -> int:
        ids = write_synthetic_4dct(
            args.out, args.n_patients, size=args.size, n_slices=args.n_slices, seed=args.seed,
            fov_mm=args.fov_mm, slice_thickness_mm=args.slice_thickness_mm,
            amplitude_mm=args.amplitude_mm, noise_hu=args.noise_hu,
            chest_expansion_mm=args.chest_expansion_mm, fat_mm=args.fat_mm,
            orientation=args.orientation, storage=args.storage, progress=not args.no_progress)
        print(f"wrote {len(ids)} patients ({ids[0]}..{ids[-1]}) under {args.out}")  # noqa: T201
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
