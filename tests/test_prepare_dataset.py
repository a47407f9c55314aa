"""prepare_dataset: pairing, every unpaired reason, patient splits, safe re-runs, safe names."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import prepare_dataset as pdm
from data import split_folders
from data.ct_volumes import check_same_geometry
from data.nifti_io import load_volume
from data.pairing import (
    SPLITS,
    assign_splits,
    file_name_collisions,
    safe_patient_id,
    split_counts,
)
from data.split_folders import SIDES
from tests.conftest import write_raw_header_nifti
from util.errors import ConfigError

SHAPE = (16, 16, 8)
AFFINE = np.array([[-0.97, 0.05, 0.0, 120.5], [-0.05, -0.97, 0.1, 98.0],
                   [0.0, 0.04, 3.0, -310.0], [0.0, 0.0, 0.0, 1.0]])
PHASE0 = "{pid}_4DCT_Gated 0.0A.nii.gz"


def _write(path: Path, seed: int, shape: tuple[int, int, int] = SHAPE,
           affine: np.ndarray = AFFINE) -> Path:
    """Small int16 CT-like volume (HU) at ``path`` (.nii or .nii.gz)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    hu = np.random.default_rng(seed).integers(-1000, 1500, size=shape).astype(np.int16)
    nib.save(nib.Nifti1Image(hu, affine), path)
    return path


def _add_patient(root: Path, pid: str, seed: int = 0, *, avg: bool = True,
                 phases: bool = True) -> None:
    """A well-formed patient: one AVG, phase 0 and phase 10 (which must not be picked)."""
    if avg:
        _write(root / "res_avg" / pid / f"{pid}_AVG.nii.gz", seed)
    if phases:
        _write(root / "res_phases" / pid / PHASE0.format(pid=pid), seed + 1)
        _write(root / "res_phases" / pid / f"{pid}_4DCT_Gated 10.0A.nii.gz", seed + 2)


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--avg_root", str(root / "res_avg"), "--phases_root", str(root / "res_phases"),
            "--output", str(out), "--no_progress", *extra]


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """{relative path: (sha256, mtime_ns)} of every file under ``folder``."""
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                               p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _split_files(out: Path) -> dict[str, list[str]]:
    """{split folder: sorted file names} for the six split folders."""
    return {f"{s}{side}": sorted(p.name for p in (out / f"{s}{side}").iterdir())
            for s in SPLITS for side in SIDES}


def _good_tree(root: Path, n: int) -> list[str]:
    ids = [f"P{k:02d}" for k in range(n)]
    for k, pid in enumerate(ids):
        _add_patient(root, pid, seed=10 * k)
    return ids


