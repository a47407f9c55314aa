"""Whole-volume inference of volumetric (3-D) generators: overlapping windows, Gaussian blend.

A volumetric generator sees a (D, H, W) window of the slice stack at a time (the stack frame of
:mod:`util.geometry`: D axial slices inferior -> superior, H rows, W columns). Any volume is covered
by windows of the size the generator was trained on (``--patch_size``, each side rounded up to a
size the network takes), neighbours overlapping by ``--window_overlap`` and blended with a
Gaussian weight that favours each window's centre: MONAI's ``sliding_window_inference``, the
field's standard. A volume smaller than a window is padded with air (-1024 HU) and cropped back,
so the output has the input's shape exactly. A motion generator's displacement field is blended
the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from data.ct_volumes import slices_to_unit
from models.networks import SliceSizeRule, folding_fraction, is_motion_generator
from util.hu_window import hu_to_unit
from util.phases import phase_planes
from util.speed import autocast

#: HU of the margins added around a volume to fit a window: air.
PAD_HU = -1024.0
#: Default share of a window's side that its neighbour overlaps (``--window_overlap``).
DEFAULT_OVERLAP = 0.5


@dataclass(frozen=True)
class VolumeWindows:
    """How a volumetric generator covers a volume: ``patch_size`` (D, H, W) voxels it was trained
    on (0 on an axis: the volume's whole extent), ``overlap`` in [0, 1) of a window's side shared
    with its neighbour, and ``rule``, the sides the network takes (each window side is rounded up
    to it)."""

    patch_size: tuple[int, int, int] = (0, 0, 0)
    overlap: float = DEFAULT_OVERLAP
    rule: SliceSizeRule = field(default_factory=SliceSizeRule)

    def window(self, stack_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(D, H, W) window for a stack of ``stack_shape`` (S, H, W): the patch side (or the
        stack's side where the patch side is 0), rounded up to a size the network takes."""
        sides = [p if p > 0 else s for p, s in zip(self.patch_size, stack_shape, strict=True)]
        d, h, w = self.rule.fit(*sides)
        return d, h, w


def is_volumetric(net: nn.Module) -> bool:
    """Whether ``net`` is a volumetric generator (made of 3-D convolutions)."""
    return any(isinstance(m, nn.Conv3d | nn.ConvTranspose3d) for m in net.modules())


def check_overlap(overlap: float) -> None:
    """ValueError unless 0 <= ``overlap`` < 1."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"--window_overlap must be in [0, 1), got {overlap}")


def with_phase_planes(x: torch.Tensor, phase_pct: float | None) -> torch.Tensor:
    """``x`` (N, C, *spatial) with the phase's two constant planes (sin, cos; see
    :mod:`util.phases`) appended after its C channels; ``x`` itself when ``phase_pct`` is None."""
    if phase_pct is None:
        return x
    planes = torch.from_numpy(phase_planes(phase_pct, x.shape[2:])).to(x.device, x.dtype)
    return torch.cat((x, planes.expand(x.shape[0], *planes.shape)), dim=1)


def volume_forward(net_g: nn.Module, stack_hu: np.ndarray, *, hu_min: float, hu_max: float,
                   windows: VolumeWindows, device: torch.device,
                   amp_dtype: torch.dtype | None = None, phase_pct: float | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``net_g`` over a whole slice stack, window by window, in the modes the caller set.

    ``stack_hu``: (S, H, W) HU in stack order. Returns ((S, 1, H, W) float32 in [-1, 1] on the CPU,
    the (3, S, H, W) float32 displacement in voxels along (S, H, W) for a motion generator, else
    None): a phase-0 voxel p was at p + u(p) in the AVG. With ``phase_pct`` (a phase-conditioned
    generator) each window gets the phase's two planes appended after its image channel (not
    through the air padding). Runs without gradients; ``amp_dtype`` runs it under autocast.
    """
    from monai.inferers import sliding_window_inference  # the one user of MONAI's inferers

    if stack_hu.ndim != 3 or stack_hu.shape[0] == 0:
        raise ValueError(f"expected a non-empty (S, H, W) slice stack, got shape {stack_hu.shape}")
    check_overlap(windows.overlap)
    shape = (int(stack_hu.shape[0]), int(stack_hu.shape[1]), int(stack_hu.shape[2]))
    x = slices_to_unit(stack_hu, hu_min, hu_max).permute(1, 0, 2, 3)[None]  # (1, 1, S, H, W)
    pad_value = float(hu_to_unit(np.array(PAD_HU, dtype=np.float32), hu_min, hu_max))
    motion = is_motion_generator(net_g)

    def predictor(window: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The generator on one (1, 1, D, H, W) window: the image, and the field if any."""
        window = with_phase_planes(window, phase_pct)
        out = net_g(window, return_field=True) if motion else net_g(window)
        return (out[0].float(), out[1].float()) if motion else out.float()

    with torch.inference_mode(), autocast(device, amp_dtype):
        out = sliding_window_inference(x, windows.window(shape), 1, predictor,
                                       overlap=windows.overlap, mode="gaussian",
                                       padding_mode="constant", cval=pad_value,
                                       sw_device=device, device=torch.device("cpu"))
    image, displacement = (out[0], out[1]) if motion else (out, None)
    image = torch.as_tensor(image)[0].permute(1, 0, 2, 3).float().clamp(-1.0, 1.0)
    return image.contiguous(), (None if displacement is None
                                else torch.as_tensor(displacement)[0].float())


def field_summary(field_vox: np.ndarray,
                  spacing_mm: tuple[float, float, float]) -> dict[str, float]:
    """Figures of a displacement field: (3, S, H, W) voxels along (S, H, W), with the stack's
    (slice, row, column) ``spacing_mm`` -> {"max_mm", "p95_mm" of the length |u| in mm,
    "si_max_mm": the largest superior-inferior component, "folding_pct": % of voxels where the
    Jacobian determinant of x -> x + u(x) is <= 0 (folding; spacing does not change its sign)}."""
    mm = field_vox * np.asarray(spacing_mm, dtype=np.float32)[:, None, None, None]
    length = np.sqrt((mm.astype(np.float64) ** 2).sum(axis=0))
    folding = folding_fraction(torch.from_numpy(np.ascontiguousarray(field_vox))[None])
    return {"max_mm": float(length.max()), "p95_mm": float(np.percentile(length, 95)),
            "si_max_mm": float(np.abs(mm[0]).max()), "folding_pct": 100.0 * float(folding)}
