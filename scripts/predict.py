"""Predict phase 0 for one AVG volume with a trained run: HU, with the AVG's geometry.

    python scripts/predict.py --name ct_phase0_generator --input avg.nii.gz --output phase0.nii.gz
    python scripts/predict.py --name ct_phase0_generator --input export/PT001/ \\
        --output_format dicom --output export/PT001_synthetic_phase0/

The generator, its architecture, HU window and ``--resize_to`` come from ``checkpoints/<name>/``
(``opt.json`` and ``<epoch>_net_G.pth``, through :func:`models.trained_run.load_generator`), and
nothing is written there. The output has the input's shape, affine, on-disk type and scaling.
Slices of any size are taken: those the generator cannot take as they are are padded with air
(-1024 HU) and cropped back. The prediction is deterministic (eval mode: no dropout, batch norm
running statistics): the same input and checkpoint give the same file. ``--samples N`` (N > 1)
instead averages N passes with dropout on, seeded by ``--seed``, and also writes their voxelwise
standard deviation in HU (float32, the input's geometry) to ``--std_output``, by default ``<output
stem>_std.nii.gz`` beside ``--output``. The input is only read; an output path equal to the input,
or two outputs on one path, are refused before anything is written.

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
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from data.ct_volumes import SeriesChoice, SliceStack, load_dicom_stack, load_slice_stack
from data.dicom_io import DEFAULT_AVG_SERIES
from data.dicom_write import write_derived_series
from data.displacement_field import stack_field_to_world, write_displacement_field
from data.nifti_io import NIFTI_EXTENSIONS, is_nifti_file, save_volume
from evaluation.consistency import consistency_error
from evaluation.metrics import body_mask
from models.cycle import CyclePrediction, cycle_volumes, predict_cycle
from models.inference import check_samples, float32_storage
from models.networks import is_motion_generator
from models.trained_run import load_generator
from models.volume_inference import field_summary
from options.base_options import resolve_gpu_ids
from util.atomic import ensure_writable_dir
from util.cli import run_cli
from util.errors import ConfigError, DataError, OutputError
from util.file_set import remove_interrupted_writes
from util.geometry import from_slice_stack
from util.names import DISPLACEMENT_SUFFIX, STD_SUFFIX, cycle_suffix
from util.phases import STANDARD_PHASES, parse_phases
from util.speed import AMP_MODES, resolve_speed

logger = logging.getLogger("predict")

#: What ``--output_format`` may be.
OUTPUT_FORMATS = ("nifti", "dicom")


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


def beside_output(output: Path, suffix: str) -> Path:
    """``<output stem><suffix>`` with the output's extension, beside it: ``p0.nii.gz`` and
    ``_std`` -> ``p0_std.nii.gz``; a series folder ``p0/`` -> ``p0_std.nii.gz``."""
    ext = next((e for e in NIFTI_EXTENSIONS if output.name.lower().endswith(e)), "")
    stem = output.name[:len(output.name) - len(ext)]
    return output.with_name(f"{stem}{suffix}{output.name[len(stem):] or '.nii.gz'}")


def default_std_path(output: Path) -> Path:
    """``<output stem>_std`` with the output's extension (``.nii.gz`` for a folder), beside it."""
    return beside_output(output, STD_SUFFIX)


@dataclass(frozen=True)
class Outputs:
    """Where a prediction goes: ``main`` (a NIfTI file, or the series folder when
    ``dicom``), the standard deviation (``--samples`` N > 1) and the displacement field (motion
    generators), both NIfTI, None when not written."""

    main: Path
    dicom: bool
    std: Path | None = None
    field: Path | None = None
    #: With ``--phases``: {phase % or "mip"/"avg": path} of the cycle's other volumes (NIfTI
    #: files, or series folders when ``dicom``), beside ``main``.
    cycle: tuple[tuple[float | str, Path], ...] = ()

    def named(self) -> list[tuple[str, Path]]:
        """(option, path) of every output written."""
        fixed = [(option, path) for option, path in (("--output", self.main),
                                                     ("--std_output", self.std),
                                                     ("--displacement_output", self.field))
                 if path is not None]
        return fixed + [("--phases", path) for _, path in self.cycle]

    def is_series(self, option: str, path: Path) -> bool:
        """Whether ``path`` is written as a DICOM series folder."""
        return self.dicom and (path == self.main or option == "--phases")


