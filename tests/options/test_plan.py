"""The plan of a training run (options/plan.py, plan_rules.py, recipes.py): the rules (tables
of facts -> settings and reasons), the sources of every setting, plan.json, explicit flags over
the plan, and a tiny training with no recipe flag at all."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from data.survey import TrainingDataFacts, survey_training_split
from options import plan_rules
from options.plan import adopt_run_settings, settings_of
from options.plan_rules import (
    Decision,
    PlanInputs,
    context_from_input_nc,
    plan_batch_size,
    plan_context_slices,
    plan_epochs,
    plan_input_nc,
    plan_resize_to,
    plan_settings,
    plan_volume_cache,
)
from options.recipes import CT_RECIPE, SLICE_RECIPE, recipe_values
from options.test_options import TestOptions
from options.train_options import TrainOptions
from tests.conftest import RAS_AFFINE, write_pair_tree
from util.machine import MachineFacts

GIB = 2**30
CPU_16 = MachineFacts(device="cpu", device_memory_bytes=16 * GIB, ram_bytes=16 * GIB,
                      bf16_matrix_units=False)


@pytest.mark.parametrize(("sizes", "net_g", "value", "reason"), [
    (((64, 64),), "unet_64", 0, "slices 64 x 64: unet_64 fits"),
    (((512, 512), (256, 256)), "unet_64", 0, "slices 512 x 512, 256 x 256: unet_64 fits"),
    (((32, 32),), "unet_64", 64, "slices 32 x 32 do not fit unet_64 (sides that are multiples "
                                 "of 64): resized to 64 x 64"),
    (((100, 100),), "unet_64", 128, "resized to 128 x 128"),
    (((500, 500),), "unet_64", 512, "resized to 512 x 512"),
    (((96, 64),), "unet_64", 128, "slices 96 x 64 do not fit"),
    (((64, 64),), "unet_256", 256, "do not fit unet_256 (sides that are multiples of 256)"),
    (((30, 30),), "resnet_9blocks", 32, "multiples of 4"),
])
def test_resize_rule(sizes, net_g, value, reason):
    decision = plan_resize_to(sizes, net_g)
    assert decision.value == value
    assert reason in decision.reason


@pytest.mark.parametrize(("thickness_mm", "value", "reason"), [
    (3.0, 2, "slices 3 mm apart: 2 neighbour(s) each side cover 6 mm"),
    (2.5, 2, "cover 5 mm"),
    (2.0, 3, "cover 6 mm"),
    (1.25, 4, "cover 5 mm"),  # 4.8 neighbours, capped at 4
    (5.0, 1, "cover 5 mm"),
    (10.0, 1, "cover 10 mm"),  # at least one
    (0.0, 2, "unknown"),
])
def test_context_rule_covers_about_6_mm(thickness_mm, value, reason):
    decision = plan_context_slices(thickness_mm)
    assert decision.value == value
    assert reason in decision.reason


@pytest.mark.parametrize(("input_nc", "phase_input", "k"), [
    (1, False, 0), (5, False, 2), (9, False, 4), (4, False, None), (0, False, None),
    (3, True, 0), (7, True, 2), (2, True, None)])
def test_context_from_a_given_input_nc(input_nc, phase_input, k):
    decision = context_from_input_nc(input_nc, phase_input)
    assert (None if decision is None else decision.value) == k


@pytest.mark.parametrize(("context", "phase_input", "volumetric", "channels"), [
    (0, False, False, 1), (2, False, False, 5), (2, True, False, 7), (2, False, True, 1),
    (0, True, True, 3)])
def test_input_channels_follow_the_context(context, phase_input, volumetric, channels):
    assert plan_input_nc(context, phase_input, volumetric).value == channels


@pytest.mark.parametrize(("side", "ngf", "memory", "batch", "reason"), [
    (64, 32, 16 * GIB, 8, "8 slices of 64 x 64 (~5 MiB each at ngf 32) fit in 40% of 16.0 GiB"),
    (512, 32, 16 * GIB, 8, "(~320 MiB each at ngf 32) fit"),
    (512, 32, 2 * GIB, 2, "would not fit in 40% of 2.0 GiB on cpu: 2"),
    (512, 64, GIB, 1, "would not fit"),  # one slice even where none fits: at least 1
])
def test_batch_rule_fits_the_memory(side, ngf, memory, batch, reason):
    decision = plan_batch_size(side, ngf, memory, 8, "cpu")
    assert decision.value == batch
    assert reason in decision.reason


@pytest.mark.parametrize(("samples", "n_epochs", "n_decay"), [
    (768, 30, 30),  # the recipe's 24 patients x 32 slices: its measured 60 epochs
    (3000, 8, 7),  # 15 epochs, the odd one at the initial lr
    (46080, 5, 5),  # at least 10 epochs
    (16, 100, 100),  # at most 200
])
def test_epoch_rule_sees_as_many_slices_as_the_recipe(samples, n_epochs, n_decay):
    constant, decaying = plan_epochs(samples)
    assert (constant.value, decaying.value) == (n_epochs, n_decay)
    assert f"{samples} training slices" in constant.reason


@pytest.mark.parametrize(("held", "patients", "ram", "cache"), [
    (GIB, 10, 16 * GIB, 0), (20 * GIB, 100, 16 * GIB, 32), (20 * GIB, 2, GIB, 1)])
def test_volume_cache_rule(held, patients, ram, cache):
    assert plan_volume_cache(held, patients, ram).value == cache


def test_recipes_by_model_and_dataset():
    assert recipe_values("pix2pix", "pix2pix", "nifti_aligned") == {}
    assert recipe_values("recommended", "pix2pix", "nifti_aligned") == CT_RECIPE | SLICE_RECIPE
    assert recipe_values("recommended", "pix2pix", "nifti_volume") == CT_RECIPE
    assert recipe_values("recommended", "pix2pix", "aligned") == {}
    with pytest.raises(ValueError, match="valid: recommended, pix2pix"):
        recipe_values("best", "pix2pix", "nifti_aligned")


def facts(**changes) -> TrainingDataFacts:
    """Two patients of 64 x 64 x 8 slices, 3 mm apart, unless changed."""
    values = {"folder": Path("trainA"), "patients": 2, "slices": 16,
              "slice_sizes": ((64, 64),), "slice_thickness_mm": 3.0,
              "pixel_spacing_mm": (0.9, 0.9), "largest_volume_voxels": 64 * 64 * 8}
    return TrainingDataFacts(**(values | changes))


def recipe_options(**changes) -> dict:
    """The options as the recommended recipe parses them for pix2pix on NIfTI slices."""
    return ({"dataset_mode": "nifti_aligned", "input_nc": 1, "resize_to": 0, "amp": "auto",
             "working_spacing_mm": [0.0, 0.0, 0.0], "max_dataset_size": math.inf,
             "volume_cache": 0} | CT_RECIPE | SLICE_RECIPE | changes)


def planned(values=None, fixed=(), data=None, machine=CPU_16, rules=True, phase_input=False):
    return plan_settings(PlanInputs(values or recipe_options(), frozenset(fixed),
                                    facts() if data is None else data, machine, rules,
                                    phase_input))


def test_rules_plan_every_data_and_machine_setting():
    out = planned()
    assert {k: d.value for k, d in out.items()} == {
        "resize_to": 0, "context_slices": 2, "input_nc": 5, "batch_size": 8, "n_epochs": 100,
        "n_epochs_decay": 100, "volume_cache": 0, "amp": "auto"}
    assert out["amp"].reason == "float32: this CPU has no bfloat16 matrix units"


def test_fixed_options_are_never_planned_and_later_rules_see_them():
    out = planned(recipe_options(resize_to=256, input_nc=3, n_epochs=4),
                  fixed={"resize_to", "input_nc", "n_epochs"})
    assert "resize_to" not in out
    assert out["context_slices"] == Decision(1, "--input_nc 3: 3 slice(s) in, 1 neighbour(s) "
                                                "each side")
    assert "input_nc" not in out
    assert "256 x 256" in out["batch_size"].reason  # the batch is sized for the given size
    assert out["n_epochs_decay"].value == 4  # half and half with the --n_epochs given
    assert "n_epochs" not in out


def test_working_spacing_and_max_dataset_size_change_the_rules():
    out = planned(recipe_options(working_spacing_mm=[6.0, 0.0, 0.0], max_dataset_size=768.0),
                  data=facts(slices=10_000, slice_sizes=((30, 30),)))
    assert "resize_to" not in out  # slices on a working grid are padded, not resized
    assert "volume_cache" not in out  # volumes resampled at load are held whole
    assert (out["n_epochs"].value, out["n_epochs_decay"].value) == (30, 30)


def test_a_volumetric_generator_on_slices_is_left_to_the_size_check():
    out = planned(recipe_options(netG="unet3d_4"))
    assert "resize_to" not in out
    assert "batch_size" not in out
    assert out["input_nc"].value == 1


def test_without_data_or_rules_only_the_channels_are_planned():
    no_data = plan_settings(PlanInputs(recipe_options(), frozenset(), None, CPU_16, True))
    assert set(no_data) == {"input_nc", "amp"}
    classic = planned(recipe_options(context_slices=0), rules=False)
    assert {k: d.value for k, d in classic.items()} == {"input_nc": 1}
    pictures = planned(recipe_options(dataset_mode="aligned"), rules=False)
    assert pictures == {}
    phases = planned(phase_input=True)
    assert phases["input_nc"] == Decision(7, "2 x 2 + 1 slices + 2 phase planes")


def test_sources_of_settings():
    values = {"lr": 0.001, "ngf": 32, "beta1": 0.5, "batch_size": 4, "netG": "unet_64"}
    settings = dict(settings_of(values, frozenset({"lr"}), {"batch_size": Decision(4, "why")},
                                {"netG": Decision("unet_64", "from the run")},
                                {"ngf": 32, "lr": 0.0004, "netG": "unet_64"}))
    assert settings["lr"].source == "command line"
    assert settings["ngf"].source == "recipe"
    assert settings["beta1"].source == "default"
    assert (settings["batch_size"].source, settings["batch_size"].reason) == ("planned", "why")
    assert settings["netG"].source == "run folder"


def test_a_resumed_run_keeps_its_recorded_settings():
    out = adopt_run_settings({"ngf": 32, "residual_gate_hu": 150.0, "lr": 0.01},
                             {"ngf": 8}, frozenset({"lr"}), ("ngf", "residual_gate_hu", "lr"),
                             {"residual_gate_hu": 0.0}, Path("ck/run/opt.json"))
    assert out["ngf"].value == 8
    assert out["residual_gate_hu"].value == 0.0  # the run predates the option: off then
    assert "predates" in out["residual_gate_hu"].reason
    assert "lr" not in out  # given on the command line


def test_survey_reads_headers_of_the_training_split(tmp_path):
    write_pair_tree(tmp_path, "train", {"p1": (32, 32, 8), "p2": (32, 32, 6)})
    (tmp_path / "trainA" / "broken.nii.gz").write_bytes(b"not a volume")
    found = survey_training_split(tmp_path / "trainA", phases=1)
    assert found is not None
    assert (found.patients, found.slices, found.slice_sizes) == (2, 14, ((32, 32),))
    assert found.slice_thickness_mm == pytest.approx(3.0)
    assert found.pixel_spacing_mm == pytest.approx((0.9, 0.9))
    assert found.unreadable == 1
    on_grid = survey_training_split(tmp_path / "trainA", working_spacing_mm=(6.0, 1.8, 0.0))
    assert on_grid is not None
    assert on_grid.slice_sizes == ((16, 32),)
    assert on_grid.slice_thickness_mm == pytest.approx(6.0)
    assert survey_training_split(tmp_path / "missing") is None


def dataroot(tmp_path: Path, shape=(32, 32, 8)) -> Path:
    """Two training patients of ``shape`` voxels (0.9 x 0.9 x 3 mm)."""
    root = tmp_path / "d"
    write_pair_tree(root, "train", {"p1": shape, "p2": shape}, RAS_AFFINE)
    return root


def argv(tmp_path: Path, *extra: str) -> list[str]:
    return ["--dataroot", str(tmp_path / "d"), "--checkpoints_dir", str(tmp_path / "ck"),
            "--name", "run", "--gpu_ids", "-1", *extra]


def test_plan_from_data_with_no_flags_and_plan_json(tmp_path):
    dataroot(tmp_path)
    options = TrainOptions()
    opt = options.parse(argv(tmp_path))
    assert (opt.resize_to, opt.context_slices, opt.input_nc, opt.batch_size) == (64, 2, 5, 8)
    assert (opt.n_epochs, opt.n_epochs_decay, opt.netG, opt.ngf) == (100, 100, "unet_64", 32)
    assert not (tmp_path / "ck").exists()  # parsing writes nothing
    options.record(opt)
    saved = json.loads((tmp_path / "ck" / "run" / "plan.json").read_text())
    settings = saved["settings"]
    assert set(settings) == set(vars(opt))  # every setting
    assert settings["resize_to"] == {
        "value": 64, "source": "planned",
        "reason": "slices 32 x 32 do not fit unet_64 (sides that are multiples of 64): resized "
                  "to 64 x 64"}
    assert settings["residual_gate_hu"] == {"value": 150.0, "source": "recipe"}
    assert settings["dataroot"]["source"] == "command line"
    assert settings["beta1"] == {"value": 0.5, "source": "default"}
    assert settings["max_dataset_size"]["value"] is None  # inf as null: valid JSON
    assert saved["recipe"] == "recommended"
    assert (saved["data"]["patients"], saved["data"]["slices"]) == (2, 16)
    assert saved["machine"]["device"] == "cpu"
    run_opt = json.loads((tmp_path / "ck" / "run" / "opt.json").read_text())
    assert (run_opt["resize_to"], run_opt["input_nc"]) == (64, 5)  # what test.py adopts


def test_explicit_flags_override_the_plan(tmp_path):
    dataroot(tmp_path)
    options = TrainOptions()
    opt = options.parse(argv(tmp_path, "--batch_size", "2", "--resize_to", "128", "--ngf", "16",
                             "--context_slices", "1", "--residual_gate_hu", "0"))
    assert (opt.batch_size, opt.resize_to, opt.ngf, opt.context_slices) == (2, 128, 16, 1)
    assert (opt.input_nc, opt.residual_gate_hu) == (3, 0.0)
    plan = options.plan
    assert plan is not None
    for name in ("batch_size", "resize_to", "ngf", "context_slices", "residual_gate_hu"):
        assert plan.setting(name).source == "command line"
    assert plan.setting("input_nc").reason == "2 x 1 + 1 slices"


def test_seed_commands_keep_what_they_say(tmp_path):
    """The first user's flags: one input slice, batch 1, unet_64; and the optimized command's
    unet_512 at 512; the rest from the plan."""
    dataroot(tmp_path, (64, 64, 8))
    seed = ["--model", "pix2pix", "--dataset_mode", "nifti_aligned", "--preprocess", "none",
            "--input_nc", "1", "--output_nc", "1", "--axial_slice", "--norm", "instance"]
    options = TrainOptions()
    opt = options.parse(argv(tmp_path, *seed, "--batch_size", "1", "--netG", "unet_64"))
    assert (opt.input_nc, opt.context_slices, opt.batch_size, opt.netG) == (1, 0, 1, "unet_64")
    assert opt.residual
    assert options.plan is not None
    assert options.plan.setting("context_slices").reason.startswith("--input_nc 1")
    opt = TrainOptions().parse(argv(tmp_path, *seed, "--netG", "unet_512", "--batch_size", "4",
                                    "--lambda_L1", "50", "--lr", "0.0001", "--resize_to", "512",
                                    "--display_freq", "100", "--save_epoch_freq", "5"))
    assert (opt.netG, opt.resize_to, opt.batch_size, opt.lambda_L1, opt.lr) == \
        ("unet_512", 512, 4, 50.0, 0.0001)
    assert (opt.ngf, opt.ema_decay) == (32, 0.99)


def test_a_given_generator_gets_slices_it_takes(tmp_path):
    dataroot(tmp_path, (64, 64, 8))
    assert TrainOptions().parse(argv(tmp_path, "--netG", "unet_256")).resize_to == 256
    classic = TrainOptions().parse(argv(tmp_path, "--netG", "unet_256", "--recipe", "pix2pix"))
    assert classic.resize_to == 0  # refused later, at the size check, as before


def test_recipe_pix2pix_plans_nothing_from_data(tmp_path):
    dataroot(tmp_path)
    options = TrainOptions()
    opt = options.parse(argv(tmp_path, "--recipe", "pix2pix", "--context_slices", "2"))
    assert (opt.netG, opt.batch_size, opt.resize_to, opt.input_nc) == ("unet_256", 1, 0, 5)
    assert options.plan is not None
    assert set(options.plan.by_source("planned")) == {"input_nc"}
    assert options.plan.by_source("recipe") == {}
    assert options.plan.data is None


def test_continue_train_takes_the_runs_settings(tmp_path):
    dataroot(tmp_path)
    first = TrainOptions()
    first.record(first.parse(argv(tmp_path, "--ngf", "8", "--batch_size", "3")))
    options = TrainOptions()
    opt = options.parse(argv(tmp_path, "--continue_train", "--lr", "0.001"))
    assert (opt.ngf, opt.batch_size, opt.resize_to, opt.lr) == (8, 3, 64, 0.001)
    assert options.plan is not None
    assert options.plan.setting("ngf").source == "run folder"
    assert options.plan.setting("lr").source == "command line"
    assert "resumed run" in options.plan.notes[0]


def test_an_old_run_resumes_with_the_defaults_it_had(tmp_path):
    """opt.json of a run from before the plan: pix2pix's values, some options missing."""
    dataroot(tmp_path)
    old = TrainOptions()
    opt = old.parse(argv(tmp_path, "--recipe", "pix2pix", "--netG", "unet_64", "--norm",
                         "instance"))
    old.record(opt)
    path = tmp_path / "ck" / "run" / "opt.json"
    saved = json.loads(path.read_text())
    for name in ("recipe", "residual_gate_hu", "ema_decay"):
        del saved[name]
    path.write_text(json.dumps(saved))
    resumed = TrainOptions().parse(argv(tmp_path, "--continue_train"))
    assert (resumed.netG, resumed.ngf, resumed.batch_size, resumed.input_nc) == \
        ("unet_64", 64, 1, 1)
    assert (resumed.residual_gate_hu, resumed.ema_decay, resumed.no_dropout) == (0.0, 0.0, False)


