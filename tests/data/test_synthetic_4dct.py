"""The synthetic 4DCT: the tree on disk, the storage, the breathing motion and determinism."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from data.nifti_io import load_volume
from data.synthetic_4dct import (
    N_PHASES,
    PatientParams,
    SyntheticGrid,
    noiseless_phases,
    patient_params,
    phase_displacement_mm,
    synthetic_patient,
    write_synthetic_4dct,
)
from data.synthetic_params import DEFAULT_RANGES, ParamRanges
from util.errors import ConfigError

SMALL = {"grid": SyntheticGrid(size=16, n_slices=8)}


def _load_tree(root: Path, pid: str) -> tuple[np.ndarray, np.ndarray]:
    """(AVG (I, J, K), phases (10, I, J, K)) in HU as stored under ``root``."""
    avg = load_volume(root / "res_avg" / pid / f"{pid}_AVG.nii.gz").hu
    phases = np.stack([load_volume(root / "res_phases" / pid /
                                   f"{pid}_4DCT_Gated {10 * p}.0A.nii.gz").hu
                       for p in range(N_PHASES)])
    return avg, phases


@pytest.fixture(scope="module")
def breathing() -> tuple[PatientParams, SyntheticGrid, np.ndarray, np.ndarray]:
    """One 64 x 64 x 32 patient with a 20 mm amplitude: (params, grid, noisy, noiseless)."""
    params = PatientParams(amplitude_mm=20.0, chest_expansion_mm=4.0, noise_hu=15.0)
    grid = SyntheticGrid()
    patient = synthetic_patient(params, grid)
    return params, grid, patient.phases_hu, patient.noiseless_hu


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


def test_displacement_formula() -> None:
    assert phase_displacement_mm(0, 20.0) == pytest.approx(20.0)
    assert phase_displacement_mm(5, 20.0) == pytest.approx(0.0)
    assert phase_displacement_mm(3, 20.0) == pytest.approx(phase_displacement_mm(7, 20.0))
    assert phase_displacement_mm(2, 20.0) == pytest.approx(20 * np.cos(0.2 * np.pi) ** 4)
    mean = np.mean([phase_displacement_mm(p, 20.0) for p in range(10)])
    assert mean == pytest.approx(20 * 3 / 8)  # dwells near exhale: AVG is nearer phase 5


def test_motion_is_at_the_diaphragm_not_the_apex_or_abdomen(breathing) -> None:
    _, _, noisy, _ = breathing
    avg = noisy.mean(axis=0)
    per_slice = np.abs(noisy[0] - avg).mean(axis=(0, 1))  # (K,), slice 0 inferior
    peak = int(per_slice.argmax())
    assert 6 <= peak <= 20  # the dome moves between z = +10 mm and z = -10 mm (mid-volume)
    assert per_slice[peak] > 4 * per_slice[-2:].max()  # apex slices: noise only
    assert per_slice[peak] > 4 * per_slice[:3].max()  # abdomen below the dome: noise only


def test_end_inhale_is_far_from_avg_and_lungs_largest(breathing) -> None:
    _, _, _, clean = breathing
    mean = clean.mean(axis=0)
    dist = [float(np.abs(clean[p] - mean).mean()) for p in range(N_PHASES)]
    assert dist[0] == max(dist)  # end-inhale is the phase farthest from the AVG
    assert dist[0] > 1.3 * dist[5]  # breathing dwells near exhale, so the AVG leans that way
    inside = clean[5] > -950  # body (phase 5 outline), so outside air does not count as lung
    lung_voxels = [int(((clean[p] < -500) & inside).sum()) for p in range(N_PHASES)]
    assert lung_voxels[0] == max(lung_voxels)
    assert lung_voxels[5] <= 1.01 * min(lung_voxels)  # phases 4-6 differ by < 1 mm of motion
    assert all(a > b for a, b in itertools.pairwise(lung_voxels[:5]))


def test_diaphragm_drops_by_the_amplitude(breathing) -> None:
    params, grid, _, clean = breathing
    dx, _, dz = grid.spacing_mm
    # column through the right lung (LPS voxel order: i grows towards the patient's left)
    i = round((grid.size - 1) / 2 - 0.42 * params.body_half_width_mm / dx)
    j = round((grid.size - 1) / 2 + 0.05 * params.body_half_depth_mm / dx)

    def lung_bottom(phase: int) -> int:
        column = clean[phase, i, j, :]
        return int(np.flatnonzero(column < -500).min())

    drop_mm = (lung_bottom(5) - lung_bottom(0)) * dz
    assert abs(drop_mm - params.amplitude_mm) <= dz
    top = np.abs(clean[0, ..., -1] - clean[5, ..., -1]).mean()
    dome = np.abs(clean[0, ..., lung_bottom(0)] - clean[5, ..., lung_bottom(0)]).mean()
    assert top < 0.1 * dome  # the apex barely moves


def test_noise_is_independent_per_phase(breathing) -> None:
    params, _, noisy, clean = breathing
    residual = noisy - clean
    assert residual.std() == pytest.approx(params.noise_hu, rel=0.1)
    corr = np.corrcoef(residual[0].ravel(), residual[1].ravel())[0, 1]
    assert abs(corr) < 0.05


def test_ras_is_the_same_phantom_flipped() -> None:
    params = PatientParams(amplitude_mm=12.0, noise_hu=10.0, noise_seed=5)
    lps, ras = SyntheticGrid(size=16, n_slices=8), SyntheticGrid(size=16, n_slices=8,
                                                                 orientation="RAS")
    a, b = synthetic_patient(params, lps), synthetic_patient(params, ras)
    np.testing.assert_array_equal(b.phases_hu, a.phases_hu[:, ::-1, ::-1, :])
    np.testing.assert_array_equal(noiseless_phases(params, ras), a.noiseless_hu[:, ::-1, ::-1, :])
    assert nib.aff2axcodes(b.affine) == ("R", "A", "S")
    np.testing.assert_allclose(b.affine @ [15, 15, 3, 1], a.affine @ [0, 0, 3, 1])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"amplitude_mm": -1.0}, "amplitude_mm"),
    ({"noise_hu": -2.0}, "noise_hu"),
    ({"tumour_side": "middle"}, "tumour_side"),
])
def test_bad_patient_params_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PatientParams(**kwargs)


def test_bad_grid_and_storage_raise(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="orientation"):
        SyntheticGrid(orientation="XYZ")
    with pytest.raises(ConfigError, match="storage"):
        write_synthetic_4dct(tmp_path, 1, storage="float64", progress=False, **SMALL)
    assert not any(tmp_path.iterdir())


def test_cli_writes_tree_and_reports_errors(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "make_synthetic_4dct.py"
    spec = importlib.util.spec_from_file_location("make_synthetic_4dct", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "synth"
    argv = ["--out", str(out), "--n_patients", "2", "--size", "16", "--n_slices", "8",
            "--seed", "0", "--storage", "uint16", "--orientation", "RAS", "--no_progress"]
    assert module.main(argv) == 0
    img = nib.load(out / "res_phases" / "PT002" / "PT002_4DCT_Gated 90.0A.nii.gz")
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    assert img.get_data_dtype() == np.uint16
    assert module.main(["--out", str(out), "--n_patients", "0", "--no_progress"]) == 1
    assert "n_patients must be >= 1" in caplog.text


def test_parameters_stay_in_their_ranges_and_follow_the_seed() -> None:
    ranges = ParamRanges(amplitude_mm=(20.0, 25.0), lung_scale=(1.0, 1.05),
                         tumour_radius_mm=(6.0, 6.0), noise_hu=(5.0, 30.0))
    drawn = [patient_params(3, k, ranges) for k in range(40)]
    for field, bounds in (("amplitude_mm", ranges.amplitude_mm),
                          ("lung_scale", ranges.lung_scale),
                          ("tumour_radius_mm", ranges.tumour_radius_mm),
                          ("noise_hu", ranges.noise_hu),
                          ("body_half_width_mm", DEFAULT_RANGES.body_half_width_mm)):
        values = [getattr(p, field) for p in drawn]
        assert bounds[0] <= min(values) <= max(values) <= bounds[1], field
    assert len({p.noise_hu for p in drawn}) == 40  # a range, not one value
    assert {p.tumour_radius_mm for p in drawn} == {6.0}
    assert all(p.chest_expansion_mm == pytest.approx(0.2 * p.amplitude_mm) for p in drawn)
    assert patient_params(3, 7, ranges) == drawn[7]
    assert patient_params(4, 7, ranges) != drawn[7]


@pytest.mark.parametrize("bounds", [(5.0, 1.0), (-1.0, 2.0), (1.0,)])
def test_bad_ranges_raise(bounds: tuple) -> None:
    with pytest.raises(ConfigError, match="amplitude_mm"):
        ParamRanges(amplitude_mm=bounds)


def test_cli_ranges_and_prefix_reach_the_written_patients(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "make_synthetic_4dct.py"
    spec = importlib.util.spec_from_file_location("make_synthetic_4dct", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--out", str(tmp_path), "--n_patients", "1", "--size", "16", "--n_slices", "8",
            "--seed", "2", "--amplitude_range_mm", "22", "24", "--noise_hu", "0",
            "--id_prefix", "OOD", "--no_progress"]
    assert module.main(argv) == 0
    args = module.build_parser().parse_args(argv)
    ranges = module.ranges_from_args(args)
    assert (ranges.amplitude_mm, ranges.noise_hu) == ((22.0, 24.0), (0.0, 0.0))
    expected = synthetic_patient(patient_params(2, 0, ranges), SyntheticGrid(size=16, n_slices=8))
    _, phases = _load_tree(tmp_path, "OOD001")
    np.testing.assert_array_equal(phases, expected.phases_hu)  # noise 0: the noiseless phases
    with pytest.raises(ConfigError, match="prefix"):
        write_synthetic_4dct(tmp_path, 1, id_prefix="../x", progress=False, **SMALL)
