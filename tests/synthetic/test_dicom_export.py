"""The synthetic 4DCT as DICOM series: the tree, the same HU and geometry as the NIfTI export,
one study and frame of reference per patient, and deterministic, unique UIDs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pydicom
import pytest

from data.dicom_io import find_series, load_series, pick_series
from data.nifti_io import load_volume
from synthetic import N_PHASES, SyntheticGrid, write_synthetic_4dct
from tests.data.test_dicom_io import sitk_reading
from util.errors import ConfigError

GRID = SyntheticGrid(size=16, n_slices=8)

DESCRIPTIONS = ["AVG", *[f"Gated {10 * p}.0A" for p in range(N_PHASES)]]


def _uids(root: Path) -> dict[str, set[str]]:
    """{tag: values} of the study, frame of reference, series and SOP UIDs of every file."""
    found: dict[str, set[str]] = {k: set() for k in ("study", "frame", "series", "sop")}
    for path in sorted(root.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found["study"].add(ds.StudyInstanceUID)
        found["frame"].add(ds.FrameOfReferenceUID)
        found["series"].add(ds.SeriesInstanceUID)
        found["sop"].add(ds.SOPInstanceUID)
    return found


@pytest.mark.parametrize("storage", ["int16", "uint16"])
def test_dicom_tree_holds_the_nifti_tree_volumes(tmp_path: Path, storage: str) -> None:
    write_synthetic_4dct(tmp_path / "nii", 1, seed=5, storage=storage, progress=False, grid=GRID)
    write_synthetic_4dct(tmp_path / "dcm", 1, seed=5, storage=storage, progress=False,
                         file_format="dicom", grid=GRID)
    avg_nifti = load_volume(tmp_path / "nii" / "res_avg" / "PT001" / "PT001_AVG.nii.gz")
    avg = avg_nifti.hu
    phases = [load_volume(tmp_path / "nii" / "res_phases" / "PT001" /
                          f"PT001_4DCT_Gated {10 * p}.0A.nii.gz").hu for p in range(N_PHASES)]
    assert [p.name for p in (tmp_path / "dcm" / "res_avg" / "PT001").iterdir()] == ["PT001_AVG"]
    assert sorted(p.name for p in (tmp_path / "dcm" / "res_phases" / "PT001").iterdir()) == \
        sorted(f"PT001_4DCT_Gated {10 * p}.0A" for p in range(N_PHASES))
    read = load_series(tmp_path / "dcm" / "res_avg" / "PT001")
    np.testing.assert_array_equal(read.volume.hu, avg)
    np.testing.assert_allclose(read.volume.affine, avg_nifti.affine, atol=1e-5)
    assert read.volume.header.get_data_dtype() == avg_nifti.header.get_data_dtype()
    assert read.volume.header.get_slope_inter() == avg_nifti.header.get_slope_inter()
    assert read.source.geometry.orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # LPS
    assert read.source.storage.bits_stored == (16 if storage == "int16" else 12)
    series = find_series(tmp_path / "dcm" / "res_phases" / "PT001")
    assert sorted(s.description for s in series) == sorted(DESCRIPTIONS[1:])
    for phase in (0, 5, 9):
        picked = pick_series(series, f"*Gated {10 * phase}.0A*")
        assert picked.phase_percent == 10.0 * phase
        np.testing.assert_array_equal(load_series(picked).volume.hu, phases[phase])
    ref_hu, ref_affine = sitk_reading(tmp_path / "dcm" / "res_avg" / "PT001" / "PT001_AVG")
    np.testing.assert_allclose(ref_affine, avg_nifti.affine, atol=1e-5)  # SimpleITK agrees
    np.testing.assert_array_equal(ref_hu, avg)
    assert not (tmp_path / "dcm" / "res_avg" / "PT001" / "PT001_AVG.nii.gz").exists()
    assert (tmp_path / "dcm" / "res_structures" / "PT001" / "GTV").is_dir()  # masks stay NIfTI


def test_one_study_per_patient_and_unique_deterministic_uids(tmp_path: Path) -> None:
    write_synthetic_4dct(tmp_path / "a", 2, seed=1, progress=False, file_format="dicom", grid=GRID)
    write_synthetic_4dct(tmp_path / "b", 2, seed=1, progress=False, file_format="dicom", grid=GRID)
    write_synthetic_4dct(tmp_path / "c", 2, seed=2, progress=False, file_format="dicom", grid=GRID)
    for pid in ("PT001", "PT002"):
        uids = _uids(tmp_path / "a" / "res_avg" / pid)
        phase_uids = _uids(tmp_path / "a" / "res_phases" / pid)
        assert len(uids["study"] | phase_uids["study"]) == 1
        assert len(uids["frame"] | phase_uids["frame"]) == 1
        assert len(phase_uids["series"]) == N_PHASES
    a, b, c = (_uids(tmp_path / name) for name in ("a", "b", "c"))
    assert len(a["study"]) == len(a["frame"]) == 2
    assert len(a["series"]) == 2 * (N_PHASES + 1)
    assert len(a["sop"]) == 2 * (N_PHASES + 1) * GRID.n_slices  # all different
    assert a == b  # same tree, same UIDs
    assert not (a["sop"] | a["series"] | a["study"]) & (c["sop"] | c["series"] | c["study"])
    for uid in a["sop"] | a["series"] | a["study"] | a["frame"]:
        assert pydicom.uid.UID(uid).is_valid
        assert uid.startswith("2.25.")


def test_ras_grid_is_refused_for_dicom(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DICOM series are written in LPS voxel order"):
        write_synthetic_4dct(tmp_path, 1, grid=SyntheticGrid(size=16, n_slices=8,
                                                             orientation="RAS"),
                             progress=False, file_format="dicom")
    with pytest.raises(ConfigError, match=r"unknown format 'dcm'; valid: \('nifti', 'dicom'\)"):
        write_synthetic_4dct(tmp_path, 1, progress=False, file_format="dcm", grid=GRID)
    assert not any(tmp_path.iterdir())


def test_cli_format_dicom_writes_a_readable_tree(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "make_synthetic_4dct.py"
    spec = importlib.util.spec_from_file_location("make_synthetic_4dct", script)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--out", str(tmp_path), "--n_patients", "1", "--size", "16", "--n_slices", "7",
            "--format", "dicom", "--storage", "uint16", "--no_structures", "--no_progress"]
    assert module.main(argv) == 0
    vol = load_series(tmp_path / "res_phases" / "PT001" / "PT001_4DCT_Gated 0.0A").volume
    assert vol.hu.shape == (16, 16, 7)
    assert vol.header.get_data_dtype() == np.uint16
    assert not (tmp_path / "res_structures").exists()


def test_a_killed_earlier_write_leaves_no_partial_series_behind(tmp_path: Path) -> None:
    """A run killed mid-series leaves a hidden temp folder with a partial series (and a NIfTI
    run a temp file): writing again removes them; other hidden entries stay."""
    avg = tmp_path / "res_avg" / "PT001"
    partial = avg / ".PT001_AVG.q1w2e3r4.tmp"
    partial.mkdir(parents=True)
    (partial / "CT_0001.dcm").write_bytes(b"one of 38 slices")
    stale_file = tmp_path / "res_phases" / "PT001" / ".PT001_4DCT_Gated 0.0A.nii.gz.a1b2c3d4.tmp"
    stale_file.parent.mkdir(parents=True)
    stale_file.write_bytes(b"half")
    mine = avg / ".DS_Store"
    mine.write_bytes(b"kept")
    write_synthetic_4dct(tmp_path, 1, seed=1, progress=False, file_format="dicom", grid=GRID)
    assert not partial.exists()
    assert not stale_file.exists()
    assert mine.read_bytes() == b"kept"
    assert sorted(p.name for p in avg.iterdir()) == [".DS_Store", "PT001_AVG"]
