"""scripts/evaluate.py and scripts/predict.py: matching, refusals naming the file, HU outputs."""

import importlib.util
import json
import logging
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from models import create_model
from tests.conftest import LPS_AFFINE, RAS_AFFINE, ct_like, write_nifti
from tests.parsed import parsed_settings

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str):
    """``scripts/<name>.py`` as a module (registered in sys.modules, where its dataclasses
    look their module up)."""
    spec = importlib.util.spec_from_file_location(f"ct_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def evaluate():
    return load_script("evaluate")


def make_case(root: Path, pids=("p1", "p2"), shape=(16, 16, 8)) -> dict[str, np.ndarray]:
    truths = {}
    for k, pid in enumerate(pids):
        truth = ct_like(shape, seed=k)
        avg = truth.copy()
        avg[4:12, 4:12, 2:6] += 200.0
        write_nifti(root / "truth" / f"{pid}.nii.gz", truth)
        write_nifti(root / "avg" / f"{pid}.nii.gz", avg)
        write_nifti(root / "pred" / f"{pid}_fake_B.nii.gz", truth + 10.0)
        truths[pid] = truth
    return truths


def argv(root: Path, *extra: str) -> list[str]:
    return ["--pred", str(root / "pred"), "--truth", str(root / "truth"), "--avg",
            str(root / "avg"), *extra]


def test_scores_every_patient_model_against_baseline(tmp_path, evaluate, capsys):
    make_case(tmp_path)
    # 0.9 mm pixels, 3 mm slices: a 0.9 mm margin adds one voxel across each in-plane face
    assert evaluate.main(argv(tmp_path, "--motion_margin_mm", "0.9")) == 0
    data = json.loads((tmp_path / "pred" / "evaluation" / "metrics.json").read_text())
    assert set(data["patients"]) == {"p1", "p2"}
    assert data["summary"]["model"]["whole"]["mae_hu"]["mean"] == pytest.approx(10.0, abs=0.01)
    assert data["summary"]["model"]["whole"]["bias_hu"]["mean"] == pytest.approx(10.0, abs=0.01)
    motion = data["summary"]["improvement"]["motion"]["mae_hu"]["mean"]
    # AVG 200 HU off in the 8x8x4 block, 0 in its margin ((10 x 10 - 4 corners) x 4 slices);
    # the model 10 everywhere
    assert motion == pytest.approx(200.0 * 8 * 8 * 4 / ((10 * 10 - 4) * 4) - 10.0, abs=0.01)
    assert data["patients"]["p1"]["region_ml"]["motion"] == pytest.approx(
        (10 * 10 - 4) * 4 * 0.9 * 0.9 * 3.0 / 1000)
    out = capsys.readouterr().out
    assert "verdict: in the motion region the model is better than the AVG" in out


def test_without_avg_there_is_no_baseline_and_no_motion_region(tmp_path, evaluate):
    make_case(tmp_path)
    out = tmp_path / "scores"
    assert evaluate.main([*argv(tmp_path)[:4], "--out", str(out)]) == 0
    data = json.loads((out / "metrics.json").read_text())
    assert data["patients"]["p1"]["baseline"] is None
    assert set(data["patients"]["p1"]["model"]) == {"whole", "body"}


def test_missing_predictions_are_all_listed(tmp_path, evaluate, caplog):
    make_case(tmp_path, pids=("p1", "p2", "p3"))
    (tmp_path / "pred" / "p2_fake_B.nii.gz").unlink()
    (tmp_path / "pred" / "p3_fake_B.nii.gz").unlink()
    with caplog.at_level(logging.ERROR):
        assert evaluate.main(argv(tmp_path)) == 1
    assert "p2: no prediction" in caplog.text
    assert "p3: no prediction" in caplog.text
    assert not (tmp_path / "pred" / "evaluation").exists()


def test_misaligned_prediction_is_refused_naming_both_files(tmp_path, evaluate, caplog):
    make_case(tmp_path)
    pred = tmp_path / "pred" / "p1_fake_B.nii.gz"
    write_nifti(pred, nib.load(pred).get_fdata(), LPS_AFFINE)
    with caplog.at_level(logging.ERROR):
        assert evaluate.main(argv(tmp_path)) == 1
    assert "p1_fake_B.nii.gz" in caplog.text
    assert "truth/p1.nii.gz" in caplog.text
    assert "origin differs by 237.2 mm" in caplog.text


def test_prediction_in_network_units_is_refused(tmp_path, evaluate, caplog):
    truths = make_case(tmp_path)
    unit = np.clip((truths["p2"] + 1024) / 4095 * 2 - 1, -1, 1).astype(np.float32)
    write_nifti(tmp_path / "pred" / "p2_fake_B.nii.gz", unit, RAS_AFFINE, np.float32)
    with caplog.at_level(logging.ERROR):
        assert evaluate.main(argv(tmp_path)) == 1
    assert "p2_fake_B.nii.gz: values span [-0.9" in caplog.text
    assert "not HU" in caplog.text


def _trained_run(tmp_path: Path) -> Path:
    ck = tmp_path / "ck"
    settings = parsed_settings("--dataroot", str(tmp_path), "--checkpoints_dir", str(ck),
                               "--name", "run", "--netG", "unet_64", "--ngf", "8", "--norm",
                               "instance", "--axial_slice", "--gpu_ids", "-1", "--recipe",
                               "pix2pix", record=True)
    create_model(settings).save_networks("latest")
    return ck


def test_predict_writes_hu_with_the_source_geometry_and_storage(tmp_path):
    predict = load_script("predict")
    ck = _trained_run(tmp_path)
    hu = ct_like((64, 64, 5))
    src = write_nifti(tmp_path / "in" / "avg.nii.gz", hu, LPS_AFFINE, np.uint16, 1.0, -1024.0)
    before = src.read_bytes()
    out = tmp_path / "out" / "phase0.nii.gz"
    assert predict.main(["--name", "run", "--checkpoints_dir", str(ck), "--input", str(src),
                         "--output", str(out), "--gpu_ids", "-1", "--eval"]) == 0
    img = nib.load(out)
    assert img.shape == hu.shape
    np.testing.assert_allclose(img.affine, LPS_AFFINE, atol=1e-6)
    assert img.get_data_dtype() == np.uint16
    values = img.get_fdata()
    assert values.min() >= -1024
    assert values.max() <= 3071
    assert src.read_bytes() == before


def test_predict_refuses_to_overwrite_its_input(tmp_path, caplog):
    predict = load_script("predict")
    src = write_nifti(tmp_path / "avg.nii.gz", ct_like((64, 64, 3)))
    before = src.read_bytes()
    with caplog.at_level(logging.ERROR):
        assert predict.main(["--name", "run", "--input", str(src), "--output", str(src)]) == 1
    assert "is the input" in caplog.text
    assert src.read_bytes() == before


def test_test_py_outputs_match_truths_whose_ids_have_unsafe_characters(tmp_path, evaluate):
    make_case(tmp_path, pids=("PT 1", "PT2"))
    (tmp_path / "pred" / "PT 1_fake_B.nii.gz").rename(tmp_path / "pred" / "PT_1_fake_B.nii.gz")
    write_nifti(tmp_path / "pred" / "PT2_fake_B_std.nii.gz", np.zeros((16, 16, 8)),
                dtype=np.float32)  # a --samples std volume is not a prediction
    assert evaluate.main(argv(tmp_path)) == 0
    data = json.loads((tmp_path / "pred" / "evaluation" / "metrics.json").read_text())
    assert set(data["patients"]) == {"PT 1", "PT2"}


def test_two_truths_matching_one_prediction_are_refused_naming_both(tmp_path, evaluate, caplog):
    make_case(tmp_path, pids=("PT 1", "PT_1"))
    (tmp_path / "pred" / "PT 1_fake_B.nii.gz").unlink()
    with caplog.at_level(logging.ERROR):
        assert evaluate.main(argv(tmp_path)) == 1
    assert f"{tmp_path / 'truth' / 'PT 1.nii.gz'} and {tmp_path / 'truth' / 'PT_1.nii.gz'}" \
        in caplog.text
    assert "PT_1_fake_B.nii.gz" in caplog.text
    assert not (tmp_path / "pred" / "evaluation").exists()


def test_structure_masks_give_the_centre_of_mass_error_in_mm(tmp_path, evaluate):
    """A bright cube moved by 2 voxels along i in the prediction: 2 x 0.9 mm (RAS_AFFINE)."""
    shape = (20, 20, 8)
    base = np.full(shape, 40.0, dtype=np.float32)
    truth, pred = base.copy(), base.copy()
    truth[6:10, 6:10, 2:6] = 400.0
    pred[8:12, 6:10, 2:6] = 400.0
    write_nifti(tmp_path / "truth" / "p1.nii.gz", truth)
    write_nifti(tmp_path / "pred" / "p1_fake_B.nii.gz", pred)
    write_nifti(tmp_path / "avg" / "p1.nii.gz", truth)
    write_nifti(tmp_path / "masks" / "GTV" / "p1.nii.gz", (truth > 200).astype(np.float32),
                dtype=np.uint8)
    assert evaluate.main([*argv(tmp_path), "--structures", str(tmp_path / "masks")]) == 0
    scores = json.loads((tmp_path / "pred" / "evaluation" / "metrics.json").read_text())
    gtv = scores["patients"]["p1"]["geometry"]
    assert gtv["model"]["structures"]["GTV"]["com_error_mm"] == pytest.approx(1.8, abs=1e-6)
    assert gtv["baseline"]["structures"]["GTV"]["com_error_mm"] == pytest.approx(0.0, abs=1e-6)
