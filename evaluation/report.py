"""Metric reports over patients: ``metrics.csv``, ``metrics.json`` and the printed tables.

Input: one :func:`evaluation.metrics.evaluate_volumes` result per patient, i.e. ``model`` and
(with an AVG) ``baseline`` and ``improvement`` scores, ``{region: {metric: value}}``, in HU, dB or
unitless (SSIM). The identity baseline is the AVG itself used as the phase-0 prediction.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.metrics import METRICS, REGIONS
from util.atomic import atomic_write_json, atomic_write_text

ANSWERS = ("model", "baseline", "improvement")
#: Metrics shown in the printed summary (all are in the files).
TABLE_METRICS = ("mae_hu", "rmse_hu", "bias_hu", "ssim", "psnr_db")
#: A model must cut the AVG's MAE by at least this much (%) to be called better in the verdict.
CLEARLY_BETTER_PCT = 5.0
_LABELS = {"mae_hu": "MAE", "rmse_hu": "RMSE", "bias_hu": "bias", "ssim": "SSIM",
           "psnr_db": "PSNR"}


def _value(scores: Mapping[str, Any], answer: str, region: str, metric: str) -> float:
    """One score, NaN when that answer or region is absent."""
    per_region = scores.get(answer) or {}
    return float(per_region.get(region, {}).get(metric, math.nan))


def _regions(per_patient: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The regions scored for any patient, in :data:`REGIONS` order."""
    found = {r for s in per_patient.values() for r in (s.get("model") or {})}
    return [r for r in REGIONS if r in found]


def csv_text(per_patient: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per patient and region: voxels, then model, baseline and improvement per metric."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["patient", "region", "voxels"]
                    + [f"{answer}_{metric}" for answer in ANSWERS for metric in METRICS])
    for pid, scores in per_patient.items():
        for region in _regions({pid: scores}):
            row = [pid, region, scores["region_voxels"].get(region, 0)]
            row += [f"{_value(scores, a, region, m):.6g}" for a in ANSWERS for m in METRICS]
            writer.writerow(row)
    return out.getvalue()