def check_input(source: Path, output_format: str) -> None:
    """ConfigError unless ``source`` is a NIfTI file or a folder, and a folder (DICOM) when
    the output is DICOM."""
    if not source.exists():
        raise ConfigError(f"--input {source}: no such file or folder")
    if output_format == "dicom" and not source.is_dir():
        raise ConfigError(f"--output_format dicom needs a DICOM input series, but --input "
                          f"{source} is a file (NIfTI), which has no patient, study or frame of "
                          f"reference to place a derived series in; give the folder of the "
                          f"AVG series, or --output_format nifti")


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (both resolved)."""
    return path.resolve().is_relative_to(folder.resolve())


def check_outputs(source: Path, outputs: Outputs, overwrite: bool = False) -> None:
    """ConfigError (OutputError for an occupied series folder) before anything is written
    unless the outputs are NIfTI paths (the series folder: not a NIfTI name, not a file, empty
    or ``overwrite``) that are neither the input, nor in an input folder, nor a folder holding
    the input, nor a folder, nor each other, nor inside the series folder."""
    named = outputs.named()
    for option, path in named:
        is_folder_output = outputs.is_series(option, path)
        if _inside(path, source) if source.is_dir() else path.resolve() == source.resolve():
            where = "is the input" if path.resolve() == source.resolve() else \
                f"lies inside the input folder {source}"
            raise ConfigError(f"{option} {path} {where}: the source is never written into")
        if is_folder_output:
            _check_series_folder(path, source, overwrite)
        elif not is_nifti_file(path):
            hint = " (or pass --output_format dicom to write a DICOM series folder)" \
                if option == "--output" and source.is_dir() else ""
            raise ConfigError(f"{option} {path}: must end in .nii or .nii.gz{hint}")
        elif path.is_dir():
            raise ConfigError(f"{option} {path} is a folder; give a file name (.nii.gz)")
    for k, (option, path) in enumerate(named):
        for other, other_path in named[:k]:
            if path.resolve() == other_path.resolve():
                raise ConfigError(f"{option} {path} is also {other}: one output would "
                                  f"overwrite the other")
            if outputs.is_series(other, other_path) and _inside(path, other_path):
                raise ConfigError(f"{option} {path} lies inside the --output series folder "
                                  f"{other_path}, which holds the series only")


def cycle_outputs(output: Path, dicom: bool, phases: tuple[float, ...]
                  ) -> tuple[tuple[float | str, Path], ...]:
    """Where ``--phases`` puts the phases other than 0 and the MIP and mean of the phases
    (:func:`models.cycle.cycle_volumes`), beside ``--output``: ``p0_p50.nii.gz``,
    ``p0_mip.nii.gz``, ``p0_avg.nii.gz`` for the whole cycle or ``p0_mean.nii.gz`` for fewer
    phases (series folders ``p0_p50/`` ... with DICOM)."""
    def beside(suffix: str) -> Path:
        return output.with_name(output.name + suffix) if dicom else beside_output(output, suffix)

    return tuple((v.kind, beside(cycle_suffix(v.kind))) for v in cycle_volumes(phases)
                 if v.kind != 0)


def _check_series_folder(folder: Path, source: Path, overwrite: bool) -> None:
    """Refuse a series folder that is a NIfTI name, a file, holds the input, or is not empty
    (unless ``overwrite``)."""
    if is_nifti_file(folder):
        raise ConfigError(f"--output {folder}: with --output_format dicom, --output is the "
                          f"folder the series is written into, not a .nii/.nii.gz file")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--output {folder} is a file; --output_format dicom writes a folder")
    if _inside(source, folder):
        raise ConfigError(f"--output {folder} holds the input {source}: writing the series "
                          f"there would replace the source")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise OutputError(f"--output {folder}: the folder exists and is not empty; refusing "
                          f"to replace it (pass --overwrite to replace it, or choose another "
                          f"folder)")


def load_input(source: Path, avg_series: str) -> SliceStack:
    """The input as a slice stack: a NIfTI file, or the DICOM series of a folder (the only
    CT series, or the one ``avg_series`` matches)."""
    if source.is_dir():
        return load_dicom_stack(source, SeriesChoice(avg_series, "--avg_series"))
    return load_slice_stack(source)


def requested_phases(text: str) -> tuple[float, ...]:
    """``--phases``: () without it; "all" = the ten standard phases; else the list."""
    if not text.strip():
        return ()
    return STANDARD_PHASES if text.strip().lower() == "all" else parse_phases(text)


def plan_outputs(args: argparse.Namespace, motion: bool) -> Outputs:
    """The outputs of this command: ``--output``, the standard deviation with ``--samples``
    N > 1, the displacement field of a ``motion`` generator (defaults beside ``--output``), and
    with ``--phases`` the other phases and the cycle's MIP and mean."""
    std = (args.std_output or default_std_path(args.output)) if args.samples > 1 else None
    field = (args.displacement_output or beside_output(args.output, DISPLACEMENT_SUFFIX)) \
        if motion else None
    dicom = args.output_format == "dicom"
    return Outputs(args.output, dicom, std, field,
                   cycle_outputs(args.output, dicom, requested_phases(args.phases)))


