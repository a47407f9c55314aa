"""What the results page reads from score dicts: values, comparisons, means, headline metrics."""

import math

import pytest

from display import score_tables as st
from evaluation.report import summarize_over_patients
from tests.display.page_inputs import scores


def test_values_are_read_with_and_without_the_geometry_keys():
    old, new = scores(30.0, 60.0), scores(30.0, 60.0, geometry=True, amplitude_mm=12.5)
    mae = st.hu_metric("mae_hu", "motion")
    assert st.value(old, mae, "model") == 30.0
    assert st.value(old, mae, "baseline") == 60.0
    assert st.value(new, st.hu_metric("ssim", "body"), "baseline") == 0.8
    dice, tumour = st.GEOMETRY_METRICS[0], st.structure_metric("tumour")
    assert math.isnan(st.value(old, dice, "model"))
    assert st.value(new, dice, "model") == 0.95
    assert st.value(new, tumour, "baseline") == 4.0
    assert math.isnan(st.value(new, st.structure_metric("heart"), "model"))
    assert st.amplitude_mm(old) is None
    assert st.amplitude_mm(new) == 12.5
    assert st.region_size(old, "body", "voxels") == 2000.0
    assert math.isnan(st.region_size(old, "body", "mL"))
    assert st.region_size(new, "body", "mL") == 1000.0
    assert st.size_unit({"a": new}) == "mL"
    assert st.size_unit({"a": new, "b": old}) == "voxels"
    with pytest.raises(ValueError, match="unknown region size unit 'cc'"):
        st.region_size(new, "body", "cc")


def test_missing_or_odd_values_are_nan():
    s = scores(30.0, 60.0, geometry=True)
    s["geometry"]["baseline"] = None  # no AVG
    s["model"]["motion"]["mae_hu"] = None
    s["model"]["body"]["ssim"] = True
    assert math.isnan(st.value(s, st.GEOMETRY_METRICS[0], "baseline"))
    assert math.isnan(st.value(s, st.hu_metric("mae_hu", "motion"), "model"))
    assert math.isnan(st.value(s, st.hu_metric("ssim", "body"), "model"))
    assert math.isnan(st.value({}, st.hu_metric("ssim", "body"), "model"))


@pytest.mark.parametrize(("metric", "model", "avg", "expected"), [
    (st.hu_metric("mae_hu", "motion"), 30.0, 60.0, "better"),
    (st.hu_metric("mae_hu", "motion"), 61.0, 60.0, "worse"),
    (st.hu_metric("ssim", "motion"), 0.9, 0.8, "better"),
    (st.hu_metric("ssim", "motion"), 0.7, 0.8, "worse"),
    (st.GEOMETRY_METRICS[1], -2.0, 8.0, "better"),  # signed: magnitudes compared
    (st.GEOMETRY_METRICS[1], -9.0, 8.0, "worse"),
    (st.GEOMETRY_METRICS[2], 3.0, 3.0, "same"),
    (st.GEOMETRY_METRICS[2], math.nan, 3.0, ""),
])
def test_comparison_knows_which_way_is_better(metric, model, avg, expected):
    assert st.comparison(model, avg, metric) == expected


def test_mean_std_leaves_out_nan_and_inf_and_uses_the_population_std():
    stats = st.mean_std([1.0, 3.0, math.nan, math.inf])
    assert stats == st.MeanStd(2.0, 1.0, 2)
    assert st.mean_std([math.nan]).n == 0
    assert math.isnan(st.mean_std([]).mean)


def test_means_over_patients_agree_with_the_metric_report():
    per_patient = {"a": scores(30.0, 60.0), "b": scores(50.0, 40.0), "c": scores(20.0, 90.0)}
    per_patient["c"]["model"]["motion"]["mae_hu"] = math.nan  # an empty region
    summary = summarize_over_patients(per_patient)
    for region in ("whole", "body", "motion"):
        for name in ("mae_hu", "ssim"):
            for answer in st.ANSWERS:
                page = st.over_patients(per_patient, st.hu_metric(name, region), answer)
                report = summary[answer][region][name]
                assert page.n == report["n"]
                assert page.mean == pytest.approx(report["mean"])
                assert page.std == pytest.approx(report["std"])


def test_signed_errors_are_averaged_as_magnitudes():
    per_patient = {"a": scores(1.0, 2.0, geometry=True), "b": scores(1.0, 2.0, geometry=True)}
    per_patient["b"]["geometry"]["model"]["lung_volume_error_pct"] = 4.0
    assert st.over_patients(per_patient, st.GEOMETRY_METRICS[1], "model").mean == 3.0


def test_headline_metrics_follow_what_was_scored():
    old = {"a": scores(30.0, 60.0)}
    new = {"a": scores(30.0, 60.0), "b": scores(30.0, 60.0, geometry=True)}
    assert [m.heading for m in st.headline_metrics(old)] == ["MAE motion (HU)", "SSIM motion"]
    assert [m.heading for m in st.headline_metrics(new)] == [
        "MAE motion (HU)", "SSIM motion", "lung Dice", "lung volume error (%)",
        "diaphragm error, mean (mm)"]
    no_motion = scores(30.0, 60.0)
    del no_motion["model"]["motion"]
    assert st.regions({"a": no_motion}) == ["body", "whole"]
    assert st.headline_metrics({"a": no_motion})[0].heading == "MAE body (HU)"
    assert st.summary_geometry_metrics(old) == []
    assert [m.label for m in st.summary_geometry_metrics(new)][-1] == (
        "tumour: centre-of-mass error")
    assert st.structure_names(new) == ["tumour"]
    with pytest.raises(ValueError, match="unknown page metric 'psnr'"):
        st.hu_metric("psnr", "body")


def test_numbers_are_formatted_with_a_dash_for_nan():
    assert st.fmt(1.23456, 3) == "1.235"
    assert st.fmt(math.nan, 1) == "\u2013"
