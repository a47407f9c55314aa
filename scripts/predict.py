"""Predict phase 0 for one AVG volume with a trained run: HU, with the AVG's geometry.

    python scripts/predict.py --name ct_phase0_generator --input avg.nii.gz --output phase0.nii.gz

The architecture, HU window and ``--resize_to`` come from ``checkpoints/<name>/opt.json``; the
output has the input's shape, affine, on-disk type and scaling. The input is only read, and an
output path equal to the input is refused.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.ct_volumes import load_slice_stack
from data.nifti_io import is_nifti_file, save_volume
from models import create_model
from models.inference import predict_volume
from models.networks import check_slice_size
from options.test_options import TestOptions
from util.cli import run_cli
from util.errors import ConfigError
from util.speed import AMP_DTYPES

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
                        help="eval mode (no dropout; batch norm running statistics)")
    return parser


def check_paths(source: Path, output: Path) -> None:
    """ConfigError unless ``source`` is a NIfTI file and ``output`` a different NIfTI path."""
    if not source.is_file():
        raise ConfigError(f"--input {source}: no such file")
    if not is_nifti_file(output):
        raise ConfigError(f"--output {output}: must end in .nii or .nii.gz")
    if output.resolve() == source.resolve():
        raise ConfigError(f"--output {output} is the input: the source is never overwritten")


def predict(args: argparse.Namespace) -> Path:
    """Load the run's generator, predict every slice of ``--input``, write ``--output``."""
    check_paths(args.input, args.output)
    stack = load_slice_stack(args.input)
    opt = TestOptions().parse([
        "--dataroot", str(args.input.parent), "--name", args.name,
        "--checkpoints_dir", args.checkpoints_dir, "--model", "pix2pix",
        "--dataset_mode", "nifti_aligned", "--axial_slice", "--epoch", args.epoch,
        "--gpu_ids", args.gpu_ids, "--batch_size", str(args.batch_size), "--amp", args.amp]
        + (["--eval"] if args.eval else []))
    size = (opt.resize_to, opt.resize_to) if opt.resize_to else stack.hu.shape[1:]
    check_slice_size(opt.netG, *size)
    model = create_model(opt)
    model.setup()
    if opt.eval:
        model.eval()
    hu = predict_volume(model.netG, stack, hu_min=opt.hu_min, hu_max=opt.hu_max,
                        resize_to=opt.resize_to, batch_size=opt.batch_size,
                        context_slices=opt.context_slices, device=model.device,
                        amp_dtype=model.speed.amp_dtype)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    path = save_volume(hu, stack.info, args.output)
    logger.info("wrote %s: %d axial slices, HU, the geometry of %s", path, stack.hu.shape[0],
                args.input)
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
