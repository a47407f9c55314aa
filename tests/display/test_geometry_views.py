"""Lung-base views and the diaphragm error plot: plane choice, orientation, outlines, order."""

import math

import numpy as np
import pytest
from PIL import Image

from display.geometry_views import (
    OUTLINES,
    BasePlanes,
    DiaphragmErrors,
    by_amplitude,
    diaphragm_error_figure,
    lung_base_figure,
    lung_base_planes,
    save_diaphragm_error_plot,
    save_lung_base_views,
)
from display.windows import WINDOWS

SHAPE = (20, 12, 16)  # (S, R, C)
SPACING_MM = (2.5, 0.9, 0.8)


def lungs() -> np.ndarray:
    """Two lungs over slices 5..17; the right one (columns 2..5) reaches down to slice 4 in rows
    5..8 and, in column 4, has a bulge into row 9 in slices 4 and 5."""
    mask = np.zeros(SHAPE, dtype=bool)
    mask[5:18, 3:9, 2:6] = True  # the patient's right lung
    mask[5:18, 3:9, 10:14] = True  # the left
    mask[4, 5:9, 2:6] = True
    mask[4:6, 9, 4] = True
    return mask


def test_the_planes_go_through_the_lung_base_not_through_gas_below_it():
    mask = lungs()
    mask[0, 0, 12:16] = True  # gas far below, less than 10 % of the largest lung slice
    # the base: slices 4..7, a quarter of the 14 lung slices rounded up. Rows 5..8 hold 28 of
    # its voxels each, rows 3 and 4 24; columns 2..5 hold 22, 24 with the bulge (column 4),
    # the left lung's 18. Counting the gas would make the base slices 0..4, where row 0 (gas)
    # ties with rows 5..8.
    assert lung_base_planes(mask) == BasePlanes(coronal_row=5, sagittal_col=4)


def test_an_empty_mask_gives_the_middle_and_a_bad_one_is_refused():
    assert lung_base_planes(np.zeros(SHAPE, dtype=bool)) == BasePlanes(6, 8)
    with pytest.raises(ValueError, match=r"3-D lung mask.*\(12, 16\)"):
        lung_base_planes(np.zeros((12, 16), dtype=bool))


def test_views_are_superior_up_with_right_and_anterior_on_the_left():
    pred = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    mask = lungs()
    planes = BasePlanes(coronal_row=5, sagittal_col=3)
    fig = lung_base_figure(pred, mask, mask, np.roll(mask, 2, axis=0), SPACING_MM, planes,
                           WINDOWS["lung"], "PT7")
    coronal, sagittal = fig.axes
    np.testing.assert_array_equal(coronal.images[0].get_array(), pred[::-1, 5, :])
    np.testing.assert_array_equal(sagittal.images[0].get_array(), pred[::-1, :, 3])
    assert coronal.get_aspect() == pytest.approx(2.5 / 0.8)
    assert sagittal.get_aspect() == pytest.approx(2.5 / 0.9)
    assert [t.get_text() for t in coronal.texts] == ["S", "R", "L"]
    assert [t.get_text() for t in sagittal.texts] == ["S", "A", "P"]
    assert coronal.get_title() == "coronal, row 5"
    assert sagittal.get_title() == "sagittal, column 3"
    assert len(coronal.collections) == 3  # one outline per volume
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        "lungs: truth", "lungs: prediction", "lungs: AVG"]
    assert [line.get_color() for line in legend.get_lines()] == [
        OUTLINES[name][0] for name in ("truth", "prediction", "AVG")]
    assert fig.get_suptitle().startswith("PT7: lung base over the prediction, window lung")


def test_without_truth_and_avg_only_the_prediction_is_outlined(tmp_path):
    pred = np.full(SHAPE, -1000.0, dtype=np.float32)
    mask = lungs()
    fig = lung_base_figure(pred, None, mask, None, SPACING_MM, BasePlanes(5, 3),
                           WINDOWS["lung"], "x")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["lungs: prediction"]
    assert all(len(ax.collections) == 1 for ax in fig.axes)
    path = save_lung_base_views(tmp_path / "x.png", pred, None, mask, None, SPACING_MM,
                                BasePlanes(5, 3), WINDOWS["lung"], "x")
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert png.size[0] >= 600  # room for the title and the legend of a narrow stack
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"avg_lung": np.zeros((20, 12, 15), dtype=bool)}, r"AVG \(20, 12, 15\)"),
    ({"planes": BasePlanes(12, 0)}, "outside a stack of shape"),
    ({"spacing_mm": (2.5, -1.0, 0.8)}, "spacing_mm"),
])
def test_bad_arguments_are_refused_before_writing(tmp_path, kwargs, message):
    args = {"pred": np.zeros(SHAPE), "truth_lung": None, "pred_lung": lungs(),
            "avg_lung": None, "spacing_mm": SPACING_MM, "planes": BasePlanes(0, 0),
            "window": WINDOWS["lung"], "title": "x"} | kwargs
    with pytest.raises(ValueError, match=message):
        save_lung_base_views(tmp_path / "x.png", **args)
    assert list(tmp_path.iterdir()) == []


ROWS = [DiaphragmErrors("PT1", 12.0, 2.0, 5.0), DiaphragmErrors("PT2", None, 1.0, 1.5),
        DiaphragmErrors("PT3", 4.5, 0.5, math.nan), DiaphragmErrors("PT4", 20.0, 3.0, 9.0)]


def test_patients_are_ordered_by_amplitude_unknown_last():
    assert [r.patient_id for r in by_amplitude(ROWS)] == ["PT3", "PT1", "PT4", "PT2"]


def test_the_plot_puts_model_beside_avg_per_patient(tmp_path):
    ax = diaphragm_error_figure(ROWS).axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["PT3\n4 mm", "PT1\n12 mm", "PT4\n20 mm", "PT2\n? mm"]
    model, avg = ax.containers
    assert [b.get_height() for b in model] == [0.5, 2.0, 3.0, 1.0]
    np.testing.assert_array_equal([b.get_height() for b in avg], [np.nan, 5.0, 9.0, 1.5])
    assert ax.get_ylabel() == "mean diaphragm error (mm)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["model", "AVG"]
    path = save_diaphragm_error_plot(tmp_path / "plot.png", ROWS)
    with Image.open(path) as png:
        assert png.format == "PNG"
    with pytest.raises(ValueError, match="no patients"):
        save_diaphragm_error_plot(tmp_path / "empty.png", [])
