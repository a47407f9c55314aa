"""Metric reports: CSV rows, mean/std over patients worked out by hand, the verdict."""

import csv
import io
import json
import math

import numpy as np
import pytest

from evaluation.metrics import METRICS, RegionSettings, evaluate_volumes
from evaluation.report import (
    csv_text,
    summarize_over_patients,
    summary_table,
    verdict,
    write_reports,
)


def _scores(model_mae: float, base_mae: float) -> dict:
    regions = ("whole", "body", "motion")
    model = {r: dict.fromkeys(METRICS, 0.0) | {"mae_hu": model_mae} for r in regions}
    base = {r: dict.fromkeys(METRICS, 0.0) | {"mae_hu": base_mae} for r in regions}
    return {"model": model, "baseline": base,
            "improvement": {r: dict.fromkeys(METRICS, 0.0) | {"mae_hu": base_mae - model_mae}
                            for r in regions},
            "region_voxels": dict.fromkeys(regions, 10),
            "lung_volume_ml": {"truth": 500.0, "model": 510.0, "avg": 450.0},
            "settings": {}}


def test_csv_has_a_row_per_patient_and_region_with_model_and_baseline():
    rows = list(csv.DictReader(io.StringIO(csv_text({"p1": _scores(10, 30),
                                                     "p2": _scores(20, 30)}))))
    assert [(r["patient"], r["region"]) for r in rows] == [
        ("p1", "whole"), ("p1", "body"), ("p1", "motion"),
        ("p2", "whole"), ("p2", "body"), ("p2", "motion")]
    assert float(rows[3]["model_mae_hu"]) == 20
    assert float(rows[3]["baseline_mae_hu"]) == 30
    assert float(rows[3]["improvement_mae_hu"]) == 10


def test_mean_and_std_over_patients_skip_nan():
    nan_patient = _scores(math.nan, 30)
    summary = summarize_over_patients({"a": _scores(10, 30), "b": _scores(20, 40),
                                       "c": nan_patient})
    stats = summary["model"]["motion"]["mae_hu"]
    assert (stats["mean"], stats["std"], stats["n"]) == (15.0, 5.0, 2)
    assert summary["baseline"]["motion"]["mae_hu"]["mean"] == pytest.approx(100 / 3)


def test_verdict_says_plainly_when_the_model_is_not_better():
    worse = summarize_over_patients({"a": _scores(40, 30)})
    assert "NOT better than the AVG" in verdict(worse)
    assert "+33 %" in verdict(worse)
    better = summarize_over_patients({"a": _scores(15, 30)})
    assert "model is better than the AVG: MAE 15.0 vs 30.0 HU (-50 %)" in verdict(better)
    assert "NOT better" in summary_table({"a": _scores(40, 30)})
    marginal = summarize_over_patients({"a": _scores(29, 30)})  # 3 % lower: within the noise
    assert "NOT clearly better than the AVG: MAE 29.0 vs 30.0 HU (-3 %)" in verdict(marginal)


