"""Running a generator over whole volumes: slice stack in HU -> predicted volume in HU.

One path for ``test.py``, validation during training and ``scripts/predict.py``: slices are
windowed to [-1, 1] (and resized to ``resize_to``) batch by batch, never all at once, and the
output is put back at the native size, in the source volume's voxel order.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from data.ct_volumes import SliceStack, context_indices, slices_to_unit, slices_to_volume
from util.speed import autocast


def predict_stack(net_g: nn.Module, stack_hu: np.ndarray, *, hu_min: float, hu_max: float,
                  resize_to: int = 0, batch_size: int = 1, context_slices: int = 0,
                  device: torch.device | str = "cpu",
                  amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Generator output for every slice of a stack, ``batch_size`` slices per forward pass.

    ``stack_hu``: (S, H, W) HU, axial slices in stack order; each input is the slice with
    ``context_slices`` neighbours on each side (2.5-D, :func:`data.ct_volumes.context_window`).
    Returns (S, 1, h, w) float32 in [-1, 1] on the CPU (h = w = ``resize_to`` when > 0, else
    H, W). The network's mode (train/eval) is left as the caller set it; gradients are off;
    ``amp_dtype`` (bf16, fp16) runs it under autocast.
    """
    if stack_hu.ndim != 3 or stack_hu.shape[0] == 0:
        raise ValueError(f"expected a non-empty (S, H, W) slice stack, got shape {stack_hu.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_slices = stack_hu.shape[0]
    device = torch.device(device)
    outputs = []
    with torch.inference_mode(), autocast(device, amp_dtype):
        for start in range(0, n_slices, batch_size):
            rows = [context_indices(n_slices, s, context_slices)
                    for s in range(start, min(start + batch_size, n_slices))]
            batch = slices_to_unit(stack_hu[np.stack(rows)], hu_min, hu_max, resize_to)
            outputs.append(net_g(batch.to(device, non_blocking=True)).float().cpu())
    return torch.cat(outputs)


def predict_volume(net_g: nn.Module, stack: SliceStack, *, hu_min: float, hu_max: float,
                   resize_to: int = 0, batch_size: int = 1, context_slices: int = 0,
                   device: torch.device | str = "cpu",
                   amp_dtype: torch.dtype | None = None) -> np.ndarray:
    """The predicted volume for ``stack``: (I, J, K) float32 HU in the source's voxel order and
    shape (``stack.info``), clipped to [hu_min, hu_max] by the network's output range."""
    pred = predict_stack(net_g, stack.hu, hu_min=hu_min, hu_max=hu_max, resize_to=resize_to,
                         batch_size=batch_size, context_slices=context_slices, device=device,
                         amp_dtype=amp_dtype)
    return slices_to_volume(pred, stack.info, hu_min, hu_max)
