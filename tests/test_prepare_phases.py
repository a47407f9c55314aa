"""prepare_dataset.py --phases: every gated phase of a 4DCT export beside phase 0, checked like
it, reported when missing or unusable, kept in step on re-runs; NIfTI and DICOM exports alike."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

import prepare_dataset as pdm
from data.nifti_io import load_volume, read_info
from data.pairing import PhaseRequest
from data.split_folders import SIDES
from data.structures import load_structures, phase_structures_dir, structures_dir
from synthetic import (
    TUMOUR_STRUCTURE,
    SyntheticGrid,
    phase_file_name,
    structure_file_name,
    write_synthetic_4dct,
)
from util.errors import ConfigError
from util.phases import STANDARD_PHASES, phase_folder, phase_label

GRID = SyntheticGrid(size=32, n_slices=8)
N_PATIENTS = 3
IDS = [f"PT{k:03d}" for k in range(1, N_PATIENTS + 1)]
LABELS = [phase_label(p) for p in STANDARD_PHASES]
PHASE_KEYS = {"phases", "missing_phases", "phase_problems"}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``nii/`` and ``dcm/``: one synthetic 4DCT (masks with the NIfTI one) in both formats."""
    root = tmp_path_factory.mktemp("export")
    write_synthetic_4dct(root / "nii", N_PATIENTS, grid=GRID, seed=1, progress=False)
    write_synthetic_4dct(root / "dcm", N_PATIENTS, grid=GRID, seed=1, structures=False,
                         progress=False, file_format="dicom")
    return root


def _opts(src: Path, out: Path, phases: str | None = None, **extra: object
          ) -> pdm.PrepareOptions:
    return pdm.PrepareOptions(avg_root=src / "res_avg", phases_root=src / "res_phases",
                              output=out, phases=phases, **extra)  # type: ignore[arg-type]


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _entries(out: Path) -> dict[str, dict]:
    return {e["patient"]: e for e in _manifest(out)["patients"]}


def _phase_source(src: Path, pid: str, percent: float) -> Path:
    return src / "res_phases" / pid / phase_file_name(pid, int(percent) // 10)


def _nifti_files(out: Path) -> list[str]:
    """Every NIfTI file of a dataset, relative (structures included)."""
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz"))


def _nifti(path: Path) -> nib.Nifti1Image:
    img = nib.load(path)
    assert isinstance(img, nib.Nifti1Image)
    return img


def _snapshot(out: Path) -> dict[str, tuple[str, int]]:
    return {p.relative_to(out).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                            p.stat().st_mtime_ns)
            for p in sorted(out.rglob("*")) if p.is_file()}


def test_phase_request_parses_the_option() -> None:
    assert PhaseRequest.parse("all") == PhaseRequest(STANDARD_PHASES, every=True)
    assert PhaseRequest.parse("50,0") == PhaseRequest((0.0, 50.0))
    assert PhaseRequest.parse(" ALL ").wants(12.5)
    assert not PhaseRequest.parse("0,50").wants(30.0)
    assert not PhaseRequest.parse("all").wants(0.0)  # phase 0 is the anchor, found as today
    with pytest.raises(ConfigError, match="--phases"):
        PhaseRequest.parse("0,fifty")


