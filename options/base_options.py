"""Options shared by training and testing, parsed in two passes, and turned into the run's
typed settings (:func:`run_settings`).

The first pass reads ``--model`` and ``--dataset_mode`` (and, for training, ``--recipe``) alone;
their ``modify_commandline_options`` then add or re-default options, and the recipe sets its
defaults, before the final parse. ``--help`` belongs to the final parser, so it lists every
option the run accepts, with its default. Registries provide the ``choices``, so an unknown name
fails at start-up with the list of valid ones.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import torch

import data
import models
from data.ct_volumes import AFFINE_ATOL_MM
from evaluation.metrics import MOTION_MARGIN_MM, RegionSettings
from models import networks
from models.settings import RunSettings
from util.atomic import atomic_write_json, atomic_write_text
from util.distributed import is_main_process
from util.errors import ConfigError
from util.hu_window import DEFAULT_HU_MAX, DEFAULT_HU_MIN, check_window
from util.speed import AMP_MODES

logger = logging.getLogger(__name__)


class BaseOptions:
    """Parses the command line into an ``argparse.Namespace`` (``opt``) and records it; the
    entry point turns ``opt`` into the run's settings once (:func:`run_settings`)."""

    is_train = False
    #: What ``--help`` says first.
    description = "Options of test.py: every option of the --model and --dataset_mode given."

    def __init__(self) -> None:
        self.parser: argparse.ArgumentParser | None = None
        #: {option: default} after the model's and dataset's changes, before any recipe's.
        self.defaults: dict[str, Any] = {}
        #: The options given on the command line in the last :meth:`parse`.
        self.explicit: frozenset[str] = frozenset()

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Add the options common to training and testing."""
        g = parser.add_argument_group("run")
        g.add_argument("--dataroot", required=True,
                       help="dataset folder with trainA/trainB, valA/valB, testA/testB")
        g.add_argument("--name", default="experiment_name",
                       help="run name: checkpoints go to <checkpoints_dir>/<name>")
        g.add_argument("--gpu_ids", default="auto",
                       help="GPU ids, e.g. 0 or 0,1; -1 for CPU; auto = first GPU if any, else CPU")
        g.add_argument("--checkpoints_dir", default="./checkpoints", help="where runs are saved")
        g = parser.add_argument_group("model")
        g.add_argument("--model", default="pix2pix", choices=models.available_models(),
                       help="model: models/<model>_model.py")
        g.add_argument("--input_nc", type=int, default=1,
                       help="input channels; NIfTI datasets: computed unless given (2K+1 "
                            "slices for --context_slices K, +2 phase planes with --phases); "
                            "test.py takes the run's")
        g.add_argument("--output_nc", type=int, default=1, help="output channels (1 for CT)")
        g.add_argument("--ngf", type=int, default=64, help="generator filters in the last conv")
        g.add_argument("--ndf", type=int, default=64, help="discriminator filters in the 1st conv")
        g.add_argument("--netD", default="basic", choices=sorted(networks.DISCRIMINATORS),
                       help="discriminator: basic = 70 x 70 PatchGAN, n_layers, pixel")
        g.add_argument("--netG", default="resnet_9blocks", choices=sorted(networks.GENERATORS),
                       help="generator: unet_S takes slices whose sides are multiples of S "
                            "pixels; resnet_*: multiples of 4; unet3d_*/motion3d_*: volumes")
        g.add_argument("--n_layers_D", type=int, default=3, help="layers of the n_layers netD")
        g.add_argument("--norm", default="instance", choices=sorted(networks.NORMS),
                       help="normalisation layers of G and D")
        g.add_argument("--init_type", default="normal", choices=sorted(networks.INIT_TYPES),
                       help="initial weights")
        g.add_argument("--init_gain", type=float, default=0.02,
                       help="initial weights' scale (standard deviation or gain)")
        g.add_argument("--no_dropout", action="store_true", help="no dropout in the generator")
        g = parser.add_argument_group("data")
        g.add_argument("--dataset_mode", default="nifti_aligned",
                       choices=data.available_dataset_modes(),
                       help="dataset: data/<dataset_mode>_dataset.py")
        g.add_argument("--direction", default="AtoB", choices=["AtoB", "BtoA"],
                       help="AtoB: AVG (A) in, phase 0 (B) out")
        g.add_argument("--serial_batches", action="store_true", help="take slices in order")
        g.add_argument("--num_threads", type=int, default=2, help="DataLoader worker processes")
        g.add_argument("--batch_size", type=int, default=1, help="slices per batch")
        g.add_argument("--load_size", type=int, default=286,
                       help="aligned mode: scale pictures to this (pixels)")
        g.add_argument("--crop_size", type=int, default=256,
                       help="aligned mode: crop pictures to this (pixels)")
        g.add_argument("--max_dataset_size", type=float, default=float("inf"),
                       help="use at most this many samples (slices), spread over the dataset")
        g.add_argument("--preprocess", default="resize_and_crop",
                       choices=["resize_and_crop", "crop", "resize", "scale_width",
                                "scale_width_and_crop", "none"],
                       help="aligned mode: how pictures are scaled and cropped; NIfTI "
                            "datasets: none, the only value they take")
        g.add_argument("--no_flip", action="store_true", help="no random left-right flips")
        g.add_argument("--display_winsize", type=int, default=256,
                       help="picture size in pages (pixels)")
        g = parser.add_argument_group("CT")
        g.add_argument("--axial_slice", action="store_true",
                       help="serve 2-D axial slices of the volumes: nifti_aligned always does "
                            "(accepted, never needed)")
        g.add_argument("--resize_to", type=int, default=0,
                       help="resize slices to N x N pixels (floating point) for the network, "
                            "outputs resized back; 0 = native size")
        g.add_argument("--hu_min", type=float, default=DEFAULT_HU_MIN,
                       help="HU mapped to -1 (lower values clipped)")
        g.add_argument("--hu_max", type=float, default=DEFAULT_HU_MAX,
                       help="HU mapped to +1 (higher values clipped)")
        g.add_argument("--geometry_atol_mm", type=float, default=AFFINE_ATOL_MM,
                       help="largest difference (mm) between the affine entries of an AVG and "
                            "its phase 0 for them to count as one voxel grid")
        g.add_argument("--context_slices", type=int, default=0,
                       help="2.5-D input: each AVG slice with K neighbours on each side as "
                            "input channels (then --input_nc 2K+1); 0 = the slice alone")
        g.add_argument("--residual", action="store_true",
                       help="the generator predicts phase 0 minus the input slice, added back "
                            "to it (output clipped to the HU window)")
        g.add_argument("--patch_size", type=int, nargs=3, default=[0, 0, 0],
                       metavar=("D", "H", "W"),
                       help="volumetric generators (--netG unet3d_*, motion3d_*): training "
                            "patches of D slices x H rows x W columns (0 = the whole extent of "
                            "that axis); inference covers any volume with windows of this size")
        g.add_argument("--working_spacing_mm", type=float, nargs=3, default=[0.0, 0.0, 0.0],
                       metavar=("SLICE", "ROW", "COL"),
                       help="run the generator on this grid: spacing in mm of the axial slice "
                            "stack (slice thickness, row, column); 0 = that axis native (0 0 0: "
                            "native, as before). Training resamples every volume to it "
                            "(trilinear); inference resamples the AVG, predicts there and adds "
                            "the predicted change, resampled back, to the native AVG")
        g.add_argument("--residual_gate_hu", type=float, default=0.0,
                       help="HU: a predicted change from the AVG (prediction minus AVG) smaller "
                            "than this is dropped, one of twice this kept whole, linear between; "
                            "the result is added to the native AVG, so static tissue keeps the "
                            "AVG's values (0: off, as before). Validation, test.py and predict.py "
                            "apply it alike")
        g.add_argument("--window_overlap", type=float, default=0.5,
                       help="volumetric inference: share of a window's side overlapped by its "
                            "neighbour (the overlaps are blended with a Gaussian weight)")
        g = parser.add_argument_group("evaluation regions (validation and test metrics)")
        g.add_argument("--body_threshold_hu", type=float, default=-500.0,
                       help="body = AVG above this, holes filled per slice, largest component")
        g.add_argument("--motion_threshold_hu", type=float, default=50.0,
                       help="motion region = |phase 0 - AVG| above this, specks dropped, "
                            "then grown by --motion_margin_mm")
        g.add_argument("--motion_margin_mm", type=float, default=MOTION_MARGIN_MM,
                       help="margin grown around the motion region (sphere in world space, "
                            "mm), then cut to the body")
        g.add_argument("--lung_threshold_hu", type=float, default=-400.0,
                       help="lung = below this inside the body (lung volume in mL)")
        g = parser.add_argument_group("speed (see util/speed.py; each is off where unsupported)")
        g.add_argument("--amp", default="off", choices=sorted(AMP_MODES),
                       help="mixed precision: bf16 (CUDA or CPU), fp16 (CUDA, grad scaler) or "
                            "auto (bf16 on CPUs with bfloat16 matrix units, else off; "
                            "training's default; testing's is off, float32 outputs)")
        g.add_argument("--channels_last", action="store_true",
                       help="networks and batches in channels_last memory order")
        g.add_argument("--compile", action="store_true", help="torch.compile the networks")
        g.add_argument("--no_tf32", action="store_true",
                       help="no TF32 matmuls/convolutions on Ampere or newer GPUs")
        g.add_argument("--no_cudnn_benchmark", action="store_true",
                       help="no cudnn autotuning of convolution algorithms")
        g = parser.add_argument_group("misc")
        g.add_argument("--epoch", default="latest", help="checkpoint to load: latest, best or N")
        g.add_argument("--load_iter", type=int, default=0,
                       help="if > 0, load iter_<load_iter> checkpoints instead of --epoch")
        g.add_argument("--verbose", action="store_true", help="log network architectures")
        g.add_argument("--suffix", default="",
                       help="suffix for --name, formatted with opt, e.g. {model}_{netG}")
        g.add_argument("--seed", type=int, default=0,
                       help="seed of Python's and torch's generators: initial weights, batch "
                            "order, flips, dropout, --samples (numpy's global one is unused)")
        g.add_argument("--use_wandb", action="store_true", help="log to Weights & Biases")
        g.add_argument("--wandb_project_name", default="CT-pix2pix", help="wandb project")
        return parser

    def name_parser(self) -> argparse.ArgumentParser:
        """The first pass: the names that decide which options exist and what their defaults
        are (``--model``, ``--dataset_mode``); no ``--help``, no required option."""
        pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        pre.add_argument("--model", choices=models.available_models())
        pre.add_argument("--dataset_mode", choices=data.available_dataset_modes())
        return pre

    def set_recipe(self, parser: argparse.ArgumentParser,
                   names: argparse.Namespace, model: str,  # noqa: ARG002
                   dataset_mode: str) -> argparse.ArgumentParser:  # noqa: ARG002
        """Hook for subclasses: change defaults once the model's and dataset's options are in
        (``names``: the first pass)."""
        return parser

    def build_parser(self, argv: list[str] | None) -> argparse.ArgumentParser:
        """Base options plus those the chosen model and dataset add, with the recipe's defaults
        (two-pass); :attr:`defaults` keeps the defaults from before the recipe."""
        names, _ = self.name_parser().parse_known_args(argv)
        parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                         add_help=False, description=self.description)
        parser = self.initialize(parser)
        model = names.model or parser.get_default("model")
        parser = models.get_option_setter(model)(parser, self.is_train)
        dataset_mode = names.dataset_mode or parser.get_default("dataset_mode")
        parser = data.get_option_setter(dataset_mode)(parser, self.is_train)
        self.defaults = option_defaults(parser)
        parser = self.set_recipe(parser, names, model, dataset_mode)
        parser.add_argument("-h", "--help", action="help",
                            help="list every option of this model and dataset, with its "
                                 "default, and exit")
        return parser

    def parse(self, argv: list[str] | None = None) -> argparse.Namespace:
        """Parse, resolve and validate the options. Nothing is written: the entry point calls
        :meth:`record` once its own checks have passed."""
        parser = self.parser = self.build_parser(argv)
        opt = parser.parse_args(argv)
        opt.isTrain = self.is_train
        # recorded by a training on several phases; a test run adopts the run's value
        opt.phase_input = self.is_train and bool(getattr(opt, "phases", ""))
        self.explicit = frozenset(explicit_options(parser, argv))
        self.adjust(opt, set(self.explicit))
        if opt.suffix:
            opt.name = f"{opt.name}_{opt.suffix.format(**vars(opt))}"
        opt.gpu_ids = resolve_gpu_ids(opt.gpu_ids)
        validate_common(opt)
        if is_main_process():
            logger.info("options:\n%s", format_options(opt, parser))
        return opt

    def record(self, opt: argparse.Namespace) -> None:
        """Write the options of the last :meth:`parse` into the run folder (``<stem>.txt`` and
        ``<stem>.json``; rank 0 alone in a torchrun job)."""
        if self.parser is None:
            raise RuntimeError("record() needs parse() first")
        if is_main_process():
            self.save(opt, self.parser)

    def adjust(self, opt: argparse.Namespace, explicit: set[str]) -> None:
        """Hook for subclasses: change ``opt`` in place before validation (``explicit``: the
        option names given on the command line)."""

    def options_file_stem(self, opt: argparse.Namespace) -> str:  # noqa: ARG002
        """File name stem of the saved options: ``opt`` for training runs."""
        return "opt"

    def save(self, opt: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
        """Write ``<stem>.txt`` and ``<stem>.json`` in the run folder."""
        text = format_options(opt, parser)
        run_dir = Path(opt.checkpoints_dir) / opt.name
        stem = self.options_file_stem(opt)
        atomic_write_text(run_dir / f"{stem}.txt", text)
        atomic_write_json(run_dir / f"{stem}.json", options_to_json(opt))


def option_defaults(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """{option: default} of every option of ``parser`` (help and the like left out)."""
    return {a.dest: parser.get_default(a.dest) for a in parser._actions
            if a.dest is not argparse.SUPPRESS and a.default is not argparse.SUPPRESS}


def explicit_options(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """Names (dests) of the options given on the command line, as opposed to defaults."""
    full = parser.parse_args(argv)
    marker = object()
    probe = argparse.Namespace(**dict.fromkeys(vars(full), marker))
    parser.parse_args(argv, namespace=probe)
    return {k for k, v in vars(probe).items() if v is not marker}


def resolve_gpu_ids(spec: str | list[int]) -> list[int]:
    """``auto`` -> [0] when CUDA is available else []; ``-1`` -> []; ``0,1`` -> [0, 1]."""
    if isinstance(spec, list):
        return spec
    if spec == "auto":
        return [0] if torch.cuda.is_available() else []
    try:
        ids = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError as exc:
        raise ConfigError(f"--gpu_ids must be 'auto', -1 or comma-separated ids, got '{spec}'"
                          ) from exc
    ids = [i for i in ids if i >= 0]
    if ids and not torch.cuda.is_available():
        raise ConfigError(f"--gpu_ids {spec} asks for a GPU but CUDA is not available; "
                          "use --gpu_ids -1 for the CPU")
    if ids and max(ids) >= torch.cuda.device_count():
        raise ConfigError(f"--gpu_ids {spec}: only {torch.cuda.device_count()} GPU(s) present")
    return ids


def validate_common(opt: argparse.Namespace) -> None:
    """ConfigError for options that cannot work whatever the model and dataset."""
    try:
        check_window(opt.hu_min, opt.hu_max)
    except ValueError as exc:
        raise ConfigError(f"--hu_min/--hu_max: {exc}") from exc
    for name in ("batch_size", "input_nc", "output_nc", "ngf", "ndf"):
        if getattr(opt, name) < 1:
            raise ConfigError(f"--{name} must be at least 1, got {getattr(opt, name)}")
    if opt.num_threads < 0:
        raise ConfigError(f"--num_threads must be 0 or more, got {opt.num_threads}")
    if not 0 <= opt.geometry_atol_mm < float("inf"):
        raise ConfigError(f"--geometry_atol_mm must be a finite distance >= 0 mm, got "
                          f"{opt.geometry_atol_mm}")
    region_settings(opt)


def region_settings(opt: argparse.Namespace) -> RegionSettings:
    """The evaluation regions' thresholds (HU, voxels) and the HU window, from the options."""
    try:
        return RegionSettings(body_threshold_hu=opt.body_threshold_hu,
                              motion_threshold_hu=opt.motion_threshold_hu,
                              motion_margin_mm=opt.motion_margin_mm,
                              lung_threshold_hu=opt.lung_threshold_hu, hu_min=opt.hu_min,
                              hu_max=opt.hu_max)
    except ValueError as exc:
        raise ConfigError(f"evaluation region options: {exc}") from exc


def run_settings(opt: argparse.Namespace) -> RunSettings:
    """The parsed options as the run's typed settings (:class:`models.settings.RunSettings`),
    read from their JSON exactly as a run folder's ``opt.json`` is read back: the one place the
    command line becomes the value library code takes."""
    return RunSettings.from_json(options_to_json(opt))


def options_to_json(opt: argparse.Namespace) -> dict[str, object]:
    """The options as JSON-safe values (infinite sizes become null)."""
    out: dict[str, object] = {}
    for key, value in sorted(vars(opt).items()):
        out[key] = None if isinstance(value, float) and value == float("inf") else value
    return out


def format_options(opt: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """One line per option, with the default shown where the value differs from it."""
    lines = ["----------------- Options ---------------"]
    for key, value in sorted(vars(opt).items()):
        default = parser.get_default(key)
        note = f"\t[default: {default}]" if default is not None and value != default else ""
        lines.append(f"{key:>25}: {value!s:<30}{note}")
    lines.append("----------------- End -------------------")
    return "\n".join(lines)
