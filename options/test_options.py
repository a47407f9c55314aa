"""Options of ``test.py``; the architecture is taken from the training run unless given."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from data.dicom_io import DEFAULT_AVG_SERIES, DEFAULT_PHASE0_SERIES
from models.run_folder import read_run_options
from models.settings import SETTING_NAMES
from options.base_options import BaseOptions
from util.errors import ConfigError

logger = logging.getLogger(__name__)

#: What ``--output_format`` may be: NIfTI volumes only, or also DICOM series beside the source.
OUTPUT_FORMATS = ("nifti", "dicom")


class TestOptions(BaseOptions):
    """Base options plus the test ones."""

    __test__ = False  # a class named Test*, not a pytest test class
    is_train = False

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Add the test options."""
        parser = super().initialize(parser)
        g = parser.add_argument_group("test")
        g.add_argument("--results_dir", default="./results", help="results go here")
        g.add_argument("--phase", default="test",
                       help="dataset split to run: reads <dataroot>/<phase>A (and <phase>B)")
        g.add_argument("--eval", action="store_true",
                       help="accepted for old command lines; no effect: inference always runs "
                            "in eval mode (no dropout, batch norm running statistics)")
        g.add_argument("--samples", type=int, default=1,
                       help="1: one deterministic pass; N > 1: the mean of N passes with "
                            "dropout on (seeded by --seed) as the prediction, and their "
                            "voxelwise standard deviation as volumes/<id>_fake_B_std.nii.gz "
                            "(HU, float32); needs a generator trained with dropout")
        g.add_argument("--num_test", type=int, default=None,
                       help="run at most this many patients (volumes); default: all")
        g.add_argument("--no_pictures", action="store_true",
                       help="no pictures and no patient pages: volumes, metrics and an "
                            "index.html of numbers only (pictures and patient pages of an "
                            "earlier run there are removed)")
        g = parser.add_argument_group("DICOM input and output")
        g.add_argument("--avg_series", default=DEFAULT_AVG_SERIES,
                       help="a <phase>A/<patient>/ folder holding several DICOM CT series: the "
                            "one whose SeriesDescription matches this pattern (fnmatch, "
                            "case-insensitive) is the input; a folder with one CT series is "
                            "read as it is")
        g.add_argument("--phase0_series", default=DEFAULT_PHASE0_SERIES,
                       help="the same for <phase>B/<patient>/ folders (the truth, phase 0)")
        g.add_argument("--output_format", default="nifti", choices=OUTPUT_FORMATS,
                       help="nifti: volumes/<id>_fake_B.nii.gz; dicom: also dicom/<patient>/, "
                            "the prediction as a derived CT series registered with the input "
                            "series (same patient, study and frame of reference, new UIDs); "
                            "needs DICOM input folders")
        return parser

    def adjust(self, opt: argparse.Namespace, explicit: set[str]) -> None:
        """Take the architecture of the training run (its ``opt.json``) unless given."""
        opt.serial_batches, opt.no_flip = True, True
        if opt.samples < 1:
            raise ConfigError(f"--samples must be at least 1, got {opt.samples}")
        run_dir = Path(opt.checkpoints_dir) / opt.name
        saved_path = run_dir / "opt.json"
        if not saved_path.is_file() and not any(run_dir.glob("*_net_G*.pth")):
            raise ConfigError(f"{run_dir}: no training run there (no opt.json, no *_net_G.pth); "
                              f"train one with --name {opt.name} first, or point --name and "
                              f"--checkpoints_dir at a trained run")
        if not saved_path.is_file():
            logger.warning("%s not found: using the architecture given on the command line",
                           saved_path)
            return
        adopt_training_architecture(opt, read_run_options(run_dir), explicit, saved_path)

    def options_file_stem(self, opt: argparse.Namespace) -> str:
        """Test runs save ``<phase>_opt.txt``/``.json`` beside the training ``opt.json``."""
        return f"{opt.phase}_opt"


def adopt_training_architecture(opt: argparse.Namespace, saved: dict[str, object],
                                explicit: set[str], source: Path) -> None:
    """Copy the generator's settings (:data:`models.settings.SETTING_NAMES`) from ``saved``
    into ``opt`` unless given explicitly.

    An explicit value that contradicts the training run is a ConfigError naming both values.
    """
    for key in SETTING_NAMES:
        if key not in saved:
            continue
        if key in explicit and getattr(opt, key) != saved[key]:
            raise ConfigError(f"--{key} {getattr(opt, key)} was given, but the run in "
                              f"{source.parent} was trained with --{key} {saved[key]}")
        if getattr(opt, key) != saved[key]:
            logger.info("--%s %s taken from %s", key, saved[key], source)
            setattr(opt, key, saved[key])
