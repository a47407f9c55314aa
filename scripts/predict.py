"""Predict phase 0 for one AVG volume with a trained run: HU, with the AVG's geometry.

    python scripts/predict.py --name ct_phase0_generator --input avg.nii.gz --output phase0.nii.gz

The generator, its architecture, HU window and ``--resize_to`` come from ``checkpoints/<name>/``
(``opt.json`` and ``<epoch>_net_G.pth``, through :func:`models.trained_run.load_generator`), and
nothing is written there. The output has the input's shape, affine, on-disk type and scaling.
Slices of any size are taken: those the generator cannot take as they are are padded with air
(-1024 HU) and cropped back. The prediction is deterministic (eval mode: no dropout, batch norm
running statistics): the same input and checkpoint give the same file. ``--samples N`` (N > 1)
instead averages N passes with dropout on, seeded by ``--seed``, and also writes their voxelwise
standard deviation in HU (float32, the input's geometry) to ``--std_output``, by default ``<output
stem>_std.nii.gz`` beside ``--output``. The input is only read; an output path equal to the input,
or two outputs on one path, are refused before anything is written. """

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from data.ct_volumes import load_slice_stack
from data.displacement_field import stack_field_to_world, write_displacement_field
from data.nifti_io import NIFTI_EXTENSIONS, is_nifti_file, save_volume
from models.inference import check_samples, float32_storage
from models.networks import is_motion_generator
from models.trained_run import load_generator
from models.volume_inference import field_summary
from options.base_options import resolve_gpu_ids
from util.atomic import ensure_writable_dir
from util.cli import run_cli
from util.errors import ConfigError
from util.geometry import from_slice_stack
from util.names import DISPLACEMENT_SUFFIX, STD_SUFFIX
from util.speed import AMP_DTYPES, resolve_speed

logger = logging.getLogger("predict")


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the single-volume predictor."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="training run: checkpoints/<name>")
    parser.add_argument("--input", type=Path, required=True, help="AVG volume (.nii, .nii.gz)")
    parser.add_argument("--output", type=Path, required=True, help="phase-0 volume to write")
    parser.add_argument("--checkpoints_dir", default="./checkpoints")
    parser.add_argument("--epoch", default="latest", help="checkpoint: latest, best or N")
    parser.add_argument("--gpu_ids", default="auto", help="-1 for CPU; auto = GPU if any")
    parser.add_argument("--batch_size", type=int, default=8, help="slices per forward pass")
    parser.add_argument("--amp", default="off", choices=sorted(AMP_DTYPES),
                        help="mixed precision (bf16 on CPU or CUDA, fp16 on CUDA)")
    parser.add_argument("--eval", action="store_true",
                        help="accepted for old command lines; no effect: the prediction always "
                             "runs in eval mode (no dropout, batch norm running statistics)")
    parser.add_argument("--samples", type=int, default=1,
                        help="1: one deterministic pass; N > 1: the mean of N passes with "
                             "dropout on (seeded by --seed), plus their standard deviation in "
                             "--std_output; needs a generator trained with dropout")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --samples passes")
    parser.add_argument("--std_output", type=Path,
                        help="--samples N > 1: where the voxelwise standard deviation (HU, "
                             "float32) goes; default <output stem>_std.nii.gz beside --output")
    parser.add_argument("--displacement_output", type=Path,
                        help="motion generators: where the displacement field goes (NIfTI "
                             "vector image, RAS mm, phase0(x) = AVG(x + u(x)); see README); "
                             "default <output stem>_displacement.nii.gz beside --output")
    parser.add_argument("--window_overlap", type=float, default=0.5,
                        help="volumetric generators: share of a window's side overlapped by "
                             "its neighbour")
    return parser


def beside_output(output: Path, suffix: str) -> Path:
    """``<output stem><suffix>`` with the output's extension, beside it: ``p0.nii.gz`` and
    ``_std`` -> ``p0_std.nii.gz``."""
    ext = next((e for e in NIFTI_EXTENSIONS if output.name.lower().endswith(e)), "")
    stem = output.name[:len(output.name) - len(ext)]
    return output.with_name(f"{stem}{suffix}{output.name[len(stem):]}")


def default_std_path(output: Path) -> Path:
    """``<output stem>_std`` with the output's extension, beside it."""
    return beside_output(output, STD_SUFFIX)


