"""Validation during training: MAE in HU on the held-out ``val`` patients, model and AVG.

The regions (body from the AVG, motion where phase 0 and the AVG differ) depend only on the data,
so they and the AVG's own error are computed once; each validation then predicts every slice of
every validation patient and scores the motion region and the body. Work is in the slice-stack
frame (axis 0 axial), at the native slice size: a generator run at a working spacing predicts
through :func:`models.inference.predict_hu`, which brings its prediction back to the source grid.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from data.ct_volumes import SliceStack
from evaluation.metrics import RegionSettings, mae_hu, region_masks
from models.inference import predict_hu
from models.networks import SliceSizeRule
from models.volume_inference import VolumeWindows
from util.resample import NATIVE, Spacing3

logger = logging.getLogger(__name__)

#: Regions scored during validation.
VAL_REGIONS = ("motion", "body", "whole")
#: Regions whose model/AVG MAE ratios, averaged, pick the ``best`` checkpoint: the motion the
#: model is for, and the whole volume, so an epoch that makes the air or static tissue worse
#: (15 HU dark air was chosen when the motion region alone decided) is not chosen.
SELECTION_REGIONS = ("motion", "whole")


@dataclass(frozen=True)
class _ValPatient:
    """A validation patient: AVG stack (S, H, W) HU, phase 0 as float32 HU, region masks."""

    patient_id: str
    avg: SliceStack
    truth_hu: np.ndarray
    masks: dict[str, np.ndarray]
    phase_pct: float | None = None


class Validator:
    """Scores a generator on validation patients (AVG -> phase 0), in HU.

    ``patients``: (id, AVG stack, target stack) triples on the same grids, the target phase 0;
    or (id, AVG stack, target stack, phase %) for a phase-conditioned generator, the id naming
    the patient and phase (``PT1@p50``). ``resize_to``,
    ``hu_min``/``hu_max``, ``batch_size`` and ``context_slices`` as in training; ``device``:
    where the generator is; ``size_rule``: the slice sizes the generator takes (slices that do
    not fit are padded with air, as in :func:`models.inference.predict_stack`; None: as they
    are, for slices that training already checked); ``windows``: how a volumetric generator
    covers a volume (:class:`models.volume_inference.VolumeWindows`); ``working_spacing_mm``:
    the (slice, row, column) grid in mm the generator runs on (0 = native axis), predictions
    being scored on each patient's native grid.
    """

    def __init__(self, patients: Sequence[tuple[str, SliceStack, SliceStack]
                                          | tuple[str, SliceStack, SliceStack, float]],
                 settings: RegionSettings, *, resize_to: int = 0, batch_size: int = 1,
                 context_slices: int = 0, device: torch.device | str = "cpu",
                 size_rule: SliceSizeRule | None = None,
                 windows: VolumeWindows | None = None,
                 working_spacing_mm: Spacing3 = NATIVE, residual_gate_hu: float = 0.0) -> None:
        self.settings, self.context_slices, self.size_rule = settings, context_slices, size_rule
        self.windows, self.working_spacing_mm = windows, working_spacing_mm
        self.residual_gate_hu = residual_gate_hu
        self.resize_to, self.batch_size, self.device = resize_to, batch_size, device
        self.patients = []
        for pid, avg, truth, *phase in patients:
            masks = region_masks(avg.hu, truth.hu, 0, avg.stack_spacing_mm, settings)
            self.patients.append(_ValPatient(pid, avg, truth.hu.astype(np.float32),
                                             {r: masks[r] for r in VAL_REGIONS},
                                             float(phase[0]) if phase else None))
        self.baseline = self._mean_mae({p.patient_id: p.avg.hu for p in self.patients})
        logger.info("validation on %d patients; AVG baseline MAE: %s", len(self.patients),
                    ", ".join(f"{r} {v:.1f} HU" for r, v in self.baseline.items()))

    def _mean_mae(self, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        """{region: mean over patients of the MAE in HU} (NaN-free mean; NaN if none)."""
        out = {}
        for region in VAL_REGIONS:
            values = [mae_hu(predictions[p.patient_id], p.truth_hu, p.masks[region])
                      for p in self.patients]
            finite = [v for v in values if math.isfinite(v)]
            out[region] = float(np.mean(finite)) if finite else math.nan
        return out

    def __call__(self, net_g: nn.Module) -> dict[str, float]:
        """Validate ``net_g`` in eval mode (restored afterwards); returns
        ``val_<region>_mae_hu`` and ``baseline_<region>_mae_hu`` for each region."""
        was_training = net_g.training
        net_g.eval()
        try:
            predictions = {}
            for p in self.patients:
                predictions[p.patient_id] = predict_hu(
                    net_g, p.avg.hu, hu_min=self.settings.hu_min, hu_max=self.settings.hu_max,
                    resize_to=self.resize_to, batch_size=self.batch_size,
                    context_slices=self.context_slices, device=self.device,
                    size_rule=self.size_rule, windows=self.windows, phase_pct=p.phase_pct,
                    spacing_mm=p.avg.stack_spacing_mm,
                    working_spacing_mm=self.working_spacing_mm,
                    residual_gate_hu=self.residual_gate_hu).hu
        finally:
            net_g.train(was_training)
        model = self._mean_mae(predictions)
        return ({f"val_{r}_mae_hu": v for r, v in model.items()}
                | {f"baseline_{r}_mae_hu": v for r, v in self.baseline.items()})


def _ratio(metrics: dict[str, float], region: str) -> float:
    """Model MAE / AVG MAE in ``region`` (NaN when either is missing, not finite or the AVG's
    is 0)."""
    value = metrics.get(f"val_{region}_mae_hu", math.nan)
    baseline = metrics.get(f"baseline_{region}_mae_hu", math.nan)
    if not (math.isfinite(value) and math.isfinite(baseline)) or baseline <= 0:
        return math.nan
    return value / baseline


def selection_score(metrics: dict[str, float]) -> float:
    """The number the ``best`` checkpoint minimises (lower is better, 1 = as good as the AVG):
    the mean over :data:`SELECTION_REGIONS` of the model's MAE divided by the AVG's; the motion
    region's ratio alone for metrics that lack the whole volume (a run validated before it was
    scored); the body's when no validation patient has a motion region; inf when none is
    known."""
    ratios = [_ratio(metrics, region) for region in SELECTION_REGIONS]
    if all(math.isfinite(r) for r in ratios):
        return float(np.mean(ratios))
    for region in ("motion", "body"):
        if math.isfinite(ratio := _ratio(metrics, region)):
            return ratio
    return math.inf
