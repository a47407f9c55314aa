"""The results pages: numbers first, colours, links, patient pages, the plot, and the cases
without geometry, without scores and without pictures."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from display.patient_page import Picture, patient_page
from display.results_page import PLOT_PATH, RunInfo, verdict_class, write_results_pages
from evaluation.report import summarize_over_patients, verdict
from tests.display.page_inputs import pictures, scores

RUN = RunInfo(name="demo <run>", checkpoint="checkpoints/demo/best_net_G.pth",
              inputs="data/testA, truth data/testB", prediction="one deterministic pass")
IDS = ["PT 1", "PT2", "PT3"]


class Links(HTMLParser):
    """Every ``img src`` and ``a href`` of a page, and the ids of its tables, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.tables: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "img":
            self.images.append(attr["src"] or "")
        elif tag == "a":
            self.links.append(attr["href"] or "")
        elif tag == "table" and attr.get("id"):
            self.tables.append(attr["id"] or "")


def links(path: Path) -> Links:
    parser = Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def geometry_scores() -> dict[str, dict]:
    return {"PT 1": scores(30.0, 60.0, geometry=True, amplitude_mm=20.0),
            "PT2": scores(70.0, 50.0, geometry=True, amplitude_mm=5.0, model_diaphragm_mm=3.0,
                          avg_diaphragm_mm=1.0),
            "PT3": scores(40.0, 45.0, geometry=True, amplitude_mm=None)}


def test_the_front_page_leads_with_the_numbers_and_links_every_patient(tmp_path):
    per_patient = geometry_scores()
    line = verdict(summarize_over_patients(per_patient))
    index = write_results_pages(tmp_path, RUN, IDS, per_patient, line,
                                {pid: pictures(tmp_path, pid) for pid in IDS})
    assert index == tmp_path / "index.html"
    html = index.read_text(encoding="utf-8")
    page = links(index)
    assert page.tables == ["summary", "geometry", "patients"]
    assert html.index('id="summary"') < html.index('id="patients"') < html.index(PLOT_PATH)
    assert "demo &lt;run&gt;" in html
    assert "<run>" not in html
    assert "checkpoints/demo/best_net_G.pth" in html
    assert f'<p class="verdict better" id="verdict">{line}</p>' in html
    assert "Summary: mean \u00b1 std over 3 patients" in html
    # motion MAE over patients: model 46.7 +- 16.997, AVG 51.7 +- 6.2; better, in green
    assert '<td class="num better">46.7 \u00b1 17.0</td>' in html
    assert '<td class="num">51.7 \u00b1 6.2</td>' in html
    assert '<td class="num">150 \u00b1 0</td>' in html  # motion region, mL
    assert "|lung volume error| (%)" in html
    assert "tumour: centre-of-mass error (mm)" in html
    # PT2 is worse than the AVG in MAE (70 vs 50 HU) and diaphragm (3 vs 1 mm)
    assert '<td class="num worse">70.0</td>' in html
    assert '<td class="num worse">3.0</td>' in html
    assert "breathing amplitude (mm)" in html
    assert page.links[:3] == ["patients/PT_1.html", "patients/PT2.html", "patients/PT3.html"]
    assert page.images == [PLOT_PATH]
    assert (tmp_path / PLOT_PATH).stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "patients").iterdir()) == [
        "PT2.html", "PT3.html", "PT_1.html"]


def test_a_patient_page_holds_its_numbers_then_views_then_slices(tmp_path):
    per_patient = geometry_scores()
    write_results_pages(tmp_path, RUN, IDS, per_patient, None,
                        {pid: pictures(tmp_path, pid) for pid in IDS})
    path = tmp_path / patient_page("PT 1")
    html = path.read_text(encoding="utf-8")
    page = links(path)
    assert page.links[0] == "../index.html"
    assert page.tables == ["patient-scores", "slices"]
    assert page.images == ["../images/PT_1_views_lung_base.png", "../images/PT_1_views_lung.png",
                           "../images/PT_1_slice000_real_A.png",
                           "../images/PT_1_slice001_real_A.png"]
    assert all((path.parent / src).is_file() for src in page.images)
    assert "breathing amplitude 20.0 mm" in html
    assert html.index('id="patient-scores"') < html.index("lung base") < html.index("slice 000")
    assert "width:128px" in html
    assert "diaphragm error, p95 (mm)" in html


def test_without_geometry_there_is_no_geometry_table_and_an_old_plot_goes(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / PLOT_PATH).write_bytes(b"an earlier run's plot")
    per_patient = {"PT2": scores(70.0, 50.0), "PT3": scores(40.0, 45.0)}
    index = write_results_pages(tmp_path, RUN, ["PT2", "PT3"], per_patient,
                                verdict(summarize_over_patients(per_patient)),
                                {pid: pictures(tmp_path, pid) for pid in ("PT2", "PT3")})
    html = index.read_text(encoding="utf-8")
    assert links(index).tables == ["summary", "patients"]
    assert "size (voxels)" in html
    assert "amplitude" not in html
    assert "lung Dice" not in html
    assert not (tmp_path / PLOT_PATH).exists()
    assert links(index).images == []


def test_without_scores_the_page_lists_the_patients_and_says_nothing_was_scored(tmp_path):
    index = write_results_pages(tmp_path, RUN, IDS, {}, None,
                                {pid: pictures(tmp_path, pid) for pid in IDS})
    html = index.read_text(encoding="utf-8")
    assert "nothing was scored" in html
    assert links(index).tables == []
    assert links(index).links == ["patients/PT_1.html", "patients/PT2.html", "patients/PT3.html"]
    assert "breathing amplitude" not in (tmp_path / "patients" / "PT2.html").read_text()


def test_without_pictures_there_are_numbers_only(tmp_path):
    index = write_results_pages(tmp_path, RUN, IDS, geometry_scores(), None, None)
    page = links(index)
    assert page.tables == ["summary", "geometry", "patients"]
    assert page.images == []
    assert not any(link.startswith("patients/") for link in page.links)
    assert not (tmp_path / "patients").exists()
    assert not (tmp_path / "images").exists()


@pytest.mark.parametrize(("model", "avg", "expected"), [
    (30.0, 60.0, "better"), (58.0, 60.0, "unclear"), (70.0, 60.0, "worse")])
def test_the_verdict_is_coloured_by_what_the_report_says(model, avg, expected):
    line = verdict(summarize_over_patients({"a": scores(model, avg)}))
    assert verdict_class(line) == expected


@pytest.mark.parametrize("bad", ["../x.png", "/tmp/x.png", "images\\x.png"])
def test_pictures_must_stay_in_the_results_folder(bad):
    with pytest.raises(ValueError, match="stay inside it"):
        Picture(bad, "x")