def predict(args: argparse.Namespace) -> Path:
    """Load the run's generator, predict every slice of ``--input``, write ``--output`` (and
    the standard deviation with ``--samples`` N > 1). Every check runs before the first write."""
    if args.samples < 1:
        raise ConfigError(f"--samples must be at least 1, got {args.samples}")
    check_input(args.input, args.output_format)
    check_outputs(args.input, plan_outputs(args, motion=False), args.overwrite)
    if args.std_output is not None and args.samples == 1:
        logger.warning("--std_output %s is not written: it needs --samples N > 1",
                       args.std_output)
    stack = load_input(args.input, args.avg_series)
    if args.output_format == "dicom" and stack.dicom is not None and not (
            stack.dicom.frame_of_reference_uid and stack.dicom.study_uid):
        raise DataError(f"{stack.dicom.folder}: the input series has no FrameOfReferenceUID or "
                        f"StudyInstanceUID, so a derived series could not be placed beside it; "
                        f"use --output_format nifti")
    gpu_ids = resolve_gpu_ids(args.gpu_ids)
    device = torch.device(f"cuda:{gpu_ids[0]}" if gpu_ids else "cpu")
    run_dir = Path(args.checkpoints_dir) / args.name
    generator = load_generator(run_dir, args.epoch, device)
    check_samples(generator.net, args.samples, str(run_dir))
    if requested_phases(args.phases) and not generator.settings.phase_input:
        raise ConfigError(f"--phases {args.phases}: {generator.weights} was trained on phase 0 "
                          f"alone (without --phases); it cannot predict other phases")
    motion = is_motion_generator(generator.net)
    outputs = plan_outputs(args, motion)
    if motion:
        check_outputs(args.input, outputs, args.overwrite)
    elif args.displacement_output is not None:
        logger.warning("--displacement_output %s is not written: %s is not a motion generator",
                       args.displacement_output, run_dir)
    for _option, path in outputs.named():
        ensure_writable_dir(path.parent)
    remove_interrupted_writes(path for _option, path in outputs.named())
    pred = generator.predict(stack.hu, spacing_mm=stack.stack_spacing_mm,
                             batch_size=args.batch_size, samples=args.samples,
                             seed=args.seed, amp_dtype=resolve_speed(device, amp=args.amp
                                                                     ).amp_dtype,
                             overlap=args.window_overlap)
    path = write_prediction(from_slice_stack(pred.hu, stack.info.affine), stack, args)
    write_extras(pred.std_hu, pred.displacement_vox, stack, outputs, args)
    if outputs.cycle:
        cycle = predict_cycle(generator, stack.hu, requested_phases(args.phases), {0.0: pred},
                              spacing_mm=stack.stack_spacing_mm, batch_size=args.batch_size,
                              samples=args.samples, seed=args.seed,
                              amp_dtype=resolve_speed(device, amp=args.amp).amp_dtype,
                              overlap=args.window_overlap)
        write_cycle_outputs(cycle, stack, outputs, args)
    return path


