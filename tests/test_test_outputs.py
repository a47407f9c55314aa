"""test.py's results: the patients of the latest run only, one file per patient, the same
files for the same inputs, sampling on request, any slice size, one-line output errors."""

import errno
import json
import logging
import os
import re
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pytest

from inference.results_folder import remove_stale_outputs
from tests.conftest import OBLIQUE_AFFINE, RAS_AFFINE, ct_like, write_nifti, write_pair_tree
from tests.tiny_runs import dropout_and_plain_runs, load_script


def _test_script() -> ModuleType:
    """test.py as a module (the name ``test`` is taken by Python's own test package)."""
    return load_script("test.py", "ct_test_script")


def _touch(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_outputs_of_patients_not_in_the_run_are_removed_and_nothing_else(tmp_path: Path) -> None:
    kept_volumes = ["PT003_fake_B.nii.gz", "PT1_fake_B.nii.gz"]
    kept_images = ["PT003_views_lung.png", "PT003_slice000_real_A.png", "PT1_views_soft_tissue.png",
                   "PT1_slice012_fake_B.png", "PT1_views_lung_base.png", "notes.png",
                   "diaphragm_error_by_patient.png"]
    kept_pages = ["PT003.html", "PT1.html"]
    stale_volumes = ["PT005_fake_B.nii.gz", "PT1_2_fake_B.nii.gz"]
    stale_images = ["PT005_views_lung.png", "PT005_slice031_real_B.png", "PT1_2_views_lung.png",
                    "PT005_views_lung_base.png"]
    stale_pages = ["PT005.html", "PT1_2.html"]
    _touch(tmp_path / "volumes", kept_volumes + stale_volumes + ["PT005_mask.nii.gz"])
    _touch(tmp_path / "images", kept_images + stale_images)
    _touch(tmp_path / "patients", [*kept_pages, *stale_pages, "PT005.txt"])
    (tmp_path / "metrics.csv").write_text("kept")

    removed = remove_stale_outputs(tmp_path, ["PT003", "PT1"])

    assert sorted(p.name for p in removed) == sorted(stale_volumes + stale_images + stale_pages)
    assert sorted(p.name for p in (tmp_path / "volumes").iterdir()) == sorted(
        [*kept_volumes, "PT005_mask.nii.gz"])
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(kept_images)
    assert sorted(p.name for p in (tmp_path / "patients").iterdir()) == sorted(
        [*kept_pages, "PT005.txt"])
    assert (tmp_path / "metrics.csv").read_text() == "kept"
    removed = remove_stale_outputs(tmp_path, ["PT003", "PT1"], keep_pictures=False)
    assert sorted(p.name for p in removed) == sorted(kept_images[:5] + kept_pages)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(kept_images[5:])


def test_patient_ids_are_matched_by_their_safe_file_names(tmp_path: Path) -> None:
    _touch(tmp_path / "volumes", ["patient_7_fake_B.nii.gz"])
    assert remove_stale_outputs(tmp_path, ["patient 7"]) == []
    assert remove_stale_outputs(tmp_path / "missing", ["patient 7"]) == []
    assert [p.name for p in remove_stale_outputs(tmp_path, [])] == [
        "patient_7_fake_B.nii.gz"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """checkpoints/run (dropout) and checkpoints/plain (--no_dropout)."""
    return dropout_and_plain_runs(tmp_path_factory.mktemp("ck"))


def _argv(root: Path, runs: Path, results: Path, *extra: str, name: str = "run") -> list[str]:
    return ["--dataroot", str(root), "--checkpoints_dir", str(runs), "--name", name,
            "--model", "pix2pix", "--dataset_mode", "nifti_aligned", "--axial_slice",
            "--gpu_ids", "-1", "--results_dir", str(results), *extra]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_inputs_with_one_safe_name_are_refused_before_anything_is_written(tmp_path, runs,
                                                                          caplog):
    root = tmp_path / "data"
    write_pair_tree(root, "test", {"PT 1": (64, 64, 3), "PT_1": (64, 64, 3), "PT2": (64, 64, 3)})
    with caplog.at_level(logging.ERROR):
        assert _test_script().main(_argv(root, runs, tmp_path / "res")) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "\n" not in errors[0]
    assert f"{root / 'testA' / 'PT 1.nii.gz'} and {root / 'testA' / 'PT_1.nii.gz'}" in errors[0]
    assert "PT_1_fake_B.nii.gz" in errors[0]
    assert not (tmp_path / "res").exists()


def test_two_runs_write_the_same_volumes_and_the_count_is_that_of_the_files(tmp_path, runs,
                                                                             capsys):
    root = tmp_path / "data"
    write_pair_tree(root, "test", {"PT 1": (64, 64, 3), "PT2": (64, 64, 3)}, with_b=False)
    script = _test_script()
    volumes = {}
    # what a run killed while writing leaves: removed at the next start
    left = (tmp_path / "second" / "run" / "test_latest" / "volumes"
            / ".PT2_fake_B.nii.gz.x1y2z3_w.tmp.nii.gz")
    left.parent.mkdir(parents=True)
    left.write_bytes(b"half a volume")
    for results in ("first", "second"):
        assert script.main(_argv(root, runs, tmp_path / results, "--no_pictures")) == 0
        folder = tmp_path / results / "run" / "test_latest" / "volumes"
        volumes[results] = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert sorted(volumes["first"]) == ["PT2_fake_B.nii.gz", "PT_1_fake_B.nii.gz"]
    assert volumes["first"] == volumes["second"]  # no --eval, and still no dropout noise
    assert "test_latest/volumes (2 patients)" in capsys.readouterr().out
    assert not left.exists()


def test_samples_write_std_volumes_that_a_single_pass_run_removes(tmp_path, runs):
    root = tmp_path / "data"
    write_pair_tree(root, "test", {"p1": (64, 64, 3)}, affine=OBLIQUE_AFFINE)
    script = _test_script()
    out = tmp_path / "res" / "run" / "test_latest"
    assert script.main(_argv(root, runs, tmp_path / "res", "--samples", "3", "--seed", "4",
                             "--no_pictures")) == 0
    std = nib.load(out / "volumes" / "p1_fake_B_std.nii.gz")
    assert std.get_data_dtype() == np.float32
    assert std.shape == (64, 64, 3)
    np.testing.assert_allclose(std.affine, OBLIQUE_AFFINE, atol=1e-6)
    assert std.get_fdata().max() > 1.0
    first = (out / "volumes" / "p1_fake_B.nii.gz").read_bytes()
    assert script.main(_argv(root, runs, tmp_path / "res", "--samples", "3", "--seed", "4",
                             "--no_pictures")) == 0
    assert (out / "volumes" / "p1_fake_B.nii.gz").read_bytes() == first
    assert script.main(_argv(root, runs, tmp_path / "res", "--no_pictures")) == 0
    assert sorted(p.name for p in (out / "volumes").iterdir()) == ["p1_fake_B.nii.gz"]


def test_samples_are_refused_for_a_generator_without_dropout(tmp_path, runs, caplog):
    root = tmp_path / "data"
    write_pair_tree(root, "test", {"p1": (64, 64, 3)})
    with caplog.at_level(logging.ERROR):
        assert _test_script().main(_argv(root, runs, tmp_path / "res", "--samples", "2",
                                         name="plain")) == 1
    assert "no dropout (trained with --no_dropout)" in caplog.text
    assert not (tmp_path / "res").exists()


def test_results_under_a_file_or_read_only_are_one_line_and_nothing_is_written(
        tmp_path, runs, caplog, monkeypatch):
    root = tmp_path / "data"
    write_pair_tree(root, "test", {"p1": (64, 64, 3)})
    blocker = tmp_path / "results_file"
    blocker.write_text("a file")
    script = _test_script()
    with caplog.at_level(logging.ERROR):
        assert script.main(_argv(root, runs, blocker)) == 1
    assert f"{blocker} is a file, not a folder" in caplog.text
    assert blocker.read_text() == "a file"
    real_mkdir = os.mkdir

    def read_only(path, *args, **kwargs):  # as Linux answers: ENOENT below, EROFS at the top
        if Path(path) == tmp_path / "read_only":
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only)
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert script.main(_argv(root, runs, tmp_path / "read_only")) == 1
    assert (f"{tmp_path / 'read_only' / 'run' / 'test_latest' / 'volumes'}: cannot create the "
            f"folder ({tmp_path / 'read_only'}: Read-only file system)") in caplog.text
    assert not (tmp_path / "read_only").exists()


def test_odd_and_small_slices_are_predicted_with_their_geometry(tmp_path, runs):
    root = tmp_path / "data"
    write_nifti(root / "testA" / "odd.nii.gz", ct_like((61, 75, 3)), OBLIQUE_AFFINE)
    write_nifti(root / "testA" / "thin.nii.gz", ct_like((12, 64, 5)), RAS_AFFINE)
    assert _test_script().main(_argv(root, runs, tmp_path / "res")) == 0
    out = tmp_path / "res" / "run" / "test_latest"
    for pid, shape, affine in (("odd", (61, 75, 3), OBLIQUE_AFFINE),
                               ("thin", (12, 64, 5), RAS_AFFINE)):
        img = nib.load(out / "volumes" / f"{pid}_fake_B.nii.gz")
        assert img.shape == shape
        np.testing.assert_allclose(img.affine, affine, atol=1e-6)
    assert (out / "images" / "odd_views_lung.png").is_file()


def _image_sources(page: Path) -> list[Path]:
    """The files a page's ``<img src>`` point at."""
    return [page.parent / src for src in re.findall(r'<img[^>]* src="([^"]+)"',
                                                    page.read_text(encoding="utf-8"))]


def test_the_page_leads_with_numbers_and_follows_the_patients_of_the_run(tmp_path, runs):
    root = tmp_path / "data"
    write_pair_tree(root, "test", {"PT 1": (64, 64, 3), "PT2": (64, 64, 3)})
    script = _test_script()
    out = tmp_path / "res" / "run" / "test_latest"
    assert script.main(_argv(root, runs, tmp_path / "res")) == 0
    index = (out / "index.html").read_text(encoding="utf-8")
    assert index.index('id="summary"') < index.index('id="patients"')
    assert 'href="patients/PT_1.html"' in index
    assert "run/latest_net_G.pth" in index
    assert _image_sources(out / "index.html") == []  # no geometry scores yet: no plot
    pages = sorted((out / "patients").iterdir())
    assert [p.name for p in pages] == ["PT2.html", "PT_1.html"]
    sources = _image_sources(out / "patients" / "PT_1.html")
    assert [p.name for p in sources[:3]] == [
        "PT_1_views_lung_base.png", "PT_1_views_lung.png", "PT_1_views_soft_tissue.png"]
    assert len(sources) == 3 + 3 * 3  # the views, then input / prediction / truth per slice
    assert all(p.is_file() for page in pages for p in _image_sources(page))

    for half in ("testA", "testB"):
        (root / half / "PT 1.nii.gz").unlink()
    assert script.main(_argv(root, runs, tmp_path / "res")) == 0
    assert [p.name for p in (out / "patients").iterdir()] == ["PT2.html"]
    assert not list((out / "images").glob("PT_1_*"))

    assert script.main(_argv(root, runs, tmp_path / "res", "--no_pictures")) == 0
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'id="patients"' in index
    assert "patients/PT2.html" not in index
    assert list((out / "patients").iterdir()) == []
    assert list((out / "images").iterdir()) == []


def test_structure_masks_beside_testB_are_scored_and_a_bad_one_refused_first(tmp_path, runs,
                                                                            caplog):
    """``testB_structures/GTV/<id>.nii.gz``: the centre-of-mass error of the structure for
    the model and the AVG; a mask off the patient's grid stops the run before any write."""
    root = tmp_path / "data"
    hu = np.full((64, 64, 6), -850.0, dtype=np.float32)  # lung
    hu[20:44, 20:44, :] = 40.0  # a soft-tissue block
    write_nifti(root / "testA" / "p1.nii.gz", hu, RAS_AFFINE)
    write_nifti(root / "testB" / "p1.nii.gz", hu, RAS_AFFINE)
    write_nifti(root / "testB_structures" / "GTV" / "p1.nii.gz",
                (hu > 0).astype(np.float32), RAS_AFFINE, np.uint8)
    assert _test_script().main(_argv(root, runs, tmp_path / "res", "--no_pictures")) == 0
    scores = json.loads((tmp_path / "res" / "run" / "test_latest" / "metrics.json").read_text())
    geometry = scores["patients"]["p1"]["geometry"]
    assert geometry["baseline"]["structures"]["GTV"]["com_error_mm"] == pytest.approx(0.0)
    assert np.isfinite(geometry["model"]["structures"]["GTV"]["com_error_mm"]) or \
        geometry["model"]["structures"]["GTV"]["predicted_voxels"] == 0
    write_nifti(root / "testB_structures" / "GTV" / "p1.nii.gz",
                np.ones((64, 64, 5), np.float32), RAS_AFFINE, np.uint8)
    assert _test_script().main(_argv(root, runs, tmp_path / "res2", "--no_pictures")) == 1
    assert "testB_structures/GTV/p1.nii.gz" in caplog.text
    assert not (tmp_path / "res2").exists()
