"""The results page of a test run: numbers first, pictures one click away.

Layout under the results folder::

    index.html                      what was run; summary (model vs AVG per region, geometry,
                                    verdict); a row per patient, linked to its page; the
                                    diaphragm error plot. Without scores: the patients, linked.
    patients/<safe id>.html         one patient: its numbers, its views, then every slice
    images/diaphragm_error_by_patient.png
                                    the plot (:mod:`display.geometry_views`), when geometry
                                    scores and pictures exist; removed otherwise

The patient pages are :mod:`display.patient_page`'s. Pictures are given as paths relative to
the results folder (``images/<...>.png``); the pages only link them. Every file is written
atomically. Scores are read as described in :mod:`display.score_tables`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from dominate import tags

from display import score_tables as st
from display.geometry_views import DiaphragmErrors, save_diaphragm_error_plot
from display.html_parts import document, header_row, mean_cell, number_cell, pair_cells
from display.patient_page import PatientPictures, patient_page, patient_page_html
from util.atomic import atomic_write_text

logger = logging.getLogger(__name__)

#: The diaphragm error plot, in the results folder.
PLOT_PATH = "images/diaphragm_error_by_patient.png"


@dataclass(frozen=True)
class RunInfo:
    """What was run, in words for the page: the run's name, the checkpoint file, the inputs and
    how the prediction was made."""

    name: str
    checkpoint: str
    inputs: str
    prediction: str


def _summary_tables(scores: Mapping[str, st.Scores]) -> None:
    """Per region: size, MAE and SSIM of the model and the AVG; then the geometry rows."""
    unit = st.size_unit(scores)
    with tags.table(id="summary"):
        header_row("region", f"size ({unit})", "MAE model (HU)", "MAE AVG (HU)", "SSIM model",
                   "SSIM AVG")
        for region in st.regions(scores):
            with tags.tr():
                tags.th(region)
                sizes = st.mean_std(st.region_size(s, region, unit) for s in scores.values())
                mean_cell(sizes, 0)
                for name in ("mae_hu", "ssim"):
                    _summary_pair(scores, st.hu_metric(name, region))
    geometry = st.summary_geometry_metrics(scores)
    if geometry:
        with tags.table(id="geometry"):
            header_row("geometry", "model", "AVG")
            for metric in geometry:
                with tags.tr():
                    label = f"|{metric.label}|" if metric.signed else metric.label
                    tags.th(f"{label} ({metric.unit})" if metric.unit else label)
                    _summary_pair(scores, metric)


def _summary_pair(scores: Mapping[str, st.Scores], metric: st.Metric) -> None:
    model, avg = (st.over_patients(scores, metric, a) for a in st.ANSWERS)
    mean_cell(model, metric.digits, st.comparison(model.mean, avg.mean, metric))
    mean_cell(avg, metric.digits)


def _patient_table(patient_ids: Sequence[str], scores: Mapping[str, st.Scores],
                   linked: set[str]) -> None:
    """A row per patient: its name (linked to its page), its breathing amplitude when any
    patient has one, and the model and the AVG for each headline metric."""
    metrics = st.headline_metrics(scores)
    amplitudes = {pid: st.amplitude_mm(scores.get(pid, {})) for pid in patient_ids}
    show_amplitude = any(a is not None for a in amplitudes.values())
    with tags.table(id="patients"):
        with tags.tr():
            tags.th("patient", rowspan=2)
            if show_amplitude:
                tags.th("breathing amplitude (mm)", rowspan=2)
            for metric in metrics:
                tags.th(metric.heading, colspan=2)
        with tags.tr():
            for _ in metrics:
                tags.th("model")
                tags.th("AVG")
        for pid in patient_ids:
            with tags.tr():
                with tags.td():
                    _patient_name(pid, linked)
                if show_amplitude:
                    amplitude = amplitudes[pid]
                    number_cell(math.nan if amplitude is None else amplitude, 1)
                for metric in metrics:
                    pair_cells(scores.get(pid, {}), metric)


def _patient_name(pid: str, linked: set[str]) -> None:
    """The patient's id, a link to its page if it has one."""
    if pid in linked:
        tags.a(pid, href=quote(patient_page(pid)))
    else:
        tags.span(pid)


def _run_block(run: RunInfo, n_patients: int) -> None:
    with tags.table(cls="run"):
        for key, text in (("run", run.name), ("checkpoint", run.checkpoint),
                          ("inputs", run.inputs), ("patients", str(n_patients)),
                          ("prediction", run.prediction)):
            with tags.tr():
                tags.th(key)
                tags.td(text)


