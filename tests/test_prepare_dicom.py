"""prepare_dataset on DICOM exports: the same dataset as from the NIfTI export of the same
phantom, series picked by description, refusals in the unpaired report, safe re-runs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

import prepare_dataset as pdm
from data.nifti_io import load_volume
from synthetic import SyntheticGrid, write_synthetic_4dct
from tests.data.test_dicom_io import Spec, ct_hu, write_ct_series

GRID = SyntheticGrid(size=16, n_slices=8)
N_PATIENTS = 3


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``nii/`` and ``dcm/``: the synthetic 4DCT of one seed as NIfTI files and DICOM series."""
    root = tmp_path_factory.mktemp("trees")
    for name, file_format in (("nii", "nifti"), ("dcm", "dicom")):
        write_synthetic_4dct(root / name, N_PATIENTS, grid=GRID, seed=3, structures=False,
                             progress=False, file_format=file_format)
    return root


def _copy(trees: Path, name: str, dest: Path) -> Path:
    shutil.copytree(trees / name, dest)
    return dest


def _opts(src: Path, out: Path, **extra: object) -> pdm.PrepareOptions:
    return pdm.PrepareOptions(avg_root=src / "res_avg", phases_root=src / "res_phases",
                              output=out, **extra)  # type: ignore[arg-type]


def _volumes(out: Path) -> dict[str, tuple[np.ndarray, np.ndarray, tuple]]:
    """{split folder/file: (HU, affine, (dtype, slope, inter))} of a dataset's volumes."""
    found = {}
    for path in sorted(out.glob("*/*.nii.gz")):
        vol = load_volume(path)
        storage = (vol.header.get_data_dtype(), *vol.header.get_slope_inter())
        found[path.relative_to(out).as_posix()] = (vol.hu, vol.affine, storage)
    return found


def test_dicom_tree_gives_the_dataset_of_the_nifti_tree(trees: Path, tmp_path: Path) -> None:
    nii = pdm.prepare_dataset(_opts(trees / "nii", tmp_path / "from_nii"), progress=False)
    dcm = pdm.prepare_dataset(_opts(trees / "dcm", tmp_path / "from_dcm"), progress=False)
    assert dcm.splits == nii.splits
    assert not dcm.unpaired
    expected, got = _volumes(tmp_path / "from_nii"), _volumes(tmp_path / "from_dcm")
    assert sorted(got) == sorted(expected)
    assert len(got) == 2 * N_PATIENTS
    for name, (hu, affine, storage) in expected.items():
        np.testing.assert_array_equal(got[name][0], hu)
        np.testing.assert_allclose(got[name][1], affine, atol=1e-4)
        assert got[name][2] == storage


def test_manifest_names_the_series_as_the_source(trees: Path, tmp_path: Path) -> None:
    src = trees / "dcm"
    pdm.prepare_dataset(_opts(src, tmp_path / "ds"), progress=False)
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["options"]["avg_series"] == "*AVG*"
    assert manifest["options"]["phase0_series"] == "*Gated 0.0A*"
    entry = next(e for e in manifest["patients"] if e["patient"] == "PT002")
    phase0_folder = src / "res_phases" / "PT002" / "PT002_4DCT_Gated 0.0A"
    assert entry["phase0"] == str(phase0_folder.absolute())
    assert entry["avg"] == str((src / "res_avg" / "PT002" / "PT002_AVG").absolute())
    header = pydicom.dcmread(next(phase0_folder.iterdir()), stop_before_pixels=True)
    assert entry["phase0_series"] == {"series_instance_uid": header.SeriesInstanceUID,
                                      "series_description": "Gated 0.0A",
                                      "n_slices": GRID.n_slices}
    assert entry["avg_series"]["series_description"] == "AVG"
    assert re.fullmatch(r"[0-9a-f]{64}", entry["avg_sha256"])
    assert entry["shape"] == list(GRID.shape)


def test_rerun_keeps_converted_files(trees: Path, tmp_path: Path) -> None:
    opts = _opts(trees / "dcm", tmp_path / "ds")
    first = pdm.prepare_dataset(opts, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "ds").glob("*/*.nii.gz")}
    second = pdm.prepare_dataset(opts, progress=False)
    assert (first.copied, first.skipped) == (2 * N_PATIENTS, 0)
    assert (second.copied, second.skipped, second.removed) == (0, 2 * N_PATIENTS, 0)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    moved = pdm.prepare_dataset(_opts(trees / "dcm", tmp_path / "ds", seed=5), progress=False)
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    present = sorted(p.relative_to(tmp_path / "ds").as_posix()
                     for p in (tmp_path / "ds").glob("*/*.nii.gz"))
    assert present == sorted(f for e in manifest["patients"] for f in e["files"].values())
    assert moved.splits == pdm.assign_splits(moved.splits, 0.1, 0.2, 5)


def test_series_patterns_pick_the_series(trees: Path, tmp_path: Path) -> None:
    pdm.main(["--avg_root", str(trees / "dcm" / "res_avg"), "--phases_root",
              str(trees / "dcm" / "res_phases"), "--output", str(tmp_path / "ds"),
              "--phase0_series", "*gated 50.0a*", "--test_fraction", "0", "--val_fraction", "0",
              "--no_progress"])
    phase5 = load_volume(trees / "nii" / "res_phases" / "PT001" /
                         "PT001_4DCT_Gated 50.0A.nii.gz")
    np.testing.assert_array_equal(load_volume(tmp_path / "ds" / "trainB" / "PT001.nii.gz").hu,
                                  phase5.hu)


