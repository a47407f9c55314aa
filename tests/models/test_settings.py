"""A run's settings as one frozen value: its parts, their agreement, and opt.json in and out."""

import dataclasses
import math

import pytest
import torch

from data.settings import DataSettings
from evaluation.metrics import RegionSettings
from models.settings import (
    GeneratorSettings,
    RunSettings,
    RunSetup,
    ScheduleSettings,
)
from util.errors import ConfigError

#: The options an early training recorded in its opt.json (before working spacings, patches,
#: phases, residual gates, generator averages, augmentation, speed paths and evaluation
#: regions existed): they must still make the settings the run had.
EARLY_OPT_JSON = {
    "dataroot": "./datasets/ct_phases_dataset", "name": "ct_phase0_generator",
    "gpu_ids": [], "checkpoints_dir": "./checkpoints", "model": "pix2pix", "input_nc": 1,
    "output_nc": 1, "ngf": 64, "ndf": 64, "netD": "basic", "netG": "unet_256",
    "n_layers_D": 3, "norm": "batch", "init_type": "normal", "init_gain": 0.02,
    "no_dropout": False, "dataset_mode": "nifti_aligned", "direction": "AtoB",
    "serial_batches": False, "num_threads": 4, "batch_size": 1, "load_size": 286,
    "crop_size": 256, "max_dataset_size": None, "preprocess": "none", "no_flip": False,
    "display_winsize": 256, "epoch": "latest", "load_iter": 0, "verbose": False, "suffix": "",
    "axial_slice": True, "hu_min": -1024.0, "hu_max": 3071.0, "isTrain": True, "lr": 0.0002,
    "beta1": 0.5, "n_epochs": 100, "n_epochs_decay": 100, "gan_mode": "vanilla",
    "pool_size": 0, "lr_policy": "linear", "lambda_L1": 100.0, "phase": "train",
    "display_id": 1, "use_wandb": False,
}


def test_an_early_opt_json_loads_with_the_defaults_of_what_it_lacks():
    settings = RunSettings.from_json(EARLY_OPT_JSON)
    assert settings.generator == GeneratorSettings(netG="unet_256", norm="batch")
    assert settings.data.max_dataset_size == math.inf
    assert (settings.data.phases, settings.data.working_spacing_mm) == ("", (0.0, 0.0, 0.0))
    assert settings.schedule.ema_decay == 0.0
    assert settings.regions == RegionSettings()
    assert settings.run.run_dir.as_posix() == "checkpoints/ct_phase0_generator"
    assert settings.run.device == torch.device("cpu")
    written = settings.to_json()
    assert {k: v for k, v in written.items() if k in EARLY_OPT_JSON} == \
        {k: v for k, v in EARLY_OPT_JSON.items() if k in written}
    assert RunSettings.from_json(written) == settings


@pytest.mark.parametrize(("dropped", "named"), [("dataroot", "--dataroot"),
                                                 ("netG", "--netG")])
def test_an_option_without_a_default_must_be_there(dropped, named):
    options = {k: v for k, v in EARLY_OPT_JSON.items() if k != dropped}
    with pytest.raises(ConfigError, match=named):
        RunSettings.from_json(options)


def test_values_a_part_refuses_are_a_config_error():
    with pytest.raises(ConfigError, match="motion_margin_mm"):
        RunSettings.from_json({**EARLY_OPT_JSON, "motion_margin_mm": -1.0})
    with pytest.raises(ConfigError, match="--working_spacing_mm takes 3 spacings"):
        RunSettings.from_json({**EARLY_OPT_JSON, "working_spacing_mm": [1.0, 2.0]})


def test_parts_that_disagree_on_a_shared_option_are_refused_naming_it():
    generator = GeneratorSettings(netG="unet_64", hu_max=1024.0)
    with pytest.raises(ConfigError, match=r"--hu_max 3071\.0 \(data\) but 1024\.0 "
                                          r"\(generator\).*--hu_max 3071\.0 \(data\) but "
                                          r"1024\.0 \(regions\)"):
        RunSettings(run=RunSetup(), data=DataSettings(dataroot="d"), generator=generator,
                    regions=RegionSettings(hu_max=1024.0))
    with pytest.raises(ConfigError, match=r"--isTrain False \(run\) but True \(data\)"):
        RunSettings(run=RunSetup(), data=DataSettings(dataroot="d", is_train=True),
                    generator=GeneratorSettings(netG="unet_64"))


def test_with_options_changes_every_part_that_holds_an_option():
    settings = RunSettings.from_json(EARLY_OPT_JSON)
    changed = settings.with_options(hu_min=-1000.0, isTrain=False, lr=0.001)
    assert (changed.data.hu_min, changed.generator.hu_min, changed.regions.hu_min) == \
        (-1000.0,) * 3
    assert not changed.run.is_train
    assert not changed.data.is_train
    assert changed.schedule.lr == 0.001
    assert dataclasses.replace(changed.schedule, lr=0.0002) == settings.schedule
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.run.name = "other"  # type: ignore[misc]


def test_the_schedule_gives_the_scheduler_its_arguments():
    schedule = ScheduleSettings(n_epochs=3, n_epochs_decay=2, epoch_count=2, lr_policy="step",
                                lr_decay_iters=7)
    assert schedule.last_epoch == 5
    assert schedule.lr_schedule() == {"lr_policy": "step", "epoch_count": 2, "n_epochs": 3,
                                      "n_epochs_decay": 2, "lr_decay_iters": 7}
