"""inference.pipeline: the settings values, the refusals written once for both entry points, and
a writer that writes what the paths ask and nothing else."""

from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from data.ct_volumes import SeriesChoice, load_dicom_stack, load_slice_stack
from inference.pipeline import (
    InferencePipeline,
    OutputPaths,
    PhaseRequest,
    PredictSettings,
    RunChoice,
    check_series_source,
    load_pipeline,
    refuse_nifti_inputs,
)
from inference.results_folder import patient_paths
from models.settings import GeneratorSettings
from models.trained_run import TrainedGenerator, build_generator
from tests.conftest import OBLIQUE_AFFINE, ct_like, write_nifti
from tests.data.test_dicom_io import ct_hu, write_ct_series
from tests.test_dicom_outputs import SWAPPED
from tests.tiny_runs import dropout_and_plain_runs
from util.errors import ConfigError, DataError
from util.phases import STANDARD_PHASES


@pytest.mark.parametrize(("text", "phases"), [
    ("", ()), ("  ", ()), (" all ", STANDARD_PHASES), ("50,0", (0.0, 50.0)), ("50", (50.0,))])
def test_a_phase_request_keeps_the_text_and_the_phases(text, phases):
    request = PhaseRequest.parse(text)
    assert request.phases == phases
    assert request.text == text.strip()


def test_a_phase_request_naming_no_phase_is_refused():
    with pytest.raises(ConfigError, match="--phases takes 'all' or percentages"):
        PhaseRequest.parse("0,x")


def test_settings_refuse_fewer_than_one_sample():
    with pytest.raises(ConfigError, match=r"^--samples must be at least 1, got 0$"):
        PredictSettings(samples=0)
    assert PredictSettings(samples=3).cycle == PhaseRequest()


def test_a_run_choice_names_its_folder_device_and_label():
    run = RunChoice(Path("ck"), "ct_phase0", "best")
    assert run.run_dir == Path("ck") / "ct_phase0"
    assert run.device == torch.device("cpu")
    assert run.label == "ct_phase0 best"
    assert RunChoice(Path("ck"), "r", gpu_ids=(1, 0)).device == torch.device("cuda:1")


def test_nifti_inputs_of_dicom_output_are_refused_in_one_sentence():
    refuse_nifti_inputs([], "anything")  # nothing to refuse
    with pytest.raises(ConfigError) as single:
        refuse_nifti_inputs([Path("a.nii.gz")], "the folder of the AVG series", option="--input")
    assert str(single.value) == (
        "--output_format dicom needs a DICOM input series, but --input a.nii.gz is a file "
        "(NIfTI), which has no patient, study or frame of reference to place a derived series "
        "in; give the folder of the AVG series, or --output_format nifti")
    with pytest.raises(ConfigError) as several:
        refuse_nifti_inputs([Path(f"p{k}.nii.gz") for k in range(4)], "DICOM folders")
    assert str(several.value).startswith(
        "--output_format dicom needs DICOM input series, but 4 input(s) are NIfTI files "
        "(p0.nii.gz, p1.nii.gz, p2.nii.gz ...), which have no patient")


def test_a_series_without_frame_of_reference_is_refused_naming_its_folder():
    check_series_source(None)  # a NIfTI input: nothing to check
    check_series_source(SimpleNamespace(frame_of_reference_uid="1.2", study_uid="1.3",
                                        folder=Path("ok")))
    for uids in (("", "1.3"), ("1.2", "")):
        source = SimpleNamespace(frame_of_reference_uid=uids[0], study_uid=uids[1],
                                 folder=Path("export") / "PT1")
        with pytest.raises(DataError, match=r"^export/PT1: the input series has no "
                                            r"FrameOfReferenceUID or StudyInstanceUID"):
            check_series_source(source)


def _pipeline(settings: PredictSettings, **architecture) -> InferencePipeline:
    """An untrained unet_64 (ngf 4) on the CPU, in memory."""
    torch.manual_seed(0)
    generator_settings = GeneratorSettings(netG="unet_64", ngf=4, **architecture)
    generator = TrainedGenerator(build_generator(generator_settings).eval(), generator_settings,
                                 Path("ck/run/latest_net_G.pth"), torch.device("cpu"))
    return InferencePipeline(generator, settings, None, "run latest")


@pytest.fixture
def avg(tmp_path):
    """An oblique int16 AVG of 64 x 64 x 3 as a slice stack."""
    return load_slice_stack(write_nifti(tmp_path / "avg.nii.gz", ct_like((64, 64, 3)),
                                        OBLIQUE_AFFINE))


