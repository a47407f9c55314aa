"""test.py with DICOM: patient folders of DICOM series in testA/ (the AVG picked among several by
--avg_series) and their truth in testB/ (DICOM, or NIfTI of the same name), the prediction also
written as dicom/<patient>/ series registered with the input (--output_format dicom), the same
prediction as from NIfTI copies, earlier series replaced or removed, and one-line refusals that
write nothing. The DICOM cases and checks here are shared with tests/scripts/test_predict_dicom.py:
series written with pydicom (LPS, oblique, odd sides and slice count, non-trivial rescale) and
what a derived series must be against its source."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pydicom
import pytest

from data.ct_volumes import slice_stack
from data.dicom_io import load_series, read_series
from data.nifti_io import Volume, save_volume
from models.trained_run import load_generator
from tests.data.test_dicom_io import (
    GEOMETRIES,
    ORIENTATIONS,
    Spec,
    ct_hu,
    sitk_reading,
    write_ct_series,
)
from tests.tiny_runs import REPO, load_script, tiny_run
from util.geometry import from_slice_stack

#: Oblique (rotated 20 deg about z, then 10 deg about x), 9 x 7 pixels, 5 slices of 2 mm,
#: int16 stored with slope 0.5 and intercept -1000.
OBLIQUE = Spec(shape=(9, 7, 5), orientation=ORIENTATIONS["oblique"], slope=0.5, inter=-1000.0,
               step_mm=2.0, pixel_spacing=(0.8, 0.7))
#: Rows and columns swapped (slice normal -z: slices stored head to feet), 8 x 9 pixels (SSIM's
#: 7 x 7 window fits), 7 slices, 12-bit unsigned with intercept -1024.
SWAPPED = replace(GEOMETRIES["swapped_uint12"], shape=(8, 9, 7))


def expected_prediction(run_dir: Path, vol: Volume) -> np.ndarray:
    """What the run's generator predicts for ``vol``: (I, J, K) float32 HU, on its grid."""
    generator = load_generator(run_dir, "latest")
    return from_slice_stack(generator.predict(slice_stack(vol).hu).hu, vol.affine)


def _positions(folder: Path) -> dict[str, list[float]]:
    """{SOPInstanceUID: IPP (LPS mm)} of the files in ``folder``."""
    found = {}
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found[str(ds.SOPInstanceUID)] = [float(v) for v in ds.ImagePositionPatient]
    return found


def check_derived_series(out: Path, src: Path, expected_hu: np.ndarray, slope: float,
                         description: str) -> None:
    """``out`` holds a derived series of the one series in ``src``: ``expected_hu`` within half
    the rescale step, every slice at the position of the source slice it names, the same grid
    for SimpleITK, the source's patient, study and frame of reference, UIDs none of the
    source's, and ``description`` as SeriesDescription."""
    source = load_series(src).source
    back = load_series(out)
    np.testing.assert_allclose(back.volume.hu, expected_hu, atol=slope / 2 + 1e-3)
    assert back.source.geometry == source.geometry
    assert back.source.storage == source.storage
    src_positions = _positions(src)
    referenced = []
    for path in sorted(out.iterdir()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        ref = str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID)
        referenced.append(ref)
        assert [float(v) for v in ds.ImagePositionPatient] == src_positions[ref]
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.SeriesDescription == description
    assert sorted(referenced) == sorted(src_positions)  # each source slice once
    assert (back.source.study_uid, back.source.frame_of_reference_uid,
            back.source.patient_id) == (source.study_uid, source.frame_of_reference_uid,
                                        source.patient_id)
    source_uids = {source.series_uid, source.study_uid, source.frame_of_reference_uid,
                   *source.sop_instance_uids}
    assert back.source.series_uid not in source_uids
    assert not set(back.source.sop_instance_uids) & source_uids
    out_hu, out_affine = sitk_reading(out)
    _, src_affine = sitk_reading(src)
    np.testing.assert_allclose(out_affine, src_affine, atol=1e-6)
    np.testing.assert_array_equal(out_hu, back.volume.hu)


def tree(root: Path) -> list[str]:
    """Every file and folder under ``root``, relative, sorted (what a refusal must not change)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def one_line_error(caplog: pytest.LogCaptureFixture) -> str:
    """The one error logged (a single line); fails otherwise."""
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "\n" not in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """test.py as a module (the name ``test`` is taken by Python's own test package)."""
    return load_script("test.py", "ct_test_script")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """checkpoints/plain: an untrained unet_64 without dropout."""
    return tiny_run(tmp_path_factory.mktemp("ck"), "--no_dropout", name="plain")


def argv(root: Path, runs: Path, results: Path, *extra: str) -> list[str]:
    return ["--dataroot", str(root), "--checkpoints_dir", str(runs), "--name", "plain",
            "--model", "pix2pix", "--dataset_mode", "nifti_aligned", "--axial_slice",
            "--gpu_ids", "-1", "--results_dir", str(results), "--no_pictures", *extra]


def export(folder: Path, seed: int = 0) -> Path:
    """A patient export with three CT series of OBLIQUE (AVG, MIP, CT Gated 0.0A), one study
    and frame of reference; returns ``folder``."""
    for k, description in enumerate(["AVG", "MIP", "CT Gated 0.0A"]):
        write_ct_series(folder / description.replace(" ", "_"), ct_hu(OBLIQUE, seed=seed + k),
                        OBLIQUE, description=description, seed=seed + k)
    return folder


def dataroot(root: Path) -> Path:
    """testA/PT1/: an export of three series, its truth testB/PT1/ the same export (phase 0
    picked by description); testA/PT2/: one SWAPPED series, its truth testB/PT2.nii.gz."""
    export(root / "testA" / "PT1")
    shutil.copytree(root / "testA" / "PT1", root / "testB" / "PT1")
    write_ct_series(root / "testA" / "PT2", ct_hu(SWAPPED, seed=7), SWAPPED)
    avg = read_series(root / "testA" / "PT2")
    save_volume(avg.hu + 40, avg, root / "testB" / "PT2.nii.gz")
    return root


def test_dicom_patients_in_derived_series_out(tmp_path, script, runs, capsys):
    root = dataroot(tmp_path / "data")
    assert script.main(argv(root, runs, tmp_path / "res", "--output_format", "dicom")) == 0
    out = tmp_path / "res" / "plain" / "test_latest"
    assert sorted(p.name for p in (out / "dicom").iterdir()) == ["PT1", "PT2"]
    for pid, src, slope in (("PT1", root / "testA" / "PT1" / "AVG", OBLIQUE.slope),
                            ("PT2", root / "testA" / "PT2", SWAPPED.slope)):
        expected = expected_prediction(runs / "plain", read_series(src))
        check_derived_series(out / "dicom" / pid, src, expected, slope,
                             "SYNTHETIC phase 0 (pix2pix plain latest)")
        volume = nib.load(out / "volumes" / f"{pid}_fake_B.nii.gz")  # scored, same HU
        np.testing.assert_array_equal(volume.get_fdata(), read_series(out / "dicom" / pid).hu)
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics["patients"]) == ["PT1", "PT2"]
    avg, truth = (read_series(root / "testA" / "PT1" / s).hu for s in ("AVG", "CT_Gated_0.0A"))
    assert metrics["patients"]["PT1"]["baseline"]["whole"]["mae_hu"] == \
        pytest.approx(float(np.abs(avg - truth).mean()), rel=1e-5)  # truth: the Gated 0.0A
    assert metrics["patients"]["PT2"]["baseline"]["whole"]["mae_hu"] == pytest.approx(40.0)
    assert "DICOM series: " in capsys.readouterr().out


def test_nifti_and_dicom_copies_give_the_same_prediction(tmp_path, script, runs):
    write_ct_series(tmp_path / "dicom" / "testA" / "PT1", ct_hu(OBLIQUE, seed=2), OBLIQUE)
    vol = read_series(tmp_path / "dicom" / "testA" / "PT1")
    save_volume(vol.hu, vol, tmp_path / "nifti" / "testA" / "PT1.nii.gz")
    volumes = {}
    for kind in ("dicom", "nifti"):
        assert script.main(argv(tmp_path / kind, runs, tmp_path / f"res_{kind}")) == 0
        volumes[kind] = nib.load(tmp_path / f"res_{kind}" / "plain" / "test_latest" / "volumes"
                                 / "PT1_fake_B.nii.gz")
    np.testing.assert_array_equal(volumes["dicom"].get_fdata(), volumes["nifti"].get_fdata())
    np.testing.assert_allclose(volumes["dicom"].affine, vol.affine, atol=1e-4)
    assert np.ptp(volumes["dicom"].get_fdata()) > 0


