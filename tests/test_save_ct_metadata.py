"""Checkpoint metadata: geometry read from the training volumes, not hard-coded."""

import json

import numpy as np
import pytest
import torch

import save_ct_metadata as scm
from data.nifti_aligned_dataset import NiftiAlignedDataset
from models import create_model
from models.settings import RunSettings
from tests.conftest import ct_like, write_nifti
from tests.parsed import parsed_settings
from train import training_geometry


@pytest.fixture
def two_patient_root(tmp_path):
    """p1: 0.7 x 0.7 mm, 2.5 mm slices (RAS); p2: 0.8 x 0.8 mm, 3 mm slices (LPS)."""
    for pid, affine in {"p1": np.diag([0.7, 0.7, 2.5, 1.0]),
                        "p2": np.diag([-0.8, -0.8, 3.0, 1.0])}.items():
        for side in "AB":
            write_nifti(tmp_path / "d" / f"train{side}" / f"{pid}.nii.gz",
                        ct_like((64, 64, 5)), affine)
    return tmp_path


def make_model(root) -> tuple[object, RunSettings]:
    settings = parsed_settings("--dataroot", str(root / "d"), "--checkpoints_dir",
                               str(root / "ck"), "--name", "run", "--netG", "unet_64", "--ngf",
                               "8", "--ndf", "8", "--axial_slice", "--lr", "0.0003",
                               "--lambda_L1", "50", "--gpu_ids", "-1", "--recipe", "pix2pix")
    return create_model(settings), settings


def test_metadata_reads_spacing_from_the_volumes(two_patient_root):
    model, settings = make_model(two_patient_root)
    geometry = training_geometry(NiftiAlignedDataset.from_settings(settings.data))
    path = scm.save_model_with_metadata(model, settings, 5, model.save_dir, geometry,
                                        epoch_number=5, total_iters=50)
    assert path.name == "5_metadata.json"
    assert (model.save_dir / "5_net_G.pth").is_file()
    meta = json.loads(path.read_text())
    geo = meta["voxel_geometry"]
    assert geo["patients"]["p1"]["pixel_spacing_mm"] == [0.7, 0.7]
    assert geo["patients"]["p2"]["slice_thickness_mm"] == 3.0
    assert geo["patients"]["p2"]["orientation"] == "LPS"
    assert geo["range"]["slice_thickness_mm"] == {"min": 2.5, "max": 3.0}
    assert geo["range"]["pixel_spacing_row_mm"] == {"min": 0.7, "max": 0.8}
    assert geo["uniform"] is False
    assert meta["patients"]["train"] == ["p1", "p2"]
    assert meta["architecture"]["netG"] == "unet_64"
    assert meta["training"]["lr"] == 0.0003
    assert meta["training"]["lambda_L1"] == 50.0
    assert meta["preprocessing"]["hu_window"] == {"hu_min": -1024.0, "hu_max": 3071.0,
                                                  "maps_to": [-1.0, 1.0]}
    assert meta["image_dimensions"]["native_slice_sizes_px"] == [[64, 64]]
    assert meta["input"]["units"] == meta["output"]["units"] == "HU"
    assert meta["software"]["torch"] == torch.__version__
    assert "git_commit" in meta["software"]
    assert meta["checkpoint"] == {"epoch": "5", "epoch_number": 5, "total_iters": 50,
                                  "files": {"G": "5_net_G.pth", "D": "5_net_D.pth"}}


def test_geometry_defaults_to_headers_of_training_folder(two_patient_root):
    model, settings = make_model(two_patient_root)
    from_headers = scm.save_model_with_metadata(model, settings, "latest", model.save_dir)
    meta = json.loads(from_headers.read_text())
    assert meta["voxel_geometry"]["range"]["pixel_spacing_col_mm"] == {"min": 0.7, "max": 0.8}


def test_load_model_with_metadata(two_patient_root):
    model, settings = make_model(two_patient_root)
    scm.save_model_with_metadata(model, settings, "latest", model.save_dir)
    for path in (model.save_dir / "latest_net_G.pth", model.save_dir / "latest_metadata.json"):
        state, meta = scm.load_model_with_metadata(path)
        assert state.keys() == model.netG.state_dict().keys()
        assert meta["model"]["type"] == "pix2pix"


def test_training_on_pictures_saves_metadata_without_volume_geometry(tmp_path):
    from PIL import Image

    import train

    rng = np.random.default_rng(0)
    (tmp_path / "train").mkdir()
    for i in range(2):  # A|B pairs side by side, the aligned mode's pictures
        Image.fromarray(rng.integers(0, 255, (64, 128), dtype=np.uint8)).save(
            tmp_path / "train" / f"{i}.png")
    argv = ["--dataroot", str(tmp_path), "--name", "pictures", "--checkpoints_dir",
            str(tmp_path / "ck"), "--dataset_mode", "aligned", "--input_nc", "1", "--output_nc",
            "1", "--netG", "unet_64", "--ngf", "8", "--ndf", "8", "--load_size", "64",
            "--crop_size", "64", "--n_epochs", "1", "--n_epochs_decay", "0", "--num_threads",
            "0", "--gpu_ids", "-1", "--no_html"]
    assert train.main(argv) == 0
    meta = json.loads((tmp_path / "ck" / "pictures" / "latest_metadata.json").read_text())
    assert meta["voxel_geometry"] == {"patients": {}, "range": None, "uniform": None,
                                      "slice_sizes_px": []}
    assert meta["architecture"]["netG"] == "unet_64"
