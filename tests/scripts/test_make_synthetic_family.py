"""scripts/make_synthetic_4dct.py --family: a registered family written from the command line."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pytest

from synthetic import FAMILIES
from tests.tiny_runs import load_script


def _script() -> ModuleType:
    """The script, imported as a module."""
    return load_script("scripts/make_synthetic_4dct.py", "make_synthetic_4dct")


def test_family_option_writes_the_family(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         caplog: pytest.LogCaptureFixture) -> None:
    module = _script()
    argv = ["--out", str(tmp_path), "--n_patients", "1", "--family", "coarse", "--no_progress",
            "--no_structures", "--size", "16"]  # --size is the family's, not the option's
    assert module.main(argv) == 0
    img = nib.load(tmp_path / "res_avg" / "PT001" / "PT001_AVG.nii.gz")
    assert img.shape == (64, 64, 32)
    np.testing.assert_allclose(nib.affines.voxel_sizes(img.affine), [7.8, 7.8, 5.0])
    assert "family coarse" in capsys.readouterr().out
    assert module.main([*argv, "--format", "dicom"]) == 1
    assert "NIfTI only" in caplog.text


def test_help_lists_every_family_with_its_description() -> None:
    text = _script().build_parser().format_help()
    for name, family in FAMILIES.items():
        assert f"{name}  " in text
        assert family.description[:40] in text