def _diaphragm_rows(patient_ids: Sequence[str],
                    scores: Mapping[str, st.Scores]) -> list[DiaphragmErrors]:
    rows = [DiaphragmErrors(pid, st.amplitude_mm(scores[pid]),
                            *(st.value(scores[pid], st.DIAPHRAGM_MEAN, a) for a in st.ANSWERS))
            for pid in patient_ids if pid in scores]
    return [r for r in rows if math.isfinite(r.model_mm)]


def verdict_class(verdict: str) -> str:
    """The colour of ``evaluation.report``'s verdict line: ``"better"`` (the model is better
    than the AVG), ``"unclear"`` (NOT clearly better) or ``"worse"`` (anything else)."""
    if "NOT clearly better" in verdict:
        return "unclear"
    return "better" if " is better than" in verdict else "worse"


def _unscored(patient_ids: Sequence[str], linked: set[str]) -> None:
    """What the front page says without scores: that, and the patients."""
    tags.p("No ground truth (phase 0) for these patients: nothing was scored. The predicted "
           "volumes are in volumes/.")
    with tags.ul(id="patient-list"):
        for pid in patient_ids:
            with tags.li():
                _patient_name(pid, linked)


def _scored(patient_ids: Sequence[str], scores: Mapping[str, st.Scores], verdict: str | None,
            linked: set[str], plot: bool) -> None:
    """The summary with its verdict, the per-patient table, the plot, where the files are."""
    n = len(scores)
    tags.h2(f"Summary: mean \u00b1 std over {n} patient{'s' if n != 1 else ''}")
    if verdict:
        tags.p(verdict, cls=f"verdict {verdict_class(verdict)}", id="verdict")
    _summary_tables(scores)
    tags.p("AVG: the average CT itself used as the prediction, the answer a model has to beat. "
           "Green: the model is better than the AVG; red: worse. Errors compare magnitudes.",
           cls="note")
    tags.h2("Per patient")
    _patient_table(patient_ids, scores, linked)
    if plot:
        tags.h2("Diaphragm position error per patient")
        tags.img(src=quote(PLOT_PATH), alt="diaphragm error per patient")
    with tags.p("Every number per patient and region: ", cls="note", __pretty=False):
        tags.a("metrics.csv", href="metrics.csv")
        tags.span(", ")
        tags.a("metrics.json", href="metrics.json")
        tags.span("; the predicted volumes are in volumes/.")


def front_page(run: RunInfo, patient_ids: Sequence[str], scores: Mapping[str, st.Scores],
               verdict: str | None, linked: set[str], plot: bool) -> str:
    """The HTML of ``index.html``; see :func:`write_results_pages`."""
    doc = document(f"{run.name}: test results")
    with doc:
        tags.h1(f"{run.name}: phase 0 predicted from the AVG")
        _run_block(run, len(patient_ids))
        if scores:
            _scored(patient_ids, scores, verdict, linked, plot)
        else:
            _unscored(patient_ids, linked)
    return doc.render()


def write_results_pages(out_dir: str | os.PathLike[str], run: RunInfo,
                        patient_ids: Sequence[str], scores: Mapping[str, st.Scores],
                        verdict: str | None,
                        pictures: Mapping[str, PatientPictures] | None) -> Path:
    """Write ``index.html``, a page per patient of ``pictures`` and the diaphragm error plot
    into ``out_dir``; return the path of ``index.html``.

    ``scores``: {patient id: score dict} of the scored patients (may be empty); ``verdict``:
    the one-line verdict of ``evaluation.report`` or None; ``pictures``: {patient id: its
    pictures}, or None for a page of numbers only (no patient pages, no plot). A plot left by
    an earlier run is removed when none is drawn.
    """
    out = Path(out_dir)
    linked = set(pictures) if pictures is not None else set()
    for pid, patient_pictures in (pictures or {}).items():
        atomic_write_text(out / patient_page(pid),
                          patient_page_html(run.name, pid, scores.get(pid), patient_pictures))
    rows = _diaphragm_rows(patient_ids, scores) if pictures is not None else []
    if rows:
        save_diaphragm_error_plot(out / PLOT_PATH, rows)
    else:
        (out / PLOT_PATH).unlink(missing_ok=True)
    path = atomic_write_text(out / "index.html",
                             front_page(run, patient_ids, scores, verdict, linked, bool(rows)))
    logger.info("wrote %s (%d patient pages)", path, len(linked))
    return path