def test_dicom_and_nifti_sides_pair_and_dicom_phase0_is_reordered(trees: Path,
                                                                   tmp_path: Path) -> None:
    ras = tmp_path / "ras"
    write_synthetic_4dct(ras, 1, grid=SyntheticGrid(size=16, n_slices=8, orientation="RAS"),
                         seed=3, structures=False, progress=False)
    src = tmp_path / "mixed"
    shutil.copytree(ras / "res_avg", src / "res_avg")  # AVG: NIfTI, RAS
    shutil.copytree(trees / "dcm" / "res_phases" / "PT001", src / "res_phases" / "PT001")
    result = pdm.prepare_dataset(_opts(src, tmp_path / "ds", test_fraction=0.0,
                                       val_fraction=0.0), progress=False)
    assert not result.unpaired
    assert result.paired[0].phase0_reorder == ("LPS", "RAS")
    out_b = load_volume(tmp_path / "ds" / "trainB" / "PT001.nii.gz")
    ras_phase0 = load_volume(ras / "res_phases" / "PT001" / "PT001_4DCT_Gated 0.0A.nii.gz")
    np.testing.assert_array_equal(out_b.hu, ras_phase0.hu)
    np.testing.assert_allclose(out_b.affine, ras_phase0.affine, atol=1e-4)
    entry = json.loads((tmp_path / "ds" / "manifest.json").read_text())["patients"][0]
    assert entry["phase0_reoriented"] == {"from": "LPS", "to": "RAS"}
    assert "avg_series" not in entry  # the NIfTI side is recorded as before
    second = pdm.prepare_dataset(_opts(src, tmp_path / "ds", test_fraction=0.0,
                                       val_fraction=0.0), progress=False)
    assert (second.copied, second.skipped) == (0, 2)


@pytest.fixture(scope="module")
def broken(trees: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The unpaired report of a DICOM tree with one problem per patient beside a good one."""
    src = _copy(trees, "dcm", tmp_path_factory.mktemp("broken") / "src")
    phases = src / "res_phases"
    for pid in ("gap", "nophase0", "twophase0", "notct", "mixed"):
        shutil.copytree(src / "res_avg" / "PT001", src / "res_avg" / pid)
        shutil.copytree(phases / "PT001", phases / pid)
    avg_files = sorted((src / "res_avg" / "gap" / "PT001_AVG").iterdir())
    avg_files[3].unlink()
    shutil.rmtree(phases / "nophase0" / "PT001_4DCT_Gated 0.0A")
    spec = Spec(shape=(16, 16, 8))
    write_ct_series(phases / "twophase0" / "extra", ct_hu(spec), spec,
                    description="Gated 0.0A resampled")
    shutil.rmtree(phases / "notct" / "PT001_4DCT_Gated 0.0A")  # phase 0 is an MR series
    write_ct_series(phases / "notct" / "mr", ct_hu(spec), spec, description="Gated 0.0A",
                    edit=lambda _k, ds: setattr(ds, "Modality", "MR"))
    write_ct_series(src / "res_avg" / "mixed" / "PT001_AVG", ct_hu(spec), spec,
                    description="AVG", series_uid="1.2.3.78")  # a second AVG series
    out = src.parent / "ds"
    assert pdm.main(["--avg_root", str(src / "res_avg"), "--phases_root", str(phases),
                     "--output", str(out), "--no_progress"]) == 0
    return out, json.loads((out / "unpaired.json").read_text())


@pytest.mark.parametrize(("patient", "pattern"), [
    ("gap", r"unreadable series 'AVG': .*res_avg/gap/PT001_AVG: missing slices: a gap of 6 mm"),
    ("nophase0", r"no phase-0 series: no CT series under .*res_phases/nophase0 has a "
                 r"description matching '\*Gated 0\.0A\*' \(case-insensitive\); series found: "
                 r"'Gated 10\.0A' \(CT, 8 files"),
    ("twophase0", r"ambiguous phase-0 series: 2 CT series under .*res_phases/twophase0 match "
                  r"'\*Gated 0\.0A\*': 'Gated 0\.0A' .*'Gated 0\.0A resampled'"),
    ("notct", r"no phase-0 series: no CT series under .*res_phases/notct has a description "
              r"matching .*series found: 'Gated 0\.0A' \(MR, 8 files"),
    ("mixed", r"ambiguous AVG series: 2 CT series under .*res_avg/mixed match '\*AVG\*'"),
])
def test_dicom_refusals_go_to_the_unpaired_report(broken: tuple[Path, list[dict]],
                                                  patient: str, pattern: str) -> None:
    reasons = [u["reason"] for u in broken[1] if u["patient"] == patient]
    assert len(reasons) == 1, reasons
    assert re.search(pattern, reasons[0]), reasons[0]


def test_only_the_good_patients_pair(broken: tuple[Path, list[dict]]) -> None:
    out, unpaired = broken
    assert sorted({u["patient"] for u in unpaired}) == ["gap", "mixed", "nophase0", "notct",
                                                        "twophase0"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(e["patient"] for e in manifest["patients"]) == ["PT001", "PT002", "PT003"]
    assert "gap: unreadable series 'AVG'" in (out / "unpaired.txt").read_text()