def test_reports_from_real_scores_are_written_atomically(tmp_path):
    truth = np.full((12, 12, 8), -1000.0)
    truth[3:9, 3:9, 2:6] = 40.0
    avg = truth.copy()
    avg[3:9, 3:9, 5] = -300.0  # the AVG blurs the top of the block
    scores = {"p1": evaluate_volumes(truth + 10.0, truth, avg,
                                     np.diag([1.0, 1.0, 2.0, 1.0]), RegionSettings())}
    csv_path, json_path = write_reports(tmp_path, scores)
    data = json.loads(json_path.read_text())
    assert data["n_patients"] == 1
    assert data["summary"]["model"]["whole"]["mae_hu"]["mean"] == pytest.approx(10.0)
    assert data["summary"]["model"]["whole"]["bias_hu"]["mean"] == pytest.approx(10.0)
    assert data["patients"]["p1"]["baseline"]["motion"]["mae_hu"] > 10.0
    assert data["summary"]["data"]["region_ml"]["whole"]["mean"] == pytest.approx(
        12 * 12 * 8 * 2 / 1000)  # 1 x 1 x 2 mm voxels
    assert data["units"]["diaphragm_error_mean_mm"] == "mm"
    assert csv_path.read_text().startswith("patient,region,voxels,model_mae_hu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "metrics.json"]


def _geometry(diaphragm_mm: float, com_mm: float) -> dict:
    return {"lung_dice": 0.9, "lung_volume_error_ml": -50.0, "lung_volume_error_pct": -5.0,
            "diaphragm_error_mean_mm": diaphragm_mm, "diaphragm_error_p95_mm": 2 * diaphragm_mm,
            "diaphragm_bias_mm": diaphragm_mm, "diaphragm_columns": 100,
            "structures": {"gtv": {"com_error_mm": com_mm,
                                   "com_error_vector_mm": [0.0, 0.0, com_mm],
                                   "threshold_hu": -300.0}}}


def _with_geometry(model_mm: float, avg_mm: float, motion_ml: float) -> dict:
    return _scores(10, 30) | {
        "region_ml": {"whole": 1000.0, "body": 600.0, "motion": motion_ml},
        "geometry": {"model": _geometry(model_mm, model_mm / 2),
                     "baseline": _geometry(avg_mm, avg_mm / 2)},
        "amplitude_mm": avg_mm}


def test_csv_has_region_ml_a_geometry_row_and_a_structure_row():
    rows = list(csv.DictReader(io.StringIO(csv_text({"p1": _with_geometry(2.0, 9.0, 80.0)}))))
    assert [r["region"] for r in rows] == ["whole", "body", "motion", "geometry", "structure:gtv"]
    assert float(rows[2]["ml"]) == 80.0
    geometry, gtv = rows[3], rows[4]
    assert float(geometry["model_diaphragm_error_mean_mm"]) == 2.0
    assert float(geometry["baseline_diaphragm_error_p95_mm"]) == 18.0
    assert float(geometry["amplitude_mm"]) == 9.0
    assert geometry["model_mae_hu"] == ""  # HU metrics do not apply to this row
    assert float(gtv["baseline_com_error_mm"]) == 4.5
    assert float(gtv["baseline_com_error_z_mm"]) == 4.5
    assert float(gtv["threshold_hu"]) == -300.0


def test_summary_of_geometry_and_region_sizes_over_patients():
    summary = summarize_over_patients({"a": _with_geometry(2.0, 9.0, 80.0),
                                       "b": _with_geometry(4.0, 13.0, 120.0)})
    stats = summary["model"]["geometry"]["diaphragm_error_mean_mm"]
    assert (stats["mean"], stats["std"], stats["n"]) == (3.0, 1.0, 2)
    assert summary["baseline"]["structure:gtv"]["com_error_mm"]["mean"] == pytest.approx(5.5)
    assert summary["data"]["region_ml"]["motion"]["mean"] == 100.0
    assert summary["data"]["amplitude_mm"]["mean"] == 11.0
    assert "the lung base is closer to phase 0's than the AVG's: mean error 3.0 vs 11.0 mm" in (
        verdict(summary))
    table = summary_table({"a": _with_geometry(2.0, 9.0, 80.0)})
    assert "diaphragm error mean mm" in table
    assert "gtv centre error mm" in table
    assert "region size mL: whole 1000 (0), body 600 (0), motion 80 (0)" in table
    worse = summarize_over_patients({"a": _with_geometry(12.0, 9.0, 80.0)})
    assert "the lung base is NOT closer to phase 0's than the AVG's" in verdict(worse)
    assert "lung base" not in verdict(summarize_over_patients({"a": _scores(10, 30)}))


def test_summary_of_motion_fields_over_patients_and_csv_unaffected():
    fields = [{"max_mm": 10.0, "p95_mm": 6.0, "si_max_mm": 9.0, "folding_pct": 0.0},
              {"max_mm": 20.0, "p95_mm": 8.0, "si_max_mm": 19.0, "folding_pct": 0.5}]
    per_patient = {f"PT{k}": {**_scores(50.0, 100.0), "displacement": f}
                   for k, f in enumerate(fields)}
    summary = summarize_over_patients(per_patient)
    assert summary["displacement"]["max_mm"]["mean"] == pytest.approx(15.0)
    assert summary["displacement"]["folding_pct"]["n"] == 2
    plain = summarize_over_patients({"PT0": _scores(50.0, 100.0)})
    assert "displacement" not in plain
    assert csv_text(per_patient).count("\n") == csv_text(
        {k: _scores(50.0, 100.0) for k in per_patient}).count("\n")


def test_the_printed_report_has_a_field_line_only_with_fields():
    from evaluation.report import field_lines

    field = {"max_mm": 12.0, "p95_mm": 6.0, "si_max_mm": 11.0, "folding_pct": 0.25}
    lines = field_lines({"PT0": {**_scores(50.0, 100.0), "displacement": field}})
    assert lines == ["displacement field: up to 12.0 mm (p95 6.0 mm, superior-inferior up to "
                     "11.0 mm), folding 0.250 % of voxels (mean over 1 patients)"]
    assert field_lines({"PT0": _scores(50.0, 100.0)}) == []
