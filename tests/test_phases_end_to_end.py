"""The whole 4DCT through the command lines: prepare every phase, train one phase-conditioned
generator, and write and score every phase of the test patients."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.tiny_runs import run_command as run

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
DATAROOT = "./dataset"
FLAGS = ("--model pix2pix --dataset_mode nifti_aligned --preprocess none --axial_slice "
         "--output_nc 1 --norm instance --netG unet_64 --ngf 4 --ndf 4 --batch_size 4 "
         "--num_threads 0 --n_epochs 1 --n_epochs_decay 0 --max_dataset_size 40 "
         "--print_freq 40 --display_freq 40 --hu_min -1024 --hu_max 1024 --recipe pix2pix")



@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """6 synthetic patients prepared with every phase and their GTV masks; a phase-conditioned
    run and a phase-0 run, one short epoch each."""
    work = tmp_path_factory.mktemp("phases")
    run("python scripts/make_synthetic_4dct.py --out ./export --n_patients 6 --size 64 "
        "--n_slices 32 --seed 4", work)
    run(f"python prepare_dataset.py --avg_root ./export/res_avg --phases_root "
        f"./export/res_phases --structures_root ./export/res_structures --output {DATAROOT} "
        f"--val_fraction 0.2 --test_fraction 0.2 --phases all", work)
    run(f"python train.py --dataroot {DATAROOT} --name cycle --input_nc 3 --phases all "
        f"{FLAGS}", work)
    run(f"python train.py --dataroot {DATAROOT} --name phase0 --input_nc 1 {FLAGS}", work)
    return work


def test_every_phase_mip_and_mean_are_written_with_the_avg_geometry(work):
    proc = run(f"python test.py --dataroot {DATAROOT} --name cycle --phases all --num_threads 0 "
        f"--dataset_mode nifti_aligned --axial_slice", work)
    assert "mean of the phases against the AVG (body MAE)" in proc.stdout
    assert " 50 % |" in proc.stdout  # the per-phase table
    out = work / "results" / "cycle" / "test_latest"
    avg_path = sorted((work / DATAROOT / "testA").glob("*.nii.gz"))[0]
    pid = avg_path.name.removesuffix(".nii.gz")
    avg = nib.load(avg_path)
    names = [f"{pid}_fake_B.nii.gz"] + [f"{pid}_fake_B_p{p}.nii.gz" for p in range(10, 100, 10)]
    volumes = [nib.load(out / "volumes" / n) for n in names]
    for image in volumes:
        assert image.shape == avg.shape
        np.testing.assert_allclose(image.affine, avg.affine, atol=1e-6)
        assert image.get_data_dtype() == avg.get_data_dtype()
    phases = np.stack([v.get_fdata() for v in volumes])
    mip = nib.load(out / "volumes" / f"{pid}_fake_B_mip.nii.gz").get_fdata()
    mean = nib.load(out / "volumes" / f"{pid}_fake_B_avg.nii.gz").get_fdata()
    np.testing.assert_allclose(mip, phases.max(axis=0), atol=1.0)  # on-disk rounding
    np.testing.assert_allclose(mean, phases.mean(axis=0), atol=1.0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["summary"]["cycle"]["phases"]) == {str(p) for p in range(0, 100, 10)}
    cycle = metrics["patients"][pid]["cycle"]
    assert set(cycle["phases"]) == {str(p) for p in range(0, 100, 10)}
    assert cycle["consistency"]["model"]["body"]["mae_hu"] >= 0
    assert cycle["consistency"]["truth"]["body"]["mae_hu"] < 10  # the data's own noise level
    truth_mm = cycle["diaphragm"]["truth_mm"]  # (the one-epoch model may show no lung at all)
    assert max(truth_mm.values()) - min(truth_mm.values()) > 5.0  # the true diaphragm moves
    assert "GTV" in cycle["structures"]
    assert (out / "images" / f"{pid}_views_trajectory.png").is_file()
    assert (out / "images" / f"{pid}_views_cycle.png").is_file()


def test_phase_0_of_the_cycle_run_without_phases_is_phase_0_alone(work):
    run(f"python test.py --dataroot {DATAROOT} --name cycle --num_threads 0 --no_pictures "
        f"--dataset_mode nifti_aligned --axial_slice "
        f"--results_dir ./results_p0", work)
    volumes = work / "results_p0" / "cycle" / "test_latest" / "volumes"
    assert sorted(p.name for p in volumes.iterdir()) == sorted(
        f"{p.name.removesuffix('.nii.gz')}_fake_B.nii.gz"
        for p in (work / DATAROOT / "testA").glob("*.nii.gz"))
    with_cycle = work / "results" / "cycle" / "test_latest" / "volumes"
    for path in volumes.iterdir():  # the same phase 0 as the --phases all run wrote
        assert np.array_equal(nib.load(path).get_fdata(), nib.load(with_cycle / path.name)
                              .get_fdata())


def test_a_phase_0_model_refuses_phases_in_one_line_before_writing(work):
    proc = run(f"python test.py --dataroot {DATAROOT} --name phase0 --phases all --axial_slice "
               f"--results_dir ./refused", work, expect=1)
    assert "trained on phase 0 alone" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (work / "refused").exists()


def test_predict_writes_the_cycle_beside_the_output_and_equals_test_py(work, tmp_path):
    avg = sorted((work / DATAROOT / "testA").glob("*.nii.gz"))[0]
    out = tmp_path / "p0.nii.gz"
    proc = run(f"python scripts/predict.py --name cycle --checkpoints_dir "
               f"{work / 'checkpoints'} --input {avg} --output {out} --gpu_ids -1 --phases all",
               work)
    assert "mean of the ten synthetic phases against the input AVG" in proc.stderr
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(["p0.nii.gz", "p0_avg.nii.gz", "p0_mip.nii.gz",
                              *[f"p0_p{p}.nii.gz" for p in range(10, 100, 10)]])
    tested = work / "results" / "cycle" / "test_latest" / "volumes"
    pid = avg.name.removesuffix(".nii.gz")
    for suffix in ("", "_p50", "_mip"):
        assert np.array_equal(nib.load(tmp_path / f"p0{suffix}.nii.gz").get_fdata(),
                              nib.load(tested / f"{pid}_fake_B{suffix}.nii.gz").get_fdata())


def test_predict_refuses_phases_of_a_phase_0_model_before_writing(work, tmp_path):
    avg = sorted((work / DATAROOT / "testA").glob("*.nii.gz"))[0]
    proc = run(f"python scripts/predict.py --name phase0 --checkpoints_dir "
               f"{work / 'checkpoints'} --input {avg} --output {tmp_path / 'p0.nii.gz'} "
               f"--gpu_ids -1 --phases 0,50", work, expect=1)
    assert "trained on phase 0 alone" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_the_cycle_demo_writes_ten_phases_per_test_patient(tmp_path):
    """scripts/run_cycle_demo.sh, shortened: prepare --phases all -> train --phases all ->
    test --phases all."""
    env = os.environ | {"PYTHON": sys.executable, "WORK": str(tmp_path / "work"),
                        "DATASET": str(tmp_path / "dataset"), "PATIENTS": "5", "EPOCHS": "1",
                        "SLICES": "12",
                        "CHECKPOINTS": str(tmp_path / "checkpoints"),
                        "RESULTS": str(tmp_path / "results"), "OMP_NUM_THREADS": "2"}
    done = subprocess.run(["bash", "scripts/run_cycle_demo.sh"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    volumes = tmp_path / "results" / "synthetic_cycle" / "test_best" / "volumes"
    tests = sorted(p.name.removesuffix(".nii.gz") for p in (tmp_path / "dataset" / "testA")
                   .glob("*.nii.gz"))
    assert tests
    for pid in tests:
        phases = sorted(volumes.glob(f"{pid}_fake_B*.nii.gz"))
        assert len(phases) == 12  # ten phases, the MIP and the mean
    assert "mean of the phases against the AVG" in done.stdout
