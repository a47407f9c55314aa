"""Display windows, HU <-> network units for pictures and PNG writes."""

import numpy as np
import pytest
import torch
from PIL import Image

from display.windows import (
    WINDOWS,
    DisplayWindow,
    describe_window,
    get_window,
    save_png,
    unit_tensor_to_hu,
    window_to_uint8,
)
from util.errors import ConfigError
from util.hu_window import hu_to_unit


@pytest.mark.parametrize(("name", "level_hu", "width_hu"),
                         [("lung", -600, 1500), ("soft_tissue", 40, 400), ("thorax", -300, 1600)])
def test_named_windows(name, level_hu, width_hu):
    assert get_window(name) == DisplayWindow(level_hu, width_hu)


def test_unknown_window_lists_valid_names():
    with pytest.raises(ConfigError, match=r"'brain'.*lung.*soft_tissue.*thorax"):
        get_window("brain")


def test_windows_are_frozen_and_read_only():
    with pytest.raises(AttributeError):
        WINDOWS["lung"].level_hu = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        WINDOWS["mine"] = DisplayWindow(0.0, 100.0)  # type: ignore[index]
    with pytest.raises(ValueError, match="width > 0"):
        DisplayWindow(0.0, 0.0)


def test_lung_window_by_hand():
    # Lung: L -600, W 1500 -> black at -1350 HU, white at +150 HU, 1500 / 255 HU per grey level.
    hu = np.array([-3000.0, -1350.0, -600.0, 150.0, 2000.0, -1350.0 + 1500.0 * 51 / 255])
    np.testing.assert_array_equal(window_to_uint8(hu, WINDOWS["lung"]), [0, 0, 128, 255, 255, 51])


def test_soft_tissue_window_by_hand_keeps_shape():
    # Soft tissue: L 40, W 400 -> [-160, 240] HU; 0 HU is (160 / 400) * 255 = 102 grey.
    hu = np.array([[-160.0, 0.0], [240.0, np.nan]], dtype=np.float32)
    out = window_to_uint8(hu, WINDOWS["soft_tissue"])
    assert out.dtype == np.uint8
    assert out.shape == (2, 2)
    np.testing.assert_array_equal(out, [[0, 102], [255, 0]])


def test_describe_window():
    assert describe_window(WINDOWS["thorax"]) == "thorax (L -300, W 1600 HU)"
    assert describe_window(DisplayWindow(50.0, 350.0)) == "L 50, W 350 HU"


@pytest.mark.parametrize("shape", [(1, 5, 7), (2, 5, 7), (5, 7)])
def test_unit_tensor_to_hu_inverts_hu_to_unit(shape):
    hu_min, hu_max = -1000.0, 2000.0
    hu = torch.linspace(hu_min, hu_max, 35).reshape(5, 7)
    x = hu_to_unit(hu, hu_min, hu_max)
    if len(shape) == 3:
        x = torch.stack([x] + [-x] * (shape[0] - 1))  # only the first channel counts
    back = unit_tensor_to_hu(x.requires_grad_(), hu_min, hu_max)
    assert isinstance(back, np.ndarray)
    assert back.dtype == np.float32
    assert back.shape == (5, 7)
    np.testing.assert_allclose(back, hu.numpy(), atol=1e-3)


def test_unit_tensor_to_hu_rejects_batches():
    with pytest.raises(ValueError, match=r"\(C, H, W\) or \(H, W\).*\(2, 1, 4, 4\)"):
        unit_tensor_to_hu(torch.zeros(2, 1, 4, 4), -1024.0, 3071.0)


def test_save_png_size_values_and_no_temp_left(tmp_path):
    img = np.arange(6 * 10, dtype=np.uint8).reshape(6, 10)
    path = tmp_path / "sub" / "pic.png"
    save_png(img, path)
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert png.size == (10, 6)  # (width, height)
        np.testing.assert_array_equal(np.asarray(png), img)
    assert [p.name for p in path.parent.iterdir()] == ["pic.png"]


def test_save_png_rejects_non_uint8_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        save_png(np.zeros((4, 4), dtype=np.float32), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []
