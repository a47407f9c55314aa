"""The residual gate: a predicted change from the AVG below --residual_gate_hu leaves the AVG
as it is (static tissue, small breathers); a large one is kept whole."""

import numpy as np
import pytest
import torch
from torch import nn

from models.inference import gate_residual, predict_hu

HU_MIN, HU_MAX = -1024.0, 1024.0


class TextureAndMotion(nn.Module):
    """A 'generator' that adds 10 HU of texture everywhere, and -400 HU where its input is
    below -100 HU (where the lung moves in)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unit = 2.0 / (HU_MAX - HU_MIN)
        return x + 10.0 * unit - 400.0 * unit * (x < -100.0 * unit).float()


def test_gate_drops_small_changes_keeps_large_ones_and_is_continuous():
    r = np.array([-80.0, -30.0, -20.0, 0.0, 5.0, 20.0, 25.0, 30.0, 40.0, 300.0])
    out = gate_residual(r, 20.0)
    np.testing.assert_allclose(out, [-80.0, -15.0, 0.0, 0.0, 0.0, 0.0, 6.25, 15.0, 40.0, 300.0])
    np.testing.assert_array_equal(gate_residual(r, 0.0), r.astype(np.float32))


@pytest.mark.parametrize("working_spacing_mm", [(0.0, 0.0, 0.0), (3.0, 4.0, 4.0)])
def test_static_tissue_and_bone_keep_the_avgs_values_and_motion_is_kept(working_spacing_mm):
    avg = np.full((8, 16, 16), 40.0, dtype=np.float32)  # soft tissue
    avg[:, 0:2, :] = 1500.0  # bone above the HU window
    avg[:, 6:12, 6:12] = -200.0  # the blurred lung base
    net = TextureAndMotion()
    plain = predict_hu(net, avg, hu_min=HU_MIN, hu_max=HU_MAX, spacing_mm=(3.0, 2.0, 2.0),
                       working_spacing_mm=working_spacing_mm)
    gated = predict_hu(net, avg, hu_min=HU_MIN, hu_max=HU_MAX, residual_gate_hu=25.0,
                       spacing_mm=(3.0, 2.0, 2.0), working_spacing_mm=working_spacing_mm)
    static = np.ones((16, 16), dtype=bool)
    static[0:3] = False  # bone and the row next to it (resampling blends them)
    static[4:14, 4:14] = False  # the moving block and its resampling edge
    assert np.allclose(plain.hu[:, static], 50.0, atol=1.0)  # +10 HU on static tissue
    np.testing.assert_array_equal(gated.hu[:, static], avg[:, static])  # exactly the AVG
    np.testing.assert_array_equal(gated.hu[:, 0:2], avg[:, 0:2])  # bone is not clipped
    np.testing.assert_allclose(gated.hu[:, 8:10, 8:10], -590.0, atol=1.0)  # motion kept