def test_series_of_an_earlier_run_are_replaced_or_removed(tmp_path, script, runs):
    root = tmp_path / "data"
    for pid, seed in (("PT1", 0), ("PT2", 1)):
        write_ct_series(root / "testA" / pid, ct_hu(SWAPPED, seed=seed), SWAPPED, seed=seed)
    dicom = tmp_path / "res" / "plain" / "test_latest" / "dicom"
    args = argv(root, runs, tmp_path / "res", "--output_format", "dicom")
    assert script.main(args) == 0
    first = read_series(dicom / "PT1")
    first_uid = pydicom.dcmread(next((dicom / "PT1").iterdir())).SeriesInstanceUID
    (dicom / "notes").mkdir()
    (dicom / "notes" / "mine.txt").write_text("kept")
    (dicom / ".PT2.ab12cd_3.tmp").mkdir()  # left by a write that was killed
    (dicom / ".PT2.ab12cd_3.tmp" / "CT_0001.dcm").write_bytes(b"half")
    shutil.rmtree(root / "testA" / "PT2")
    assert script.main(args) == 0
    assert sorted(p.name for p in dicom.iterdir()) == ["PT1", "notes"]
    np.testing.assert_array_equal(read_series(dicom / "PT1").hu, first.hu)  # same prediction,
    assert pydicom.dcmread(next((dicom / "PT1").iterdir())).SeriesInstanceUID != first_uid  # new
    assert script.main(argv(root, runs, tmp_path / "res")) == 0  # NIfTI only: series removed
    assert sorted(p.name for p in dicom.iterdir()) == ["notes"]
    shutil.rmtree(dicom / "notes")
    assert script.main(argv(root, runs, tmp_path / "res")) == 0
    assert not dicom.exists()


def _refusal(script: ModuleType, caplog: pytest.LogCaptureFixture, args: list[str],
             root: Path) -> str:
    """The one-line message of a refused run, checking that nothing under ``root`` changed."""
    before = tree(root)
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert script.main(args) == 1
    assert tree(root) == before
    return one_line_error(caplog)


def test_dicom_output_is_refused_for_nifti_inputs(tmp_path, script, runs, caplog):
    root = tmp_path / "data"
    write_ct_series(root / "testA" / "PT1", ct_hu(SWAPPED), SWAPPED)
    vol = read_series(root / "testA" / "PT1")
    save_volume(vol.hu, vol, root / "testA" / "PT2.nii.gz")
    message = _refusal(script, caplog, argv(root, runs, tmp_path / "res", "--output_format",
                                            "dicom"), tmp_path)
    assert message == (f"--output_format dicom needs DICOM input series, but 1 input(s) are "
                       f"NIfTI files ({root / 'testA' / 'PT2.nii.gz'}), which have no patient, "
                       f"study or frame of reference to place a derived series in; give "
                       f"<phase>A/<patient>/ DICOM folders, or --output_format nifti")


def _several(folder: Path) -> None:
    export(folder)


def _missing_slice(folder: Path) -> None:
    files = write_ct_series(folder, ct_hu(OBLIQUE), OBLIQUE)
    files[2].unlink()


def _with_nifti(folder: Path) -> None:
    write_ct_series(folder, ct_hu(OBLIQUE), OBLIQUE)
    save_volume(read_series(folder).hu, read_series(folder), folder / "avg.nii.gz")


def _same_id(folder: Path) -> None:
    write_ct_series(folder, ct_hu(OBLIQUE), OBLIQUE)
    save_volume(read_series(folder).hu, read_series(folder), folder.with_suffix(".nii.gz"))


def _loose(folder: Path) -> None:
    write_ct_series(folder.parent, ct_hu(OBLIQUE), OBLIQUE)


@pytest.mark.parametrize(("make", "extra", "expected"), [
    (_several, ("--avg_series", "*4D*"),
     "1 of 1 patients cannot be used: {a}: no series description matches '*4D*' "
     "(case-insensitive); series found: 'AVG' (CT, 5 files"),
    (_several, ("--avg_series", "*"), "{a}: 3 series descriptions match '*': "),
    (_missing_slice, (), "1 of 1 patients cannot be used: {a}: missing slices: a gap of 4 mm"),
    (_with_nifti, (), "{a}: holds both DICOM files and NIfTI volumes (e.g. avg.nii.gz); keep "
                      "one kind per patient folder"),
    (_same_id, (), "{a}: same patient id 'PT1' as {a}.nii.gz"),
    (_loose, (), "{a_parent}: 5 DICOM files lie directly in this folder"),
    (_several, ("--volume_cache", "2"), "{a}: a DICOM series folder; --volume_cache reads NIfTI "
                                        "files only"),
])
def test_refusals_name_the_folder_and_write_nothing(tmp_path, script, runs, caplog, make, extra,
                                                    expected):
    root = tmp_path / "data"
    folder = root / "testA" / "PT1"
    make(folder)
    message = _refusal(script, caplog, argv(root, runs, tmp_path / "res", *extra), tmp_path)
    assert expected.format(a=folder, a_parent=folder.parent) in message
    if "series found" in expected or "descriptions match" in expected:
        assert message.endswith("choose the series with --avg_series PATTERN")