def test_good_tree_is_paired_copied_and_recorded(tmp_path: Path) -> None:
    ids = _good_tree(tmp_path / "src", 5)
    out = tmp_path / "ds"
    assert pdm.main(_args(tmp_path / "src", out)) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(e["patient"] for e in manifest["patients"]) == ids
    assert manifest["counts"] == {"train": 3, "val": 1, "test": 1}
    assert manifest["options"]["seed"] == 0
    assert manifest["options"]["phase0_pattern"] == "*Gated 0.0A*.nii*"
    for entry in manifest["patients"]:
        pid, split = entry["patient"], entry["split"]
        assert entry["files"] == {"A": f"{split}A/{pid}.nii.gz", "B": f"{split}B/{pid}.nii.gz"}
        assert entry["phase0"].endswith(PHASE0.format(pid=pid))
        assert entry["shape"] == list(SHAPE)
        np.testing.assert_allclose(entry["spacing_mm"], nib.affines.voxel_sizes(AFFINE),
                                   rtol=1e-6)
        for side, key in (("A", "avg"), ("B", "phase0")):
            assert (out / entry["files"][side]).read_bytes() == Path(entry[key]).read_bytes()
    assert json.loads((out / "unpaired.json").read_text()) == []
    assert "unpaired patients: 0" in (out / "unpaired.txt").read_text()


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """One tree holding every kind of unpaired patient next to two good ones."""
    root = tmp_path_factory.mktemp("broken")
    _good_tree(root, 2)
    _add_patient(root, "no_phases", phases=False)
    _add_patient(root, "no_avg_dir", avg=False)
    _add_patient(root, "no_avg_file", avg=False)
    (root / "res_avg" / "no_avg_file").mkdir(parents=True)
    (root / "res_avg" / "no_avg_file" / "notes.txt").write_text("not a volume")
    _add_patient(root, "two_avg")
    _write(root / "res_avg" / "two_avg" / "two_avg_AVG_v2.nii", 3)
    _add_patient(root, "no_phase0", phases=False)
    _write(root / "res_phases" / "no_phase0" / "no_phase0_4DCT_Gated 50.0A.nii.gz", 4)
    _add_patient(root, "two_phase0")
    _write(root / "res_phases" / "two_phase0" / "copy Gated 0.0A.nii.gz", 5)
    _add_patient(root, "truncated")
    p0 = root / "res_phases" / "truncated" / PHASE0.format(pid="truncated")
    p0.write_bytes(p0.read_bytes()[: p0.stat().st_size // 2])
    _add_patient(root, "shape")
    _write(root / "res_phases" / "shape" / PHASE0.format(pid="shape"), 6, shape=(16, 16, 9))
    _add_patient(root, "affine")
    moved = AFFINE.copy()
    moved[2, 3] += 1.5
    _write(root / "res_phases" / "affine" / PHASE0.format(pid="affine"), 7, affine=moved)
    _add_patient(root, "many", avg=False)  # two problems at once
    (root / "res_avg" / "many").mkdir()
    _write(root / "res_phases" / "many" / "second Gated 0.0A.nii.gz", 8)
    _add_patient(root, "a b")
    _add_patient(root, "a_b")  # same file name as "a b": both are left out
    out = root / "ds"
    assert pdm.main(_args(root, out)) == 0
    return root, json.loads((out / "unpaired.json").read_text())


@pytest.mark.parametrize(("patient", "pattern"), [
    ("no_phases", r"no phases folder: .*res_phases/no_phases does not exist"),
    ("no_avg_dir", r"no AVG folder: .*res_avg/no_avg_dir does not exist"),
    ("no_avg_file", r"no AVG file: nothing in .*res_avg/no_avg_file matches '\*\.nii\*'"),
    ("two_avg", r"ambiguous AVG: 2 files in .*two_avg match .*: two_avg_AVG\.nii\.gz, "
                r"two_avg_AVG_v2\.nii"),
    ("no_phase0", r"no phase-0 file: nothing in .*res_phases/no_phase0 matches"),
    ("two_phase0", r"ambiguous phase-0: 2 files .*: copy Gated 0\.0A\.nii\.gz, "
                   r"two_phase0_4DCT_Gated 0\.0A\.nii\.gz"),
    ("truncated", r"unreadable file: .*truncated_4DCT_Gated 0\.0A\.nii\.gz: voxel data could "
                  r"not be read"),
    ("shape", r"different voxel grids: .*shape_AVG\.nii\.gz and .*shape_4DCT.*: shapes differ, "
              r"\(16, 16, 8\) vs \(16, 16, 9\)"),
    ("affine", r"different voxel grids: .*affine_AVG\.nii\.gz and .*affine_4DCT.*: origin "
               r"differs by 1\.5 mm \(tolerance 0\.001 mm\)$"),
    ("many", r"no AVG file: nothing in .*res_avg/many"),
    ("many", r"ambiguous phase-0: 2 files in .*res_phases/many"),
    ("a_b", r"file name collision: 'a b' and 'a_b' both become the file name 'a_b'"),
    ("a b", r"file name collision: 'a b' and 'a_b' both become the file name 'a_b'"),
])
def test_every_unpaired_reason_is_reported(broken_run: tuple[Path, list[dict]], patient: str,
                                           pattern: str) -> None:
    _, unpaired = broken_run
    reasons = [u["reason"] for u in unpaired if u["patient"] == patient]
    assert any(re.search(pattern, r) for r in reasons), reasons


def test_broken_tree_keeps_only_good_patients(broken_run: tuple[Path, list[dict]]) -> None:
    root, unpaired = broken_run
    manifest = json.loads((root / "ds" / "manifest.json").read_text())
    assert sorted(e["patient"] for e in manifest["patients"]) == ["P00", "P01"]
    assert len(unpaired) == 13  # one reason per broken patient, two for "many"
    text = (root / "ds" / "unpaired.txt").read_text()
    assert "truncated: unreadable file" in text
    assert sum(len(v) for v in _split_files(root / "ds").values()) == 4


@pytest.mark.parametrize(("n", "val", "test", "expected"), [
    (1, 0.1, 0.2, (1, 0, 0)), (2, 0.1, 0.2, (1, 0, 1)), (3, 0.1, 0.2, (1, 1, 1)),
    (4, 0.45, 0.45, (1, 1, 2)), (10, 0.1, 0.2, (7, 1, 2)), (10, 0.0, 0.3, (7, 0, 3)),
    (20, 0.1, 0.2, (14, 2, 4)), (5, 0.0, 0.0, (5, 0, 0)),
])
def test_split_counts(n: int, val: float, test: float, expected: tuple[int, int, int]) -> None:
    assert split_counts(n, val, test) == expected


def test_assign_splits_depends_on_seed_and_set_only() -> None:
    ids = [f"P{k}" for k in range(12)]
    a = assign_splits(ids, 0.1, 0.2, seed=3)
    assert a == assign_splits(list(reversed(ids)), 0.1, 0.2, seed=3)
    assert a != assign_splits(ids, 0.1, 0.2, seed=4)
    assert sorted(a.values()).count("test") == 2


def test_split_is_by_patient(tmp_path: Path) -> None:
    ids = _good_tree(tmp_path / "src", 10)
    out = tmp_path / "ds"
    assert pdm.main(_args(tmp_path / "src", out)) == 0
    files = _split_files(out)
    where = {pid: [f for f, names in files.items() if f"{pid}.nii.gz" in names] for pid in ids}
    for pid, folders in where.items():
        assert len(folders) == 2, (pid, folders)  # one A and one B, same split
        assert folders[0][:-1] == folders[1][:-1]
    assert [len(files[f"{s}A"]) for s in SPLITS] == [7, 1, 2]


def test_two_patients_and_one_patient(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _good_tree(tmp_path / "two", 2)
    assert pdm.main(_args(tmp_path / "two", tmp_path / "ds2")) == 0
    assert [len(_split_files(tmp_path / "ds2")[f"{s}A"]) for s in SPLITS] == [1, 0, 1]
    _good_tree(tmp_path / "one", 1)
    with caplog.at_level(logging.WARNING):
        assert pdm.main(_args(tmp_path / "one", tmp_path / "ds1")) == 0
    assert "only one patient" in caplog.text
    assert _split_files(tmp_path / "ds1")["trainB"] == ["P00.nii.gz"]


def test_rerun_is_idempotent_and_leaves_no_temp_files(tmp_path: Path) -> None:
    _good_tree(tmp_path / "src", 4)
    out = tmp_path / "ds"
    opts = pdm.PrepareOptions(avg_root=tmp_path / "src" / "res_avg",
                              phases_root=tmp_path / "src" / "res_phases", output=out)
    first = pdm.prepare_dataset(opts, progress=False)
    before = _snapshot(out)
    second = pdm.prepare_dataset(opts, progress=False)
    assert (first.copied, second.copied, second.skipped, second.removed) == (8, 0, 8, 0)
    assert _snapshot(out) == before  # same bytes, not even rewritten
    assert not [p for p in out.rglob(".*")]


def test_seed_change_moves_files_without_stale_copies(tmp_path: Path) -> None:
    ids = _good_tree(tmp_path / "src", 6)
    out = tmp_path / "ds"
    assert pdm.main(_args(tmp_path / "src", out, "--seed", "0")) == 0
    (out / "trainA" / "README.txt").write_text("kept: not a NIfTI file")
    assert assign_splits(ids, 0.1, 0.2, 0) != assign_splits(ids, 0.1, 0.2, 1)
    assert pdm.main(_args(tmp_path / "src", out, "--seed", "1")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    expected = sorted(f for e in manifest["patients"] for f in e["files"].values())
    present = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.nii*"))
    assert present == expected
    assert {e["patient"]: e["split"] for e in manifest["patients"]} == \
        assign_splits(ids, 0.1, 0.2, 1)
    assert (out / "trainA" / "README.txt").exists()


def test_removed_patient_and_leftover_temps_are_cleaned(tmp_path: Path) -> None:
    _good_tree(tmp_path / "src", 4)
    out = tmp_path / "ds"
    assert pdm.main(_args(tmp_path / "src", out)) == 0
    split = json.loads((out / "manifest.json").read_text())["patients"][0]["split"]
    gone = json.loads((out / "manifest.json").read_text())["patients"][0]["patient"]
    shutil.rmtree(tmp_path / "src" / "res_avg" / gone)
    shutil.rmtree(tmp_path / "src" / "res_phases" / gone)
    leftovers = [out / "trainA" / ".P01.nii.gz.ab12cd_3.tmp.nii.gz",
                 out / ".manifest.json.zz99aa11.tmp"]
    for path in leftovers:
        path.write_bytes(b"half written")
    (out / "trainA" / ".user_notes").write_text("not ours")
    assert pdm.main(_args(tmp_path / "src", out)) == 0
    assert not (out / f"{split}A" / f"{gone}.nii.gz").exists()
    assert not (out / f"{split}B" / f"{gone}.nii.gz").exists()
    assert not any(p.exists() for p in leftovers)
    assert (out / "trainA" / ".user_notes").exists()


def test_source_tree_is_never_modified(tmp_path: Path) -> None:
    _good_tree(tmp_path / "src", 4)
    _write(tmp_path / "src" / "res_avg" / "raw" / "raw_AVG.nii", 1)
    _write(tmp_path / "src" / "res_phases" / "raw" / "raw Gated 0.0A.nii", 2)
    before = _snapshot(tmp_path / "src")
    for seed in ("0", "1", "1"):
        assert pdm.main(_args(tmp_path / "src", tmp_path / "ds", "--seed", seed)) == 0
    assert _snapshot(tmp_path / "src") == before


@pytest.mark.parametrize("name", ["..", ".", "", "../../etc", "a b/c", "...hidden", "x\\y:z*",
                                  "é"])
def test_safe_patient_id_is_a_plain_file_name(tmp_path: Path, name: str) -> None:
    safe = safe_patient_id(name)
    assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", safe)
    assert safe not in (".", "..")
    dest = (tmp_path / "trainA" / f"{safe}.nii.gz").resolve()
    assert dest.parent == (tmp_path / "trainA").resolve()


def test_unsafe_folder_names_stay_inside_output(tmp_path: Path) -> None:
    src = tmp_path / "src"
    names = ["...", "a b", "we*rd|na:me", "-x"]
    for k, name in enumerate(names):
        _add_patient(src, name, seed=k)
    out = tmp_path / "deep" / "ds"
    before = {p for p in tmp_path.rglob("*") if not p.is_relative_to(out)}
    assert pdm.main(_args(src, out)) == 0
    after = {p for p in tmp_path.rglob("*") if not p.is_relative_to(out)}
    assert after - before == {out.parent}  # nothing but the output's own parent folder
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(e["patient"] for e in manifest["patients"]) == sorted(names)
    for entry in manifest["patients"]:
        for rel in entry["files"].values():
            assert (out / rel).resolve().parent.parent == out.resolve()
    assert {e["safe_id"] for e in manifest["patients"]} >= {"a_b", "we_rd_na_me", "-x"}


def test_nii_source_is_gzipped_with_identical_content(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _good_tree(src, 2)
    avg = _write(src / "res_avg" / "raw" / "raw_AVG.nii", 11, shape=(16, 16, 7))
    _write(src / "res_phases" / "raw" / "raw_4DCT_Gated 0.0A.nii", 12, shape=(16, 16, 7))
    out = tmp_path / "ds"
    assert pdm.main(_args(src, out, "--test_fraction", "0", "--val_fraction", "0")) == 0
    dest = out / "trainA" / "raw.nii.gz"
    assert dest.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(dest.read_bytes()) == avg.read_bytes()  # same header and voxels
    np.testing.assert_array_equal(load_volume(dest).hu, load_volume(avg).hu)
    np.testing.assert_array_equal(load_volume(dest).affine, load_volume(avg).affine)
    mtime = dest.stat().st_mtime_ns
    opts = pdm.PrepareOptions(avg_root=src / "res_avg", phases_root=src / "res_phases",
                              output=out, val_fraction=0.0, test_fraction=0.0)
    assert pdm.prepare_dataset(opts, progress=False).copied == 0
    assert dest.stat().st_mtime_ns == mtime


def test_exit_1_when_nothing_pairs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _add_patient(tmp_path / "src", "lonely", phases=False)
    (tmp_path / "src" / "res_phases").mkdir()
    out = tmp_path / "ds"
    assert pdm.main(_args(tmp_path / "src", out)) == 1
    err = caplog.text
    assert "no patient could be paired" in err
    assert "lonely: no phases folder" in err
    assert not out.exists()


def test_exit_1_on_missing_root_or_bad_options(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    _good_tree(tmp_path / "src", 3)
    missing = ["--avg_root", str(tmp_path / "nope"), "--phases_root",
               str(tmp_path / "src" / "res_phases"), "--output", str(tmp_path / "ds")]
    assert pdm.main(missing) == 1
    assert f"--avg_root {tmp_path / 'nope'}: no such folder" in caplog.text
    caplog.clear()
    assert pdm.main(_args(tmp_path / "src", tmp_path / "ds", "--val_fraction", "0.6",
                          "--test_fraction", "0.5")) == 1
    assert "sum to less than 1" in caplog.text
    inside = tmp_path / "src" / "res_avg" / "dataset"
    with pytest.raises(ConfigError, match="overlap"):
        pdm.prepare_dataset(pdm.PrepareOptions(avg_root=tmp_path / "src" / "res_avg",
                                               phases_root=tmp_path / "src" / "res_phases",
                                               output=inside), progress=False)
    assert not inside.exists()


def test_interrupted_run_is_finished_by_a_rerun(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _good_tree(tmp_path / "src", 4)
    out = tmp_path / "ds"
    opts = pdm.PrepareOptions(avg_root=tmp_path / "src" / "res_avg",
                              phases_root=tmp_path / "src" / "res_phases", output=out)
    real_copy, calls = shutil.copyfile, []

    def copy_then_interrupt(src: Path, dest: Path) -> None:
        calls.append(src)
        if len(calls) == 3:  # Ctrl-C half-way through the third file
            Path(dest).write_bytes(Path(src).read_bytes()[:100])
            raise KeyboardInterrupt
        real_copy(src, dest)

    monkeypatch.setattr(split_folders.shutil, "copyfile", copy_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        pdm.prepare_dataset(opts, progress=False)
    assert len(list(out.glob("*/*.nii.gz"))) == 2
    assert not list(out.rglob(".*"))  # no partial file left behind
    assert not (out / "manifest.json").exists()
    monkeypatch.setattr(split_folders.shutil, "copyfile", real_copy)
    result = pdm.prepare_dataset(opts, progress=False)
    assert (result.copied, result.skipped) == (6, 2)
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["patients"]:
        for side, key in (("A", "avg"), ("B", "phase0")):
            assert (out / entry["files"][side]).read_bytes() == Path(entry[key]).read_bytes()
    assert len(list(out.glob("*/*.nii.gz"))) == 8


def test_grid_tolerance_option_is_used_and_recorded(tmp_path: Path) -> None:
    _good_tree(tmp_path / "src", 2)
    shifted = AFFINE.copy()
    shifted[:3, 3] += 0.01
    _write(tmp_path / "src" / "res_phases" / "P01" / PHASE0.format(pid="P01"), 5,
           affine=shifted)
    out = tmp_path / "ds"
    assert pdm.main(_args(tmp_path / "src", out)) == 0
    reasons = json.loads((out / "unpaired.json").read_text())
    assert "tolerance 0.001 mm" in reasons[0]["reason"]
    assert pdm.main(_args(tmp_path / "src", out, "--geometry_atol_mm", "0.05")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["geometry_atol_mm"] == 0.05
    assert len(manifest["patients"]) == 2


def test_two_folders_with_one_file_name_are_both_left_out(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "src"
    for k, pid in enumerate(["PT 1", "PT_1", "P3", "P4"]):
        _add_patient(src, pid, seed=10 * k)
    out = tmp_path / "ds"
    with caplog.at_level(logging.INFO):
        assert pdm.main(_args(src, out)) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(e["patient"] for e in manifest["patients"]) == ["P3", "P4"]
    assert manifest["unpaired_patients"] == ["PT 1", "PT_1"]
    reasons = {u["patient"]: u["reason"] for u in json.loads((out / "unpaired.json").read_text())}
    for patient in ("PT 1", "PT_1"):
        assert reasons[patient] == ("file name collision: 'PT 1' and 'PT_1' both become the "
                                    "file name 'PT_1'; rename one of the folders")
    assert not list(out.glob("*/PT_1.nii.gz"))
    assert "4 patients: 2 paired, 2 unpaired" in caplog.text


def test_file_name_collisions_case_insensitive_and_three_way() -> None:
    reasons = file_name_collisions(["pt_1", "PT_1", "x y", "x_y", "x-y", "x.y", "ok"])
    assert sorted(reasons) == ["PT_1", "pt_1", "x y", "x_y"]
    assert reasons["pt_1"] == ("file name collision: 'PT_1' and 'pt_1' both become the file "
                               "names 'PT_1' and 'pt_1', one name on a case-insensitive disk; "
                               "rename one of the folders")
    three = file_name_collisions(["a b", "a_b", "a*b"])
    assert set(three.values()) == {"file name collision: 'a b', 'a*b' and 'a_b' all become the "
                                   "file name 'a_b'; rename one of the folders"}


def test_every_entry_of_both_trees_is_paired_or_reported(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "src"
    avg, phases = src / "res_avg", src / "res_phases"
    _good_tree(src, 2)
    _add_patient(src, "real")
    (avg / "linked").symlink_to(avg / "real", target_is_directory=True)  # a folder: usable
    _add_patient(src, "linked", avg=False)
    (avg / "PT9").symlink_to(tmp_path / "gone")  # broken, and nothing in phases_root
    (phases / "loop").symlink_to(phases / "loop")
    _add_patient(src, "PT7", phases=False)
    (phases / "PT7").write_text("a stray file where a folder should be")
    (avg / "notes.txt").write_text("a stray file at patient level")
    (avg / ".DS_Store").write_bytes(b"\0")  # hidden file: ignored
    out = tmp_path / "ds"
    with caplog.at_level(logging.INFO):
        assert pdm.main(_args(src, out)) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    paired = sorted(e["patient"] for e in manifest["patients"])
    assert paired == ["P00", "P01", "linked", "real"]
    entries = {p.name for root in (avg, phases) for p in root.iterdir()} - {".DS_Store"}
    assert set(paired) | set(manifest["unpaired_patients"]) == entries
    assert not set(paired) & set(manifest["unpaired_patients"])
    reasons: dict[str, list[str]] = {}
    for u in json.loads((out / "unpaired.json").read_text()):
        reasons.setdefault(u["patient"], []).append(u["reason"])
    assert reasons["PT9"] == [f"not a patient folder: {avg / 'PT9'} is a broken symbolic link "
                              f"(to {tmp_path / 'gone'})",
                              f"no phases folder: {phases / 'PT9'} does not exist (patient only "
                              f"in {avg})"]
    assert f"not a patient folder: {phases / 'loop'} is a symbolic link loop" in reasons["loop"]
    assert reasons["PT7"] == [f"not a patient folder: {phases / 'PT7'} is a file, not a folder"]
    assert f"not a patient folder: {avg / 'notes.txt'} is a file, not a folder" \
        in reasons["notes.txt"]
    assert "8 patients: 4 paired, 4 unpaired" in caplog.text
    assert f"{avg}: ignoring hidden file .DS_Store" in caplog.text


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _all_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else b""
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize(("where", "problem"), [
    ("taken", "is a file, not a folder"),
    ("taken/ds", "cannot be created: {tmp}/taken is a file, not a folder"),
    ("taken/deeper/ds", "cannot be created: {tmp}/taken is a file, not a folder"),
])
def test_output_that_cannot_be_a_folder_is_one_error_line(tmp_path: Path, where: str,
                                                          problem: str,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    _good_tree(tmp_path / "src", 3)
    (tmp_path / "taken").write_text("my notes")
    before = _all_files(tmp_path)
    assert pdm.main(_args(tmp_path / "src", tmp_path / where)) == 1
    assert _errors(caplog) == [f"--output {tmp_path / where}: "
                               f"{problem.format(tmp=tmp_path)}"]
    assert _all_files(tmp_path) == before  # nothing written, the file untouched


def test_read_only_output_location_is_one_error_line(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    _good_tree(tmp_path / "src", 3)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("this user (root?) can write into a 0555 folder")
        assert pdm.main(_args(tmp_path / "src", locked / "ds")) == 1
    finally:
        locked.chmod(0o755)
    assert _errors(caplog) == [f"--output {locked / 'ds'}: cannot be created: {locked} is not "
                               f"writable"]
    assert not list(locked.iterdir())


@pytest.mark.parametrize("refused", ["ds", "trainA"])
def test_folder_creation_refused_by_the_system_is_one_error_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        refused: str) -> None:
    """As root a 0555 folder is writable, so a read-only disk is simulated at mkdir."""
    _good_tree(tmp_path / "src", 3)
    out = tmp_path / "ds"
    real_mkdir = Path.mkdir

    def read_only_mkdir(self: Path, *args: object, **kwargs: object) -> None:
        if self.name == refused:
            raise OSError(30, "Read-only file system", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only_mkdir)
    assert pdm.main(_args(tmp_path / "src", out)) == 1
    path = out if refused == "ds" else out / "trainA"
    assert _errors(caplog) == [f"{path}: cannot create the folder (Read-only file system)"]
    assert not list(out.rglob("*.nii.gz")) if out.exists() else True


def _store_reordered(path: Path, hu_lps: np.ndarray, affine_lps: np.ndarray, codes: str,
                     dtype: type, slope: float, inter: float) -> Path:
    """Write ``hu_lps`` (HU, voxel order of ``affine_lps``) with its voxels in ``codes`` order:
    the same world grid, another voxel order; ``dtype`` raw values with slope/inter."""
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine_lps),
                                           nib.orientations.axcodes2ornt(tuple(codes)))
    hu = nib.orientations.apply_orientation(hu_lps, ornt)
    affine = affine_lps @ nib.orientations.inv_ornt_aff(ornt, hu_lps.shape)
    raw = np.rint((hu - inter) / slope).astype(dtype)
    img = nib.Nifti1Image(raw, affine)
    img.header.set_slope_inter(slope, inter)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


LPS_GRID = np.array([[-0.9, 0.0, 0.0, 120.0], [0.0, -0.9, 0.0, 95.0], [0.0, 0.0, 3.0, -310.0],
                     [0.0, 0.0, 0.0, 1.0]])


def _reordered_patient(src: Path, pid: str, codes: str, phase0_seed: int = 1
                       ) -> tuple[Path, Path, np.ndarray]:
    """AVG stored LPS (uint16, scl_inter -1024, 7 slices); phase 0 on the same world grid stored
    in ``codes`` voxel order (int16, slope 2, inter -1000). Returns (avg, phase 0, phase-0 HU in
    the AVG's voxel order)."""
    shape = (12, 10, 7)
    avg_hu = np.random.default_rng(0).integers(-1000, 1500, size=shape).astype(np.float32)
    avg = _store_reordered(src / "res_avg" / pid / f"{pid}_AVG.nii.gz", avg_hu, LPS_GRID, "LPS",
                           np.uint16, 1.0, -1024.0)
    rng = np.random.default_rng(phase0_seed)
    p0_hu = (rng.integers(-500, 700, size=shape) * 2).astype(np.float32)
    p0 = _store_reordered(src / "res_phases" / pid / PHASE0.format(pid=pid), p0_hu, LPS_GRID,
                          codes, np.int16, 2.0, -1000.0)
    return avg, p0, p0_hu


@pytest.mark.parametrize("codes", ["RAS", "SLA"])
def test_phase0_in_another_voxel_order_is_reordered_losslessly(tmp_path: Path,
                                                               codes: str) -> None:
    src, out = tmp_path / "src", tmp_path / "ds"
    _good_tree(src, 2)
    avg, p0, p0_hu = _reordered_patient(src, "flip", codes)
    assert pdm.main(_args(src, out, "--val_fraction", "0", "--test_fraction", "0")) == 0
    entry = next(e for e in json.loads((out / "manifest.json").read_text())["patients"]
                 if e["patient"] == "flip")
    assert entry["phase0_reoriented"] == {"from": codes, "to": "LPS"}
    assert entry["phase0_sha256"] == hashlib.sha256(p0.read_bytes()).hexdigest()
    assert (out / "trainA" / "flip.nii.gz").read_bytes() == avg.read_bytes()
    dest = out / "trainB" / "flip.nii.gz"
    img, source = nib.load(dest), nib.load(p0)
    assert img.get_data_dtype() == np.dtype(np.int16)
    assert (img.dataobj.slope, img.dataobj.inter) == (2.0, -1000.0)
    np.testing.assert_allclose(img.affine, LPS_GRID, atol=1e-5)
    vol, orig = load_volume(dest), load_volume(p0)
    np.testing.assert_array_equal(vol.hu, p0_hu)  # HU identical, in the AVG's voxel order
    for ijk in [(0, 0, 0), (11, 9, 6), (3, 7, 5)]:  # a voxel keeps its world position and HU
        world = vol.affine @ [*ijk, 1]
        src_ijk = tuple(int(v) for v in np.rint(np.linalg.solve(orig.affine, world)[:3]))
        assert vol.hu[ijk] == orig.hu[src_ijk]
    assert sorted(np.unique(np.asarray(img.dataobj.get_unscaled()))) == \
        sorted(np.unique(np.asarray(source.dataobj.get_unscaled())))  # raw values kept
    assert not json.loads((out / "unpaired.json").read_text())
    check_same_geometry(load_volume(out / "trainA" / "flip.nii.gz").info, vol.info)  # as train


def test_reordered_phase0_rerun_is_idempotent_and_follows_the_source(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "ds"
    _good_tree(src, 2)
    _, p0, _ = _reordered_patient(src, "flip", "RAS")
    opts = pdm.PrepareOptions(avg_root=src / "res_avg", phases_root=src / "res_phases",
                              output=out, val_fraction=0.0, test_fraction=0.0)
    assert pdm.prepare_dataset(opts, progress=False).copied == 6
    before = _snapshot(out)
    second = pdm.prepare_dataset(opts, progress=False)
    assert (second.copied, second.skipped, second.removed) == (0, 6, 0)
    assert _snapshot(out) == before  # same bytes, not even rewritten
    _, p0, p0_hu = _reordered_patient(src, "flip", "RAS", phase0_seed=5)  # new phase 0 only
    third = pdm.prepare_dataset(opts, progress=False)
    assert (third.copied, third.skipped) == (1, 5)
    np.testing.assert_array_equal(load_volume(out / "trainB" / "flip.nii.gz").hu, p0_hu)
    entry = next(e for e in json.loads((out / "manifest.json").read_text())["patients"]
                 if e["patient"] == "flip")
    assert entry["phase0_sha256"] == hashlib.sha256(p0.read_bytes()).hexdigest()
    (out / "trainB" / "flip.nii.gz").write_bytes(b"damaged")
    assert pdm.prepare_dataset(opts, progress=False).copied == 1
    np.testing.assert_array_equal(load_volume(out / "trainB" / "flip.nii.gz").hu, p0_hu)


@pytest.mark.parametrize(("change", "codes", "message"), [
    ({"spacing": 1.0}, "LPS", "voxel spacing 0.9 x 0.9 x 3.0 mm vs 1.0 x 1.0 x 3.0 mm"),
    ({"spacing": 1.0}, "RAS", "voxel spacing 0.9 x 0.9 x 3.0 mm vs 1.0 x 1.0 x 3.0 mm"),
    ({"shift": 12.0}, "LPS", "origin differs by 12.0 mm"),
    ({"shift": 12.0}, "RAS", "origin differs by 12.0 mm"),
    ({"slices": 6}, "LPS", "shapes differ, (12, 10, 7) vs (12, 10, 6)"),
    ({"slices": 6}, "SLA", "shapes differ, (12, 10, 7) vs (12, 10, 6)"),
])
def test_real_grid_mismatch_is_refused_saying_what_differs(tmp_path: Path, change: dict,
                                                           codes: str, message: str) -> None:
    src, out = tmp_path / "src", tmp_path / "ds"
    _good_tree(src, 2)
    avg, _, _ = _reordered_patient(src, "bad", "LPS")
    affine, shape = LPS_GRID.copy(), (12, 10, change.get("slices", 7))
    affine[:2, :2] *= change.get("spacing", 0.9) / 0.9
    affine[2, 3] += change.get("shift", 0.0)
    hu = np.random.default_rng(1).integers(-1000, 1500, size=shape).astype(np.float32)
    p0 = _store_reordered(src / "res_phases" / "bad" / PHASE0.format(pid="bad"), hu, affine,
                          codes, np.int16, 1.0, 0.0)
    assert pdm.main(_args(src, out)) == 0
    reasons = [u["reason"] for u in json.loads((out / "unpaired.json").read_text())]
    assert len(reasons) == 1
    assert reasons[0].startswith(f"different voxel grids: {avg} and {p0}: {message}")
    assert "affines differ" not in reasons[0]
    if codes != "LPS":
        assert f"compared in the first file's voxel order ({codes} -> LPS)" in reasons[0]


@pytest.mark.parametrize("side", ["res_avg", "res_phases"])
def test_a_zero_voxel_size_without_sform_leaves_the_patient_unpaired(tmp_path: Path,
                                                                     side: str) -> None:
    _good_tree(tmp_path / "src", 2)
    _add_patient(tmp_path / "src", "P09", seed=90)
    name = "P09_AVG.nii.gz" if side == "res_avg" else PHASE0.format(pid="P09")
    flat = write_raw_header_nifti(tmp_path / "src" / side / "P09" / name,
                                  np.random.default_rng(9).integers(-1000, 1500, SHAPE),
                                  AFFINE, qform_code=1, sform_code=0,
                                  pixdim=(0.97, 0.97, 0.0))
    out = tmp_path / "ds"
    assert pdm.main(_args(tmp_path / "src", out)) == 0
    reasons = {u["patient"]: u["reason"] for u in json.loads((out / "unpaired.json").read_text())}
    assert list(reasons) == ["P09"]
    assert f"{flat}: the voxel size along axis K (pixdim[3]) is 0" in reasons["P09"]
    assert "no usable geometry" in reasons["P09"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(e["patient"] for e in manifest["patients"]) == ["P00", "P01"]
    assert not [p for p in out.rglob("P09*")]
