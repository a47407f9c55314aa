"""Shared fixtures: small synthetic NIfTI volumes with chosen storage and geometry.

Property and fuzz tests (hypothesis) draw the same cases on every run, so CI cannot fail at
random; ``HYPOTHESIS_PROFILE=explore`` draws new ones (run it locally to hunt for bugs).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

#: An oblique, non-identity LPS-like affine: 0.8 x 0.9 mm pixels, 2.5 mm slices, ~7 deg tilt.
OBLIQUE_AFFINE = np.array([[-0.797, 0.07, 0.0, 120.5],
                           [-0.07, -0.897, 0.2, 98.25],
                           [0.0, 0.08, 2.49, -310.0],
                           [0.0, 0.0, 0.0, 1.0]])
RAS_AFFINE = np.array([[0.9, 0, 0, -100.0], [0, 0.9, 0, -80.0], [0, 0, 3.0, -50.0], [0, 0, 0, 1]])
LPS_AFFINE = np.array([[-0.9, 0, 0, 100.0], [0, -0.9, 0, 80.0], [0, 0, 3.0, -50.0], [0, 0, 0, 1]])


def write_nifti(path: Path, hu: np.ndarray, affine: np.ndarray = RAS_AFFINE,
                dtype: type = np.int16, slope: float = 1.0, inter: float = 0.0) -> Path:
    """Store ``hu`` (HU) as ``dtype`` raw values with ``scl_slope``/``scl_inter``; return path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = hu if np.dtype(dtype).kind == "f" else np.rint((hu - inter) / slope)
    img = nib.Nifti1Image(np.asarray(raw).astype(dtype), affine)
    if np.dtype(dtype).kind != "f":
        img.header.set_slope_inter(slope, inter)
    nib.save(img, path)
    return path


def write_raw_header_nifti(path: Path, hu: np.ndarray, affine: np.ndarray = RAS_AFFINE, *,
                           qform_code: int = 1, sform_code: int = 0,
                           pixdim: tuple[float, float, float] = (0.9, 0.9, 0.0)) -> Path:
    """Store ``hu`` (HU) as int16 with the header bytes written as given, as nibabel would never
    save them: qform/sform from ``affine`` with these codes, then ``pixdim[1..3]`` set to
    ``pixdim`` (a 0 voxel size, say). ``.nii`` or ``.nii.gz`` by the name; returns ``path``."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape(hu.shape)
    header.set_qform(affine, code=qform_code)
    header.set_sform(affine, code=sform_code)
    header.set_data_offset(352)
    header.structarr["pixdim"][1:4] = pixdim
    data = header.binaryblock + b"\0" * 4 + np.rint(hu).astype("<i2").tobytes(order="F")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def ct_like(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Integer HU in a CT-like range (-1000..1500), float32, (I, J, K)."""
    rng = np.random.default_rng(seed)
    return rng.integers(-1000, 1500, size=shape).astype(np.float32)


def write_pair_tree(root: Path, phase: str, patients: dict[str, tuple[int, int, int]],
                    affine: np.ndarray = RAS_AFFINE, with_b: bool = True) -> dict[str, np.ndarray]:
    """``root/<phase>A/<id>.nii.gz`` (and B = A + 100 HU); returns {id: A HU}."""
    out = {}
    for k, (pid, shape) in enumerate(sorted(patients.items())):
        hu = ct_like(shape, seed=k)
        write_nifti(root / f"{phase}A" / f"{pid}.nii.gz", hu, affine)
        if with_b:
            write_nifti(root / f"{phase}B" / f"{pid}.nii.gz", hu + 100, affine)
        out[pid] = hu
    return out


class CodeOnLoad:
    """Pickles into a call that creates ``marker``: if the file appears, unpickling ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def repo_root() -> Path:
    """The project's root folder."""
    return Path(__file__).resolve().parents[1]