def test_a_truth_folder_whose_phase_0_cannot_be_picked_is_refused(tmp_path, script, runs,
                                                                  caplog):
    root = tmp_path / "data"
    export(root / "testA" / "PT1")
    export(root / "testB" / "PT1", seed=5)
    message = _refusal(script, caplog, argv(root, runs, tmp_path / "res", "--phase0_series",
                                            "*Gated 50.0A*"), tmp_path)
    assert message.startswith(f"1 of 1 patients cannot be used: {root / 'testB' / 'PT1'}: no "
                              f"series description matches '*Gated 50.0A*'")
    assert message.endswith("choose the series with --phase0_series PATTERN")


@pytest.mark.slow
def test_the_dicom_demo_runs_end_to_end(tmp_path):
    """scripts/run_dicom_demo.sh: synthetic DICOM export -> prepare_dataset.py -> train.py ->
    test.py --output_format dicom -> the series read back on the source's geometry."""
    env = os.environ | {"PYTHON": sys.executable, "WORK": str(tmp_path / "work"),
                        "DATASET": str(tmp_path / "dataset"),
                        "CHECKPOINTS": str(tmp_path / "checkpoints"),
                        "RESULTS": str(tmp_path / "results"), "OMP_NUM_THREADS": "2"}
    done = subprocess.run(["bash", "scripts/run_dicom_demo.sh"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    assert ": NO" not in done.stdout
    assert "geometry equals the source's" in done.stdout
    assert "SimpleITK: size (64, 64, 16)" in done.stdout
    out_root = tmp_path / "results" / "dicom_demo" / "test_best"
    (out,) = sorted((out_root / "dicom").iterdir())  # one test patient of six
    source = load_series(tmp_path / "work" / "res_avg" / out.name / f"{out.name}_AVG").source
    back = load_series(out).source
    assert back.geometry == source.geometry
    assert (back.study_uid, back.frame_of_reference_uid) == (source.study_uid,
                                                             source.frame_of_reference_uid)
    assert back.series_description == "SYNTHETIC phase 0 (pix2pix dicom_demo best)"
    metrics = json.loads((out_root / "metrics.json").read_text())
    assert list(metrics["patients"]) == [out.name]


def test_every_volume_of_the_cycle_is_a_series_with_its_own_number(tmp_path, script):
    """--phases with --output_format dicom: every phase, the MIP and the mean are derived series
    (not NIfTI alone), each with its own SeriesNumber and a description saying what it is; the
    mean of fewer phases than the cycle is named ``mean``, not ``avg``."""
    runs = tiny_run(tmp_path / "ck", "--no_dropout", "--phases", "all", "--input_nc", "3",
                    name="cycle")
    root = tmp_path / "data"
    write_ct_series(root / "testA" / "PT1", ct_hu(SWAPPED), SWAPPED)  # SeriesNumber 3
    args = ["--dataroot", str(root), "--checkpoints_dir", str(runs), "--name", "cycle",
            "--dataset_mode", "nifti_aligned", "--axial_slice", "--gpu_ids", "-1",
            "--results_dir", str(tmp_path / "res"), "--no_pictures", "--output_format", "dicom",
            "--phases", "0,50"]
    assert script.main(args) == 0
    out = tmp_path / "res" / "cycle" / "test_latest"
    numbers = {}
    for name, description in (("PT1", "phase 0"), ("PT1_p50", "phase 50 %"),
                              ("PT1_mip", "MIP of phases 0, 50 %"),
                              ("PT1_mean", "mean of phases 0, 50 %")):
        files = sorted((out / "dicom" / name).iterdir())
        assert len(files) == SWAPPED.shape[2]
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        assert ds.SeriesDescription == f"SYNTHETIC {description} (pix2pix cycle latest)"
        numbers[name] = int(ds.SeriesNumber)
        suffix = name.removeprefix("PT1")
        volume = nib.load(out / "volumes" / f"PT1_fake_B{suffix}.nii.gz")
        np.testing.assert_allclose(read_series(out / "dicom" / name).hu, volume.get_fdata(),
                                   atol=SWAPPED.slope / 2)
    assert numbers == {"PT1": 1003, "PT1_p50": 1053, "PT1_mip": 1103, "PT1_mean": 1104}
    assert not (out / "volumes" / "PT1_fake_B_avg.nii.gz").exists()
    args[args.index("0,50")] = "0"  # phase 0 alone: the cycle's series and files of the
    assert script.main(args) == 0  # first run go (they would pass for this run's)
    assert sorted(p.name for p in (out / "dicom").iterdir()) == ["PT1"]
    assert sorted(p.name for p in (out / "volumes").iterdir()) == ["PT1_fake_B.nii.gz"]
