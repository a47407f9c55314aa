"""Scores of a synthesised breathing cycle: every phase against its truth, the mean-of-phases
consistency, and the diaphragm's and structures' trajectories over the cycle (mm).

All volumes are (I, J, K) HU on the AVG's grid; phases are keyed by their percentage, written as
labels ("50") in the JSON-ready result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from evaluation.consistency import consistency_error
from evaluation.metrics import RegionSettings, body_mask, evaluate_volumes
from evaluation.trajectory import centre_of_mass_mm, cycle_summary, diaphragm_heights_mm
from util.geometry import axial_axis
from util.phases import STANDARD_PHASES, phase_label

#: World axis of superior-inferior in RAS (z).
_SI = 2


def _labelled(values: Mapping[float, Any]) -> dict[str, Any]:
    """{phase %: v} -> {label: v} (JSON keys)."""
    return {phase_label(p): v for p, v in values.items()}


def _structure_trajectories(phase_scores: Mapping[float, dict[str, Any]],
                            structures: Mapping[float, Mapping[str, np.ndarray]],
                            affine: np.ndarray) -> dict[str, Any]:
    """{structure: {"truth_mm"/"model_mm": {label: [x, y, z]}, "si": cycle_summary of the
    superior-inferior component, "com_error_mean_mm"}} for structures with a mask in a scored
    phase. The model's centre is the truth's plus the scored centre-of-mass error vector."""
    out: dict[str, Any] = {}
    names = sorted({n for masks in structures.values() for n in masks})
    for name in names:
        truth, model, errors = {}, {}, []
        for p, scores in phase_scores.items():
            mask = structures.get(p, {}).get(name)
            found = (scores["geometry"]["model"] or {}).get("structures", {}).get(name)
            if mask is None or not found:
                continue
            centre = centre_of_mass_mm(mask, affine)
            truth[p] = centre
            model[p] = centre + np.asarray(found["com_error_vector_mm"], dtype=np.float64)
            errors.append(found["com_error_mm"])
        if not truth:
            continue
        finite = [e for e in errors if math.isfinite(e)]
        out[name] = {"truth_mm": _labelled({p: c.tolist() for p, c in truth.items()}),
                     "model_mm": _labelled({p: c.tolist() for p, c in model.items()}),
                     "si": cycle_summary({p: float(c[_SI]) for p, c in truth.items()},
                                         {p: float(c[_SI]) for p, c in model.items()}),
                     "com_error_mean_mm": float(np.mean(finite)) if finite else math.nan}
    return out


def score_cycle(preds: Mapping[float, np.ndarray], truths: Mapping[float, np.ndarray],
                avg: np.ndarray, affine: np.ndarray, settings: RegionSettings | None = None,
                structures: Mapping[float, Mapping[str, np.ndarray]] | None = None
                ) -> dict[str, Any]:
    """Scores of the predicted phases ``preds`` of one patient.

    ``truths``: the true phases known (any subset); ``structures``: {phase: {name: mask}} on the
    truth of that phase. Returns ``{"phases": {label: evaluate_volumes(...)}`` for phases with
    truth, ``"consistency": {"model": {region: {mae_hu, bias_hu}}, "truth": ... or None}`` (None
    unless the ten standard phases were predicted), ``"diaphragm": {"model_mm", "truth_mm":
    {label: height}, "avg_mm": height, "summary": cycle_summary}``, ``"structures"``: see
    :func:`_structure_trajectories`.
    """
    settings = settings or RegionSettings()
    structures = structures or {}
    phase_scores = {p: evaluate_volumes(pred, truths[p], avg, affine, settings,
                                        structures=structures.get(p))
                    for p, pred in preds.items() if p in truths}
    consistency = None
    if set(STANDARD_PHASES) <= set(preds):
        masks = {"whole": None, "body": body_mask(avg, axial_axis(affine),
                                                  settings.body_threshold_hu)}
        cycle = [preds[p] for p in STANDARD_PHASES]
        true_cycle = [truths[p] for p in STANDARD_PHASES] \
            if set(STANDARD_PHASES) <= set(truths) else None
        consistency = {"model": consistency_error(cycle, avg, masks),
                       "truth": None if true_cycle is None
                       else consistency_error(true_cycle, avg, masks)}
    model_mm = diaphragm_heights_mm(preds, avg, affine, settings)
    truth_mm = diaphragm_heights_mm({p: truths[p] for p in preds if p in truths}, avg, affine,
                                    settings)
    avg_mm = diaphragm_heights_mm({-1.0: avg}, avg, affine, settings)[-1.0]
    return {"phases": _labelled(phase_scores), "consistency": consistency,
            "diaphragm": {"model_mm": _labelled(model_mm), "truth_mm": _labelled(truth_mm),
                          "avg_mm": avg_mm, "summary": cycle_summary(truth_mm, model_mm)},
            "structures": _structure_trajectories(phase_scores, structures, affine)}
