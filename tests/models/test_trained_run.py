"""The one way to load a trained generator: from the run folder's JSON and weights, no writes;
and the one list of the options that describe it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.settings import ARCHITECTURE_NAMES, SETTING_NAMES, GeneratorSettings
from models.trained_run import load_generator
from options.base_options import run_settings
from options.test_options import TestOptions
from options.train_options import TrainOptions
from tests.tiny_runs import tiny_run
from util.errors import ConfigError

#: A value other than the default for every setting, as train.py would be given it.
NON_DEFAULT = {"netG": "unet_128", "ngf": "16", "norm": "instance", "no_dropout": None,
               "input_nc": "3", "output_nc": "2", "context_slices": "1", "residual": None,
               "phase_input": None, "resize_to": "128", "patch_size": "8 16 16",
               "working_spacing_mm": "6 4.5 0", "residual_gate_hu": "25", "hu_min": "-1000",
               "hu_max": "1000",
               "direction": "BtoA"}
#: Settings train.py derives from other options: phase_input from --phases.
DERIVED = {"phase_input": ["--phases", "all"]}


def setting_flags() -> list[str]:
    """The command-line flags that give every setting its NON_DEFAULT value."""
    flags: list[str] = []
    for key, value in NON_DEFAULT.items():
        flags += DERIVED.get(key) or [f"--{key}", *(value.split() if value else [])]
    return flags


def test_every_setting_has_a_non_default_value_in_this_table():
    assert set(NON_DEFAULT) == set(SETTING_NAMES)
    assert set(ARCHITECTURE_NAMES) < set(SETTING_NAMES)
    assert "resize_to" not in ARCHITECTURE_NAMES


def test_every_setting_of_train_py_round_trips_through_opt_json_into_test_py(tmp_path):
    flags = setting_flags()
    base = ["--dataroot", str(tmp_path), "--checkpoints_dir", str(tmp_path / "ck"), "--name",
            "run", "--axial_slice", "--gpu_ids", "-1", "--dataset_mode", "nifti_aligned"]
    classic = ["--recipe", "pix2pix"]  # the defaults the table differs from
    options = TrainOptions()
    trained = options.parse([*base, *classic, *flags])
    options.record(trained)
    tested = TestOptions().parse(base)  # no architecture flag given at test time
    expected = GeneratorSettings.from_options(vars(trained))
    assert GeneratorSettings.from_options(vars(tested)) == expected
    assert run_settings(tested).generator == run_settings(trained).generator == expected
    saved = json.loads((tmp_path / "ck" / "run" / "opt.json").read_text())
    assert GeneratorSettings.from_options(saved) == expected
    defaults = GeneratorSettings.from_options(vars(TrainOptions().parse([*base, *classic])))
    changed = [k for k in SETTING_NAMES if getattr(defaults, k) != getattr(expected, k)]
    assert changed == list(SETTING_NAMES)  # the table really changes every setting


def test_load_generator_reads_the_run_and_writes_nothing(tmp_path):
    ck = tiny_run(tmp_path / "ck", "--context_slices", "1", "--input_nc", "3", "--residual")
    run = ck / "run"
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    generator = load_generator(run)
    assert generator.settings.context_slices == 1
    assert generator.settings.residual
    assert not generator.net.training
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    hu = np.random.default_rng(0).uniform(-1000, 1000, (3, 61, 75)).astype(np.float32)
    first = generator.predict(hu).hu
    assert first.shape == hu.shape
    np.testing.assert_array_equal(generator.predict(hu).hu, first)


def test_load_generator_reads_a_committed_but_unfinished_save(tmp_path):
    """A crash after the journal, before the rename: the staged weights are the checkpoint."""
    ck = tiny_run(tmp_path / "ck")
    run = ck / "run"
    original = torch.load(run / "latest_net_G.pth", weights_only=True)
    staged = {k: v + 1 if v.is_floating_point() else v for k, v in original.items()}
    torch.save(staged, run / ".latest_net_G.pth.abcd1234.tmp")
    (run / ".latest.commit.json").write_text(
        json.dumps({"latest_net_G.pth": ".latest_net_G.pth.abcd1234.tmp"}))
    generator = load_generator(run)
    loaded = generator.net.state_dict()
    assert all(torch.equal(loaded[k], staged[k]) for k in staged)
    assert (run / ".latest.commit.json").exists()  # nothing written


def test_an_opt_json_from_before_the_newer_settings_loads_and_predicts_the_same(tmp_path):
    """A run recorded before the working spacing, patches, phases and the residual gate
    existed (its opt.json lacks them) loads with their defaults and predicts the same bytes."""
    run = tiny_run(tmp_path / "ck") / "run"
    hu = np.random.default_rng(1).uniform(-1000, 1000, (3, 64, 64)).astype(np.float32)
    recorded = load_generator(run).predict(hu).hu
    newer = {"phase_input", "patch_size", "working_spacing_mm", "residual_gate_hu", "phases",
             "augment_intensity", "ema_decay", "residual", "context_slices", "amp"}
    saved = json.loads((run / "opt.json").read_text())
    (run / "opt.json").write_text(json.dumps({k: v for k, v in saved.items()
                                              if k not in newer}))
    earlier = load_generator(run)
    assert earlier.settings == GeneratorSettings.from_options(saved)
    assert earlier.predict(hu).hu.tobytes() == recorded.tobytes()


@pytest.mark.parametrize("broken", ["missing", "not json"])
def test_load_generator_without_readable_options_names_the_file(tmp_path, broken):
    run = tiny_run(tmp_path / "ck") / "run"
    if broken == "missing":
        (run / "opt.json").unlink()
    else:
        (run / "opt.json").write_text("{")
    with pytest.raises(ConfigError, match=r"run/opt\.json: cannot read the run's options"):
        load_generator(Path(run))


def test_options_that_no_longer_match_the_checkpoint_metadata_are_refused(tmp_path, caplog):
    """Another training's opt.json (here: --hu_max 1024) beside weights trained with 3071:
    test.py and predict.py refuse it naming both values and both files, with the metadata of
    this version and with older metadata (no ``generator_settings``)."""
    from tests.conftest import ct_like, write_nifti, write_pair_tree
    from tests.scripts.test_evaluate_predict import load_script
    from tests.test_test_outputs import _test_script
    from tests.test_train_resume import train_argv
    from train import main as train_main

    root, ck = tmp_path / "data", tmp_path / "ck"
    write_pair_tree(root, "train", {"t1": (64, 64, 2)})
    write_pair_tree(root, "test", {"s1": (64, 64, 2)})
    assert train_main(train_argv(root, ck, "run", "--n_epochs_decay", "0",
                                 "--max_dataset_size", "1")) == 0
    run = ck / "run"
    meta_path = run / "latest_metadata.json"
    assert json.loads(meta_path.read_text())["generator_settings"]["hu_max"] == 3071
    options = json.loads((run / "opt.json").read_text())
    (run / "opt.json").write_text(json.dumps(options | {"hu_max": 1024.0}))
    src = write_nifti(tmp_path / "avg.nii.gz", ct_like((64, 64, 2)))
    expected = f"--hu_max 3071.0 in {meta_path} but 1024.0 in {run / 'opt.json'}"
    for old_metadata in (False, True):
        if old_metadata:
            meta = json.loads(meta_path.read_text())
            del meta["generator_settings"]
            meta_path.write_text(json.dumps(meta))
        caplog.clear()
        assert _test_script().main(["--dataroot", str(root), "--checkpoints_dir", str(ck),
                                    "--name", "run", "--gpu_ids", "-1", "--results_dir",
                                    str(tmp_path / "results"), "--no_pictures",
                                    "--axial_slice"]) == 1
        assert expected in caplog.text, caplog.text
        caplog.clear()
        assert load_script("predict").main(["--name", "run", "--checkpoints_dir", str(ck),
                                            "--input", str(src), "--output",
                                            str(tmp_path / "out.nii.gz"),
                                            "--gpu_ids", "-1"]) == 1
        assert expected in caplog.text, caplog.text
    assert not (tmp_path / "out.nii.gz").exists()


def test_load_generator_without_metadata_warns_that_nothing_was_checked(tmp_path, caplog):
    run = tiny_run(tmp_path / "ck") / "run"
    load_generator(run)
    assert f"{run / 'latest_metadata.json'}: not found" in caplog.text
    assert "could not be checked" in caplog.text