def test_bad_phases_option_is_one_error_line(export: Path, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    src = export / "nii"
    assert pdm.main(["--avg_root", str(src / "res_avg"), "--phases_root",
                     str(src / "res_phases"), "--output", str(tmp_path / "ds"), "--phases",
                     "0,100", "--no_progress"]) == 1
    assert "--phases takes 'all' or percentages in [0, 100)" in caplog.text
    assert not (tmp_path / "ds").exists()


def test_all_writes_every_phase_with_the_sources_hu_and_affine(export: Path,
                                                               tmp_path: Path) -> None:
    src, out = export / "nii", tmp_path / "ds"
    result = pdm.prepare_dataset(_opts(src, out, "all"), progress=False)
    assert result.phases == STANDARD_PHASES
    assert result.copied == N_PATIENTS * 11  # the AVG and ten phases each
    manifest = _manifest(out)
    assert manifest["phases"] == LABELS
    assert manifest["options"]["phases"] == "all"
    for pid, entry in _entries(out).items():
        split = entry["split"]
        assert sorted(entry["phases"], key=float) == LABELS
        assert (entry["missing_phases"], entry["phase_problems"]) == ([], [])
        for percent, label in zip(STANDARD_PHASES, LABELS, strict=True):
            source, record = _phase_source(src, pid, percent), entry["phases"][label]
            dest = out / phase_folder(split, percent) / f"{pid}.nii.gz"
            assert record["file"] == dest.relative_to(out).as_posix()
            assert record["source"] == str(source.absolute())
            assert record["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
            assert record["reoriented"] is None
            got, want = load_volume(dest), load_volume(source)
            np.testing.assert_array_equal(got.hu, want.hu)
            np.testing.assert_array_equal(got.affine, want.affine)
            assert dest.read_bytes() == source.read_bytes()  # .nii.gz: copied byte for byte
        assert entry["files"]["B"] == f"{split}B/{pid}.nii.gz"  # phase 0 where it always was
    assert len(_nifti_files(out)) == N_PATIENTS * 11
    phase50 = load_volume(out / phase_folder(result.splits["PT001"], 50.0) / "PT001.nii.gz")
    phase0 = load_volume(out / f"{result.splits['PT001']}B" / "PT001.nii.gz")
    assert np.abs(phase50.hu - phase0.hu).max() > 100  # the phases differ: each is its own file


def test_a_list_writes_just_those_phases(export: Path, tmp_path: Path) -> None:
    src, out = export / "nii", tmp_path / "ds"
    assert pdm.main(["--avg_root", str(src / "res_avg"), "--phases_root",
                     str(src / "res_phases"), "--output", str(out), "--phases", "0,50",
                     "--no_progress"]) == 0
    assert _manifest(out)["phases"] == ["0", "50"]
    assert _manifest(out)["options"]["phases"] == "0,50"
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == sorted(f"{s}{k}" for s in ("train", "val", "test")
                             for k in ("A", "B", "B_p50"))
    for pid, entry in _entries(out).items():
        assert sorted(entry["phases"]) == ["0", "50"]
        np.testing.assert_array_equal(
            load_volume(out / entry["phases"]["50"]["file"]).hu,
            load_volume(_phase_source(src, pid, 50.0)).hu)


def test_without_phases_the_dataset_is_the_phase0_one(export: Path, tmp_path: Path) -> None:
    src = export / "nii"
    pdm.prepare_dataset(_opts(src, tmp_path / "plain"), progress=False)
    pdm.prepare_dataset(_opts(src, tmp_path / "all", "all"), progress=False)
    plain, full = _manifest(tmp_path / "plain"), _manifest(tmp_path / "all")
    assert not [p for p in (tmp_path / "plain").iterdir() if "_p" in p.name]
    assert set(plain) == {"options", "counts", "patients", "unpaired_patients",
                          "structure_problems"}
    assert "phases" not in plain["options"]
    assert not any(PHASE_KEYS & set(e) for e in plain["patients"])
    # a --phases run adds its keys and folders, and changes nothing of the phase-0 dataset
    full.pop("phases")
    full["options"].pop("phases")
    for entry in full["patients"]:
        for key in PHASE_KEYS:
            entry.pop(key)
    full["options"]["output"] = plain["options"]["output"]
    assert full == plain
    for split in ("train", "val", "test"):
        for side in SIDES:
            folder = f"{split}{side}"
            assert {p.name: p.read_bytes() for p in (tmp_path / "plain" / folder).iterdir()} == \
                {p.name: p.read_bytes() for p in (tmp_path / "all" / folder).iterdir()}
    lines = (tmp_path / "plain" / "unpaired.txt").read_text().splitlines()
    assert not [x for x in lines if x.startswith(("phases:", "phases left out"))]
    assert "phases: 0, 10, 20" in (tmp_path / "all" / "unpaired.txt").read_text()


@pytest.fixture(scope="module")
def troubled(export: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Path, Path, pdm.PrepareResult, str]:
    """``--phases all`` on the NIfTI export with a problem phase in each patient, and one
    patient with a fourth-of-the-way phase (12.5 %) that the others lack."""
    root = tmp_path_factory.mktemp("troubled")
    src = root / "src"
    shutil.copytree(export / "nii", src, ignore=shutil.ignore_patterns("res_structures"))
    _phase_source(src, "PT001", 30.0).unlink()  # missing
    shutil.copyfile(_phase_source(src, "PT002", 40.0),
                    src / "res_phases" / "PT002" / "PT002 resampled Gated 40.0A.nii.gz")
    off = _phase_source(src, "PT003", 60.0)  # 1.5 mm off the AVG's grid
    img = _nifti(off)
    moved = img.affine.copy()
    moved[2, 3] += 1.5
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), moved, img.header), off)
    truncated = _phase_source(src, "PT003", 80.0)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    ras = _phase_source(src, "PT002", 70.0)  # same world grid, voxels stored RAS
    nib.save(nib.as_closest_canonical(_nifti(ras)), ras)
    shutil.copyfile(_phase_source(src, "PT002", 10.0),
                    src / "res_phases" / "PT002" / "PT002_4DCT_Gated 12.5A.nii.gz")
    out = root / "ds"
    result = pdm.prepare_dataset(_opts(src, out, "all"), progress=False)
    return src, out, result, pdm.summary_table(result)


