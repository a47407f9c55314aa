"""Options: two-pass parse, registries with valid names, saved JSON, test-time architecture."""

import json

import pytest

import models
from data import find_dataset_using_name
from options.base_options import explicit_options, resolve_gpu_ids
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.errors import ConfigError

SEED_TRAIN = ["--model", "pix2pix", "--dataset_mode", "nifti_aligned", "--preprocess", "none",
              "--input_nc", "1", "--output_nc", "1", "--axial_slice", "--norm", "instance",
              "--batch_size", "1", "--netG", "unet_64"]


def train_argv(tmp_path, *extra):
    return ["--dataroot", str(tmp_path / "d"), "--checkpoints_dir", str(tmp_path / "ck"),
            "--name", "run", *extra]


def test_recipe_pix2pix_gives_the_classic_defaults(tmp_path):
    opt = TrainOptions().parse(train_argv(tmp_path, "--recipe", "pix2pix"))
    assert (opt.model, opt.netG, opt.norm, opt.gan_mode, opt.pool_size, opt.lambda_L1) == \
        ("pix2pix", "unet_256", "batch", "vanilla", 0, 100.0)
    assert (opt.dataset_mode, opt.preprocess, opt.hu_min, opt.hu_max) == \
        ("nifti_aligned", "none", -1024.0, 3071.0)
    assert (opt.ngf, opt.batch_size, opt.context_slices, opt.input_nc, opt.lr) == \
        (64, 1, 0, 1, 0.0002)
    assert (opt.residual, opt.no_dropout, opt.motion_weight, opt.ema_decay) == \
        (False, False, 0.0, 0.0)
    assert (opt.residual_gate_hu, opt.n_epochs, opt.n_epochs_decay) == (0.0, 100, 100)
    assert opt.display_id == 0
    assert not opt.use_wandb
    assert opt.isTrain


def test_the_recommended_recipe_is_the_default(tmp_path):
    """No data at --dataroot: the recipe's values, nothing planned from data."""
    options = TrainOptions()
    opt = options.parse(train_argv(tmp_path))
    assert opt.recipe == "recommended"
    assert (opt.netG, opt.ngf, opt.norm, opt.batch_size, opt.context_slices, opt.input_nc) == \
        ("unet_64", 32, "instance", 8, 2, 5)
    assert (opt.residual, opt.no_dropout, opt.lambda_L1, opt.gan_mode) == \
        (True, True, 100.0, "vanilla")
    assert (opt.hu_min, opt.hu_max, opt.motion_weight, opt.lr, opt.ema_decay) == \
        (-1024.0, 1024.0, 4.0, 0.0004, 0.99)
    assert (opt.residual_gate_hu, opt.n_epochs, opt.n_epochs_decay) == (150.0, 30, 30)
    assert options.plan is not None
    assert options.plan.data is None
    assert "no NIfTI volume readable" in options.plan.notes[0]
    assert options.plan.setting("ngf").source == "recipe"
    assert options.plan.setting("input_nc").source == "planned"


def test_seed_flags_and_saved_options(tmp_path):
    options = TrainOptions()
    opt = options.parse(train_argv(tmp_path, *SEED_TRAIN, "--recipe", "pix2pix"))
    assert (opt.netG, opt.norm, opt.batch_size, opt.axial_slice) == ("unet_64", "instance", 1,
                                                                     True)
    assert not (tmp_path / "ck").exists()  # parsing writes nothing
    options.record(opt)
    saved = json.loads((tmp_path / "ck" / "run" / "opt.json").read_text())
    assert saved["netG"] == "unet_64"
    assert saved["max_dataset_size"] is None  # inf stored as null, valid JSON
    text = (tmp_path / "ck" / "run" / "opt.txt").read_text()
    assert "netG: unet_64" in text
    assert "[default: unet_256]" in text
    plan = json.loads((tmp_path / "ck" / "run" / "plan.json").read_text())
    assert plan["recipe"] == "pix2pix"
    assert plan["settings"]["netG"] == {"value": "unet_64", "source": "command line"}


@pytest.mark.parametrize(("flag", "value", "valid"), [
    ("--model", "cycle_gan", "pix2pix"),
    ("--dataset_mode", "unaligned", "nifti_aligned"),
    ("--netG", "unet_1024", "unet_512"),
    ("--norm", "group", "instance"),
    ("--gan_mode", "hinge", "wgangp"),
])
def test_unknown_names_fail_listing_valid_ones(tmp_path, capsys, flag, value, valid):
    with pytest.raises(SystemExit) as exit_info:
        TrainOptions().parse(train_argv(tmp_path, flag, value))
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert value in err
    assert valid in err


def test_registry_lookups_list_valid_names():
    with pytest.raises(ConfigError, match=r"valid names: .*pix2pix.*test"):
        models.find_model_using_name("cycle_gan")
    with pytest.raises(ConfigError, match="valid names: aligned, nifti_aligned"):
        find_dataset_using_name("unaligned")
    assert models.find_model_using_name("pix2pix").__name__ == "Pix2PixModel"


def test_test_model_refused_for_training(tmp_path):
    with pytest.raises(ConfigError, match=r"--model test is for test\.py only"):
        TrainOptions().parse(train_argv(tmp_path, "--model", "test"))


def test_test_options_take_architecture_from_training_run(tmp_path):
    train_options = TrainOptions()
    train_options.record(train_options.parse(train_argv(tmp_path, *SEED_TRAIN, "--resize_to",
                                                        "128")))
    argv = train_argv(tmp_path, "--model", "pix2pix", "--axial_slice")
    test_options = TestOptions()
    opt = test_options.parse(argv)
    assert not (tmp_path / "ck" / "run" / "test_opt.json").exists()
    test_options.record(opt)
    assert (opt.netG, opt.norm, opt.resize_to, opt.isTrain) == ("unet_64", "instance", 128,
                                                                False)
    assert opt.serial_batches
    assert opt.no_flip
    assert (tmp_path / "ck" / "run" / "test_opt.json").is_file()
    assert json.loads((tmp_path / "ck" / "run" / "opt.json").read_text())["isTrain"] is True
    with pytest.raises(ConfigError, match=r"--netG unet_128 was given, but .* unet_64"):
        TestOptions().parse([*argv, "--netG", "unet_128"])


def test_test_options_refuse_a_run_that_was_never_trained(tmp_path):
    argv = train_argv(tmp_path, "--model", "pix2pix", "--axial_slice")
    with pytest.raises(ConfigError, match=r"ck/run: no training run there .* --name run first"):
        TestOptions().parse(argv)
    assert not (tmp_path / "ck").exists()  # nothing written for a wrong --name


def test_explicit_options_tells_given_from_default(tmp_path):
    options = TrainOptions()
    argv = train_argv(tmp_path, "--lr", "0.0002")
    assert {"lr", "dataroot", "name"} <= explicit_options(options.build_parser(argv), argv)
    assert "beta1" not in explicit_options(options.build_parser(argv), argv)


def test_gpu_ids(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert resolve_gpu_ids("auto") == []
    assert resolve_gpu_ids("-1") == []
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_gpu_ids("0")
    with pytest.raises(ConfigError, match="comma-separated"):
        resolve_gpu_ids("gpu0")


def test_bad_hu_window_refused(tmp_path):
    with pytest.raises(ConfigError, match="hu_min < hu_max"):
        TrainOptions().parse(train_argv(tmp_path, "--hu_min", "500", "--hu_max", "100"))
