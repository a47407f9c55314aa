"""Volumetric generators through the command lines: train on 3-D patches, test and predict whole
volumes (windowed), and the motion generator's displacement field on disk."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.tiny_runs import run_command as run

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
DATAROOT = "./dataset"
FLAGS = ("--model pix2pix --preprocess none --input_nc 1 --output_nc 1 --norm instance "
         "--ngf 4 --ndf 4 --batch_size 1 --num_threads 0 --n_epochs 1 --n_epochs_decay 1 "
         "--print_freq 1 --display_freq 1 --hu_min -1024 --hu_max 1024 --netD n_layers "
         "--n_layers_D 1 --recipe pix2pix")



@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A prepared synthetic dataset (6 patients, 32 x 32 x 12) and a trained motion3d run
    (8 x 16 x 16 patches: the 12 x 32 x 32 test volumes are covered by several windows)."""
    work = tmp_path_factory.mktemp("vol")
    run("python scripts/make_synthetic_4dct.py --out ./export --n_patients 6 --size 32 "
        "--n_slices 12 --seed 3", work)
    run(f"python prepare_dataset.py --avg_root ./export/res_avg --phases_root "
        f"./export/res_phases --output {DATAROOT} --val_fraction 0.2 --test_fraction 0.2", work)
    run(f"python train.py --dataroot {DATAROOT} --name motion --dataset_mode nifti_volume "
        f"--netG motion3d_3 --patch_size 8 16 16 --patches_per_volume 2 {FLAGS}", work)
    return work


def test_motion_run_logs_its_smoothness_and_folding_and_validates(work):
    log = (work / "checkpoints" / "motion" / "loss_log.txt").read_text()
    assert "G_smooth" in log
    assert "fold_pct" in log
    meta = json.loads((work / "checkpoints" / "motion" / "best_metadata.json").read_text())
    assert meta["validation"]["mae_hu"]["val_motion_mae_hu"] > 0


def test_test_writes_volumes_and_displacement_fields_with_the_avg_geometry(work):
    run(f"python test.py --dataroot {DATAROOT} --name motion --dataset_mode nifti_aligned "
        f"--axial_slice --num_threads 0 --no_pictures", work)
    volumes = work / "results" / "motion" / "test_latest" / "volumes"
    fakes = sorted(volumes.glob("*_fake_B.nii.gz"))
    assert fakes
    for fake in fakes:
        pid = fake.name.removesuffix("_fake_B.nii.gz")
        avg = nib.load(work / DATAROOT / "testA" / f"{pid}.nii.gz")
        field = nib.load(volumes / f"{pid}_displacement.nii.gz")
        assert field.shape == (*avg.shape, 1, 3)
        np.testing.assert_allclose(field.affine, avg.affine, atol=1e-5)
        assert field.header["intent_code"] == 1006
        assert np.isfinite(np.asarray(field.dataobj)).all()
        assert nib.load(fake).shape == avg.shape
    summary = json.loads((work / "results" / "motion" / "test_latest" / "metrics.json")
                         .read_text())
    assert any("displacement" in p for p in summary["patients"].values())


def test_predict_writes_the_same_volume_and_a_field_beside_it(work, tmp_path):
    avg = sorted((work / DATAROOT / "testA").glob("*.nii.gz"))[0]
    out = tmp_path / "p0.nii.gz"
    run(f"python scripts/predict.py --name motion --checkpoints_dir {work / 'checkpoints'} "
        f"--input {avg} --output {out} --gpu_ids -1", work)
    field = tmp_path / "p0_displacement.nii.gz"
    assert field.is_file()
    tested = work / "results" / "motion" / "test_latest" / "volumes"
    same = tested / f"{avg.name.removesuffix('.nii.gz')}_fake_B.nii.gz"
    if same.is_file():  # test.py ran first: one model, one input -> the same bytes of voxels
        assert np.array_equal(np.asarray(nib.load(out).dataobj),
                              np.asarray(nib.load(same).dataobj))


def test_unet3d_residual_trains_and_resumes_on_whole_volume_patches(work):
    run(f"python train.py --dataroot {DATAROOT} --name unet3d --dataset_mode nifti_volume "
        f"--netG unet3d_3 --residual --patch_size 0 32 32 {FLAGS}", work)
    # patch depth 0 = whole extent (12 slices), rounded up by the windows to 16 at inference
    run(f"python train.py --dataroot {DATAROOT} --name unet3d --dataset_mode nifti_volume "
        f"--netG unet3d_3 --residual --patch_size 0 32 32 {FLAGS} --continue_train "
        f"--n_epochs 2", work)
    assert (work / "checkpoints" / "unet3d" / "latest_net_G.pth").is_file()


@pytest.mark.parametrize(("flags", "message"), [
    ("--dataset_mode nifti_aligned --axial_slice --netG unet3d_3", "nifti_volume"),
    ("--dataset_mode nifti_volume --netG unet3d_3 --patch_size 8 16 16 --netD basic",
     "--n_layers_D 1"),
    ("--dataset_mode nifti_volume --netG unet3d_3 --patch_size 12 16 16", "multiples of 8"),
])
def test_what_a_3d_run_cannot_take_is_refused_in_one_line(work, flags, message):
    proc = run(f"python train.py --dataroot {DATAROOT} --name bad {FLAGS} {flags}", work,
               expect=1)
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (work / "checkpoints" / "bad" / "opt.json").exists()


def test_motion_generator_trains_under_bf16_autocast(work):
    run(f"python train.py --dataroot {DATAROOT} --name bf16 --dataset_mode nifti_volume "
        f"--netG motion3d_3 --patch_size 8 16 16 --max_dataset_size 2 --amp bf16 --val_freq 0 "
        f"{FLAGS}", work)
    losses = [json.loads(line) for line in
              (work / "checkpoints" / "bf16" / "loss_log.jsonl").read_text().splitlines()]
    assert losses
    assert all(np.isfinite(v) for record in losses for k, v in record.items()
               if k.startswith("G_") or k.startswith("D_"))