@pytest.mark.parametrize(("patient", "label", "pattern"), [
    ("PT001", "30", r"^missing: no NIfTI file in .*res_phases/PT001 names phase 30 %"),
    ("PT003", "12.5", r"^missing: no NIfTI file in .*res_phases/PT003 names phase 12\.5 %"),
    ("PT002", "40", r"^duplicate: 2 files in .*res_phases/PT002 name phase 40 %: "
                    r"PT002 resampled Gated 40\.0A\.nii\.gz, PT002_4DCT_Gated 40\.0A\.nii\.gz"),
    ("PT003", "60", r"^different voxel grids: .*PT003_AVG\.nii\.gz and .*PT003_4DCT_Gated "
                    r"60\.0A\.nii\.gz: origin differs by 1\.5 mm"),
    ("PT003", "80", r"^unreadable file: .*PT003_4DCT_Gated 80\.0A\.nii\.gz: voxel data could "
                    r"not be read"),
])
def test_every_phase_left_out_is_reported_with_its_reason(
        troubled: tuple[Path, Path, pdm.PrepareResult, str], patient: str, label: str,
        pattern: str) -> None:
    _, out, result, summary = troubled
    entry = _entries(out)[patient]
    reasons = [p["reason"] for p in entry["phase_problems"] if p["phase"] == label]
    if reasons:
        assert label not in entry["missing_phases"]
    else:
        assert label in entry["missing_phases"]
        phases = next(x.phases for x in result.paired if x.patient == patient)
        assert phases is not None
        reasons = [r for p, r in phases.left_out() if phase_label(p) == label]
    assert len(reasons) == 1, reasons
    assert re.search(pattern, reasons[0]), reasons
    line = f"{patient}: phase {label}: {reasons[0]}"
    assert f"  {line}" in summary.splitlines()
    assert line in (out / "unpaired.txt").read_text().splitlines()
    assert label not in entry["phases"]
    assert not (out / phase_folder(entry["split"], float(label)) / f"{patient}.nii.gz").exists()


def test_patients_stay_paired_with_their_good_phases(
        troubled: tuple[Path, Path, pdm.PrepareResult, str]) -> None:
    src, out, result, summary = troubled
    manifest = _manifest(out)
    assert manifest["phases"] == sorted([*LABELS, "12.5"], key=float)
    assert json.loads((out / "unpaired.json").read_text()) == []
    assert not result.unpaired
    kept = {pid: sorted(e["phases"], key=float) for pid, e in _entries(out).items()}
    assert kept == {"PT001": [x for x in LABELS if x != "30"],
                    "PT002": sorted([*(x for x in LABELS if x != "40"), "12.5"], key=float),
                    "PT003": [x for x in LABELS if x not in ("60", "80")]}
    assert {pid: e["missing_phases"] for pid, e in _entries(out).items()} == \
        {"PT001": ["12.5", "30"], "PT002": [], "PT003": ["12.5"]}
    assert "phases left out: 6 (of 3 patients)" in summary
    split = result.splits["PT002"]
    np.testing.assert_array_equal(
        load_volume(out / phase_folder(split, 12.5) / "PT002.nii.gz").hu,
        load_volume(_phase_source(src, "PT002", 10.0)).hu)


