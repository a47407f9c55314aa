"""Pieces shared by the results pages (:mod:`display.results_page`,
:mod:`display.patient_page`): the style sheet, the document, and number cells that are coloured
green where the model beats the AVG and red where it does not."""

from __future__ import annotations

import dominate
from dominate import tags

from display import score_tables as st

CSS = """
body { font-family: system-ui, sans-serif; margin: 24px 32px; color: #222; max-width: 1400px; }
h1 { font-size: 22px; margin: 0 0 8px; } h2 { font-size: 17px; margin: 26px 0 8px; }
table { border-collapse: collapse; font-size: 14px; margin-bottom: 6px; }
th, td { border: 1px solid #ccc; padding: 4px 9px; }
th { background: #f2f2f2; font-weight: 600; } th:first-child { text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.better { background: #d8f0d8; } td.worse { background: #f6d5d5; }
table.run td, table.run th { border: none; padding: 1px 12px 1px 0; text-align: left;
  background: none; font-weight: normal; }
table.run th { color: #666; }
.verdict { font-weight: 600; padding: 6px 10px; display: inline-block; border-radius: 4px; }
.verdict.better { background: #d8f0d8; } .verdict.worse { background: #f6d5d5; }
.verdict.unclear { background: #fbeccb; }
.note { color: #555; font-size: 13px; }
figure { display: inline-block; margin: 0 12px 12px 0; }
figure img { max-width: 100%; } figcaption { font-size: 13px; color: #444; }
"""



def document(title: str) -> dominate.document:
    """An empty page titled ``title`` (escaped), UTF-8, with :data:`CSS`."""
    doc = dominate.document(title=title)
    with doc.head:
        tags.meta(charset="utf-8")
        tags.style(CSS)
    return doc


def header_row(*heads: str) -> None:
    """A table row of header cells ``heads``."""
    with tags.tr():
        for head in heads:
            tags.th(head)


def number_cell(x: float, digits: int, state: str = "") -> None:
    """A right-aligned cell holding ``x`` with ``digits`` decimals; ``state`` ("better",
    "worse", "same" or "") colours it."""
    tags.td(st.fmt(x, digits), cls=f"num {state}".strip())


def pair_cells(scores: st.Scores, metric: st.Metric) -> None:
    """A patient's model cell, coloured against the AVG, then the AVG cell."""
    model, avg = (st.value(scores, metric, a) for a in st.ANSWERS)
    number_cell(model, metric.digits, st.comparison(model, avg, metric))
    number_cell(avg, metric.digits)


def mean_cell(stats: st.MeanStd, digits: int, state: str = "") -> None:
    """A cell ``mean ± std`` (a dash without values), coloured by ``state``."""
    text = (f"{st.fmt(stats.mean, digits)} \u00b1 {st.fmt(stats.std, digits)}" if stats.n
            else "\u2013")
    tags.td(text, cls=f"num {state}".strip())
