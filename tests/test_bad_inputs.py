"""Bad training data through train.py: exit status 1, a message naming the file and the problem,
and no checkpoint (nor temp file) written."""

import gzip
import os
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import train
from tests.conftest import RAS_AFFINE, ct_like, write_nifti, write_pair_tree

SHAPE = (64, 64, 3)


def _truncated(root: Path, _mp: pytest.MonkeyPatch) -> tuple[Path, str]:
    path = root / "trainA" / "p1.nii.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path, "truncated or corrupt"


def _not_nifti(root: Path, _mp: pytest.MonkeyPatch) -> tuple[Path, str]:
    path = root / "trainB" / "p1.nii.gz"
    path.write_bytes(gzip.compress(b"PatientName,Dose\nanon,2 Gy\n"))
    return path, "not a readable NIfTI file"


def _shape(shape: tuple[int, ...], problem: str) -> Callable:
    def make(root: Path, _mp: pytest.MonkeyPatch) -> tuple[Path, str]:
        path = root / "trainA" / "p1.nii.gz"
        nib.save(nib.Nifti1Image(np.ones(shape, np.int16), RAS_AFFINE), path)
        return path, problem
    return make


def _bad_voxel(value: float) -> Callable:
    def make(root: Path, _mp: pytest.MonkeyPatch) -> tuple[Path, str]:
        hu = ct_like(SHAPE)
        hu[3, 4, 1] = value
        return write_nifti(root / "trainB" / "p1.nii.gz", hu, dtype=np.float32), \
            "1 voxels are NaN or Inf"
    return make


def _constant(root: Path, _mp: pytest.MonkeyPatch) -> tuple[Path, str]:
    return write_nifti(root / "trainA" / "p1.nii.gz", np.full(SHAPE, -1024.0)), \
        "constant volume, every voxel is -1024 HU"


def _other_shape(root: Path, _mp: pytest.MonkeyPatch) -> tuple[Path, str]:
    return write_nifti(root / "trainB" / "p1.nii.gz", ct_like((64, 64, 4))), \
        "shapes differ, (64, 64, 3) vs (64, 64, 4)"


def _other_spacing(root: Path, _mp: pytest.MonkeyPatch) -> tuple[Path, str]:
    affine = RAS_AFFINE.copy()
    affine[2, 2] = 2.5  # 3 mm slices in the AVG, 2.5 mm in phase 0
    return write_nifti(root / "trainB" / "p1.nii.gz", ct_like(SHAPE), affine), \
        "voxel spacing 0.9 x 0.9 x 3.0 mm vs 0.9 x 0.9 x 2.5 mm (tolerance 0.001 mm)"


def _singular_affine(root: Path, _mp: pytest.MonkeyPatch) -> tuple[Path, str]:
    header = nib.Nifti1Header()
    header.set_sform(np.diag([0.9, 0.9, 0.0, 1.0]), code=2)  # a slice thickness of 0 mm
    path = root / "trainA" / "p1.nii.gz"
    nib.save(nib.Nifti1Image(ct_like(SHAPE).astype(np.int16), None, header), path)
    return path, "affine is singular"


def _unreadable(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    path = root / "trainA" / "p1.nii.gz"
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: deny it as a plain user would be
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: mode != os.R_OK and real_access(p, mode)
                            if Path(p) == path else real_access(p, mode))
    return path, "file is not readable (permission denied)"


def _empty_folder(root: Path, _mp: pytest.MonkeyPatch) -> tuple[Path, str]:
    for path in [*(root / "trainA").iterdir(), *(root / "trainB").iterdir()]:
        path.unlink()
    return root / "trainA", "no NIfTI volumes (.nii, .nii.gz) found"


def _no_train_a(root: Path, _mp: pytest.MonkeyPatch) -> tuple[Path, str]:
    for path in (root / "trainA").iterdir():
        path.unlink()
    (root / "trainA").rmdir()
    return root / "trainA", "folder not found"


CASES = {
    "truncated": _truncated, "not_nifti": _not_nifti,
    "2d": _shape((64, 64), "expected a 3-D volume, got shape (64, 64)"),
    "5d": _shape((64, 64, 3, 1, 2), "expected a 3-D volume, got shape (64, 64, 3, 1, 2)"),
    "4d_frames": _shape((64, 64, 3, 10), "4-D series of 10 frames"),
    "nan": _bad_voxel(float("nan")), "inf": _bad_voxel(float("inf")), "constant": _constant,
    "shape": _other_shape, "spacing": _other_spacing, "singular_affine": _singular_affine,
    "unreadable": _unreadable, "empty_folder": _empty_folder, "no_trainA": _no_train_a,
}


def _argv(root: Path, checkpoints: Path, *extra: str) -> list[str]:
    return ["--dataroot", str(root), "--checkpoints_dir", str(checkpoints), "--name", "run",
            "--axial_slice", "--netG", "unet_64", "--ngf", "4", "--ndf", "4", "--gpu_ids", "-1",
            "--num_threads", "0", "--n_epochs", "1", "--n_epochs_decay", "0", "--val_freq", "0",
            "--max_dataset_size", "2", *extra]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_training_file_stops_train_py_naming_it(tmp_path, monkeypatch, caplog, case):
    root = tmp_path / "data"
    write_pair_tree(root, "train", {"p1": SHAPE, "p2": SHAPE})
    path, problem = CASES[case](root, monkeypatch)
    assert train.main(_argv(root, tmp_path / "ck")) == 1
    assert f"{path}: " in caplog.text
    assert problem in caplog.text
    written = [p.name for p in (tmp_path / "ck").rglob("*") if p.is_file()]
    assert not [name for name in written if name.endswith(".pth") or ".tmp" in name]


def test_every_bad_patient_is_reported_at_once(tmp_path, caplog):
    root = tmp_path / "data"
    write_pair_tree(root, "train", {"p1": SHAPE, "p2": SHAPE, "p3": SHAPE})
    nan_path, _ = _bad_voxel(float("nan"))(root, pytest.MonkeyPatch())
    const_path = write_nifti(root / "trainA" / "p3.nii.gz", np.full(SHAPE, 0.0))
    assert train.main(_argv(root, tmp_path / "ck")) == 1
    assert "2 of 3 patients cannot be used" in caplog.text
    assert f"{nan_path}: 1 voxels are NaN or Inf" in caplog.text
    assert f"{const_path}: constant volume" in caplog.text


def test_grid_tolerance_is_an_option_recorded_with_the_run(tmp_path, caplog):
    root = tmp_path / "data"
    write_pair_tree(root, "train", {"p1": SHAPE})
    shifted = RAS_AFFINE.copy()
    shifted[:3, 3] += 0.01  # 0.01 mm: rounding in an export, not another grid
    write_nifti(root / "trainB" / "p1.nii.gz", ct_like(SHAPE), shifted)
    assert train.main(_argv(root, tmp_path / "ck")) == 1
    assert "origin differs by 0.01732 mm (tolerance 0.001 mm)" in caplog.text
    assert train.main(_argv(root, tmp_path / "ck", "--geometry_atol_mm", "0.02")) == 0
    assert '"geometry_atol_mm": 0.02' in (tmp_path / "ck" / "run" / "opt.json").read_text()
    assert train.main(_argv(root, tmp_path / "ck", "--geometry_atol_mm", "-1")) == 1
    assert "--geometry_atol_mm must be a finite distance >= 0 mm, got -1.0" in caplog.text
