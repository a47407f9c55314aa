"""scripts/make_synthetic_4dct.py: options, ranges and errors of the synthetic 4DCT writer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synthetic import SyntheticGrid, patient_params, synthetic_patient, write_synthetic_4dct
from tests.synthetic.test_export import SMALL, _load_tree
from util.errors import ConfigError


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