def test_a_phase_stored_ras_beside_an_lps_avg_is_reordered(
        troubled: tuple[Path, Path, pdm.PrepareResult, str], export: Path) -> None:
    src, out, _, _ = troubled
    entry = _entries(out)["PT002"]
    assert entry["phases"]["70"]["reoriented"] == {"from": "RAS", "to": "LPS"}
    ras = _phase_source(src, "PT002", 70.0)
    assert nib.aff2axcodes(_nifti(ras).affine) == ("R", "A", "S")
    original = load_volume(_phase_source(export / "nii", "PT002", 70.0))  # stored LPS
    got = load_volume(out / entry["phases"]["70"]["file"])
    np.testing.assert_array_equal(got.hu, original.hu)
    np.testing.assert_allclose(got.affine, original.affine, atol=1e-5)
    assert entry["phases"]["70"]["sha256"] == hashlib.sha256(ras.read_bytes()).hexdigest()


def test_rerun_keeps_files_and_removes_what_no_longer_belongs(export: Path,
                                                              tmp_path: Path) -> None:
    src, out = export / "nii", tmp_path / "ds"
    pdm.prepare_dataset(_opts(src, out, "all"), progress=False)
    before = _snapshot(out)
    again = pdm.prepare_dataset(_opts(src, out, "all"), progress=False)
    assert (again.copied, again.skipped, again.removed) == (0, N_PATIENTS * 11, 0)
    assert _snapshot(out) == before  # same bytes, not even rewritten
    leftover = out / "trainB_p50" / ".PT001.nii.gz.ab12cd_3.tmp.nii.gz"
    leftover.write_bytes(b"half written")
    (out / "trainB_p50" / "notes.txt").write_text("not ours")
    moved = pdm.prepare_dataset(_opts(src, out, "all", seed=7), progress=False)
    assert moved.splits != again.splits
    expected = sorted(f for e in _manifest(out)["patients"]
                      for f in [e["files"]["A"]] + [r["file"] for r in e["phases"].values()])
    assert _nifti_files(out) == expected  # a patient's phases moved with it, none left behind
    assert not leftover.exists()
    fewer = pdm.prepare_dataset(_opts(src, out, "0,50", seed=7), progress=False)
    assert fewer.removed == N_PATIENTS * 8
    assert sorted({p.parent.name for p in out.glob("*_p*/*.nii.gz")}) == \
        ["testB_p50", "trainB_p50", "valB_p50"]
    assert not (out / "valB_p10").exists()  # an emptied folder of a phase no longer prepared
    plain = pdm.prepare_dataset(_opts(src, out, seed=7), progress=False)
    assert plain.removed == N_PATIENTS
    assert not list(out.glob("*_p*/*.nii.gz"))
    assert sorted(p.name for p in out.glob("*_p*")) == ["trainB_p50"]  # kept for notes.txt
    assert (out / "trainB_p50" / "notes.txt").exists()
    assert PHASE_KEYS.isdisjoint(_manifest(out)["patients"][0])


