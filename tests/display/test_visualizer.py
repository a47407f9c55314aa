"""The training visualizer (loss log, PNGs, run page) and test pictures."""

import json
import logging
import re

import numpy as np
import pytest
import torch
from PIL import Image

from display.step_images import displayed_steps
from display.visualizer import Visualizer
from util.errors import ConfigError
from util.hu_window import hu_to_unit

HU_MIN, HU_MAX = -1000.0, 1000.0


def make_visuals(n: int = 2, h: int = 6, w: int = 8) -> dict[str, torch.Tensor]:
    """(N, 1, H, W) visuals in [-1, 1]; real_A is -410 HU everywhere, real_B above any window."""
    base = torch.full((n, 1, h, w), -410.0)
    return {name: hu_to_unit(base + offset, HU_MIN, HU_MAX)
            for name, offset in [("real_A", 0.0), ("fake_B", 500.0), ("real_B", 2000.0)]}


def make_visualizer(run_dir, **kwargs) -> Visualizer:
    return Visualizer(run_dir, "exp", hu_min=HU_MIN, hu_max=HU_MAX, **kwargs)


def test_loss_log_has_header_and_loss_values(tmp_path, caplog):
    vis = make_visualizer(tmp_path / "run")
    with caplog.at_level(logging.INFO, logger="display.visualizer"):
        line = vis.print_current_losses(3, 400, {"G_GAN": 0.6931, "G_L1": 12.5, "D_real": 0.25},
                                        t_comp=0.0123, t_data=0.004)
    assert line == ("(epoch: 3, iters: 400, time: 0.012, data: 0.004) G_GAN: 0.6931 G_L1: 12.5 "
                    "D_real: 0.25")
    lines = (tmp_path / "run" / "loss_log.txt").read_text(encoding="utf-8").splitlines()
    assert re.fullmatch(r"=+ Training loss \(\d{4}-\d\d-\d\dT.+\) =+", lines[0])
    assert lines[1:] == [line]
    assert line in caplog.messages


def test_new_session_appends_header_and_keeps_old_lines(tmp_path):
    make_visualizer(tmp_path).print_current_losses(1, 10, {"G_L1": 1.0}, 0.1, 0.1)
    make_visualizer(tmp_path).print_current_losses(2, 20, {"G_L1": 0.5}, 0.1, 0.1)
    lines = (tmp_path / "loss_log.txt").read_text(encoding="utf-8").splitlines()
    assert [line.startswith("====") for line in lines] == [True, False, True, False]
    assert lines[1].endswith("G_L1: 1")
    assert "G_L1: 0.5" in lines[3]


def test_display_writes_first_sample_pngs_in_thorax_window(tmp_path):
    vis = make_visualizer(tmp_path)
    vis.display_current_results(make_visuals(), epoch=2, total_iters=400)
    images = tmp_path / "web" / "images"
    assert sorted(p.name for p in images.iterdir()) == [
        f"epoch002_iter00000400_{label}.png" for label in ("fake_B", "real_A", "real_B")]
    with Image.open(images / "epoch002_iter00000400_real_A.png") as png:
        assert png.size == (8, 6)
        pixels = np.asarray(png)
    # Thorax (L -300, W 1600): black at -1100 HU, so -410 HU is 690 / 1600 * 255 = 109.97 -> 110.
    assert (pixels == 110).all()
    with Image.open(images / "epoch002_iter00000400_real_B.png") as png:
        assert (np.asarray(png) == 255).all()  # 1590 HU: clipped to hu_max, above the window


def test_page_lists_steps_newest_first_with_loss_tail(tmp_path):
    vis = make_visualizer(tmp_path, display_winsize=128)
    for k in range(60):
        vis.print_current_losses(1, k, {"G_L1": k + 0.5}, 0.1, 0.1)
    vis.display_current_results(make_visuals(), epoch=1, total_iters=400)
    vis.display_current_results(make_visuals(), epoch=1, total_iters=800)
    vis.display_current_results(make_visuals(), epoch=2, total_iters=1200)
    html = (tmp_path / "web" / "index.html").read_text(encoding="utf-8")
    steps = re.findall(r"epoch(\d{3})_iter(\d{8})_real_A\.png\">", html)
    assert steps == [("002", "00001200"), ("001", "00000800"), ("001", "00000400")]
    row = html.index("epoch002_iter00001200_real_A.png")
    assert row < html.index("epoch002_iter00001200_fake_B.png") < \
        html.index("epoch002_iter00001200_real_B.png")
    for caption in ("real_A", "fake_B", "real_B"):
        assert f"<p>{caption}</p>" in html
    assert "thorax (L -300, W 1600 HU)" in html
    assert "width:128px" in html
    assert "G_L1: 59.5" in html
    assert "G_L1: 10.5" in html  # within the last 50 of 61 lines
    assert "G_L1: 9.5" not in html
    assert html.index("G_L1: 59.5") > html.index("epoch001_iter00000400_real_B.png")


