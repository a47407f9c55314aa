"""test.py's results folder holds the patients of the latest run only."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def _test_script() -> ModuleType:
    """test.py as a module (the name ``test`` is taken by Python's own test package)."""
    spec = importlib.util.spec_from_file_location("ct_test_script", REPO / "test.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _touch(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_outputs_of_patients_not_in_the_run_are_removed_and_nothing_else(tmp_path: Path) -> None:
    script = _test_script()
    kept_volumes = ["PT003_fake_B.nii.gz", "PT1_fake_B.nii.gz"]
    kept_images = ["PT003_views_lung.png", "PT003_slice000_real_A.png", "PT1_views_soft_tissue.png",
                   "PT1_slice012_fake_B.png", "notes.png"]
    stale_volumes = ["PT005_fake_B.nii.gz", "PT1_2_fake_B.nii.gz"]
    stale_images = ["PT005_views_lung.png", "PT005_slice031_real_B.png", "PT1_2_views_lung.png"]
    _touch(tmp_path / "volumes", kept_volumes + stale_volumes + ["PT005_mask.nii.gz"])
    _touch(tmp_path / "images", kept_images + stale_images)
    (tmp_path / "metrics.csv").write_text("kept")

    removed = script.remove_stale_outputs(tmp_path, ["PT003", "PT1"])

    assert sorted(p.name for p in removed) == sorted(stale_volumes + stale_images)
    assert sorted(p.name for p in (tmp_path / "volumes").iterdir()) == sorted(
        [*kept_volumes, "PT005_mask.nii.gz"])
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(kept_images)
    assert (tmp_path / "metrics.csv").read_text() == "kept"


def test_patient_ids_are_matched_by_their_safe_file_names(tmp_path: Path) -> None:
    script = _test_script()
    _touch(tmp_path / "volumes", ["patient_7_fake_B.nii.gz"])
    assert script.remove_stale_outputs(tmp_path, ["patient 7"]) == []
    assert script.remove_stale_outputs(tmp_path / "missing", ["patient 7"]) == []
    assert [p.name for p in script.remove_stale_outputs(tmp_path, [])] == [
        "patient_7_fake_B.nii.gz"]
