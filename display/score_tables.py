"""What the results page shows of a test run's scores: which numbers, in which unit, and which
answer (the model or the AVG) is better.

Input: one score dict per patient, as ``evaluation.metrics.evaluate_volumes`` returns it (read
here as plain mappings; ``display/`` does not import ``evaluation/``):

- ``"model"`` / ``"baseline"`` (the AVG used as the prediction): ``{region: {metric: value}}``;
- optional: ``"region_ml"`` ``{region: mL}``, ``"amplitude_mm"`` (breathing amplitude, mm, or
  None), ``"geometry"``: ``{"model": G, "baseline": G or None}`` with G holding ``lung_dice``,
  ``lung_volume_error_pct``, ``diaphragm_error_mean_mm``, ``diaphragm_error_p95_mm``, ... and
  ``"structures"``: ``{name: {"com_error_mm": ...}}``.

Every key may be missing; a missing or non-numeric value is NaN and is shown as a dash. Means
over patients follow ``evaluation.report``: NaN and inf left out, population std.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The two answers compared on the page: the model, and the AVG used as the prediction.
ANSWERS = ("model", "baseline")
#: Regions in the order the page lists them: where things move first.
PAGE_REGIONS = ("motion", "body", "whole")

Scores = Mapping[str, Any]


@dataclass(frozen=True)
class Metric:
    """One number of a score dict: where it is (``block`` "hu" = ``scores[answer][keys...]``,
    "geometry" = ``scores["geometry"][answer][keys...]``), its label, unit and format."""

    label: str
    unit: str
    block: str
    keys: tuple[str, ...]
    higher_is_better: bool = False
    digits: int = 1
    signed: bool = False  # an error with a sign: "better" compares magnitudes

    @property
    def heading(self) -> str:
        """The label with its unit: ``"MAE motion (HU)"``."""
        return f"{self.label} ({self.unit})" if self.unit else self.label


def hu_metric(name: str, region: str) -> Metric:
    """``mae_hu`` or ``ssim`` of ``region``."""
    if name == "ssim":
        return Metric(f"SSIM {region}", "", "hu", (region, "ssim"), higher_is_better=True,
                      digits=3)
    if name == "mae_hu":
        return Metric(f"MAE {region}", "HU", "hu", (region, "mae_hu"))
    raise ValueError(f"unknown page metric {name!r}; valid: mae_hu, ssim")


#: The geometry numbers of the summary, in order (structures are added per name).
GEOMETRY_METRICS = (
    Metric("lung Dice", "", "geometry", ("lung_dice",), higher_is_better=True, digits=3),
    Metric("lung volume error", "%", "geometry", ("lung_volume_error_pct",), signed=True),
    Metric("diaphragm error, mean", "mm", "geometry", ("diaphragm_error_mean_mm",)),
    Metric("diaphragm error, p95", "mm", "geometry", ("diaphragm_error_p95_mm",)),
)
DIAPHRAGM_MEAN = GEOMETRY_METRICS[2]


def structure_metric(name: str) -> Metric:
    """The centre-of-mass error (mm) of structure ``name``."""
    return Metric(f"{name}: centre-of-mass error", "mm", "geometry",
                  ("structures", name, "com_error_mm"))


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def value(scores: Scores, metric: Metric, answer: str) -> float:
    """``metric`` of ``answer`` (``"model"`` or ``"baseline"``) in one patient's scores; NaN
    when any key on the way is missing or None."""
    node: Any = scores.get("geometry") if metric.block == "geometry" else scores
    for key in (answer, *metric.keys):
        if not isinstance(node, Mapping):
            return math.nan
        node = node.get(key)
    return _number(node)


def amplitude_mm(scores: Scores) -> float | None:
    """The patient's breathing amplitude (mm), None when not given."""
    amplitude = _number(scores.get("amplitude_mm"))
    return None if math.isnan(amplitude) else amplitude