def test_rows_survive_a_new_visualizer(tmp_path):
    make_visualizer(tmp_path).display_current_results(make_visuals(), 1, 400)
    vis = make_visualizer(tmp_path)
    vis.display_current_results(make_visuals(), 2, 40)
    html = (tmp_path / "web" / "index.html").read_text(encoding="utf-8")
    assert html.index("epoch002_iter00000040_real_A.png") < \
        html.index("epoch001_iter00000400_real_A.png")
    assert [(s.epoch, s.total_iters, s.labels) for s in displayed_steps(vis.image_dir)] == [
        (2, 40, ("real_A", "fake_B", "real_B")), (1, 400, ("real_A", "fake_B", "real_B"))]


def test_page_exists_from_the_start(tmp_path):
    make_visualizer(tmp_path / "old").display_current_results(make_visuals(), 1, 400)
    make_visualizer(tmp_path / "new")
    assert "Training loss" in (tmp_path / "new" / "web" / "index.html").read_text()
    (tmp_path / "old" / "web" / "index.html").unlink()
    make_visualizer(tmp_path / "old")
    assert "epoch001_iter00000400_real_A.png" in (tmp_path / "old" / "web" / "index.html"
                                                  ).read_text()


def test_no_html_writes_no_pictures(tmp_path):
    make_visualizer(tmp_path, no_html=True).display_current_results(make_visuals(), 1, 1)
    assert not (tmp_path / "web").exists()


def test_bad_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"'nope'.*thorax"):
        make_visualizer(tmp_path, display_window="nope")
    with pytest.raises(ConfigError, match="hu_min"):
        Visualizer(tmp_path, "exp", hu_min=10.0, hu_max=-10.0)


def test_losses_are_also_appended_as_json_lines(tmp_path):
    vis = make_visualizer(tmp_path)
    vis.print_current_losses(3, 400, {"G_GAN": 0.5, "G_L1": 12.5}, 0.1, 0.1, epoch_progress=3.25)
    vis.print_current_losses(4, 10, {"G_GAN": np.float32(0.25)}, 0.1, 0.1)
    lines = (tmp_path / "loss_log.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"epoch": 3, "epoch_iter": 400, "epoch_progress": 3.25,
         "losses": {"G_GAN": 0.5, "G_L1": 12.5}},
        {"epoch": 4, "epoch_iter": 10, "epoch_progress": 4.0, "losses": {"G_GAN": 0.25}},
    ]


def test_validation_is_logged_plotted_and_on_the_page(tmp_path, caplog):
    vis = make_visualizer(tmp_path)
    vis.display_current_results(make_visuals(), 1, 400)
    vis.print_current_losses(1, 400, {"G_L1": 12.5}, 0.1, 0.1, epoch_progress=1.5)
    metrics = {"val_motion_mae_hu": 123.456, "baseline_motion_mae_hu": 150.04}
    with caplog.at_level(logging.INFO, logger="display.visualizer"):
        line = vis.log_validation(1, metrics)
    assert line == "(epoch: 1, validation) val_motion_mae_hu: 123.5 baseline_motion_mae_hu: 150.0"
    assert line in caplog.messages
    assert (tmp_path / "loss_log.txt").read_text(encoding="utf-8").splitlines()[-1] == line
    assert [json.loads(x) for x in (tmp_path / "val_log.jsonl").read_text().splitlines()] == [
        {"epoch": 1, "metrics": metrics}]
    with Image.open(tmp_path / "web" / "curves.png") as png:
        assert png.format == "PNG"
    html = (tmp_path / "web" / "index.html").read_text(encoding="utf-8")
    assert '<img src="curves.png"' in html
    assert html.index("curves.png") < html.index("epoch001_iter00000400_real_A.png")
    assert line in html  # the log tail is as of the validation


def test_curves_wait_for_a_record_and_survive_a_restart(tmp_path):
    make_visualizer(tmp_path)
    assert not (tmp_path / "web" / "curves.png").exists()
    assert "curves.png" not in (tmp_path / "web" / "index.html").read_text(encoding="utf-8")
    make_visualizer(tmp_path).print_current_losses(1, 10, {"G_L1": 2.0}, 0.1, 0.1)
    make_visualizer(tmp_path)  # a new session redraws the curves of the old one
    assert (tmp_path / "web" / "curves.png").stat().st_size > 0
    assert "curves.png" in (tmp_path / "web" / "index.html").read_text(encoding="utf-8")


def test_unreadable_log_costs_the_curves_not_the_page(tmp_path, caplog):
    (tmp_path / "loss_log.jsonl").write_text("not json\n{}\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="display.visualizer"):
        make_visualizer(tmp_path)
    assert "curves.png" not in (tmp_path / "web" / "index.html").read_text(encoding="utf-8")
    assert any("line 1: not a JSON object" in m for m in caplog.messages)


def test_no_html_validation_writes_logs_only(tmp_path):
    make_visualizer(tmp_path, no_html=True).log_validation(2, {"val_body_mae_hu": 40.0})
    assert (tmp_path / "val_log.jsonl").is_file()
    assert not (tmp_path / "web").exists()
