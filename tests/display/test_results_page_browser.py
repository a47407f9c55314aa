"""The results pages in a real browser: headless Chromium shows the summary table, and every
picture that the front page and the patient pages reference loads.

A checker page beside ``index.html`` holds the pages in iframes (opened with
``--allow-file-access-from-files``, so it may read them). The window's load event waits for
every iframe and each of their pictures to load or fail; the checker then writes, into its own
DOM, each page's tables and, for every ``<img>``, ``complete && naturalWidth > 0``, and
``--dump-dom`` prints that. A page with a missing picture shows that the check can fail.

Skipped where Chromium is not installed; CI (``.ci/run``) installs it.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from display.results_page import RunInfo, write_results_pages
from evaluation.report import summarize_over_patients, verdict
from tests.conftest import write_pair_tree
from tests.display.page_inputs import pictures, scores
from tests.tiny_runs import load_script, tiny_run

pytestmark = pytest.mark.slow

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")
#: Seconds a browser run may take before the test fails.
BROWSER_TIMEOUT_S = 120
_CHECKER = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>image check</title></head><body>
<pre id="report">not run</pre>
{frames}
<script>
window.addEventListener("load", () => {{
  const report = [];
  for (const frame of document.querySelectorAll("iframe")) {{
    const doc = frame.contentDocument;
    if (!doc) {{ report.push({{page: frame.dataset.page, error: "not readable"}}); continue; }}
    report.push({{
      page: frame.dataset.page,
      tables: Array.from(doc.querySelectorAll("table[id]"), t => t.id),
      summary_rows: doc.querySelectorAll("#summary tr").length,
      images: Array.from(doc.images, img => [img.getAttribute("src"),
                                             img.complete && img.naturalWidth > 0]),
    }});
  }}
  document.getElementById("report").textContent = JSON.stringify(report);
}});
</script></body></html>
"""


def browser() -> str:
    """The Chromium on PATH; skips the test (saying how to install it) when there is none."""
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (apt-get install chromium); CI installs "
                "it in .ci/run")


def check_pages(folder: Path, pages: list[str], profile: Path) -> dict[str, dict[str, Any]]:
    """Load ``pages`` (paths relative to ``folder``) in headless Chromium; return, per page,
    its table ids, summary rows and ``[src, loaded]`` of every picture."""
    frames = "\n".join(f'<iframe loading="eager" width="1200" height="800" '
                       f'data-page="{html.escape(page)}" src="{html.escape(page)}"></iframe>'
                       for page in pages)
    checker = folder / "_image_check.html"
    checker.write_text(_CHECKER.format(frames=frames), encoding="utf-8")
    args = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={profile}", "--allow-file-access-from-files",
            "--virtual-time-budget=20000", "--dump-dom", checker.as_uri()]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S,
                          check=False)
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stderr[-2000:]}"
    found = re.search(r'<pre id="report">(.*?)</pre>', proc.stdout, re.DOTALL)
    assert found, f"no report in the page Chromium dumped:\n{proc.stdout[-2000:]}"
    report = json.loads(html.unescape(found.group(1)))
    return {entry["page"]: entry for entry in report}


def referenced_images(page: Path) -> list[str]:
    """The ``src`` of every ``<img>`` in the HTML file, in order."""
    return [html.unescape(src) for src in
            re.findall(r'<img[^>]* src="([^"]+)"', page.read_text(encoding="utf-8"))]


def assert_all_pictures_load(folder: Path, pages: list[str],
                             report: dict[str, dict[str, Any]]) -> None:
    """Every page was read and every picture in its HTML loaded in the browser."""
    for page in pages:
        entry = report[page]
        assert "error" not in entry, f"{page}: {entry['error']}"
        assert [src for src, _ in entry["images"]] == referenced_images(folder / page)
        broken = [src for src, loaded in entry["images"] if not loaded]
        assert not broken, f"{page}: pictures that did not load: {broken}"


def test_a_real_test_run_shows_its_summary_and_every_picture(tmp_path):
    browser()
    root, runs = tmp_path / "data", tmp_path / "ck"
    write_pair_tree(root, "test", {"PT 1": (64, 64, 3), "PT2": (64, 64, 4)})
    tiny_run(runs)
    script = load_script("test.py", "ct_test_script")
    assert script.main(["--dataroot", str(root), "--checkpoints_dir", str(runs), "--name", "run",
                        "--model", "pix2pix", "--dataset_mode", "nifti_aligned",
                        "--axial_slice", "--gpu_ids", "-1", "--results_dir",
                        str(tmp_path / "res")]) == 0
    out = tmp_path / "res" / "run" / "test_latest"
    pages = ["index.html", "patients/PT_1.html", "patients/PT2.html", "missing.html"]
    (out / "missing.html").write_text('<img src="images/not_there.png">', encoding="utf-8")

    report = check_pages(out, pages, tmp_path / "profile")

    assert report["index.html"]["tables"] == ["summary", "geometry", "patients"]
    assert report["index.html"]["summary_rows"] == 4  # header, motion, body, whole
    assert_all_pictures_load(out, pages[:3], report)
    assert len(report["patients/PT2.html"]["images"]) == 3 + 3 * 4  # views, then 4 slices
    assert report["missing.html"]["images"] == [["images/not_there.png", False]]


def test_pages_with_geometry_show_the_plot_and_every_picture(tmp_path):
    browser()
    ids = ["PT1", "PT2"]
    per_patient = {"PT1": scores(30.0, 60.0, geometry=True, amplitude_mm=20.0),
                   "PT2": scores(50.0, 40.0, geometry=True, amplitude_mm=8.0)}
    run = RunInfo("demo", "checkpoints/demo/best_net_G.pth", "testA", "one pass")
    write_results_pages(tmp_path / "res", run, ids, per_patient,
                        verdict(summarize_over_patients(per_patient)),
                        {pid: pictures(tmp_path / "res", pid) for pid in ids})
    pages = ["index.html", "patients/PT1.html", "patients/PT2.html"]

    report = check_pages(tmp_path / "res", pages, tmp_path / "profile")

    assert report["index.html"]["tables"] == ["summary", "geometry", "patients"]
    assert report["index.html"]["images"] == [["images/diaphragm_error_by_patient.png", True]]
    assert_all_pictures_load(tmp_path / "res", pages, report)