def region_size(scores: Scores, region: str, unit: str) -> float:
    """The region's size in ``unit``: "mL" (from ``region_ml``) or "voxels" (from
    ``region_voxels``); NaN when not given."""
    if unit not in ("mL", "voxels"):
        raise ValueError(f"unknown region size unit {unit!r}; valid: mL, voxels")
    sizes = scores.get("region_ml" if unit == "mL" else "region_voxels")
    return _number(sizes.get(region)) if isinstance(sizes, Mapping) else math.nan


def size_unit(per_patient: Mapping[str, Scores]) -> str:
    """"mL" when every patient's region sizes are given in mL, else "voxels"."""
    known = all(isinstance(s.get("region_ml"), Mapping) for s in per_patient.values())
    return "mL" if per_patient and known else "voxels"


def comparison(model: float, avg: float, metric: Metric) -> str:
    """``"better"``, ``"worse"`` or ``"same"`` for the model against the AVG, ``""`` when either
    is NaN; errors compare magnitudes."""
    if math.isnan(model) or math.isnan(avg):
        return ""
    if metric.higher_is_better:
        model, avg = -model, -avg
    elif metric.signed:
        model, avg = abs(model), abs(avg)
    return "better" if model < avg else "worse" if model > avg else "same"


@dataclass(frozen=True)
class MeanStd:
    """Mean and population std of the finite values, and how many there were."""

    mean: float
    std: float
    n: int


def mean_std(values: Iterable[float]) -> MeanStd:
    """:class:`MeanStd` of ``values``, NaN and inf left out (NaN mean for none)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return MeanStd(math.nan, math.nan, 0)
    mean = sum(finite) / len(finite)
    return MeanStd(mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite)),
                   len(finite))


def over_patients(per_patient: Mapping[str, Scores], metric: Metric, answer: str) -> MeanStd:
    """Mean (std) of ``metric`` over patients; magnitudes for a signed error."""
    values = (value(s, metric, answer) for s in per_patient.values())
    return mean_std(abs(v) for v in values) if metric.signed else mean_std(values)


def regions(per_patient: Mapping[str, Scores]) -> list[str]:
    """The regions scored for any patient, in :data:`PAGE_REGIONS` order."""
    found = {r for s in per_patient.values() if isinstance(s.get("model"), Mapping)
             for r in s["model"]}
    return [r for r in PAGE_REGIONS if r in found]


def has_geometry(per_patient: Mapping[str, Scores]) -> bool:
    """True if any patient's scores hold a geometry block for the model."""
    return any(isinstance(s.get("geometry"), Mapping)
               and isinstance(s["geometry"].get("model"), Mapping) for s in per_patient.values())


def structure_names(per_patient: Mapping[str, Scores]) -> list[str]:
    """The structures with a centre-of-mass error for any patient, sorted."""
    names: set[str] = set()
    for s in per_patient.values():
        geometry = s.get("geometry")
        model = geometry.get("model") if isinstance(geometry, Mapping) else None
        if isinstance(model, Mapping) and isinstance(model.get("structures"), Mapping):
            names.update(str(n) for n in model["structures"])
    return sorted(names)


def headline_metrics(per_patient: Mapping[str, Scores]) -> list[Metric]:
    """The per-patient table's numbers: MAE and SSIM of the first region of
    :data:`PAGE_REGIONS` that was scored, then lung Dice, lung volume error and the mean
    diaphragm error when there are geometry scores."""
    scored = regions(per_patient)
    metrics = [hu_metric(m, scored[0]) for m in ("mae_hu", "ssim")] if scored else []
    if has_geometry(per_patient):
        metrics += list(GEOMETRY_METRICS[:3])
    return metrics


def summary_geometry_metrics(per_patient: Mapping[str, Scores]) -> Sequence[Metric]:
    """The geometry rows of the summary, structures included; none without geometry scores."""
    if not has_geometry(per_patient):
        return []
    return [*GEOMETRY_METRICS, *(structure_metric(n) for n in structure_names(per_patient))]


def fmt(x: float, digits: int) -> str:
    """A number with ``digits`` decimals, a dash for NaN."""
    return "\u2013" if math.isnan(x) else f"{x:.{digits}f}"