def test_only_the_outputs_the_paths_name_are_written(tmp_path, avg):
    pipeline = _pipeline(PredictSettings(samples=2, seed=1))
    prediction = pipeline.predict(avg)
    assert prediction.phase0.std_hu is not None
    assert prediction.cycle is None
    out = tmp_path / "out"
    written = pipeline.write(prediction, avg, OutputPaths(volume=out / "p0.nii.gz"))
    assert sorted(p.name for p in out.iterdir()) == ["p0.nii.gz"]  # no std asked: none
    assert (written.volume, written.series, written.field_figures) == (out / "p0.nii.gz", None,
                                                                       None)
    assert written.volume_file() == out / "p0.nii.gz"
    written = pipeline.write(prediction, avg, OutputPaths(std=out / "std.nii.gz",
                                                          field=out / "field.nii.gz"))
    std = nib.load(out / "std.nii.gz")
    assert std.get_data_dtype() == np.float32
    np.testing.assert_allclose(std.affine, OBLIQUE_AFFINE, atol=1e-6)
    assert not (out / "field.nii.gz").exists()  # not a motion generator: no field to write
    assert written.volume is None
    with pytest.raises(RuntimeError, match="no phase-0 NIfTI volume"):
        written.volume_file()


def test_a_cycle_is_written_where_the_paths_say_and_phase_0_is_the_volume(tmp_path, avg):
    pipeline = _pipeline(PredictSettings(cycle=PhaseRequest.parse("0,50")), input_nc=3,
                         phase_input=True)
    prediction = pipeline.predict(avg)
    assert prediction.cycle is not None
    assert prediction.cycle.phases[0.0] is prediction.phase0
    paths = patient_paths(tmp_path, "p1", (0.0, 50.0))
    written = pipeline.write(prediction, avg, paths)
    assert sorted(p.name for p in (tmp_path / "volumes").iterdir()) == [
        "p1_fake_B.nii.gz", "p1_fake_B_mean.nii.gz", "p1_fake_B_mip.nii.gz",
        "p1_fake_B_p50.nii.gz"]
    assert written.cycle_volumes == {50.0: tmp_path / "volumes" / "p1_fake_B_p50.nii.gz",
                                     "mip": tmp_path / "volumes" / "p1_fake_B_mip.nii.gz",
                                     "mean": tmp_path / "volumes" / "p1_fake_B_mean.nii.gz",
                                     0.0: paths.volume}
    phases = [nib.load(written.cycle_volumes[p]).get_fdata() for p in (0.0, 50.0)]
    np.testing.assert_allclose(nib.load(written.cycle_volumes["mean"]).get_fdata(),
                               np.mean(phases, axis=0), atol=1.0)


def test_series_are_written_with_the_label_and_the_offsets_of_the_cycle(tmp_path):
    write_ct_series(tmp_path / "src", ct_hu(SWAPPED), SWAPPED)  # SeriesNumber 3
    stack = load_dicom_stack(tmp_path / "src", SeriesChoice("*", "--avg_series"))
    pipeline = _pipeline(PredictSettings(cycle=PhaseRequest.parse("0,50")), input_nc=3,
                         phase_input=True)
    paths = patient_paths(tmp_path / "res", "PT1", (0.0, 50.0), dicom=True,
                          series_description="AVG")
    written = pipeline.write(pipeline.predict(stack), stack, paths)
    assert written.series == tmp_path / "res" / "dicom" / "PT1"
    found = {}
    for folder in sorted((tmp_path / "res" / "dicom").iterdir()):
        ds = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)
        found[folder.name] = (int(ds.SeriesNumber), str(ds.SeriesDescription))
    assert found == {"PT1": (1003, "SYNTHETIC AVG (pix2pix run latest)"),
                     "PT1_p50": (1053, "SYNTHETIC phase 50 % (pix2pix run latest)"),
                     "PT1_mip": (1103, "SYNTHETIC MIP of phases 0, 50 % (pix2pix run latest)"),
                     "PT1_mean": (1104, "SYNTHETIC mean of phases 0, 50 % (pix2pix run latest)")}


def test_a_nifti_source_has_no_series_to_write_beside(tmp_path, avg):
    pipeline = _pipeline(PredictSettings())
    with pytest.raises(RuntimeError, match="the input is not a DICOM series"):
        pipeline.write(pipeline.predict(avg), avg, OutputPaths(series=tmp_path / "s"))


def test_loading_refuses_samples_without_dropout_and_phases_of_a_phase_0_run(tmp_path):
    runs = dropout_and_plain_runs(tmp_path / "ck")
    before = sorted(runs.rglob("*"))
    pipeline = load_pipeline(RunChoice(runs, "run"), PredictSettings(samples=2))
    assert pipeline.label == "run latest"
    assert not pipeline.motion
    with pytest.raises(ConfigError, match="has no dropout"):
        load_pipeline(RunChoice(runs, "plain"), PredictSettings(samples=2))
    with pytest.raises(ConfigError, match=r"^--phases all: .*latest_net_G.pth was trained on "
                                          r"phase 0 alone \(without --phases\)"):
        load_pipeline(RunChoice(runs, "plain"), PredictSettings(cycle=PhaseRequest.parse("all")))
    assert sorted(runs.rglob("*")) == before  # the run folders are only read