def write_cycle_outputs(cycle: CyclePrediction, stack: SliceStack, outputs: Outputs,
                        args: argparse.Namespace) -> None:
    """Write the phases other than 0, the MIP and the mean of ``cycle`` where ``outputs.cycle``
    says (NIfTI files, or derived series with distinct series numbers), and log the
    mean-of-phases consistency error."""
    affine = stack.info.affine
    volumes = {v.kind: v for v in cycle.volumes()}
    for kind, path in outputs.cycle:
        hu = from_slice_stack(cycle.volume_hu(kind), affine)
        what = volumes[kind].description
        if outputs.dicom and stack.dicom is not None:
            write_derived_series(hu, stack.dicom, path, what, f"{args.name} {args.epoch}",
                                 overwrite=args.overwrite,
                                 series_offset=volumes[kind].series_offset)
        else:
            save_volume(hu, stack.info, path)
        logger.info("wrote %s: %s", path, what)
    if cycle.whole_cycle:
        body = body_mask(stack.hu, 0)
        error = consistency_error([cycle.phases[p].hu for p in STANDARD_PHASES], stack.hu,
                                  {"body": body})["body"]
        logger.info("mean of the ten synthetic phases against the input AVG: %.1f HU in the "
                    "body (bias %+.1f HU); the true cycle averages to its AVG exactly",
                    error["mae_hu"], error["bias_hu"])


def write_prediction(hu: np.ndarray, stack: SliceStack, args: argparse.Namespace) -> Path:
    """Write ``hu`` ((I, J, K) HU on the input's grid) to ``--output``: a NIfTI file with the
    input's geometry and storage, or a derived DICOM series registered with the input series."""
    if args.output_format == "dicom":
        if stack.dicom is None:  # check_input refuses a NIfTI input
            raise RuntimeError(f"{args.input}: not a DICOM series")
        path = write_derived_series(hu, stack.dicom, args.output, "phase 0",
                                    f"{args.name} {args.epoch}", overwrite=args.overwrite)
        logger.info("wrote %s: a derived CT series of %d slices registered with %s", path,
                    hu.shape[2], stack.dicom.folder)
        return path
    path = save_volume(hu, stack.info, args.output)
    logger.info("wrote %s: %d axial slices, HU, the geometry of %s", path, stack.hu.shape[0],
                args.input)
    return path


def write_extras(std_hu: np.ndarray | None, displacement_vox: np.ndarray | None,
                 stack: SliceStack, outputs: Outputs, args: argparse.Namespace) -> None:
    """Write the standard deviation (``std_hu``: (S, H, W) HU) and the displacement field
    (``displacement_vox``: the stack frame's voxels) as NIfTI where ``outputs`` says."""
    affine = stack.info.affine
    if outputs.std is not None and std_hu is not None:
        save_volume(from_slice_stack(std_hu, affine), float32_storage(stack.info), outputs.std)
        logger.info("wrote %s: voxelwise standard deviation of %d passes with dropout "
                    "(seed %d), HU, float32", outputs.std, args.samples, args.seed)
    if outputs.field is not None and displacement_vox is not None:
        write_displacement_field(outputs.field, stack_field_to_world(displacement_vox, affine),
                                 stack.info)
        summary = field_summary(displacement_vox, stack.stack_spacing_mm)
        logger.info("wrote %s: displacement field, RAS mm, up to %.1f mm (p95 %.1f), folding "
                    "%.3f %% of voxels", outputs.field, summary["max_mm"], summary["p95_mm"],
                    summary["folding_pct"])


def main(argv: list[str] | None = None) -> int:
    """Run from the command line; 0 on success, 1 on a data or option error."""
    args = build_parser().parse_args(argv)

    def go() -> int:
        predict(args)
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
