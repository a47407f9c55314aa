"""Per-patient axial/coronal pictures: plane choice, orientation, the PNG and its checks."""

import numpy as np
import pytest
from PIL import Image

from display.ct_views import (
    ViewPlanes,
    axial_view,
    choose_planes,
    coronal_view,
    patient_views_figure,
    save_patient_views,
)
from display.windows import WINDOWS

SHAPE = (9, 12, 16)  # (S, R, C): odd slice count, rows != columns
SPACING_MM = (2.5, 0.9, 0.8)


def make_volumes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AVG, prediction and truth stacks (S, R, C) in HU; the prediction is 40 HU off the truth."""
    rng = np.random.default_rng(3)
    truth = rng.uniform(-1000.0, 400.0, SHAPE).astype(np.float32)
    return truth + 25.0, truth + 40.0, truth


def test_choose_planes_follows_the_motion():
    motion = np.zeros(SHAPE, dtype=bool)
    motion[6, 2:5, 3:9] = True  # 18 voxels in slice 6, rows 2..4
    motion[1, 3, 0:4] = True  # 4 more in row 3, slice 1
    assert choose_planes(SHAPE, motion) == ViewPlanes(axial_index=6, coronal_row=3)


@pytest.mark.parametrize("motion", [None, np.zeros(SHAPE, dtype=bool)])
def test_choose_planes_takes_the_middle_without_motion(motion):
    assert choose_planes(SHAPE, motion) == ViewPlanes(axial_index=4, coronal_row=6)


def test_choose_planes_rejects_a_mask_of_another_shape():
    with pytest.raises(ValueError, match=r"\(9, 12, 15\).*\(9, 12, 16\)"):
        choose_planes(SHAPE, np.ones((9, 12, 15), dtype=bool))


def test_axial_view_is_radiological():
    stack = np.zeros(SHAPE, dtype=np.float32)
    stack[4, 0, 0] = 1.0  # anterior, patient's right
    stack[4, 11, 15] = 2.0  # posterior, patient's left
    picture = axial_view(stack, ViewPlanes(axial_index=4, coronal_row=0))
    assert picture.shape == (12, 16)
    assert picture[0, 0] == 1.0  # top left: anterior and the patient's right
    assert picture[-1, -1] == 2.0


def test_coronal_view_has_superior_up_and_right_on_the_left():
    stack = np.zeros(SHAPE, dtype=np.float32)
    stack[8, 5, 0] = 1.0  # most superior slice, patient's right
    stack[0, 5, 15] = 2.0  # most inferior slice, patient's left
    stack[8, 6, 0] = 3.0  # another row: not in this plane
    picture = coronal_view(stack, ViewPlanes(axial_index=0, coronal_row=5))
    assert picture.shape == (9, 16)
    assert picture[0, 0] == 1.0
    assert picture[-1, -1] == 2.0
    assert picture.sum() == 3.0


@pytest.mark.parametrize("planes", [ViewPlanes(9, 0), ViewPlanes(-1, 0), ViewPlanes(0, 12)])
def test_planes_outside_the_stack_are_refused(planes):
    with pytest.raises(ValueError, match=r"outside 0\.\.(8|11)"):
        axial_view(np.zeros(SHAPE), planes)


def test_figure_layout_titles_and_plane_marks():
    avg, pred, truth = make_volumes()
    planes = ViewPlanes(axial_index=2, coronal_row=7)
    fig = patient_views_figure(avg, pred, truth, SPACING_MM, planes, WINDOWS["lung"], "PT003")
    assert fig.get_suptitle() == "PT003: window lung (L -600, W 1500 HU)"
    picture_axes, colorbar_axes = fig.axes[:8], fig.axes[8:]
    assert [ax.get_title() for ax in picture_axes[:4]] == [
        "AVG (input)", "prediction", "truth (phase 0)", "|prediction - truth|"]
    assert picture_axes[0].get_ylabel() == "axial, slice 2"
    assert picture_axes[4].get_ylabel() == "coronal, row 7"
    assert [ax.get_ylabel() for ax in colorbar_axes] == ["|pred - truth| (HU)"]
    axial, coronal = picture_axes[0].images[0], picture_axes[4].images[0]
    assert axial.get_clim() == (-1350.0, 150.0)
    np.testing.assert_array_equal(coronal.get_array(), truth[::-1, 7, :] + 25.0)
    assert picture_axes[0].get_aspect() == pytest.approx(0.9 / 0.8)
    assert picture_axes[4].get_aspect() == pytest.approx(2.5 / 0.8)
    error = picture_axes[7].images[0]
    assert error.get_cmap().name == "magma"
    assert error.get_clim() == (0.0, 300.0)
    np.testing.assert_allclose(error.get_array(), 40.0, atol=1e-3)
    # The coronal plane (row 7) is marked on the axial view, the axial slice 2 on the coronal
    # view, where superior is up: 9 - 1 - 2 = 6.
    assert picture_axes[0].lines[0].get_ydata()[0] == 7
    assert picture_axes[4].lines[0].get_ydata()[0] == 6
    assert all(not ax.get_xticks().size and not ax.get_yticks().size for ax in picture_axes)


def test_save_writes_pngs_with_and_without_truth(tmp_path):
    avg, pred, truth = make_volumes()
    planes = choose_planes(SHAPE)
    with_truth = save_patient_views(tmp_path / "PT003.png", avg, pred, truth, SPACING_MM, planes,
                                    WINDOWS["thorax"], "PT003")
    without = save_patient_views(tmp_path / "PT004.png", avg, pred, None, SPACING_MM, planes,
                                 WINDOWS["thorax"], "PT004")
    assert (with_truth, without) == (tmp_path / "PT003.png", tmp_path / "PT004.png")
    sizes = []
    for path in (with_truth, without):
        assert path.stat().st_size > 0
        with Image.open(path) as png:
            assert png.format == "PNG"
            assert png.mode in ("RGB", "RGBA")
            sizes.append(png.size)
    assert sizes[0][0] > 1.5 * sizes[1][0]  # 4 columns and a colour bar against 2 columns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PT003.png", "PT004.png"]


def test_shape_mismatch_names_the_shapes(tmp_path):
    avg, pred, truth = make_volumes()
    with pytest.raises(ValueError, match=r"avg \(9, 12, 16\), prediction \(9, 12, 16\), "
                                         r"truth \(9, 12, 15\)"):
        save_patient_views(tmp_path / "x.png", avg, pred, truth[..., :15], SPACING_MM,
                           choose_planes(SHAPE), WINDOWS["lung"], "x")
    with pytest.raises(ValueError, match=r"prediction \(12, 16\)"):
        save_patient_views(tmp_path / "x.png", avg, pred[0], None, SPACING_MM,
                           choose_planes(SHAPE), WINDOWS["lung"], "x")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"spacing_mm": (2.5, 0.0, 0.8)}, "spacing_mm"),
    ({"planes": ViewPlanes(0, 12)}, "coronal_row 12"),
    ({"error_max_hu": 0.0}, "error_max_hu"),
])
def test_bad_arguments_are_refused(tmp_path, kwargs, message):
    avg, pred, truth = make_volumes()
    args = {"spacing_mm": SPACING_MM, "planes": ViewPlanes(0, 0), "error_max_hu": 300.0} | kwargs
    with pytest.raises(ValueError, match=message):
        save_patient_views(tmp_path / "x.png", avg, pred, truth, window=WINDOWS["lung"],
                           title="x", **args)
