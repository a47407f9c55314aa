"""Metric reports over patients: ``metrics.csv``, ``metrics.json`` and the printed tables.

Input: one :func:`evaluation.metrics.evaluate_volumes` result per patient, i.e. ``model`` and
(with an AVG) ``baseline`` and ``improvement`` scores, ``{region: {metric: value}}``, in HU, dB or
unitless (SSIM), the region sizes (voxels, mL), and the geometry of each answer (lungs, lung base,
structures; mL, %, mm). The identity baseline is the AVG itself used as the phase-0 prediction.
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
#: Answers with a geometry block.
GEOMETRY_ANSWERS = ("model", "baseline")
#: Geometric metrics of an answer (see :func:`evaluation.geometry.lung_scores`).
GEOMETRY_METRICS = ("lung_dice", "lung_volume_error_ml", "lung_volume_error_pct",
                    "diaphragm_error_mean_mm", "diaphragm_error_p95_mm", "diaphragm_bias_mm")
#: Metrics of a structure per answer (see :func:`evaluation.structures.structure_scores`).
STRUCTURE_METRICS = ("com_error_mm", "com_error_x_mm", "com_error_y_mm", "com_error_z_mm")
#: Region name of a structure's rows and summary entries: ``structure:<name>``.
STRUCTURE_PREFIX = "structure:"
UNITS = {"mae_hu": "HU", "rmse_hu": "HU", "bias_hu": "HU (prediction - truth)", "psnr_db": "dB",
         "ssim": "1", "lung_volume_ml": "mL", "region_ml": "mL", "lung_dice": "1",
         "lung_volume_error_ml": "mL (prediction - truth)",
         "lung_volume_error_pct": "% of the truth's lung volume (prediction - truth)",
         "diaphragm_error_mean_mm": "mm", "diaphragm_error_p95_mm": "mm",
         "diaphragm_bias_mm": "mm along the stack axis (prediction - truth; + = too superior)",
         "amplitude_mm": "mm (AVG-to-phase-0 lung-base shift)",
         "com_error_mm": "mm (world)", "com_error_vector_mm": "mm (world axes; answer - truth)",
         "threshold_hu": "HU"}
#: Metrics shown in the printed summary (all are in the files).
TABLE_METRICS = ("mae_hu", "rmse_hu", "bias_hu", "ssim", "psnr_db")
#: A model must cut the AVG's MAE by at least this much (%) to be called better in the verdict.
CLEARLY_BETTER_PCT = 5.0
_LABELS = {"mae_hu": "MAE", "rmse_hu": "RMSE", "bias_hu": "bias", "ssim": "SSIM",
           "psnr_db": "PSNR", "lung_dice": "lung Dice",
           "lung_volume_error_pct": "lung volume error %",
           "diaphragm_error_mean_mm": "diaphragm error mean mm",
           "diaphragm_error_p95_mm": "diaphragm error p95 mm",
           "diaphragm_bias_mm": "diaphragm bias mm (+ = high)"}
#: Geometric metrics shown in the printed summary (all are in the files).
TABLE_GEOMETRY = ("lung_dice", "lung_volume_error_pct", "diaphragm_error_mean_mm",
                  "diaphragm_error_p95_mm", "diaphragm_bias_mm")


def _value(scores: Mapping[str, Any], answer: str, region: str, metric: str) -> float:
    """One score, NaN when that answer or region is absent."""
    per_region = scores.get(answer) or {}
    return float(per_region.get(region, {}).get(metric, math.nan))


def _geometry_value(scores: Mapping[str, Any], answer: str, metric: str) -> float:
    """One geometric score of an answer, NaN when absent."""
    block = (scores.get("geometry") or {}).get(answer) or {}
    value = block.get(metric)
    return math.nan if value is None else float(value)


def _structure_values(scores: Mapping[str, Any], answer: str, name: str) -> dict[str, float]:
    """:data:`STRUCTURE_METRICS` of one structure in one answer, NaN when absent."""
    block = (scores.get("geometry") or {}).get(answer) or {}
    found = (block.get("structures") or {}).get(name) or {}
    vector = found.get("com_error_vector_mm") or [math.nan] * 3
    values = [found.get("com_error_mm", math.nan), *vector]
    return {m: float(v) for m, v in zip(STRUCTURE_METRICS, values, strict=True)}


def _structures(per_patient: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The structure names scored for any patient, sorted."""
    return sorted({name for s in per_patient.values()
                   for name in (((s.get("geometry") or {}).get("model") or {})
                                .get("structures") or {})})


