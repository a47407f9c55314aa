"""The synthetic 4DCT on disk: the tree, the storage and determinism."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from data.nifti_io import load_volume
from synthetic import N_PHASES, SyntheticGrid, write_synthetic_4dct
from util.errors import ConfigError

SMALL = {"grid": SyntheticGrid(size=16, n_slices=8)}


def _load_tree(root: Path, pid: str) -> tuple[np.ndarray, np.ndarray]:
    """(AVG (I, J, K), phases (10, I, J, K)) in HU as stored under ``root``."""
    avg = load_volume(root / "res_avg" / pid / f"{pid}_AVG.nii.gz").hu
    phases = np.stack([load_volume(root / "res_phases" / pid /
                                   f"{pid}_4DCT_Gated {10 * p}.0A.nii.gz").hu
                       for p in range(N_PHASES)])
    return avg, phases


def test_tree_names_and_geometry(tmp_path: Path) -> None:
    ids = write_synthetic_4dct(tmp_path, 2, seed=1, progress=False, **SMALL)
    assert ids == ["PT001", "PT002"]
    assert sorted(p.name for p in (tmp_path / "res_avg").iterdir()) == ids
    names = sorted(p.name for p in (tmp_path / "res_phases" / "PT002").iterdir())
    assert names == sorted(f"PT002_4DCT_Gated {10 * p}.0A.nii.gz" for p in range(10))
    assert [p.name for p in (tmp_path / "res_avg" / "PT001").iterdir()] == ["PT001_AVG.nii.gz"]
    img = nib.load(tmp_path / "res_phases" / "PT001" / "PT001_4DCT_Gated 0.0A.nii.gz")
    assert img.shape == (16, 16, 8)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    np.testing.assert_allclose(nib.affines.voxel_sizes(img.affine), [350 / 16, 350 / 16, 3.0])
    assert np.abs(img.affine[:3, 3]).min() > 1.0  # a realistic, non-zero origin
    assert img.get_data_dtype() == np.int16
    assert (img.dataobj.slope, img.dataobj.inter) == (1.0, 0.0)


def test_avg_file_is_mean_of_phase_files(tmp_path: Path) -> None:
    write_synthetic_4dct(tmp_path, 1, seed=3, progress=False, **SMALL)
    avg, phases = _load_tree(tmp_path, "PT001")
    assert np.abs(avg - phases.mean(axis=0)).max() <= 0.5 + 1e-4
    assert not np.array_equal(phases[0], phases[5])


def test_uint16_with_offset_stores_the_same_hu(tmp_path: Path) -> None:
    write_synthetic_4dct(tmp_path / "s16", 1, seed=4, storage="int16", progress=False, **SMALL)
    write_synthetic_4dct(tmp_path / "u16", 1, seed=4, storage="uint16", progress=False, **SMALL)
    img = nib.load(tmp_path / "u16" / "res_avg" / "PT001" / "PT001_AVG.nii.gz")
    assert img.get_data_dtype() == np.uint16
    assert (img.dataobj.slope, img.dataobj.inter) == (1.0, -1024.0)
    avg_s, phases_s = _load_tree(tmp_path / "s16", "PT001")
    avg_u, phases_u = _load_tree(tmp_path / "u16", "PT001")
    np.testing.assert_array_equal(avg_s, avg_u)
    np.testing.assert_array_equal(phases_s, phases_u)
    assert phases_s.min() >= -1024  # air noise clipped to the stored CT range


def test_same_seed_same_data_and_patients_independent_of_count(tmp_path: Path) -> None:
    write_synthetic_4dct(tmp_path / "a", 2, seed=7, progress=False, **SMALL)
    write_synthetic_4dct(tmp_path / "b", 1, seed=7, progress=False, **SMALL)
    write_synthetic_4dct(tmp_path / "c", 1, seed=8, progress=False, **SMALL)
    avg_a, phases_a = _load_tree(tmp_path / "a", "PT001")
    avg_b, phases_b = _load_tree(tmp_path / "b", "PT001")
    np.testing.assert_array_equal(phases_a, phases_b)
    np.testing.assert_array_equal(avg_a, avg_b)
    assert not np.array_equal(avg_a, _load_tree(tmp_path / "c", "PT001")[0])
    assert not np.array_equal(avg_a, _load_tree(tmp_path / "a", "PT002")[0])


def test_bad_grid_and_storage_raise(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="orientation"):
        SyntheticGrid(orientation="XYZ")
    with pytest.raises(ConfigError, match="storage"):
        write_synthetic_4dct(tmp_path, 1, storage="float64", progress=False, **SMALL)
    assert not any(tmp_path.iterdir())