def summarize_over_patients(per_patient: Mapping[str, Mapping[str, Any]]
                            ) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``{answer: {region: {metric: {"mean", "std", "n"}}}}`` over patients (NaN/inf left out of
    mean and std, ``n`` counts the finite values; std is the population std)."""
    summary: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for answer in ANSWERS:
        for region in _regions(per_patient):
            for metric in METRICS:
                values = np.array([_value(s, answer, region, metric)
                                   for s in per_patient.values()])
                finite = values[np.isfinite(values)]
                stats = {"mean": float(finite.mean()) if finite.size else math.nan,
                         "std": float(finite.std()) if finite.size else math.nan,
                         "n": int(finite.size)}
                summary.setdefault(answer, {}).setdefault(region, {})[metric] = stats
    return summary


def write_reports(out_dir: str | os.PathLike[str],
                  per_patient: Mapping[str, Mapping[str, Any]]) -> tuple[Path, Path]:
    """Write ``metrics.csv`` and ``metrics.json`` (per patient + mean/std) atomically."""
    out = Path(out_dir)
    csv_path = atomic_write_text(out / "metrics.csv", csv_text(per_patient))
    first = next(iter(per_patient.values()), {})
    json_path = atomic_write_json(out / "metrics.json", {
        "units": {"mae_hu": "HU", "rmse_hu": "HU", "bias_hu": "HU (prediction - truth)",
                  "psnr_db": "dB", "ssim": "1", "lung_volume_ml": "mL"},
        "baseline": "the AVG itself used as the phase-0 prediction (identity answer)",
        "improvement": "baseline - model for MAE, RMSE, |bias|; model - baseline for PSNR, SSIM:"
                       " positive means the model is better",
        "settings": first.get("settings"),
        "n_patients": len(per_patient),
        "summary": summarize_over_patients(per_patient),
        "patients": dict(per_patient)})
    return csv_path, json_path


def write_and_describe(out_dir: str | os.PathLike[str],
                       per_patient: Mapping[str, Mapping[str, Any]]) -> str:
    """Write the metric files (:func:`write_reports`); return the per-patient table, the summary
    with its verdict, and where the files are, for a command to print."""
    csv_path, json_path = write_reports(out_dir, per_patient)
    return "\n".join([patient_table(per_patient), summary_table(per_patient),
                      f"metrics: {csv_path}, {json_path}"])


def _fmt(x: float, metric: str) -> str:
    """A score for the table: HU and dB with one decimal, SSIM with three."""
    if math.isnan(x):
        return "-"
    return f"{x:.3f}" if metric == "ssim" else f"{x:.1f}"


def _mae_pair(scores: Mapping[str, Any], region: str) -> str:
    """``"model / AVG"`` MAE in HU of one patient and region."""
    return " / ".join(_fmt(_value(scores, answer, region, "mae_hu"), "mae_hu")
                      for answer in ("model", "baseline"))


def patient_table(per_patient: Mapping[str, Mapping[str, Any]]) -> str:
    """Per patient: MAE in HU of the model and of the AVG, per region, and the lung volumes."""
    regions = _regions(per_patient)
    head = f"{'patient':<16}" + "".join(f"{f'MAE {r} model/AVG (HU)':>30}" for r in regions)
    lines = [head + f"{'lung mL truth/model/AVG':>28}"]
    for pid, s in per_patient.items():
        cells = "".join(f"{_mae_pair(s, r):>30}" for r in regions)
        lung = s.get("lung_volume_ml", {})
        lung_txt = " / ".join("-" if lung.get(k) is None else f"{lung[k]:.0f}"
                              for k in ("truth", "model", "avg"))
        lines.append(f"{pid:<16}{cells}{lung_txt:>28}")
    return "\n".join(lines)


def summary_table(per_patient: Mapping[str, Mapping[str, Any]]) -> str:
    """Mean (std) over patients per region and metric, model against the AVG, and a verdict."""
    summary = summarize_over_patients(per_patient)
    n = len(per_patient)
    lines = [f"mean (std) over {n} patient{'s' if n != 1 else ''}; AVG = the average CT used as "
             f"the prediction",
             f"{'region':<8}{'metric':<8}{'model':>18}{'AVG':>18}{'model better by':>18}"]
    for region in _regions(per_patient):
        for metric in TABLE_METRICS:
            cells = []
            for answer in ANSWERS:
                stats = summary[answer][region][metric]
                cells.append(f"{_fmt(stats['mean'], metric)} ({_fmt(stats['std'], metric)})"
                             if stats["n"] else "-")
            unit = {"ssim": "", "psnr_db": " dB"}.get(metric, " HU")
            lines.append(f"{region:<8}{_LABELS[metric] + unit:<8}"
                         + "".join(f"{c:>18}" for c in cells))
    lines.append(verdict(summary))
    return "\n".join(lines)


def verdict(summary: Mapping[str, Any]) -> str:
    """One line: is the model's MAE better than the AVG's where things move (else the body)?
    Less than :data:`CLEARLY_BETTER_PCT` % lower is reported as not clearly better."""
    for region in ("motion", "body", "whole"):
        model = summary.get("model", {}).get(region, {}).get("mae_hu", {})
        base = summary.get("baseline", {}).get(region, {}).get("mae_hu", {})
        if model.get("n") and base.get("n"):
            m, b = model["mean"], base["mean"]
            change = 100.0 * (m - b) / b if b else math.nan
            word = ("better than" if change <= -CLEARLY_BETTER_PCT
                    else "NOT clearly better than" if m < b else "NOT better than")
            return (f"verdict: in the {region} region the model is {word} the AVG: MAE "
                    f"{m:.1f} vs {b:.1f} HU ({change:+.0f} %)")
    return "verdict: no ground truth with an AVG to compare against"
