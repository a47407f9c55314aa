"""The whole pipeline through its command lines, with the first user's commands verbatim.

synthetic 4DCT -> prepare_dataset.py -> train.py -> test.py, in a scratch folder; the epoch and
slice counts are shortened by flags appended to the commands.
"""

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import LPS_AFFINE, OBLIQUE_AFFINE, RAS_AFFINE, ct_like, write_nifti
from tests.tiny_runs import run_command as run

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
DATAROOT = "./datasets/ct_phases_dataset"
SEED_TRAIN = ("python train.py --dataroot ./datasets/ct_phases_dataset --name ct_phase0_generator "
              "--model pix2pix --dataset_mode nifti_aligned --preprocess none --input_nc 1 "
              "--output_nc 1 --axial_slice --norm instance --batch_size 1 --netG unet_64")
SEED_TRAIN_OPTIMIZED = (
    "python train.py --dataroot ./datasets/ct_phases_dataset --name ct_phase0_generator_optimized"
    " --model pix2pix --dataset_mode nifti_aligned --preprocess none --input_nc 1 --output_nc 1"
    " --axial_slice --norm instance --netG unet_512 --batch_size 4 --lambda_L1 50 --lr 0.0001"
    " --resize_to 512 --display_freq 100 --save_epoch_freq 5")
SEED_TEST = ("python test.py --dataroot ./datasets/ct_phases_dataset --name ct_phase0_generator "
             "--model pix2pix --dataset_mode nifti_aligned --preprocess none --input_nc 1 "
             "--output_nc 1 --axial_slice")
SHORT = "--n_epochs 1 --n_epochs_decay 1 --num_threads 0 --max_dataset_size 24 --print_freq 8"



