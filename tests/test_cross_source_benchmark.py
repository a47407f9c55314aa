"""benchmarks/cross_source.py: its summaries worked out by hand, and one tiny run through
train.py and test.py on a training family and two held-out ones."""

import json
import math
from pathlib import Path

import pytest

from benchmarks import cross_source


def _patient(motion: tuple[float, float], body: tuple[float, float],
             static: tuple[float, float]) -> dict[str, float]:
    """Figures of :func:`cross_source.score_patient` from (model, AVG) MAE pairs."""
    return {"motion_model": motion[0], "motion_avg": motion[1], "body_model": body[0],
            "body_avg": body[1], "whole_model": body[0] / 2, "whole_avg": body[1] / 2,
            "static_model": static[0], "static_avg": static[1], "diaphragm_model_mm": 1.0,
            "diaphragm_avg_mm": 5.0}


def test_summary_ratios_worst_patient_static_excess_and_small_breathers() -> None:
    patients = {"big": _patient((40.0, 200.0), (20.0, 40.0), (12.0, 10.0)),
                "small": _patient((30.0, 20.0), (11.0, 10.0), (11.0, 10.0))}
    summary = cross_source.summarize(patients, {"big": 20.0, "small": 4.0}, small_mm=10.0)
    assert summary["motion_ratio"] == pytest.approx((0.2 + 1.5) / 2)
    assert summary["motion_worst"] == pytest.approx(1.5)
    assert summary["body_ratio"] == pytest.approx((0.5 + 1.1) / 2)
    assert summary["static_delta_hu"] == pytest.approx(1.5)
    assert summary["static_worst_hu"] == pytest.approx(2.0)
    assert (summary["small_breathers"], summary["small_worse"]) == (1, 1)
    assert summary["patients_worse"] == 1


def test_every_family_but_the_training_one_is_held_out_by_default() -> None:
    args = cross_source.parse_args(["--train_family", "warped"])
    assert "warped" not in args.test_families
    assert {"phantom", "coarse"} <= set(args.test_families)


@pytest.mark.slow
def test_tiny_run_scores_in_distribution_beside_held_out_sources(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    assert cross_source.main(["--work", str(work), "--n_train", "6", "--n_test", "2",
                              "--epochs", "1", "--variants", "recipe", "--test_families",
                              "coarse", "warped", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    for source in ("phantom (in-distribution)", "coarse", "warped"):
        assert f"| recipe | {source} |" in printed
    saved = json.loads((work / "cross_source.json").read_text())
    warped = saved["results"]["recipe"]["warped"]
    assert len(warped["patients"]) == 2
    assert all(math.isfinite(p["motion_avg"]) and p["motion_avg"] > 0
               for p in warped["patients"].values())
    assert warped["summary"]["motion_ratio"] > 0
