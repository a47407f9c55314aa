"""train.py and test.py at a working spacing: trained on the 6 mm grid, written on the source's."""

import json

import nibabel as nib
import numpy as np
import pytest

from tests.tiny_runs import run_command as run

pytestmark = pytest.mark.slow
DATAROOT = "./data"


def test_a_run_trained_at_6_mm_writes_volumes_with_the_source_geometry(tmp_path):
    run("python scripts/make_synthetic_4dct.py --out ./export --n_patients 4 --size 64 "
        "--n_slices 12 --seed 1", tmp_path)  # 5.5 mm pixels, 3 mm slices
    run(f"python prepare_dataset.py --avg_root ./export/res_avg --phases_root "
        f"./export/res_phases --output {DATAROOT}", tmp_path)
    run(f"python train.py --dataroot {DATAROOT} --name ws --dataset_mode nifti_aligned "
        f"--axial_slice --input_nc 1 --output_nc 1 --netG unet_64 --ngf 8 --gpu_ids -1 "
        f"--working_spacing_mm 6 6 6 --n_epochs 1 --n_epochs_decay 0 --num_threads 0 "
        f"--max_dataset_size 6 --recipe pix2pix", tmp_path)
    meta = json.loads((tmp_path / "checkpoints" / "ws" / "latest_metadata.json").read_text())
    assert meta["generator_settings"]["working_spacing_mm"] == [6.0, 6.0, 6.0]
    run(f"python test.py --dataroot {DATAROOT} --name ws --dataset_mode nifti_aligned "
        f"--axial_slice --gpu_ids -1 --no_pictures", tmp_path)
    tested = json.loads((tmp_path / "checkpoints" / "ws" / "test_opt.json").read_text())
    assert tested["working_spacing_mm"] == [6.0, 6.0, 6.0]  # adopted from opt.json
    sources = sorted((tmp_path / DATAROOT / "testA").glob("*.nii.gz"))
    assert sources
    for src in sources:
        out = (tmp_path / "results" / "ws" / "test_latest" / "volumes"
               / src.name.replace(".nii.gz", "_fake_B.nii.gz"))
        source, pred = nib.load(src), nib.load(out)
        assert pred.shape == source.shape == (64, 64, 12)
        np.testing.assert_allclose(pred.affine, source.affine, atol=1e-5)
