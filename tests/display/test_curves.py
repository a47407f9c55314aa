"""JSON-lines logs (torn lines included) and the training-curves plot."""

import json
import logging
import math

import numpy as np
import pytest
from PIL import Image

from display.curves import (
    append_jsonl,
    latest_run,
    plot_training_curves,
    read_jsonl,
    training_curves_figure,
)

LOSSES = [{"epoch": e, "epoch_progress": e + k / 4, "losses": {
    "G_GAN": 0.7, "G_L1": 20.0 / (e + k / 4), "D_real": 0.3, "D_fake": 0.25}}
    for e in (1, 2, 3) for k in range(4)]
VALIDATIONS = [{"epoch": e, "metrics": {
    "val_motion_mae_hu": 150.0 / e, "val_body_mae_hu": 60.0 / e,
    "baseline_motion_mae_hu": 160.0, "baseline_body_mae_hu": 45.0}} for e in (1, 2, 3)]


def test_append_and_read_round_trip(tmp_path):
    path = tmp_path / "logs" / "val_log.jsonl"
    append_jsonl(path, {"epoch": 1, "metrics": {"a_hu": np.float32(12.5), "n": np.int64(3)}})
    append_jsonl(path, {"epoch": 2, "metrics": {"a_hu": math.nan, "b_hu": -math.inf}})
    assert read_jsonl(path) == [{"epoch": 1, "metrics": {"a_hu": 12.5, "n": 3}},
                                {"epoch": 2, "metrics": {"a_hu": None, "b_hu": None}}]
    for line in path.read_text(encoding="utf-8").splitlines():
        json.loads(line, parse_constant=pytest.fail)  # strict JSON: no NaN / Infinity


def test_missing_file_reads_as_no_records(tmp_path):
    assert read_jsonl(tmp_path / "nothing.jsonl") == []


def test_torn_last_line_is_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "loss_log.jsonl"
    path.write_text('{"epoch": 1}\n\n{"epoch": 2}\n{"epoch": 3, "los', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="display.curves"):
        assert read_jsonl(path) == [{"epoch": 1}, {"epoch": 2}]
    assert any("line 4" in m and "torn" in m for m in caplog.messages)


def test_bad_line_before_the_end_is_an_error(tmp_path):
    path = tmp_path / "loss_log.jsonl"
    path.write_text('{"epoch": 1}\n[1, 2]\n{"epoch": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"loss_log\.jsonl, line 2: not a JSON object"):
        read_jsonl(path)


def test_append_removes_a_torn_last_line(tmp_path, caplog):
    path = tmp_path / "loss_log.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2, "lo', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="display.curves"):
        append_jsonl(path, {"epoch": 3})
    assert path.read_text(encoding="utf-8") == '{"epoch": 1}\n{"epoch": 3}\n'
    assert any("torn" in m for m in caplog.messages)


def test_append_keeps_a_complete_last_line_without_newline(tmp_path):
    path = tmp_path / "loss_log.jsonl"
    path.write_text('{"epoch": 1}', encoding="utf-8")
    append_jsonl(path, {"epoch": 2})
    assert read_jsonl(path) == [{"epoch": 1}, {"epoch": 2}]


@pytest.mark.parametrize(("xs", "ties_supersede", "kept"), [
    ([1.0, 1.5, 2.0], False, [0, 1, 2]),
    ([1.0, 2.0, 3.0, 2.0, 2.5], False, [0, 3, 4]),  # resumed at epoch 2: the newer run wins
    ([1.0, 1.0, 2.0], False, [0, 1, 2]),  # ties: several points in one epoch
    ([1.0, 1.0, 2.0, 2.0, 1.0, 1.5], False, [4, 5]),  # resumed from the start
    ([1.0, 2.0, 2.0, 3.0], True, [0, 2, 3]),  # ties: the same epoch validated again
])
def test_latest_run(xs, ties_supersede, kept):
    assert latest_run(xs, ties_supersede=ties_supersede) == kept


def test_figure_has_losses_on_log_scale_and_baselines_dashed():
    fig = training_curves_figure(LOSSES, VALIDATIONS, "exp: training curves")
    ax_loss, ax_val = fig.axes
    assert fig.get_suptitle() == "exp: training curves"
    assert ax_loss.get_yscale() == "log"
    assert [line.get_label() for line in ax_loss.lines] == ["G_GAN", "G_L1", "D_real", "D_fake"]
    np.testing.assert_allclose(ax_loss.lines[1].get_xdata(), [1, 1.25, 1.5, 1.75, 2, 2.25, 2.5,
                                                              2.75, 3, 3.25, 3.5, 3.75])
    lines = {line.get_label(): line for line in ax_val.lines}
    assert lines["val_motion_mae_hu"].get_linestyle() == "-"
    assert lines["baseline_motion_mae_hu"].get_linestyle() == "--"
    assert lines["val_motion_mae_hu"].get_color() == lines["baseline_motion_mae_hu"].get_color()
    assert lines["val_body_mae_hu"].get_color() != lines["val_motion_mae_hu"].get_color()
    np.testing.assert_allclose(lines["val_motion_mae_hu"].get_ydata(), [150.0, 75.0, 50.0])
    assert ax_val.get_ylabel() == "mean absolute error (HU)"


def test_losses_at_or_below_zero_keep_a_linear_scale():
    records = [{"epoch": 1, "losses": {"G_GAN": -0.5}}, {"epoch": 2, "losses": {"G_GAN": 0.5}}]
    ax_loss, _ = training_curves_figure(records, [], "t").axes
    assert ax_loss.get_yscale() == "linear"
    np.testing.assert_array_equal(ax_loss.lines[0].get_xdata(), [1.0, 2.0])  # epoch as x


def test_empty_validation_says_so():
    _, ax_val = training_curves_figure(LOSSES, [], "t").axes
    assert not ax_val.lines
    assert [t.get_text() for t in ax_val.texts] == ["no validation yet"]


def test_record_without_values_is_an_error():
    with pytest.raises(ValueError, match=r"loss record 1: .*'losses'.*\['epoch'\]"):
        training_curves_figure([LOSSES[0], {"epoch": 2}], [], "t")


@pytest.mark.parametrize("val_records", [VALIDATIONS, []])
def test_plot_writes_a_png(tmp_path, val_records):
    path = plot_training_curves(LOSSES, val_records, tmp_path / "web" / "curves.png", "exp")
    assert path == tmp_path / "web" / "curves.png"
    assert path.stat().st_size > 0
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert png.size == (1100, 400)
    assert [p.name for p in path.parent.iterdir()] == ["curves.png"]
