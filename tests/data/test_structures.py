"""Phase-0 structure masks: written by the synthetic export, carried by prepare_dataset.py into
``<split>B_structures/`` on the AVG's grid and voxel order, read back checked."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import prepare_dataset as pdm
from data.nifti_io import read_info
from data.structures import load_structures, structures_dir
from synthetic import (
    TUMOUR_STRUCTURE,
    SyntheticGrid,
    noiseless_phases,
    patient_params,
    structure_file_name,
    tumour_masks,
    write_synthetic_4dct,
)
from synthetic.params import DEFAULT_RANGES
from synthetic.phantom import HU_TUMOUR
from tests.conftest import LPS_AFFINE, ct_like, write_nifti
from util.errors import DataError

GRID = SyntheticGrid(size=48, n_slices=24)


def test_tumour_masks_follow_the_tumour_through_the_cycle():
    params = patient_params(0, 0, DEFAULT_RANGES)
    masks, phases = tumour_masks(params, GRID), noiseless_phases(params, GRID)
    assert masks.shape == (10, *GRID.shape)
    for mask, phase in zip(masks, phases, strict=True):
        assert mask.sum() > 5
        # inside: tumour tissue (soft edges blend it with lung); outside, next to it: lung
        assert np.median(phase[mask]) > np.median(phase[~mask & (phase < -500)]) + 500
        assert np.max(phase[mask]) == pytest.approx(HU_TUMOUR, abs=1.0)
    # end-inhale pulls the lower lung (and the tumour) inferiorly: its centre moves along S-I
    k = np.arange(GRID.n_slices)
    centre_k = [float((mask.sum(axis=(0, 1)) * k).sum() / mask.sum()) for mask in masks]
    assert abs(centre_k[0] - centre_k[5]) > 0.3


def _export(tmp_path: Path) -> Path:
    out = tmp_path / "export"
    write_synthetic_4dct(out, 3, grid=GRID, seed=0, progress=False)
    return out


def _prepare(export: Path, out: Path) -> pdm.PrepareResult:
    return pdm.prepare_dataset(pdm.PrepareOptions(
        avg_root=export / "res_avg", phases_root=export / "res_phases", output=out,
        structures_root=export / "res_structures", val_fraction=0.0, test_fraction=0.34),
        progress=False)


def test_prepare_carries_phase0_masks_beside_phase0_and_reruns_idempotently(tmp_path):
    export = _export(tmp_path)
    out = tmp_path / "ds"
    result = _prepare(export, out)
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["patients"]:
        pid, split = entry["patient"], entry["split"]
        record = entry["structures"][TUMOUR_STRUCTURE]
        dest = out / record["file"]
        assert dest == structures_dir(out, split) / TUMOUR_STRUCTURE / f"{pid}.nii.gz"
        src = export / "res_structures" / pid / TUMOUR_STRUCTURE / structure_file_name(
            pid, TUMOUR_STRUCTURE, 0)
        assert record["source"] == str(src.absolute())
        np.testing.assert_array_equal(nib.load(dest).get_fdata(), nib.load(src).get_fdata())
        masks = load_structures(structures_dir(out, split), pid, read_info(out / f"{split}B" /
                                                                          f"{pid}.nii.gz"))
        assert set(masks) == {TUMOUR_STRUCTURE}
        assert masks[TUMOUR_STRUCTURE].dtype == bool
    assert manifest["structure_problems"] == []
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")}
    assert _prepare(export, out).paired == result.paired
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")} == before


def test_masks_off_the_grid_or_ambiguous_are_left_out_and_reported_not_the_patient(tmp_path):
    export = _export(tmp_path)
    folder = export / "res_structures" / "PT002" / TUMOUR_STRUCTURE
    bad = folder / structure_file_name("PT002", TUMOUR_STRUCTURE, 0)
    img = nib.load(bad)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, :-1], img.affine), bad)
    (export / "res_structures" / "PT003" / "CTV").mkdir()
    out = tmp_path / "ds"
    result = _prepare(export, out)
    assert len(result.paired) == 3
    problems = json.loads((out / "manifest.json").read_text())["structure_problems"]
    assert any(p.startswith("PT002: ") and "not on the grid" in p and "shape" in p
               for p in problems)
    assert any(p.startswith("PT003: ") and "CTV: 0 files match" in p for p in problems)
    assert not list(out.glob("*B_structures/*/PT002.nii.gz"))  # the bad mask is not carried
    assert list(out.glob("*B_structures/GTV/PT001.nii.gz"))  # the good ones are


def test_a_mask_stored_in_another_voxel_order_is_reordered_like_phase0(tmp_path):
    root = tmp_path / "export"
    hu = ct_like((6, 5, 7))
    write_nifti(root / "res_avg" / "P1" / "P1_AVG.nii.gz", hu, LPS_AFFINE)
    write_nifti(root / "res_phases" / "P1" / "P1_Gated 0.0A.nii.gz", hu + 10, LPS_AFFINE)
    mask = np.zeros((6, 5, 7), dtype=np.float32)
    mask[1:3, 2:4, 3:6] = 1
    ras = LPS_AFFINE @ np.diag([-1.0, -1.0, 1.0, 1.0])
    ras[:2, 3] = LPS_AFFINE[:2, 3] + LPS_AFFINE[:2, :2] @ np.array([5.0, 4.0])
    write_nifti(root / "res_structures" / "P1" / "GTV" / "P1_GTV_Gated 0.0A.nii.gz",
                mask[::-1, ::-1], ras, np.uint8)
    out = tmp_path / "ds"
    pdm.prepare_dataset(pdm.PrepareOptions(
        avg_root=root / "res_avg", phases_root=root / "res_phases", output=out,
        structures_root=root / "res_structures", val_fraction=0.0, test_fraction=0.0),
        progress=False)
    entry = json.loads((out / "manifest.json").read_text())["patients"][0]
    assert entry["structures"]["GTV"]["reoriented"] == {"from": "RAS", "to": "LPS"}
    masks = load_structures(structures_dir(out, "train"), "P1",
                            read_info(out / "trainB" / "P1.nii.gz"))
    np.testing.assert_array_equal(masks["GTV"], mask > 0.5)


def test_load_structures_refuses_a_mask_off_the_truth_grid_or_empty(tmp_path):
    truth = write_nifti(tmp_path / "testB" / "p.nii.gz", ct_like((4, 4, 3)))
    folder = tmp_path / "testB_structures"
    write_nifti(folder / "GTV" / "p.nii.gz", np.ones((4, 4, 2), np.float32), dtype=np.uint8)
    with pytest.raises(DataError, match=r"GTV/p\.nii\.gz.*shape"):
        load_structures(folder, "p", read_info(truth))
    write_nifti(folder / "GTV" / "p.nii.gz", np.zeros((4, 4, 3), np.float32), dtype=np.uint8)
    with pytest.raises(DataError, match=r"GTV/p\.nii\.gz: an empty structure mask"):
        load_structures(folder, "p", read_info(truth))
    assert load_structures(folder, "other", read_info(truth)) == {}
    assert load_structures(tmp_path / "missing", "p", read_info(truth)) == {}