@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch folder with a synthetic export tree, prepared, and the first seed run trained."""
    work = tmp_path_factory.mktemp("e2e")
    run("python scripts/make_synthetic_4dct.py --out ./export --n_patients 5 --size 64 "
        "--n_slices 12 --seed 1", work)
    run(f"python prepare_dataset.py --avg_root ./export/res_avg --phases_root "
        f"./export/res_phases --output {DATAROOT}", work)
    run(f"{SEED_TRAIN} {SHORT}", work)
    return work


def test_prepare_splits_by_patient(workdir):
    manifest = json.loads((workdir / DATAROOT / "manifest.json").read_text())
    splits = {}
    for split in ("train", "val", "test"):
        a = {p.name for p in (workdir / DATAROOT / f"{split}A").glob("*.nii.gz")}
        b = {p.name for p in (workdir / DATAROOT / f"{split}B").glob("*.nii.gz")}
        assert a == b
        splits[split] = a
    assert splits["train"]
    assert splits["test"]
    assert not (splits["train"] & splits["test"])
    assert not (splits["train"] & splits["val"])
    assert sum(len(s) for s in splits.values()) == 5 == len(manifest["patients"])


def test_training_writes_checkpoints_metadata_and_logs(workdir):
    run_dir = workdir / "checkpoints" / "ct_phase0_generator"
    for name in ("latest_net_G.pth", "latest_net_D.pth", "latest_metadata.json", "opt.json",
                 "opt.txt", "plan.json", "loss_log.txt", "web/index.html", "best_net_G.pth",
                 "best_metadata.json", "val_log.jsonl", "web/curves.png"):
        assert (run_dir / name).is_file(), name
    plan = json.loads((run_dir / "plan.json").read_text())["settings"]
    assert plan["input_nc"] == {"value": 1, "source": "command line"}  # one slice, as typed
    assert (plan["context_slices"]["value"], plan["context_slices"]["source"]) == (0, "planned")
    assert plan["batch_size"] == {"value": 1, "source": "command line"}
    assert (plan["ngf"]["source"], plan["residual"]["source"]) == ("recipe", "recipe")
    meta = json.loads((run_dir / "latest_metadata.json").read_text())
    source = nib.load(next((workdir / DATAROOT / "trainA").glob("*.nii.gz")))
    spacing = [round(float(s), 6) for s in source.header.get_zooms()]
    assert meta["voxel_geometry"]["range"]["slice_thickness_mm"]["min"] == spacing[2]
    assert meta["voxel_geometry"]["range"]["pixel_spacing_row_mm"]["min"] == spacing[1]
    assert meta["checkpoint"]["epoch_number"] == 2
    assert "G_L1" in (run_dir / "loss_log.txt").read_text()
    assert meta["validation"]["epoch"] == 2  # validated on the held-out patients each epoch
    assert meta["validation"]["mae_hu"]["baseline_motion_mae_hu"] > 0
    assert "curves.png" in (run_dir / "web" / "index.html").read_text()
    assert not list(run_dir.glob(".*tmp*"))


def test_seed_test_command_writes_hu_volumes_with_source_geometry(workdir):
    proc = run(SEED_TEST, workdir)
    out = workdir / "results" / "ct_phase0_generator" / "test_latest"
    sources = sorted((workdir / DATAROOT / "testA").glob("*.nii.gz"))
    assert sources
    for src_path in sources:
        pid = src_path.name.removesuffix(".nii.gz")
        pred = nib.load(out / "volumes" / f"{pid}_fake_B.nii.gz")
        src = nib.load(src_path)
        assert pred.shape == src.shape
        np.testing.assert_allclose(pred.affine, src.affine, atol=1e-6)
        assert pred.get_data_dtype() == src.get_data_dtype()
        hu = pred.get_fdata()
        assert -1100 < np.median(hu) < 200
        assert hu.min() >= -1024
        assert hu.max() <= 3071
        assert pid in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["patients"]) == {p.name.removesuffix(".nii.gz") for p in sources}
    for src_path in sources:  # the metrics are those of the written files, in HU
        pid = src_path.name.removesuffix(".nii.gz")
        truth = nib.load(workdir / DATAROOT / "testB" / src_path.name).get_fdata()
        pred = nib.load(out / "volumes" / f"{pid}_fake_B.nii.gz").get_fdata()
        scores = metrics["patients"][pid]
        assert scores["model"]["whole"]["mae_hu"] == pytest.approx(np.abs(pred - truth).mean(),
                                                                   rel=1e-6)
        assert scores["baseline"]["whole"]["mae_hu"] == pytest.approx(
            np.abs(nib.load(src_path).get_fdata() - truth).mean(), rel=1e-6)
        assert scores["region_voxels"]["motion"] > 0  # the phantom breathes
        assert scores["amplitude_mm"] > 0  # the AVG's lung base is above phase 0's
    assert metrics["summary"]["baseline"]["motion"]["mae_hu"]["mean"] > 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * len(sources)  # header + patient x (3 regions + geometry)
    assert "verdict: in the motion region" in proc.stdout
    html = (out / "index.html").read_text()
    assert 'id="summary"' in html
    assert "verdict: in the motion region" in html
    for src_path in sources:  # the front page links each patient's page, which has the pictures
        pid = src_path.name.removesuffix(".nii.gz")
        assert f'href="patients/{pid}.html"' in html
        patient = (out / "patients" / f"{pid}.html").read_text()
        for picture in ("views_lung_base", "views_lung", "views_soft_tissue", "slice000_fake_B",
                        "slice000_real_A", "slice000_real_B"):
            assert f"../images/{pid}_{picture}.png" in patient
    assert "MAE motion model/AVG (HU)" in proc.stdout


@pytest.mark.parametrize(("affine", "dtype", "inter"), [
    (RAS_AFFINE, np.int16, 0.0), (LPS_AFFINE, np.uint16, -1024.0),
    (OBLIQUE_AFFINE, np.float32, 0.0)])
def test_new_patients_without_truth_keep_geometry_and_storage(workdir, tmp_path, affine, dtype,
                                                              inter):
    root = tmp_path / "new"
    hu = np.clip(ct_like((64, 64, 5), seed=3), -1024, None)
    src_path = write_nifti(root / "testA" / "newpt.nii.gz", hu, affine, dtype, 1.0, inter)
    shutil.copytree(workdir / "checkpoints", tmp_path / "checkpoints")
    command = SEED_TEST.replace(DATAROOT, str(root)) + " --no_pictures"
    run(command, tmp_path)
    pred = nib.load(tmp_path / "results" / "ct_phase0_generator" / "test_latest" / "volumes"
                    / "newpt_fake_B.nii.gz")
    src = nib.load(src_path)
    assert pred.shape == src.shape
    assert pred.get_data_dtype() == src.get_data_dtype()
    np.testing.assert_allclose(pred.affine, src.affine, atol=1e-5)
    assert (pred.dataobj.slope, pred.dataobj.inter) == (src.dataobj.slope, src.dataobj.inter)


def test_seed_optimized_command_trains_unet_512_at_512(workdir):
    run(f"{SEED_TRAIN_OPTIMIZED} --n_epochs 1 --n_epochs_decay 0 --num_threads 0 "
        "--max_dataset_size 4 --save_epoch_freq 1", workdir)
    run_dir = workdir / "checkpoints" / "ct_phase0_generator_optimized"
    meta = json.loads((run_dir / "1_metadata.json").read_text())
    assert meta["image_dimensions"]["network_slice_size_px"] == 512
    assert meta["architecture"]["netG"] == "unet_512"
    assert (run_dir / "1_net_G.pth").is_file()
    assert (run_dir / "latest_net_G.pth").is_file()


def test_refused_slice_size_fails_at_start_with_a_fitting_netg(workdir):
    args = shlex.split(SEED_TRAIN.replace("unet_64", "unet_256").replace("ct_phase0_generator",
                                                                         "too_deep"))
    args.extend(["--recipe", "pix2pix"])  # the recommended recipe resizes the slices to fit
    args[0:2] = [sys.executable, str(REPO / args[1])]
    proc = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "64x64" in proc.stderr
    assert "unet_64" in proc.stderr
    assert not (workdir / "checkpoints" / "too_deep" / "latest_net_G.pth").exists()


RECIPE_TRAIN = ("python train.py --dataroot ./datasets/ct_phases_dataset --name recipe "
                "--model pix2pix --dataset_mode nifti_aligned --preprocess none --input_nc 5 "
                "--output_nc 1 --axial_slice --norm instance --netG unet_64 --ngf 16 "
                "--batch_size 4 --context_slices 2 --residual --motion_weight 2 "
                "--residual_gate_hu 150")


def test_recipe_flags_train_and_test_reads_them_from_the_run(workdir):
    run(f"{RECIPE_TRAIN} {SHORT}", workdir)
    run_dir = workdir / "checkpoints" / "recipe"
    opt = json.loads((run_dir / "opt.json").read_text())
    assert (opt["context_slices"], opt["residual"], opt["input_nc"]) == (2, True, 5)
    meta = json.loads((run_dir / "latest_metadata.json").read_text())
    assert meta["architecture"]["residual"] is True
    assert meta["input"]["context_slices_each_side"] == 2
    assert meta["training"]["motion_weight"] == 2
    assert meta["generator_settings"]["residual_gate_hu"] == 150  # test.py and predict.py gate
    test = ("python test.py --dataroot ./datasets/ct_phases_dataset --name recipe --model pix2pix "
            "--dataset_mode nifti_aligned --preprocess none --axial_slice --eval --no_pictures")
    out = workdir / "results" / "recipe" / "test_latest"
    (out / "volumes").mkdir(parents=True)
    (out / "volumes" / "GONE_fake_B.nii.gz").write_bytes(b"an earlier run's patient")
    run(test, workdir)  # --context_slices, --residual and --input_nc come from opt.json
    metrics = json.loads((out / "metrics.json").read_text())
    test_ids = sorted(p.name for p in (workdir / DATAROOT / "testA").glob("*.nii.gz"))
    assert metrics["n_patients"] == len(test_ids)
    assert sorted(p.name.replace("_fake_B", "") for p in (out / "volumes").iterdir()) == test_ids
    args = shlex.split(test + " --input_nc 1")
    args[0:2] = [sys.executable, str(REPO / args[1])]
    proc = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "--input_nc 1 was given" in proc.stderr
    assert "--input_nc 5" in proc.stderr
    src = next((workdir / DATAROOT / "testA").glob("*.nii.gz"))
    run(f"python scripts/predict.py --name recipe --input {src} --output ./one/pred.nii.gz "
        "--eval", workdir)
    single = nib.load(workdir / "one" / "pred.nii.gz").get_fdata()
    batch = nib.load(out / "volumes" / src.name.replace(".nii.gz", "_fake_B.nii.gz")).get_fdata()
    np.testing.assert_allclose(single, batch, atol=1.0)  # the same 2.5-D inputs either way
