"""benchmarks/quality.py: the cohorts it draws and one tiny run through train.py and test.py."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import cohorts, quality


@pytest.mark.parametrize("amplitude", [(5.0, 25.0), (5.0, 20.0), (10.0, 10.0)])
def test_shifted_cohort_lies_outside_every_training_range(amplitude: tuple[float, float]) -> None:
    train, shifted = cohorts.cohort_ranges(amplitude)
    assert train.amplitude_mm == amplitude
    for name in ("amplitude_mm", "lung_scale", "tumour_radius_mm", "noise_hu"):
        low_shifted, high_train = getattr(shifted, name)[0], getattr(train, name)[1]
        assert low_shifted >= high_train, name
    assert shifted.amplitude_mm[1] == amplitude[1] + 5.0


def test_variants_are_known_options_and_the_recipe_builds_on_base() -> None:
    assert quality.VARIANTS["base"] == quality.BASE
    assert quality.VARIANTS["recipe"][:len(quality.BASE)] == quality.BASE
    assert quality.parse_args(["--ablation"]).variants == list(quality.VARIANTS)
    with pytest.raises(SystemExit):
        quality.parse_args(["--variants", "no_such_variant"])


def test_every_variant_but_the_plan_starts_from_pix2pix_defaults() -> None:
    """The ablation's variants train their own flags on pix2pix's defaults; ``plan`` gives
    train.py no recipe flag, only how the benchmark runs it."""
    from benchmarks import cross_source

    assert cohorts.SHARED[:2] == ["--recipe", "pix2pix"]
    for name, flags in quality.VARIANTS.items():
        given = flags if name in quality.OWN_FLAGS else [*quality.COMMON, *flags]
        assert ("--recipe" in given) == (name != "plan"), name
    assert quality.VARIANTS["plan"] == cohorts.RUN_FLAGS == cross_source.VARIANTS["plan"][0]
    assert "plan" in quality.OWN_FLAGS
    assert cross_source.VARIANTS["plan"][1]  # without COMMON
    assert cohorts.epoch_flags(0) == []
    assert cohorts.epoch_flags(5) == ["--n_epochs", "3", "--n_epochs_decay", "2"]


@pytest.mark.slow
def test_tiny_run_scores_held_out_patients_against_avg_and_noise_floor(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    assert quality.main(["--work", str(work), "--n_patients", "8", "--n_shifted", "2",
                         "--epochs", "2", "--n_slices", "8", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "| recipe |" in printed
    assert "| identity (AVG) |" in printed

    report = json.loads((work / "quality.json").read_text())
    test_ids = sorted(p.name.split(".")[0] for p in (work / "dataset" / "testA").glob("*.nii.gz"))
    train_ids = {p.name.split(".")[0] for p in (work / "dataset" / "trainA").glob("*.nii.gz")}
    assert test_ids
    assert not set(test_ids) & train_ids
    shifted_ids = sorted(p.name.split(".")[0]
                         for p in (work / "shifted_dataset" / "testA").glob("*.nii.gz"))
    assert len(shifted_ids) == 2
    assert all(pid.startswith("SH") for pid in shifted_ids)

    for cohort, noise_hu in (("test", 15.0), ("shifted", 20.0)):
        refs = report["references"][cohort]
        # Noiseless truth vs Gaussian-noisy truth: MAE = sigma * sqrt(2 / pi) inside the body.
        assert refs["noise_floor"]["body"]["mae_hu"] == pytest.approx(
            noise_hu * math.sqrt(2 / math.pi), abs=0.6)
        assert refs["identity"]["motion"]["mae_hu"] > 2 * refs["noise_floor"]["motion"]["mae_hu"]
        # the noiseless phase 0 has phase 0's lung base and tumour; the AVG's base is too high
        floor, identity = refs["noise_floor"], refs["identity"]
        assert floor["geometry"]["diaphragm_error_mean_mm"] < 1.0  # noise at partial voxels
        assert identity["geometry"]["diaphragm_error_mean_mm"] > \
            3 * floor["geometry"]["diaphragm_error_mean_mm"]
        assert identity["geometry"]["lung_dice"] < floor["geometry"]["lung_dice"]
        assert floor["gtv_com_mm"] < 350.0 / 64  # within one in-plane voxel (5.5 mm)
        scores = report["results"]["recipe"][cohort]
        assert all(np.isfinite(scores[r]["mae_hu"]) for r in quality.REGIONS)
        volumes = work / "results" / cohort / "recipe" / "test_best" / "volumes"
        expected = test_ids if cohort == "test" else shifted_ids
        assert sorted(p.name.removesuffix("_fake_B.nii.gz")
                      for p in volumes.glob("*_fake_B.nii.gz")) == expected
