"""The pictures of a patient's page (``test.py``): lung base, views, every slice, the cycle.

All go into ``images/`` as ``<stem>_views_<what>.png`` and ``<stem>_slice<NNN>_<visual>.png``
(``<stem>``: the patient id made safe), 8-bit for display only (:mod:`display.windows`); each
function returns the :class:`display.patient_page.Picture` entries that the page shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.ct_volumes import SliceStack
from display.ct_views import choose_planes, middle_coronal, save_patient_views
from display.cycle_views import save_cycle_strip, save_trajectory_plot
from display.geometry_views import lung_base_planes, save_lung_base_views
from display.patient_page import Picture, PictureRow
from display.windows import DEFAULT_WINDOW, get_window, save_png, window_to_uint8
from evaluation.geometry import lung_mask as geometry_lung_mask
from evaluation.metrics import RegionSettings, body_mask, region_masks
from inference.dataset_split import PatientInputs
from util.geometry import stack_spacing_mm, to_slice_stack
from util.names import safe_name

#: Display windows of the per-patient views: lungs, and soft tissue (diaphragm, liver dome).
VIEW_WINDOWS = ("lung", "soft_tissue")


def lung_mask(stack_hu: np.ndarray, settings: RegionSettings) -> np.ndarray:
    """Lungs of a (S, R, C) HU stack -> (S, R, C) bool, as the geometry scores define them
    (:func:`evaluation.geometry.lung_mask` inside :func:`evaluation.metrics.body_mask`), for
    the lung-base pictures."""
    body = body_mask(stack_hu, 0, settings.body_threshold_hu)
    return geometry_lung_mask(stack_hu, body, settings.lung_threshold_hu)


def write_patient_views(image_dir: Path, p: PatientInputs, pred_stack: np.ndarray,
                        settings: RegionSettings) -> list[Picture]:
    """The lung base (coronal and sagittal, lung outlines of truth, prediction and AVG over the
    prediction), then axial + coronal views of AVG, prediction, truth and |error| in each of
    :data:`VIEW_WINDOWS` through the slice and row with the most motion."""
    truth = p.truth.hu if p.truth is not None else None
    spacing = stack_spacing_mm(p.avg.info.affine)
    stem = safe_name(p.patient_id)
    truth_lung = lung_mask(truth, settings) if truth is not None else None
    pred_lung = lung_mask(pred_stack, settings)
    path = save_lung_base_views(
        image_dir / f"{stem}_views_lung_base.png", pred_stack, truth_lung, pred_lung,
        lung_mask(p.avg.hu, settings), spacing,
        lung_base_planes(truth_lung if truth_lung is not None else pred_lung),
        get_window("lung"), p.patient_id)
    pictures = [Picture(f"images/{path.name}", "lung base: coronal and sagittal")]
    motion = (region_masks(p.avg.hu, truth, 0, p.avg.stack_spacing_mm, settings)["motion"]
              if truth is not None else None)
    planes = choose_planes(pred_stack.shape, motion)
    for window in VIEW_WINDOWS:
        path = image_dir / f"{stem}_views_{window}.png"
        save_patient_views(path, p.avg.hu, pred_stack, truth, spacing, planes,
                           get_window(window), p.patient_id)
        pictures.append(Picture(f"images/{path.name}", f"axial and coronal, {window} window"))
    return pictures


def write_slice_pictures(image_dir: Path, p: PatientInputs,
                         pred_stack: np.ndarray) -> list[PictureRow]:
    """Input, prediction and (when known) truth of every slice, 8-bit in the thorax window,
    as ``<stem>_slice<NNN>_<real_A|fake_B|real_B>.png``; ``pred_stack``: (S, R, C) HU."""
    stacks = {"real_A": ("input (AVG)" if p.a_to_b else "input (phase 0)", p.source.hu),
              "fake_B": ("prediction", pred_stack)}
    if p.truth is not None:
        stacks["real_B"] = ("truth (phase 0)" if p.a_to_b else "truth (AVG)", p.truth.hu)
    window = get_window(DEFAULT_WINDOW)
    stem = safe_name(p.patient_id)
    rows = []
    for s in range(pred_stack.shape[0]):
        pictures = []
        for visual, (caption, stack) in stacks.items():
            name = f"{stem}_slice{s:03d}_{visual}.png"
            save_png(window_to_uint8(stack[s], window), image_dir / name)
            pictures.append(Picture(f"images/{name}", caption))
        rows.append(PictureRow(f"slice {s:03d}", tuple(pictures)))
    return rows


def write_cycle_pictures(image_dir: Path, p: PatientInputs, scores: dict,
                         preds: dict[float, np.ndarray],
                         truths: dict[float, SliceStack]) -> list[Picture]:
    """The diaphragm's (and structures') trajectory against the truth's, and the coronal
    phases side by side (truth below when known); ``preds``: {phase: (I, J, K) HU}."""
    stem = safe_name(p.patient_id)
    diaphragm = scores["diaphragm"]
    panels = {"diaphragm height (mm)": {
        "truth": _by_percent(diaphragm["truth_mm"]), "model": _by_percent(diaphragm["model_mm"]),
        "AVG": dict.fromkeys(map(float, diaphragm["model_mm"]), diaphragm["avg_mm"])}}
    for name, found in scores["structures"].items():
        panels[f"{name} superior-inferior (mm)"] = {
            answer: {float(k): v[2] for k, v in found[f"{answer}_mm"].items()}
            for answer in ("truth", "model")}
    plot = save_trajectory_plot(image_dir / f"{stem}_views_trajectory.png", panels,
                                f"{p.patient_id}: over the breathing cycle")
    affine = p.avg.info.affine
    rows = {"synthetic": [middle_coronal(to_slice_stack(preds[ph], affine)) for ph in preds]}
    if set(preds) <= set(truths):
        rows["truth"] = [middle_coronal(truths[ph].hu) for ph in preds]
    spacing = stack_spacing_mm(affine)
    strip = save_cycle_strip(image_dir / f"{stem}_views_cycle.png", rows, list(preds),
                             f"{p.patient_id}: coronal, every phase", spacing_mm=spacing[:2])
    return [Picture(f"images/{plot.name}", "trajectories over the breathing cycle"),
            Picture(f"images/{strip.name}", "the synthetic cycle, coronal (truth below)")]


def _by_percent(values: dict[str, float]) -> dict[float, float]:
    """{label: v} -> {phase %: v}."""
    return {float(k): v for k, v in values.items()}