def test_phase_structures_are_written_beside_each_phase(export: Path, tmp_path: Path) -> None:
    src, out = export / "nii", tmp_path / "ds"
    opts = _opts(src, out, "0,50", structures_root=src / "res_structures")
    pdm.prepare_dataset(opts, progress=False)
    for pid, entry in _entries(out).items():
        split = entry["split"]
        for percent, folder in ((0.0, structures_dir(out, split)),
                                (50.0, phase_structures_dir(out, split, 50.0))):
            source = src / "res_structures" / pid / TUMOUR_STRUCTURE / structure_file_name(
                pid, TUMOUR_STRUCTURE, int(percent) // 10)
            dest = folder / TUMOUR_STRUCTURE / f"{pid}.nii.gz"
            np.testing.assert_array_equal(_nifti(dest).get_fdata(),
                                          _nifti(source).get_fdata())
            truth = read_info(out / phase_folder(split, percent) / f"{pid}.nii.gz")
            assert load_structures(folder, pid, truth)[TUMOUR_STRUCTURE].any()
        record = entry["phases"]["50"]["structures"][TUMOUR_STRUCTURE]
        assert record["file"] == f"{split}B_p50_structures/{TUMOUR_STRUCTURE}/{pid}.nii.gz"
        assert record["source"].endswith(f"{pid}_GTV_Gated 50.0A.nii.gz")
        assert entry["structures"][TUMOUR_STRUCTURE]["source"].endswith("Gated 0.0A.nii.gz")
        phase0_mask = _nifti(out / entry["structures"][TUMOUR_STRUCTURE]["file"]).get_fdata()
        phase50_mask = _nifti(out / record["file"]).get_fdata()
        assert not np.array_equal(phase0_mask, phase50_mask)  # the tumour moved
    assert _manifest(out)["structure_problems"] == []
    pdm.prepare_dataset(_opts(src, out, "0", structures_root=src / "res_structures"),
                        progress=False)
    assert not list(out.glob("*_p50_structures"))
    assert len(list(out.glob("*B_structures/GTV/*.nii.gz"))) == N_PATIENTS


def test_dicom_export_gives_the_voxels_of_the_nifti_export(export: Path, tmp_path: Path) -> None:
    nii = pdm.prepare_dataset(_opts(export / "nii", tmp_path / "nii", "all"), progress=False)
    dcm = pdm.prepare_dataset(_opts(export / "dcm", tmp_path / "dcm", "all"), progress=False)
    assert dcm.splits == nii.splits
    assert _nifti_files(tmp_path / "dcm") == _nifti_files(tmp_path / "nii")
    for rel in _nifti_files(tmp_path / "nii"):
        want, got = load_volume(tmp_path / "nii" / rel), load_volume(tmp_path / "dcm" / rel)
        np.testing.assert_array_equal(got.hu, want.hu)
        np.testing.assert_allclose(got.affine, want.affine, atol=1e-4)
        assert got.header.get_data_dtype() == want.header.get_data_dtype()
    entry = _entries(tmp_path / "dcm")["PT002"]
    record = entry["phases"]["50"]
    folder = export / "dcm" / "res_phases" / "PT002" / "PT002_4DCT_Gated 50.0A"
    assert record["source"] == str(folder.absolute())
    assert record["series"]["series_description"] == "Gated 50.0A"
    assert record["series"]["n_slices"] == GRID.n_slices
    assert re.fullmatch(r"[0-9a-f]{64}", record["sha256"])
    assert entry["phases"]["0"]["series"]["series_description"] == "Gated 0.0A"
    again = pdm.prepare_dataset(_opts(export / "dcm", tmp_path / "dcm", "all"), progress=False)
    assert (again.copied, again.skipped) == (0, N_PATIENTS * 11)


def test_dicom_missing_and_duplicate_series_are_reported(export: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(export / "dcm", src)
    phases = src / "res_phases"
    shutil.rmtree(phases / "PT001" / "PT001_4DCT_Gated 30.0A")
    second = phases / "PT002" / "again Gated 40.0A"
    shutil.copytree(phases / "PT002" / "PT002_4DCT_Gated 40.0A", second)
    for path in second.iterdir():  # another series: same description, its own UID
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.9999.40"
        ds.save_as(path)
    out = tmp_path / "ds"
    pdm.prepare_dataset(_opts(src, out, "all"), progress=False)
    text = (out / "unpaired.txt").read_text()
    assert re.search(r"PT001: phase 30: missing: no CT series under .*res_phases/PT001 names "
                     r"phase 30 %", text)
    assert re.search(r"PT002: phase 40: duplicate: 2 CT series under .*res_phases/PT002 name "
                     r"phase 40 %: 'Gated 40\.0A' .*'Gated 40\.0A'", text)
    assert _entries(out)["PT002"]["phase_problems"][0]["phase"] == "40"
    assert len(_nifti_files(out)) == N_PATIENTS * 11 - 2
