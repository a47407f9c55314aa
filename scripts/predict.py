"""Predict phase 0 for one AVG volume with a trained run: HU, with the AVG's geometry.

    python scripts/predict.py --name ct_phase0_generator --input avg.nii.gz --output phase0.nii.gz
    python scripts/predict.py --name ct_phase0_generator --input export/PT001/ \\
        --output_format dicom --output export/PT001_synthetic_phase0/

The generator, its architecture, HU window and ``--resize_to`` come from ``checkpoints/<name>/``
(``opt.json`` and ``<epoch>_net_G.pth``), and nothing is written there: the run is loaded, run and
its outputs written by :mod:`inference.pipeline`, the flow ``test.py`` runs too, in the layout of
:mod:`inference.single_volume`. The output has the input's shape, affine, on-disk type and scaling.
Slices of any size are taken: those the generator cannot take as they are are padded with air
(-1024 HU) and cropped back. The prediction is deterministic (eval mode: no dropout, batch norm
running statistics): the same input and checkpoint give the same file. ``--samples N`` (N > 1)
instead averages N passes with dropout on, seeded by ``--seed``, and also writes their voxelwise
standard deviation in HU (float32, the input's geometry) to ``--std_output``, by default
``<output stem>_std.nii.gz`` beside ``--output``. The input is only read; an output path equal to
the input, or two outputs on one path, are refused before anything is written.

``--input`` may be a folder holding a DICOM CT series: the only CT series in it (searched
recursively), or of several the one whose SeriesDescription matches ``--avg_series`` (default
``*AVG*``). ``--output_format dicom`` (DICOM input only) writes the prediction as a derived CT
series into the folder ``--output`` (:func:`data.dicom_write.write_derived_series`: same patient,
study and frame of reference as the input, new Series and SOP Instance UIDs, ImageType
``DERIVED\\SECONDARY``, SeriesDescription ``SYNTHETIC phase 0 (pix2pix <name> <epoch>)``, every
slice at its input slice's position, the input's stored type and rescale). An existing non-empty
``--output`` folder is refused unless ``--overwrite``; outputs inside the input folder, or an
output folder holding the input, are refused. The standard deviation and a motion generator's
displacement field stay NIfTI, beside the folder (``<folder>_std.nii.gz``,
``<folder>_displacement.nii.gz``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.ct_volumes import SeriesChoice, SliceStack, load_ct_stack
from data.dicom_io import DEFAULT_AVG_SERIES
from evaluation.consistency import consistency_error
from evaluation.metrics import body_mask
from inference.pipeline import (
    PhaseRequest,
    PredictSettings,
    RunChoice,
    check_series_source,
    load_pipeline,
)
from inference.single_volume import SingleOutput, check_input, check_outputs, named_outputs
from models.cycle import CyclePrediction
from options.base_options import resolve_gpu_ids
from options.test_options import OUTPUT_FORMATS
from util.atomic import ensure_writable_dir
from util.cli import run_cli
from util.file_set import remove_interrupted_writes
from util.phases import STANDARD_PHASES
from util.speed import AMP_MODES

logger = logging.getLogger("predict")


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the single-volume predictor."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="training run: checkpoints/<name>")
    parser.add_argument("--input", type=Path, required=True,
                        help="AVG volume: a NIfTI file (.nii, .nii.gz), or a folder holding a "
                             "DICOM CT series (or several: see --avg_series)")
    parser.add_argument("--output", type=Path, required=True,
                        help="--output_format nifti: the phase-0 file to write (.nii, .nii.gz); "
                             "dicom: the folder to write the phase-0 series into")
    parser.add_argument("--output_format", default="nifti", choices=OUTPUT_FORMATS,
                        help="nifti: one NIfTI file; dicom: a derived CT series registered with "
                             "the input series (needs a DICOM --input)")
    parser.add_argument("--avg_series", default=DEFAULT_AVG_SERIES,
                        help="an --input folder holding several DICOM CT series: the one whose "
                             "SeriesDescription matches this pattern (fnmatch, "
                             "case-insensitive); a folder with one CT series is read as it is")
    parser.add_argument("--overwrite", action="store_true",
                        help="--output_format dicom: replace an existing non-empty --output "
                             "folder (refused otherwise)")
    parser.add_argument("--checkpoints_dir", default="./checkpoints")
    parser.add_argument("--epoch", default="latest", help="checkpoint: latest, best or N")
    parser.add_argument("--gpu_ids", default="auto", help="-1 for CPU; auto = GPU if any")
    parser.add_argument("--batch_size", type=int, default=8, help="slices per forward pass")
    parser.add_argument("--amp", default="off", choices=sorted(AMP_MODES),
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
                             "float32, NIfTI) goes; default <output stem>_std.nii.gz beside "
                             "--output")
    parser.add_argument("--displacement_output", type=Path,
                        help="motion generators: where the displacement field goes (NIfTI "
                             "vector image, RAS mm, phase0(x) = AVG(x + u(x)); see README); "
                             "default <output stem>_displacement.nii.gz beside --output")
    parser.add_argument("--phases", default="",
                        help="a phase-conditioned run (trained with --phases): also write these "
                             "phases (all = the ten, or a list such as 0,50) beside --output "
                             "(<stem>_p50...), with the MIP of the phases (<stem>_mip) and "
                             "their mean (<stem>_avg for the whole cycle, <stem>_mean for "
                             "fewer phases); --output stays phase 0")
    parser.add_argument("--window_overlap", type=float, default=0.5,
                        help="volumetric generators: share of a window's side overlapped by "
                             "its neighbour")
    return parser


def predict(args: argparse.Namespace) -> Path:
    """Load the run's generator, predict every slice of ``--input``, write ``--output`` (and
    the standard deviation with ``--samples`` N > 1, the field of a motion generator, the cycle
    of ``--phases``); returns ``--output``. Every check runs before the first write."""
    settings = PredictSettings(batch_size=args.batch_size, samples=args.samples, seed=args.seed,
                               amp=args.amp, window_overlap=args.window_overlap,
                               cycle=PhaseRequest.parse(args.phases))
    layout = SingleOutput(args.output, args.output_format == "dicom", args.std_output,
                          args.displacement_output, args.overwrite)
    phases = settings.cycle.phases
    check_input(args.input, layout.dicom)
    check_outputs(args.input, layout.paths(args.samples, motion=False, phases=phases))
    if args.std_output is not None and args.samples == 1:
        logger.warning("--std_output %s is not written: it needs --samples N > 1",
                       args.std_output)
    stack = load_ct_stack(args.input, SeriesChoice(args.avg_series, "--avg_series"))
    if layout.dicom:
        check_series_source(stack.dicom)
    run = RunChoice(Path(args.checkpoints_dir), args.name, args.epoch,
                    tuple(resolve_gpu_ids(args.gpu_ids)))
    pipeline = load_pipeline(run, settings)
    paths = layout.paths(args.samples, pipeline.motion, phases)
    if pipeline.motion:
        check_outputs(args.input, paths)
    elif args.displacement_output is not None:
        logger.warning("--displacement_output %s is not written: %s is not a motion generator",
                       args.displacement_output, run.run_dir)
    outputs = [path for _option, path, _folder in named_outputs(paths)]
    for path in outputs:
        ensure_writable_dir(path.parent)
    remove_interrupted_writes(outputs)
    prediction = pipeline.predict(stack)
    pipeline.write(prediction, stack, paths)
    if prediction.cycle is not None and prediction.cycle.whole_cycle:
        log_consistency(prediction.cycle, stack)
    return args.output


def log_consistency(cycle: CyclePrediction, stack: SliceStack) -> None:
    """Log how far the mean of the ten synthetic phases is from the input AVG in the body."""
    error = consistency_error([cycle.phases[p].hu for p in STANDARD_PHASES], stack.hu,
                              {"body": body_mask(stack.hu, 0)})["body"]
    logger.info("mean of the ten synthetic phases against the input AVG: %.1f HU in the "
                "body (bias %+.1f HU); the true cycle averages to its AVG exactly",
                error["mae_hu"], error["bias_hu"])


def main(argv: list[str] | None = None) -> int:
    """Run from the command line; 0 on success, 1 on a data or option error."""
    args = build_parser().parse_args(argv)

    def go() -> int:
        predict(args)
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
