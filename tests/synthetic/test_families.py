"""synthetic.families: the registry, per-patient draws, and the tree write_family writes."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synthetic import write_synthetic_4dct
from synthetic.families import (
    FAMILIES,
    Family,
    MotionRanges,
    ScannerRanges,
    draw_scanner,
    write_family,
)
from synthetic.params import ParamRanges
from util.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
#: A tiny warped family over mixed storages and voxel orders, cheap enough for end-to-end tests.
TINY = Family("tiny", "test family", generator="warped",
              scanner=ScannerRanges(size=16, pixel_mm=(10.0, 14.0), slice_thickness_mm=(5.0, 8.0),
                                    n_slices=(6, 9), kernel_blur_mm=(0.0, 2.0),
                                    storages=("int16", "uint16"), orientations=("LPS", "RAS")),
              ranges=ParamRanges(amplitude_mm=(3.0, 20.0)),
              motion=MotionRanges(irregularity=(0.0, 0.2), slab_slices=(0, 3)))


def test_registry_has_the_families_and_generators() -> None:
    assert {"phantom", "phantom_wide", "coarse", "warped", "warped_wide"} <= set(FAMILIES)
    assert {f.generator for f in FAMILIES.values()} == {"phantom", "warped"}
    assert all(f.scanner.size % 64 == 0 and f.description for f in FAMILIES.values())
    with pytest.raises(ConfigError, match=r"valid:.*warped_wide"):
        write_family("out", "nonesuch", 1)
    with pytest.raises(ConfigError, match="irregularity"):
        Family("bad", "x", motion=MotionRanges(irregularity=(0.0, 0.1)))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_per_patient_grids_are_inside_the_ranges_and_deterministic(name: str) -> None:
    family = FAMILIES[name]
    s = family.scanner
    draws = [draw_scanner(family, 3, index) for index in range(12)]
    assert draws == [draw_scanner(family, 3, index) for index in range(12)]
    for grid, storage, blur_mm in draws:
        dx, _, dz = grid.spacing_mm
        assert s.pixel_mm[0] - 1e-9 <= dx <= s.pixel_mm[1] + 1e-9
        assert grid.size == s.size
        assert s.slice_thickness_mm[0] <= dz <= s.slice_thickness_mm[1]
        assert s.n_slices[0] <= grid.n_slices <= s.n_slices[1]
        assert s.kernel_blur_mm[0] <= blur_mm <= s.kernel_blur_mm[1]
        assert storage in s.storages
        assert grid.orientation in s.orientations
    if s.pixel_mm[0] < s.pixel_mm[1]:
        assert len({grid.spacing_mm for grid, _, _ in draws}) == 12


def test_phantom_family_is_the_default_tree(tmp_path: Path) -> None:
    write_synthetic_4dct(tmp_path / "a", 1, seed=2, structures=False, progress=False)
    drawn = write_family(tmp_path / "b", "phantom", 1, seed=2)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.nii.gz"))
    assert len(files) == 11
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b",
                                               [str(f) for f in files], shallow=False)
    assert (len(match), mismatch, errors) == (11, [], [])
    assert drawn[0].pid == "PT001"
    assert 5.0 <= drawn[0].amplitude_mm <= 25.0


def test_coarse_family_writes_its_voxels(tmp_path: Path) -> None:
    write_family(tmp_path, "coarse", 1, seed=0)
    img = nib.load(tmp_path / "res_avg" / "PT001" / "PT001_AVG.nii.gz")
    np.testing.assert_allclose(nib.affines.voxel_sizes(img.affine), [7.8, 7.8, 5.0])


def test_write_family_tree_is_paired_by_prepare_dataset(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    drawn = write_family(out, TINY, 3, seed=1, id_prefix="WP", structures=True)
    assert [p.pid for p in drawn] == ["WP001", "WP002", "WP003"]
    assert all(3.0 <= p.amplitude_mm <= 20.0 and p.generator == "warped" for p in drawn)
    for info in drawn:
        img = nib.load(out / "res_phases" / info.pid / f"{info.pid}_4DCT_Gated 0.0A.nii.gz")
        assert img.shape == info.grid.shape
        assert "".join(nib.aff2axcodes(img.affine)) == info.grid.orientation
        assert img.get_data_dtype() == np.dtype(info.storage)
        assert (out / "res_structures" / info.pid / "GTV" / f"{info.pid}_GTV_Gated 90.0A.nii.gz"
                ).is_file()
    assert write_family(tmp_path / "again", TINY, 3, seed=1, id_prefix="WP") == drawn
    result = subprocess.run(
        [sys.executable, str(REPO / "prepare_dataset.py"), "--avg_root", str(out / "res_avg"),
         "--phases_root", str(out / "res_phases"), "--output", str(tmp_path / "ds"),
         "--no_progress"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["unpaired_patients"] == []
    assert sum(manifest["counts"].values()) == 3
    assert all(info.pid in json.dumps(manifest["patients"]) for info in drawn)