def test_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        TrainOptions().parse(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--ema_decay", "--lambda_L1", "--motion_weight", "--volume_cache", "--recipe",
                 "--phases", "--n_epochs_decay"):
        assert flag in text
    assert "planned: the recipe's 8" in text
    for options, names in ((TrainOptions(), []), (TestOptions(), ["--model", "test"]),
                           (TrainOptions(), ["--dataset_mode", "nifti_volume"])):
        parser = options.build_parser(["--dataroot", "x", *names])
        for action in parser._actions:
            assert action.help, action.dest  # so the formatter shows its default
    with pytest.raises(SystemExit):
        TrainOptions().parse(["--help", "--dataset_mode", "nifti_volume"])
    assert "--patches_per_volume" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        TestOptions().parse(["--help", "--model", "test"])
    text = capsys.readouterr().out
    assert "--model_suffix" in text
    assert "--results_dir" in text
    assert "--lambda_L1" not in text


@pytest.mark.slow
def test_training_with_no_recipe_flag_writes_the_plan_and_trains(tmp_path, monkeypatch):
    """Only --dataroot, --name and where runs go: the plan chooses the rest (its epoch rule
    scaled down to one epoch for the test)."""
    import train

    dataroot(tmp_path)
    monkeypatch.setattr(plan_rules, "RECIPE_SLICES_SEEN", 16)
    monkeypatch.setattr(plan_rules, "MIN_EPOCHS", 1)
    assert train.main(["--dataroot", str(tmp_path / "d"), "--name", "run",
                       "--checkpoints_dir", str(tmp_path / "ck")]) == 0
    run = tmp_path / "ck" / "run"
    plan = json.loads((run / "plan.json").read_text())["settings"]
    assert {k for k, s in plan.items() if s["source"] == "command line"} == \
        {"dataroot", "name", "checkpoints_dir"}
    assert (plan["n_epochs"]["value"], plan["n_epochs_decay"]["value"]) == (1, 0)
    assert plan["resize_to"]["value"] == 64
    meta = json.loads((run / "latest_metadata.json").read_text())
    assert meta["checkpoint"]["epoch_number"] == 1
    assert meta["input"]["context_slices_each_side"] == 2
    assert (run / "latest_net_G.pth").is_file()
    assert np.isfinite(meta["checkpoint"]["total_iters"])