def check_paths(source: Path, output: Path, std_output: Path | None,
                field_output: Path | None = None) -> None:
    """ConfigError unless ``source`` is a NIfTI file and ``output`` (and ``std_output``,
    ``field_output`` when given) NIfTI paths that are neither the source, nor a folder, nor
    each other."""
    if not source.is_file():
        raise ConfigError(f"--input {source}: no such file")
    named = [("--output", output)] + ([("--std_output", std_output)] if std_output else []) \
        + ([("--displacement_output", field_output)] if field_output else [])
    for option, path in named:
        if not is_nifti_file(path):
            raise ConfigError(f"{option} {path}: must end in .nii or .nii.gz")
        if path.resolve() == source.resolve():
            raise ConfigError(f"{option} {path} is the input: the source is never overwritten")
        if path.is_dir():
            raise ConfigError(f"{option} {path} is a folder; give a file name (.nii.gz)")
    for k, (option, path) in enumerate(named):
        for other, other_path in named[:k]:
            if path.resolve() == other_path.resolve():
                raise ConfigError(f"{option} {path} is also {other}: one output would "
                                  f"overwrite the other")


def predict(args: argparse.Namespace) -> Path:
    """Load the run's generator, predict every slice of ``--input``, write ``--output`` (and
    the standard deviation with ``--samples`` N > 1). Every check runs before the first write."""
    std_output = (args.std_output or default_std_path(args.output)) if args.samples > 1 \
        else None
    check_paths(args.input, args.output, std_output)
    if args.std_output is not None and std_output is None:
        logger.warning("--std_output %s is not written: it needs --samples N > 1",
                       args.std_output)
    if args.samples < 1:
        raise ConfigError(f"--samples must be at least 1, got {args.samples}")
    stack = load_slice_stack(args.input)
    gpu_ids = resolve_gpu_ids(args.gpu_ids)
    device = torch.device(f"cuda:{gpu_ids[0]}" if gpu_ids else "cpu")
    run_dir = Path(args.checkpoints_dir) / args.name
    generator = load_generator(run_dir, args.epoch, device)
    check_samples(generator.net, args.samples, str(run_dir))
    field_output = None
    if is_motion_generator(generator.net):
        field_output = args.displacement_output or beside_output(args.output,
                                                                 DISPLACEMENT_SUFFIX)
        check_paths(args.input, args.output, std_output, field_output)
    elif args.displacement_output is not None:
        logger.warning("--displacement_output %s is not written: %s is not a motion generator",
                       args.displacement_output, run_dir)
    for folder in {p.parent for p in (args.output, std_output, field_output) if p is not None}:
        ensure_writable_dir(folder)
    pred = generator.predict(stack.hu, batch_size=args.batch_size, samples=args.samples,
                             seed=args.seed, amp_dtype=resolve_speed(device, amp=args.amp
                                                                     ).amp_dtype,
                             overlap=args.window_overlap)
    affine = stack.info.affine
    path = save_volume(from_slice_stack(pred.hu, affine), stack.info, args.output)
    logger.info("wrote %s: %d axial slices, HU, the geometry of %s", path, stack.hu.shape[0],
                args.input)
    if std_output is not None and pred.std_hu is not None:
        save_volume(from_slice_stack(pred.std_hu, affine), float32_storage(stack.info),
                    std_output)
        logger.info("wrote %s: voxelwise standard deviation of %d passes with dropout "
                    "(seed %d), HU, float32", std_output, args.samples, args.seed)
    if field_output is not None and pred.displacement_vox is not None:
        write_displacement_field(field_output,
                                 stack_field_to_world(pred.displacement_vox, affine), stack.info)
        summary = field_summary(pred.displacement_vox, stack.stack_spacing_mm)
        logger.info("wrote %s: displacement field, RAS mm, up to %.1f mm (p95 %.1f), folding "
                    "%.3f %% of voxels", field_output, summary["max_mm"], summary["p95_mm"],
                    summary["folding_pct"])
    return path


def main(argv: list[str] | None = None) -> int:
    """Run from the command line; 0 on success, 1 on a data or option error."""
    args = build_parser().parse_args(argv)

    def go() -> int:
        predict(args)
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
