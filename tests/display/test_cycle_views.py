"""Cycle pictures: trajectory plots and phase strips are written as PNGs of the right layout."""

import numpy as np
from PIL import Image

from display.cycle_views import save_cycle_strip, save_trajectory_plot


def test_trajectory_plot_has_one_panel_per_trajectory(tmp_path):
    truth = {10.0 * k: float(np.cos(np.pi * k / 10) ** 4) * 20 for k in range(10)}
    model = {p: v + 1.0 for p, v in truth.items()}
    one = save_trajectory_plot(tmp_path / "one.png", {"diaphragm (mm)": {
        "truth": truth, "model": model, "AVG": dict.fromkeys(truth, 10.0)}}, "PT1")
    two = save_trajectory_plot(tmp_path / "two.png", {"diaphragm (mm)": {"truth": truth},
                                                      "GTV SI (mm)": {"truth": truth}}, "PT1")
    w1, _ = Image.open(one).size
    w2, _ = Image.open(two).size
    assert w2 > 1.8 * w1
    assert not list(tmp_path.glob(".*tmp*"))


def test_cycle_strip_grid_and_window(tmp_path):
    images = [np.full((20, 30), -1000.0 + 100 * k) for k in range(10)]
    path = save_cycle_strip(tmp_path / "strip.png", {"synthetic": images, "truth": images},
                            [10.0 * k for k in range(10)], "PT1 coronal")
    picture = np.asarray(Image.open(path).convert("L"))
    assert picture.shape[1] > picture.shape[0]  # ten columns, two rows
    assert picture.min() < 40  # -1000 HU black
    assert picture.max() > 200  # -100 HU light in the lung window
