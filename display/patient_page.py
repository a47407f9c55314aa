"""One patient's page of a test run, ``patients/<safe id>.html``: its numbers (the model and
the AVG for every region and geometry score), its views, then every slice. Pictures are linked
from ``images/`` beside the ``patients/`` folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote

from dominate import tags

from display import score_tables as st
from display.html_parts import document, header_row, pair_cells
from util.names import safe_name

#: The folder of the patient pages, in the results folder.
PATIENT_DIR = "patients"


@dataclass(frozen=True)
class Picture:
    """A PNG, ``path`` relative to the results folder (``images/x.png``), and its caption."""

    path: str
    caption: str

    def __post_init__(self) -> None:
        parts = PurePosixPath(self.path).parts
        if PurePosixPath(self.path).is_absolute() or ".." in parts or "\\" in self.path:
            raise ValueError(f"picture path {self.path!r} must be relative to the results "
                             f"folder and stay inside it")


@dataclass(frozen=True)
class PictureRow:
    """Pictures shown side by side under a label, e.g. one slice's input, prediction, truth."""

    label: str
    pictures: tuple[Picture, ...]


@dataclass(frozen=True)
class PatientPictures:
    """One patient's pictures: views (shown first), then rows of per-slice pictures."""

    views: tuple[Picture, ...]
    slices: tuple[PictureRow, ...] = ()
    slice_width_px: int = 256


def patient_page(patient_id: str) -> str:
    """Path of a patient's page relative to the results folder: ``patients/<safe id>.html``."""
    return f"{PATIENT_DIR}/{safe_name(patient_id)}.html"


def _patient_numbers(s: st.Scores) -> None:
    """The model and the AVG for every scored region (MAE, SSIM) and geometry score."""
    metrics = [st.hu_metric(m, r) for r in st.regions({"p": s}) for m in ("mae_hu", "ssim")]
    metrics += st.summary_geometry_metrics({"p": s})
    if not metrics:
        return
    with tags.table(id="patient-scores"):
        header_row("", "model", "AVG")
        for metric in metrics:
            with tags.tr():
                tags.th(metric.heading)
                pair_cells(s, metric)


def _figure(picture: Picture, width_px: int | None = None) -> None:
    """The picture, linked to itself, with its caption; ``width_px`` None: its own width."""
    src = "../" + quote(picture.path)
    with tags.figure():
        with tags.a(href=src):
            tags.img(src=src, alt=picture.caption,
                     style=f"width:{int(width_px)}px" if width_px else None)
        tags.figcaption(picture.caption)


def patient_page_html(run_name: str, patient_id: str, scores: st.Scores | None,
                      pictures: PatientPictures) -> str:
    """The HTML of the page of ``patient_id`` of the run ``run_name``: a link back to
    ``../index.html``, the breathing amplitude and the scores when ``scores`` (a score dict,
    see :mod:`display.score_tables`) are given, then ``pictures``."""
    doc = document(f"{patient_id}: {run_name}")
    with doc:
        tags.a(f"\u2190 all patients of {run_name}", href="../index.html")
        tags.h1(patient_id)
        if scores:
            amplitude = st.amplitude_mm(scores)
            if amplitude is not None:
                tags.p(f"breathing amplitude {amplitude:.1f} mm")
            _patient_numbers(scores)
        for picture in pictures.views:
            with tags.div():
                _figure(picture)
        if pictures.slices:
            tags.h2("Slices")
            with tags.table(id="slices"):
                for row in pictures.slices:
                    with tags.tr():
                        tags.th(row.label)
                        for picture in row.pictures:
                            with tags.td():
                                _figure(picture, pictures.slice_width_px)
    return doc.render()
