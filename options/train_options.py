"""Options of ``train.py``: the recipe and its plan, display, saving, schedule and optimiser.

With ``--recipe recommended`` (the default) the options not given take the recommended recipe's
values (:mod:`options.recipes`), and those the training data and the machine decide are planned
from them (:mod:`options.plan_rules`); :attr:`TrainOptions.plan` (:mod:`options.plan`) records
every value and where it came from, and :meth:`TrainOptions.record` writes it as ``plan.json``
beside ``opt.json``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from data.phase_volumes import dataset_phases
from data.survey import TrainingDataFacts, survey_training_split
from models import networks
from models.run_folder import read_run_options
from options.base_options import BaseOptions, resolve_gpu_ids
from options.plan import RUN_NAMES, Plan, adopt_run_settings, settings_of
from options.plan_rules import PLANNED_HELP, Decision, PlanInputs, plan_settings
from options.recipes import RECIPES, recipe_values
from util.atomic import atomic_write_json
from util.distributed import is_main_process
from util.machine import MachineFacts, survey_machine

logger = logging.getLogger(__name__)


class TrainOptions(BaseOptions):
    """Base options plus the training ones, the recipe's defaults and the plan."""

    is_train = True
    description = ("Options of train.py: every option of the --model and --dataset_mode given, "
                   "with the defaults of the --recipe given. Options not given take the "
                   "recipe's values; with --recipe recommended those marked 'planned' are "
                   "chosen from the training data and the machine. The run folder's plan.json "
                   "records every value and where it came from.")

    def __init__(self) -> None:
        super().__init__()
        #: The plan of the last :meth:`parse`.
        self.plan: Plan | None = None
        #: {option: value} the recipe set as defaults in the last :meth:`build_parser`.
        self.recipe_defaults: dict[str, Any] = {}
        self._planned: dict[str, Decision] = {}
        self._adopted: dict[str, Decision] = {}
        self._data: TrainingDataFacts | None = None
        self._machine: MachineFacts | None = None
        self._notes: list[str] = []

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Add the training options."""
        parser = super().initialize(parser)
        g = parser.add_argument_group("recipe and plan")
        g.add_argument("--recipe", default=RECIPES[0], choices=RECIPES,
                       help="recommended: README's recommended recipe for pix2pix on CT "
                            "slices, with the settings the data and machine decide planned "
                            "(plan.json says which and why); pix2pix: the classic pix2pix "
                            "defaults, nothing planned. Options given always win")
        # bf16 where the CPU has bf16 matrix units (benchmarks/README.md: the step 1.5x faster,
        # same quality); test.py and predict.py keep float32 outputs unless asked.
        parser.set_defaults(amp="auto")
        g = parser.add_argument_group("display")
        g.add_argument("--display_freq", type=int, default=400,
                       help="save training pictures (HTML, visdom, wandb) every N slices")
        g.add_argument("--display_id", type=int, default=0,
                       help="visdom window id; 0 = no visdom (needs the visdom package)")
        g.add_argument("--display_server", default="http://localhost", help="visdom server")
        g.add_argument("--display_env", default="main", help="visdom environment")
        g.add_argument("--display_port", type=int, default=8097, help="visdom port")
        g.add_argument("--print_freq", type=int, default=100,
                       help="log losses every N iterations")
        g.add_argument("--no_html", action="store_true", help="do not write the HTML page")
        g.add_argument("--val_freq", type=int, default=1,
                       help="every N epochs, MAE in HU on the <dataroot>/valA, valB patients "
                            "(motion region, body, whole volume), logged beside the AVG's, and "
                            "a 'best' checkpoint kept by the mean of the model/AVG ratios in the "
                            "motion region and the whole volume; 0 = off")
        g = parser.add_argument_group("augmentation")
        g.add_argument("--augment_intensity", type=float, nargs=3, default=[0.0, 0.0, 0.0],
                       metavar=("NOISE_HU", "BLUR_PX", "OFFSET_HU"),
                       help="per training slice (slice datasets), drawn uniformly up to these: "
                            "Gaussian noise (sigma, HU) on the input AVG alone, an in-plane "
                            "Gaussian blur (sigma, pixels: another reconstruction kernel) and "
                            "an HU offset (+-, calibration) on input and target alike; 0 0 0: "
                            "none")
        g = parser.add_argument_group("saving")
        g.add_argument("--save_latest_freq", type=int, default=5000,
                       help="save the latest checkpoint every N iterations")
        g.add_argument("--save_epoch_freq", type=int, default=5,
                       help="save a checkpoint every N epochs")
        g.add_argument("--save_by_iter", action="store_true",
                       help="also keep iter_<N> checkpoints at each latest save")
        g.add_argument("--continue_train", action="store_true", help="resume from --epoch")
        g.add_argument("--overwrite", action="store_true",
                       help="start anew in a run folder that holds checkpoints: once every "
                            "check has passed, its checkpoints, options, logs and page are "
                            "deleted (without this, such a run is refused)")
        g.add_argument("--allow_data_change", action="store_true",
                       help="with --continue_train: go on although the training patients or "
                            "their files differ from those the training state was saved with "
                            "(without this such a resume is refused); the metadata then "
                            "records the earlier set in patients.train_history")
        g.add_argument("--epoch_count", type=int, default=1,
                       help="first epoch number (when resuming: the next epoch)")
        g.add_argument("--phase", default="train", help="train, val, test, ...")
        g = parser.add_argument_group("schedule")
        g.add_argument("--n_epochs", type=int, default=100, help="epochs at the initial lr")
        g.add_argument("--n_epochs_decay", type=int, default=100,
                       help="epochs to decay the lr linearly to zero")
        g.add_argument("--beta1", type=float, default=0.5, help="Adam beta1")
        g.add_argument("--lr", type=float, default=0.0002, help="initial Adam learning rate")
        g.add_argument("--gan_mode", default="lsgan", choices=sorted(networks.GAN_MODES),
                       help="GAN loss: vanilla (cross-entropy), lsgan (least squares), wgangp")
        g.add_argument("--pool_size", type=int, default=50,
                       help="past fakes shown to D (0 = none)")
        g.add_argument("--lr_policy", default="linear", choices=sorted(networks.LR_POLICIES),
                       help="learning-rate schedule; linear: constant for --n_epochs, then down "
                            "to zero over --n_epochs_decay")
        g.add_argument("--lr_decay_iters", type=int, default=50,
                       help="step policy: multiply the lr by 0.1 every N epochs")
        return parser

    def name_parser(self) -> argparse.ArgumentParser:
        """The first pass, with ``--recipe``."""
        pre = super().name_parser()
        pre.add_argument("--recipe", choices=RECIPES)
        return pre

    def set_recipe(self, parser: argparse.ArgumentParser, names: argparse.Namespace,
                   model: str, dataset_mode: str) -> argparse.ArgumentParser:
        """Make the recipe's values the defaults (those of the options this model and dataset
        have) and say in the help which options the plan chooses."""
        recipe = names.recipe or RECIPES[0]
        self.recipe_defaults = {k: v for k, v in recipe_values(recipe, model, dataset_mode).items()
                                if k in self.defaults}
        parser.set_defaults(**self.recipe_defaults)
        if recipe == "recommended" and dataset_mode == "nifti_aligned" and self.recipe_defaults:
            for action in parser._actions:
                if action.dest in PLANNED_HELP:
                    note = PLANNED_HELP[action.dest].replace("%", "%%")  # argparse formats help
                    action.help = f"{action.help}; {note}"
        return parser

    def adjust(self, opt: argparse.Namespace, explicit: set[str]) -> None:
        """Resume with the run's recorded settings (``--continue_train``), then plan the others
        not given (:func:`options.plan.plan_settings`)."""
        fixed = frozenset(explicit)
        saved_path = Path(opt.checkpoints_dir) / opt.name / "opt.json"
        saved = read_run_options(saved_path.parent) if (opt.continue_train
                                                          and saved_path.is_file()) else {}
        self._adopted = (adopt_run_settings(vars(opt), saved, fixed, RUN_NAMES, self.defaults,
                                            saved_path) if saved else {})
        for name, decision in self._adopted.items():
            setattr(opt, name, decision.value)
        fixed |= self._adopted.keys()
        rules = (opt.recipe == "recommended" and opt.dataset_mode == "nifti_aligned"
                 and bool(self.recipe_defaults) and not saved)
        self._notes = self.notes(opt, rules, bool(saved))
        self._data = self.survey(opt) if rules else None
        self._machine = survey_machine(resolve_gpu_ids(opt.gpu_ids)) if rules else None
        if rules and self._data is None:
            self._notes.append(f"no NIfTI volume readable in {Path(opt.dataroot) / 'trainA'}: "
                               f"the recipe's values stand for what the data would decide")
        self._planned = plan_settings(PlanInputs(vars(opt), fixed, self._data, self._machine,
                                                 rules, phase_input=opt.phase_input))
        for name, decision in self._planned.items():
            setattr(opt, name, decision.value)

    def notes(self, opt: argparse.Namespace, rules: bool, resumed: bool) -> list[str]:
        """Why the plan does less than it could for these options."""
        if resumed:
            return ["resumed run (--continue_train): its recorded settings, nothing planned"]
        if opt.recipe == "recommended" and not rules:
            return [f"the recommended recipe's data rules are for --model pix2pix "
                    f"--dataset_mode nifti_aligned, not --model {opt.model} --dataset_mode "
                    f"{opt.dataset_mode}"]
        return []

    @staticmethod
    def survey(opt: argparse.Namespace) -> TrainingDataFacts | None:
        """The facts of the training split's AVG headers (None when none can be read)."""
        root = Path(opt.dataroot)
        phases = dataset_phases(opt.phases, root, opt.phase) if opt.phases else None
        return survey_training_split(root / f"{opt.phase}A",
                                     working_spacing_mm=opt.working_spacing_mm,
                                     phases=len(phases) if phases else 1)

    def parse(self, argv: list[str] | None = None) -> argparse.Namespace:
        """:meth:`BaseOptions.parse`, then the plan of the options (:attr:`plan`, logged)."""
        opt = super().parse(argv)
        self.plan = Plan(recipe=opt.recipe,
                         settings=settings_of(vars(opt), self.explicit, self._planned,
                                              self._adopted, self.recipe_defaults),
                         data=self._data, machine=self._machine, notes=tuple(self._notes))
        if is_main_process():
            logger.info("%s", self.plan.summary())
        return opt

    def save(self, opt: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
        """``opt.txt``, ``opt.json`` and ``plan.json`` in the run folder."""
        super().save(opt, parser)
        if self.plan is not None:
            atomic_write_json(Path(opt.checkpoints_dir) / opt.name / "plan.json",
                              self.plan.to_json())