def _stats(values: list[float]) -> dict[str, float]:
    """``{"mean", "std", "n"}`` of the finite ``values`` (population std; NaN when none)."""
    array = np.array(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    return {"mean": float(finite.mean()) if finite.size else math.nan,
            "std": float(finite.std()) if finite.size else math.nan, "n": int(finite.size)}


def _regions(per_patient: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The regions scored for any patient, in :data:`REGIONS` order."""
    found = {r for s in per_patient.values() for r in (s.get("model") or {})}
    return [r for r in REGIONS if r in found]


def _csv_header() -> list[str]:
    return (["patient", "region", "voxels"]
            + [f"{answer}_{metric}" for answer in ANSWERS for metric in METRICS] + ["ml"]
            + [f"{answer}_{metric}" for answer in GEOMETRY_ANSWERS
               for metric in GEOMETRY_METRICS + STRUCTURE_METRICS]
            + ["threshold_hu", "amplitude_mm"])


def _csv_rows(pid: str, scores: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A patient's rows: one per region (voxels, mL, HU metrics), then, with a geometry block,
    a "geometry" row (lung and diaphragm metrics, amplitude) and a ``structure:<name>`` row per
    structure (centre-of-mass error and its world components, the fitted threshold)."""
    rows: list[dict[str, Any]] = []
    for region in _regions({pid: scores}):
        row = {"patient": pid, "region": region,
               "voxels": scores["region_voxels"].get(region, 0),
               "ml": f"{(scores.get('region_ml') or {}).get(region, math.nan):.6g}"}
        row |= {f"{a}_{m}": f"{_value(scores, a, region, m):.6g}" for a in ANSWERS for m in METRICS}
        rows.append(row)
    if not scores.get("geometry"):
        return rows
    amplitude = scores.get("amplitude_mm")
    rows.append({"patient": pid, "region": "geometry",
                 "amplitude_mm": f"{math.nan if amplitude is None else amplitude:.6g}"}
                | {f"{a}_{m}": f"{_geometry_value(scores, a, m):.6g}"
                   for a in GEOMETRY_ANSWERS for m in GEOMETRY_METRICS})
    for name in _structures({pid: scores}):
        found = scores["geometry"]["model"]["structures"][name]
        row = {"patient": pid, "region": STRUCTURE_PREFIX + name,
               "threshold_hu": f"{found['threshold_hu']:.6g}"}
        for answer in GEOMETRY_ANSWERS:
            row |= {f"{answer}_{m}": f"{v:.6g}"
                    for m, v in _structure_values(scores, answer, name).items()}
        rows.append(row)
    return rows


def csv_text(per_patient: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per patient and region: voxels, model, baseline and improvement per metric, and
    the region's size in mL; then per patient a "geometry" row and one row per structure (see
    :func:`_csv_rows`); cells that do not apply to a row are empty."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_csv_header(), lineterminator="\n")
    writer.writeheader()
    for pid, scores in per_patient.items():
        writer.writerows(_csv_rows(pid, scores))
    return out.getvalue()


def summarize_over_patients(per_patient: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean, population std and count of the finite values over patients (NaN/inf left out):

    ``{answer: {region: {metric: {"mean", "std", "n"}}}}`` for the HU metrics; for "model" and
    "baseline" also ``["geometry"][metric]`` and ``["structure:<name>"][metric]`` when the
    scores hold a geometry block; ``["displacement"]`` (max_mm, p95_mm, si_max_mm, folding_pct)
    when a motion generator wrote its field; and ``["data"]``: ``{"region_ml": {region: stats},
    "amplitude_mm": stats}``, properties of the data rather than of an answer.
    """
    summary: dict[str, Any] = {}
    regions, structures = _regions(per_patient), _structures(per_patient)
    patients = list(per_patient.values())
    for answer in ANSWERS:
        summary[answer] = {region: {m: _stats([_value(s, answer, region, m) for s in patients])
                                    for m in METRICS} for region in regions}
    if any(s.get("geometry") for s in patients):
        for answer in GEOMETRY_ANSWERS:
            summary[answer]["geometry"] = {
                m: _stats([_geometry_value(s, answer, m) for s in patients])
                for m in GEOMETRY_METRICS}
            for name in structures:
                values = [_structure_values(s, answer, name) for s in patients]
                summary[answer][STRUCTURE_PREFIX + name] = {
                    m: _stats([v[m] for v in values]) for m in STRUCTURE_METRICS}
    summary["data"] = {
        "region_ml": {r: _stats([(s.get("region_ml") or {}).get(r, math.nan) for s in patients])
                      for r in regions},
        "amplitude_mm": _stats([math.nan if s.get("amplitude_mm") is None else s["amplitude_mm"]
                                for s in patients])}
    cycles = [s["cycle"] for s in patients if s.get("cycle")]
    if cycles:  # every phase of a phase-conditioned run (test.py --phases)
        summary["cycle"] = cycle_summary_over_patients(cycles)
    fields = [s["displacement"] for s in patients if s.get("displacement")]
    if fields:  # a motion generator's field: its size (mm) and folding (%)
        summary["displacement"] = {k: _stats([f[k] for f in fields]) for k in fields[0]}
    return summary


def write_reports(out_dir: str | os.PathLike[str],
                  per_patient: Mapping[str, Mapping[str, Any]]) -> tuple[Path, Path]:
    """Write ``metrics.csv`` and ``metrics.json`` (per patient + mean/std) atomically."""
    out = Path(out_dir)
    csv_path = atomic_write_text(out / "metrics.csv", csv_text(per_patient))
    first = next(iter(per_patient.values()), {})
    json_path = atomic_write_json(out / "metrics.json", {
        "units": UNITS,
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
                      *field_lines(per_patient), *cycle_lines(per_patient),
                      f"metrics: {csv_path}, {json_path}"])


def cycle_summary_over_patients(cycles: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Means over patients of the cycle scores (:func:`evaluation.cycle_scores.score_cycle`):
    per phase the motion-region MAE of the model and of the AVG (HU) and their diaphragm errors
    (mm); the consistency (body MAE, HU) of the synthetic and the true cycles; the diaphragm's
    amplitude error (mm)."""
    labels = sorted({label for c in cycles for label in c["phases"]}, key=float)

    def phase_stat(label: str, answer: str, key: str) -> dict[str, float]:
        values = []
        for c in cycles:
            scores = c["phases"].get(label)
            if scores is None or scores.get(answer) is None:
                continue
            values.append(scores[answer]["motion"]["mae_hu"] if key == "mae"
                          else scores["geometry"][answer]["diaphragm_error_mean_mm"])
        return _stats(values)

    def consistency(which: str) -> dict[str, float]:
        return _stats([c["consistency"][which]["body"]["mae_hu"] for c in cycles
                       if c.get("consistency") and c["consistency"].get(which)])

    return {"phases": {label: {"model_motion_mae_hu": phase_stat(label, "model", "mae"),
                               "avg_motion_mae_hu": phase_stat(label, "baseline", "mae"),
                               "model_diaphragm_mm": phase_stat(label, "model", "mm"),
                               "avg_diaphragm_mm": phase_stat(label, "baseline", "mm")}
                       for label in labels},
            "consistency_body_mae_hu": {"model": consistency("model"),
                                        "truth": consistency("truth")},
            "diaphragm_amplitude_error_mm": _stats(
                [c["diaphragm"]["summary"]["amplitude_error_mm"] for c in cycles])}


def cycle_lines(per_patient: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The per-phase table of a cycle run (motion MAE model vs AVG, diaphragm mm) and the
    consistency line, or nothing without cycle scores."""
    cycle = summarize_over_patients(per_patient).get("cycle")
    if not cycle:
        return []
    lines = ["phase | motion MAE model / AVG (HU) | diaphragm model / AVG (mm)"]
    for label, row in cycle["phases"].items():
        lines.append(f"{label:>4} % | {row['model_motion_mae_hu']['mean']:7.1f} / "
                     f"{row['avg_motion_mae_hu']['mean']:7.1f} | "
                     f"{row['model_diaphragm_mm']['mean']:5.2f} / "
                     f"{row['avg_diaphragm_mm']['mean']:5.2f}")
    c = cycle["consistency_body_mae_hu"]
    lines.append(f"mean of the phases against the AVG (body MAE): synthetic "
                 f"{c['model']['mean']:.1f} HU, true {c['truth']['mean']:.1f} HU; diaphragm "
                 f"amplitude error {cycle['diaphragm_amplitude_error_mm']['mean']:+.1f} mm")
    return lines


def field_lines(per_patient: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line on the motion generator's displacement fields (mean over patients of the
    largest and 95th-percentile displacement in mm, and of the folded share), or none."""
    stats = summarize_over_patients(per_patient).get("displacement")
    if not stats:
        return []
    return [f"displacement field: up to {stats['max_mm']['mean']:.1f} mm (p95 "
            f"{stats['p95_mm']['mean']:.1f} mm, superior-inferior up to "
            f"{stats['si_max_mm']['mean']:.1f} mm), folding {stats['folding_pct']['mean']:.3f} % "
            f"of voxels (mean over {stats['max_mm']['n']} patients)"]


def _fmt(x: float, metric: str) -> str:
    """A score for the table: SSIM and Dice with three decimals, mL with none, the rest (HU,
    dB, mm, %) with one."""
    if math.isnan(x):
        return "-"
    if metric == "ml":
        return f"{x:.0f}"
    return f"{x:.3f}" if metric in ("ssim", "lung_dice") else f"{x:.1f}"


def _cell(stats: Mapping[str, float], metric: str) -> str:
    """``"mean (std)"`` of a summary entry, ``-`` when no patient has a value."""
    return f"{_fmt(stats['mean'], metric)} ({_fmt(stats['std'], metric)})" if stats["n"] else "-"


def _mae_pair(scores: Mapping[str, Any], region: str) -> str:
    """``"model / AVG"`` MAE in HU of one patient and region."""
    return " / ".join(_fmt(_value(scores, answer, region, "mae_hu"), "mae_hu")
                      for answer in ("model", "baseline"))


def patient_table(per_patient: Mapping[str, Mapping[str, Any]]) -> str:
    """Per patient: MAE in HU of the model and of the AVG, per region, the lung volumes, and the
    mean lung-base (diaphragm) error of the model and of the AVG in mm."""
    regions = _regions(per_patient)
    head = f"{'patient':<16}" + "".join(f"{f'MAE {r} model/AVG (HU)':>30}" for r in regions)
    lines = [head + f"{'lung mL truth/model/AVG':>28}{'diaphragm mm model/AVG':>26}"]
    for pid, s in per_patient.items():
        cells = "".join(f"{_mae_pair(s, r):>30}" for r in regions)
        lung = s.get("lung_volume_ml", {})
        lung_txt = " / ".join("-" if lung.get(k) is None else f"{lung[k]:.0f}"
                              for k in ("truth", "model", "avg"))
        base_txt = " / ".join(_fmt(_geometry_value(s, a, "diaphragm_error_mean_mm"), "mm")
                              for a in GEOMETRY_ANSWERS)
        lines.append(f"{pid:<16}{cells}{lung_txt:>28}{base_txt:>26}")
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
            cells = [_cell(summary[answer][region][metric], metric) for answer in ANSWERS]
            unit = {"ssim": "", "psnr_db": " dB"}.get(metric, " HU")
            lines.append(f"{region:<8}{_LABELS[metric] + unit:<8}"
                         + "".join(f"{c:>18}" for c in cells))
    lines += geometry_table(summary)
    lines.append(verdict(summary))
    return "\n".join(lines)


def geometry_table(summary: Mapping[str, Any]) -> list[str]:
    """Lines of the summary's geometry block: lung and diaphragm metrics and each structure's
    centre-of-mass error (mm), model against the AVG, then the region sizes (mL) and the
    AVG-to-phase-0 lung-base shift (mm); no lines without a geometry block."""
    if "geometry" not in summary.get("model", {}):
        return []
    lines = [f"{'geometry':<32}{'model':>18}{'AVG':>18}"]
    for metric in TABLE_GEOMETRY:
        lines.append(f"{_LABELS[metric]:<32}" + "".join(
            f"{_cell(summary[a]['geometry'][metric], metric):>18}" for a in GEOMETRY_ANSWERS))
    for key in (k for k in summary["model"] if k.startswith(STRUCTURE_PREFIX)):
        label = f"{key[len(STRUCTURE_PREFIX):]} centre error mm"
        lines.append(f"{label:<32}" + "".join(
            f"{_cell(summary[a][key]['com_error_mm'], 'mm'):>18}" for a in GEOMETRY_ANSWERS))
    data = summary.get("data", {})
    sizes = ", ".join(f"{r} {_cell(stats, 'ml')}" for r, stats in data["region_ml"].items())
    lines.append(f"region size mL: {sizes}")
    lines.append("AVG-to-phase-0 lung-base shift (breathing seen in the data) mm: "
                 + _cell(data["amplitude_mm"], "mm"))
    return lines


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
                    f"{m:.1f} vs {b:.1f} HU ({change:+.0f} %)" + _lung_base_verdict(summary))
    return "verdict: no ground truth with an AVG to compare against"


def _lung_base_verdict(summary: Mapping[str, Any]) -> str:
    """``"; lung base ..."``: is the model's mean lung-base error below the AVG's? Empty when
    either is missing."""
    model, base = ((summary.get(a, {}).get("geometry") or {}).get("diaphragm_error_mean_mm", {})
                   for a in GEOMETRY_ANSWERS)
    if not (model.get("n") and base.get("n")):
        return ""
    m, b = model["mean"], base["mean"]
    word = "closer to phase 0's than" if m < b else "NOT closer to phase 0's than"
    return f"; the lung base is {word} the AVG's: mean error {m:.1f} vs {b:.1f} mm"
