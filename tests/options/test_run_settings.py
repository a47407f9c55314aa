"""The parsed command line as the run's typed settings: the same value as its opt.json gives."""

import dataclasses
import json
from pathlib import Path

from models.settings import RunSettings
from options.base_options import option_defaults, options_to_json, run_settings
from options.test_options import TestOptions
from options.train_options import TrainOptions
from tests.tiny_runs import tiny_run
from util.settings import option_name


def base(tmp_path: Path) -> list[str]:
    return ["--dataroot", str(tmp_path / "d"), "--checkpoints_dir", str(tmp_path / "ck"),
            "--name", "run", "--gpu_ids", "-1"]


def parsed_runs(tmp_path: Path) -> dict[str, tuple[object, object]]:
    """{case: (options, parsed namespace)} of a training of slices, of patches and of pictures,
    and of a test of the slice training with ``--model test``."""
    runs = {}
    for case, flags in {"slices": ["--phases", "all", "--ema_decay", "0.9"],
                        "patches": ["--dataset_mode", "nifti_volume", "--netG", "unet3d_3",
                                    "--patch_size", "8", "16", "16"],
                        "pictures": ["--dataset_mode", "aligned", "--recipe", "pix2pix"]}.items():
        options = TrainOptions()
        runs[case] = options, options.parse([*base(tmp_path), *flags])
    tiny_run(tmp_path / "ck")
    options = TestOptions()
    runs["test"] = options, options.parse([*base(tmp_path), "--model", "test", "--num_test", "1"])
    return runs


def test_the_parsed_options_round_trip_through_json(tmp_path):
    for case, (_, opt) in parsed_runs(tmp_path).items():
        settings = run_settings(opt)
        written = settings.to_json()
        assert RunSettings.from_json(written) == settings, case
        recorded = options_to_json(opt)
        assert {k: v for k, v in written.items() if k in recorded} == \
            {k: v for k, v in recorded.items() if k in written}, case


def test_the_recorded_opt_json_gives_back_the_settings_of_the_command_line(tmp_path):
    options = TrainOptions()
    opt = options.parse([*base(tmp_path), "--lr", "0.001", "--max_dataset_size", "40"])
    options.record(opt)
    saved = json.loads((tmp_path / "ck" / "run" / "opt.json").read_text())
    assert RunSettings.from_json(saved) == run_settings(opt)
    assert run_settings(opt).schedule.lr == 0.001
    assert run_settings(opt).data.max_dataset_size == 40


def test_every_setting_is_an_option_of_train_py_or_test_py(tmp_path):
    options_seen = set()
    for _, opt in parsed_runs(tmp_path).values():
        options_seen |= set(vars(opt))
    sample = RunSettings.from_json({"dataroot": "d", "netG": "unet_64"})
    for part in dataclasses.fields(sample):
        names = {option_name(f) for f in dataclasses.fields(getattr(sample, part.name))}
        assert names <= options_seen, (part.name, names - options_seen)


def test_what_each_entry_point_sets_reaches_the_parts(tmp_path):
    runs = parsed_runs(tmp_path)
    trained = run_settings(runs["slices"][1])
    assert trained.run.is_train
    assert trained.data.is_train
    assert trained.data.phase_planes
    assert trained.generator.phase_input
    assert trained.data.avg_series is None  # training reads no DICOM folders
    assert trained.schedule.ema_decay == 0.9
    tested = run_settings(runs["test"][1])
    assert not tested.run.is_train
    assert (tested.run.model, tested.run.model_suffix, tested.data.num_test) == ("test", "", 1)
    assert tested.data.avg_series == "*AVG*"
    assert (tested.data.serial_batches, tested.data.no_flip) == (True, True)
    assert tested.generator.netG == "unet_64"  # adopted from the run's opt.json
    patches = run_settings(runs["patches"][1])
    assert patches.generator.patch_size == patches.data.patch_size == (8, 16, 16)


#: Settings whose default is not the parser's, and why: required (dataroot, netG), set by the
#: entry point (isTrain, phase_input), resolved (gpu_ids), None for "no DICOM folders"
#: (training has no such options), or re-defaulted by pix2pix (norm, gan_mode, pool_size) or
#: by training (amp) where the field keeps the option's own default.
DEFAULTS_THAT_DIFFER = {"dataroot", "netG", "isTrain", "phase_input", "gpu_ids", "avg_series",
                        "phase0_series", "norm", "gan_mode", "pool_size", "amp"}


def test_every_default_is_the_options_own_or_listed():
    parsers = [(TestOptions(), ["--model", "test"]),
               (TrainOptions(), ["--recipe", "pix2pix", "--dataset_mode", "nifti_volume"]),
               (TrainOptions(), ["--recipe", "pix2pix"])]
    defaults = {}
    for options, argv in parsers:  # the last wins: pix2pix training on slices
        defaults |= option_defaults(options.build_parser(argv))
    sample = RunSettings.from_json({"dataroot": "d", "netG": "unet_64"})
    differ = set()
    for part in dataclasses.fields(sample):
        for f in dataclasses.fields(getattr(sample, part.name)):
            default = (f.default_factory() if f.default is dataclasses.MISSING
                       and f.default_factory is not dataclasses.MISSING else f.default)
            parsed = defaults.get(option_name(f))
            if (tuple(parsed) if isinstance(parsed, list) else parsed) != default:
                differ.add(option_name(f))
    assert differ == DEFAULTS_THAT_DIFFER
