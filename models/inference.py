"""Running a generator over whole volumes: slice stack in HU -> predicted volume in HU.

One path for ``test.py``, validation during training and ``scripts/predict.py``: slices are
windowed to [-1, 1] (and resized to ``resize_to``) batch by batch, never all at once, padded with
air to a size the generator takes, and the output is cropped and put back at the native size, in
the source volume's voxel order. With a working spacing (``--working_spacing_mm``), the
generator runs on that grid and only its residual comes back to the source grid
(:func:`predict_hu`).

Inference is deterministic: the generator runs in eval mode (no dropout, batch norm running
statistics), the mode validation scores the ``best`` checkpoint in, whatever mode the caller left
it in (restored afterwards). :func:`sample_stack` is the one stochastic path, by request: N passes
with the dropout layers alone switched on, from a given seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data.ct_volumes import SliceStack, context_indices, slices_to_unit, unit_slices_to_hu
from data.nifti_io import VolumeInfo
from models.networks import SliceSizeRule
from models.volume_inference import (
    VolumeWindows,
    is_volumetric,
    volume_forward,
    with_phase_planes,
)
from util.errors import ConfigError
from util.geometry import from_slice_stack
from util.hu_window import hu_to_unit
from util.resample import NATIVE, is_native, resample_stack, working_shape
from util.speed import autocast

#: HU of the margins added around a slice to fit the generator: air.
PAD_HU = -1024.0
_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                  nn.FeatureAlphaDropout)


@dataclass(frozen=True)
class StackPrediction:
    """A prediction in the slice-stack frame: ``hu`` (S, H, W) float32 HU at the native slice
    size; ``std_hu`` the voxelwise standard deviation over the sampled passes (same shape, HU),
    None for a deterministic prediction; ``displacement_vox`` (3, S, H, W) float32, a motion
    generator's displacement in voxels along (S, H, W) (a phase-0 voxel p was at p + u(p) in
    the AVG; the mean over passes when sampled), None for other generators."""

    hu: np.ndarray
    std_hu: np.ndarray | None = None
    displacement_vox: np.ndarray | None = None


def has_dropout(net: nn.Module) -> bool:
    """Whether ``net`` holds a dropout layer (False for a generator built with --no_dropout)."""
    return any(isinstance(m, _DROPOUT_TYPES) for m in net.modules())


def check_sample_count(samples: int) -> None:
    """ConfigError unless ``samples`` (``--samples``, passes per prediction) is at least 1."""
    if samples < 1:
        raise ConfigError(f"--samples must be at least 1, got {samples}")


def check_samples(net: nn.Module, samples: int, run: str) -> None:
    """ConfigError unless ``samples`` >= 1 and, for more than one, ``net`` has dropout to
    sample with (``run`` names the checkpoint in the message)."""
    check_sample_count(samples)
    if samples > 1 and not has_dropout(net):
        raise ConfigError(f"--samples {samples} draws passes with dropout on, but the generator "
                          f"of {run} has no dropout (trained with --no_dropout): every pass "
                          f"would be the same; use --samples 1")


@contextmanager
def inference_modes(net: nn.Module, *, dropout: bool = False) -> Iterator[None]:
    """Run ``net`` in eval mode, with its dropout layers alone in train mode if ``dropout``;
    every module's mode is restored on exit."""
    before = [(m, m.training) for m in net.modules()]
    net.eval()
    if dropout:
        for m in net.modules():
            if isinstance(m, _DROPOUT_TYPES):
                m.train()
    try:
        yield
    finally:
        for m, training in before:
            m.training = training


def _input_batches(stack_hu: np.ndarray, *, hu_min: float, hu_max: float, resize_to: int,
                   batch_size: int, context_slices: int) -> Iterator[torch.Tensor]:
    """Network inputs (B, 2K+1, h, w) float32 in [-1, 1], ``batch_size`` slices at a time."""
    if stack_hu.ndim != 3 or stack_hu.shape[0] == 0:
        raise ValueError(f"expected a non-empty (S, H, W) slice stack, got shape {stack_hu.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_slices = stack_hu.shape[0]
    for start in range(0, n_slices, batch_size):
        rows = [context_indices(n_slices, s, context_slices)
                for s in range(start, min(start + batch_size, n_slices))]
        yield slices_to_unit(stack_hu[np.stack(rows)], hu_min, hu_max, resize_to)


def _padded_forward(net_g: nn.Module, x: torch.Tensor, rule: SliceSizeRule | None,
                    pad_value: float, device: torch.device,
                    phase_pct: float | None = None) -> torch.Tensor:
    """``net_g`` on ``x`` (B, C, h, w) padded with ``pad_value`` around the centre to
    ``rule.fit(h, w)``, with the target phase's two planes (:func:`util.phases.phase_planes`)
    appended after the image channels when ``phase_pct`` is given; returns (B, 1, h, w) float32
    on the CPU, the margins cropped off."""
    height, width = x.shape[-2:]
    target_h, target_w = rule.fit(height, width) if rule is not None else (height, width)
    top, left = (target_h - height) // 2, (target_w - width) // 2
    if (target_h, target_w) != (height, width):
        x = F.pad(x, (left, target_w - width - left, top, target_h - height - top),
                  value=pad_value)
    x = with_phase_planes(x, phase_pct)
    out = net_g(x.to(device, non_blocking=True))
    return out[..., top:top + height, left:left + width].float().cpu()


def predict_stack(net_g: nn.Module, stack_hu: np.ndarray, *, hu_min: float, hu_max: float,
                  resize_to: int = 0, batch_size: int = 1, context_slices: int = 0,
                  device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None,
                  size_rule: SliceSizeRule | None = None,
                  windows: VolumeWindows | None = None,
                  phase_pct: float | None = None) -> torch.Tensor:
    """Generator output for every slice of a stack, ``batch_size`` slices per forward pass.

    ``stack_hu``: (S, H, W) HU, axial slices in stack order; each input is the slice with
    ``context_slices`` neighbours on each side (2.5-D, :func:`data.ct_volumes.context_window`).
    Slices of a size ``size_rule`` does not take (see
    :func:`models.networks.slice_size_rule`) are padded around the centre with air
    (:data:`PAD_HU`) and the output cropped back. Returns (S, 1, h, w) float32 in [-1, 1] on the
    CPU (h = w = ``resize_to`` when > 0, else H, W). The network runs in eval mode (restored
    afterwards), without gradients; ``amp_dtype`` (bf16, fp16) runs it under autocast. A
    volumetric generator runs over the whole stack in overlapping ``windows``
    (:func:`models.volume_inference.volume_forward`; ``batch_size``, ``context_slices`` and
    ``resize_to`` do not apply).
    """
    device = torch.device(device)
    if is_volumetric(net_g):
        with inference_modes(net_g):
            return volume_forward(net_g, stack_hu, hu_min=hu_min, hu_max=hu_max,
                                  windows=windows or VolumeWindows(), device=device,
                                  amp_dtype=amp_dtype, phase_pct=phase_pct)[0]
    pad_value = float(hu_to_unit(np.array(PAD_HU, dtype=np.float32), hu_min, hu_max))
    batches = _input_batches(stack_hu, hu_min=hu_min, hu_max=hu_max, resize_to=resize_to,
                             batch_size=batch_size, context_slices=context_slices)
    with inference_modes(net_g), torch.inference_mode(), autocast(device, amp_dtype):
        outputs = [_padded_forward(net_g, x, size_rule, pad_value, device, phase_pct)
                   for x in batches]
    return torch.cat(outputs)


def sample_stack(net_g: nn.Module, stack_hu: np.ndarray, *, samples: int, seed: int,
                 hu_min: float, hu_max: float, resize_to: int = 0, batch_size: int = 1,
                 context_slices: int = 0, device: torch.device | str = "cpu",
                 amp_dtype: torch.dtype | None = None,
                 size_rule: SliceSizeRule | None = None,
                 windows: VolumeWindows | None = None,
                 phase_pct: float | None = None) -> StackPrediction:
    """Mean and voxelwise standard deviation of ``samples`` passes with dropout on.

    Only the dropout layers run in train mode (norms use their running statistics). Torch's
    random generator is seeded with ``seed`` for the call (its state is restored afterwards), and
    each batch of ``batch_size`` slices runs its ``samples`` passes in turn, so the result is
    reproducible for the same seed, samples and batch size. Each pass is taken to HU at the
    native slice size before averaging; the std is the population one (divisor N). Arguments as
    :func:`predict_stack`; returns (S, H, W) float32 HU arrays.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    device = torch.device(device)
    if is_volumetric(net_g):
        return _sample_volume(net_g, stack_hu, samples=samples, seed=seed, hu_min=hu_min,
                              hu_max=hu_max, device=device, amp_dtype=amp_dtype,
                              windows=windows or VolumeWindows(), phase_pct=phase_pct)
    native = (stack_hu.shape[1], stack_hu.shape[2])
    pad_value = float(hu_to_unit(np.array(PAD_HU, dtype=np.float32), hu_min, hu_max))
    batches = _input_batches(stack_hu, hu_min=hu_min, hu_max=hu_max, resize_to=resize_to,
                             batch_size=batch_size, context_slices=context_slices)
    means, stds = [], []
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked), inference_modes(net_g, dropout=True), \
            torch.inference_mode(), autocast(device, amp_dtype):
        torch.manual_seed(seed)
        for x in batches:
            passes = np.stack([unit_slices_to_hu(
                _padded_forward(net_g, x, size_rule, pad_value, device, phase_pct), native,
                hu_min, hu_max) for _ in range(samples)])
            means.append(passes.mean(axis=0, dtype=np.float64))
            stds.append(passes.std(axis=0, dtype=np.float64))
    return StackPrediction(np.concatenate(means).astype(np.float32),
                           np.concatenate(stds).astype(np.float32))


def _sample_volume(net_g: nn.Module, stack_hu: np.ndarray, *, samples: int, seed: int,
                   hu_min: float, hu_max: float, device: torch.device,
                   amp_dtype: torch.dtype | None, windows: VolumeWindows,
                   phase_pct: float | None = None) -> StackPrediction:
    """:func:`sample_stack` for a volumetric generator: ``samples`` whole-volume passes with the
    dropout layers on, from ``seed``; mean and std in HU, and the mean displacement field."""
    native = (stack_hu.shape[1], stack_hu.shape[2])
    passes, fields = [], []
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked), inference_modes(net_g, dropout=True):
        torch.manual_seed(seed)
        for _ in range(samples):
            unit, field = volume_forward(net_g, stack_hu, hu_min=hu_min, hu_max=hu_max,
                                         windows=windows, device=device, amp_dtype=amp_dtype,
                                         phase_pct=phase_pct)
            passes.append(unit_slices_to_hu(unit, native, hu_min, hu_max))
            fields += [] if field is None else [field.numpy()]
    stacked = np.stack(passes)
    return StackPrediction(stacked.mean(axis=0, dtype=np.float64).astype(np.float32),
                           stacked.std(axis=0, dtype=np.float64).astype(np.float32),
                           np.mean(fields, axis=0).astype(np.float32) if fields else None)


def _predict_grid(net_g: nn.Module, stack_hu: np.ndarray, *, hu_min: float, hu_max: float,
                  samples: int = 1, seed: int = 0, resize_to: int = 0, batch_size: int = 1,
                  context_slices: int = 0, device: torch.device | str = "cpu",
                  amp_dtype: torch.dtype | None = None,
                  size_rule: SliceSizeRule | None = None,
                  windows: VolumeWindows | None = None,
                  phase_pct: float | None = None) -> StackPrediction:
    """:func:`predict_hu` on the grid ``stack_hu`` is on (no resampling)."""
    if samples > 1:
        return sample_stack(net_g, stack_hu, samples=samples, seed=seed, hu_min=hu_min,
                            hu_max=hu_max, resize_to=resize_to, batch_size=batch_size,
                            context_slices=context_slices, device=device, amp_dtype=amp_dtype,
                            size_rule=size_rule, windows=windows, phase_pct=phase_pct)
    if is_volumetric(net_g):
        device = torch.device(device)
        with inference_modes(net_g):
            unit, field = volume_forward(net_g, stack_hu, hu_min=hu_min, hu_max=hu_max,
                                         windows=windows or VolumeWindows(), device=device,
                                         amp_dtype=amp_dtype, phase_pct=phase_pct)
        return StackPrediction(unit_slices_to_hu(unit, (stack_hu.shape[1], stack_hu.shape[2]),
                                                 hu_min, hu_max),
                               displacement_vox=None if field is None else field.numpy())
    unit = predict_stack(net_g, stack_hu, hu_min=hu_min, hu_max=hu_max, resize_to=resize_to,
                         batch_size=batch_size, context_slices=context_slices, device=device,
                         amp_dtype=amp_dtype, size_rule=size_rule, phase_pct=phase_pct)
    return StackPrediction(unit_slices_to_hu(unit, (stack_hu.shape[1], stack_hu.shape[2]),
                                             hu_min, hu_max))


def predict_hu(net_g: nn.Module, stack_hu: np.ndarray, *, hu_min: float, hu_max: float,
               samples: int = 1, seed: int = 0, resize_to: int = 0, batch_size: int = 1,
               context_slices: int = 0, device: torch.device | str = "cpu",
               amp_dtype: torch.dtype | None = None,
               size_rule: SliceSizeRule | None = None,
               windows: VolumeWindows | None = None,
               phase_pct: float | None = None,
               spacing_mm: Sequence[float] | None = None,
               working_spacing_mm: Sequence[float] = NATIVE,
               residual_gate_hu: float = 0.0) -> StackPrediction:
    """The prediction test.py, validation and predict.py use: one deterministic pass
    (``samples`` 1, no std), else :func:`sample_stack`'s mean and std; with a motion generator,
    its displacement field too. Other arguments as :func:`predict_stack`.

    ``working_spacing_mm`` (slice, row, column mm; 0 = that axis native): the generator runs on
    that grid (:mod:`util.resample`), ``spacing_mm`` being the stack's own (slice thickness, row,
    column) spacing. The AVG is resampled there (trilinear, corner-aligned), the prediction's
    residual (prediction minus the windowed resampled AVG, HU) resampled back to (S, H, W) and
    added to the native AVG, then clipped to [``hu_min``, ``hu_max``]: tissue the model leaves
    alone keeps the source's values, unblurred. The std is resampled back the same way; a
    displacement field's components too, rescaled from working to native voxels. Where the
    working grid has the native shape (all 0, or equal spacings) nothing is resampled: the
    result is that of the native path, bit for bit.

    ``residual_gate_hu`` (HU, 0 = off): the predicted change from the AVG is passed through
    :func:`gate_residual` and added to the native AVG (not clipped to the HU window: a voxel
    the gate leaves alone keeps the AVG's value, bone above ``hu_max`` included), so tissue the
    model barely changes, static tissue and small breathers, stays the AVG.
    """
    run = partial(_predict_grid, net_g, hu_min=hu_min, hu_max=hu_max, samples=samples,
                  seed=seed, resize_to=resize_to, batch_size=batch_size,
                  context_slices=context_slices, device=device, amp_dtype=amp_dtype,
                  size_rule=size_rule, windows=windows, phase_pct=phase_pct)
    gated = residual_gate_hu > 0
    if is_native(working_spacing_mm):
        return _gated(run(stack_hu), stack_hu, residual_gate_hu, hu_min, hu_max) if gated \
            else run(stack_hu)
    if spacing_mm is None:
        raise ConfigError(f"the generator runs at --working_spacing_mm "
                          f"{' '.join(f'{v:g}' for v in working_spacing_mm)}: the stack's own "
                          f"spacing (spacing_mm) is needed to resample it")
    native = _shape3(stack_hu.shape)
    work = working_shape(native, spacing_mm, working_spacing_mm)
    if work == native:
        return _gated(run(stack_hu), stack_hu, residual_gate_hu, hu_min, hu_max) if gated \
            else run(stack_hu)
    avg_work = resample_stack(stack_hu, work)
    pred = run(avg_work)
    residual = gate_residual(pred.hu - _windowed_hu(avg_work, hu_min, hu_max), residual_gate_hu)
    hu = stack_hu.astype(np.float32) + resample_stack(residual, native)
    return StackPrediction(
        hu if gated else np.clip(hu, hu_min, hu_max).astype(np.float32, copy=False),
        None if pred.std_hu is None else resample_stack(pred.std_hu, native),
        None if pred.displacement_vox is None
        else _field_to_native(pred.displacement_vox, native, work))


def gate_residual(residual_hu: np.ndarray, gate_hu: float) -> np.ndarray:
    """A predicted change from the AVG (any shape, HU) with its small values dropped: 0 where
    ``|r| <= gate_hu``, ``r`` where ``|r| >= 2 gate_hu``, ``r (|r| - g) / g`` between
    (continuous); ``residual_hu`` itself (float32) when ``gate_hu`` is 0."""
    residual_hu = residual_hu.astype(np.float32, copy=False)
    if gate_hu <= 0:
        return residual_hu
    weight = np.clip((np.abs(residual_hu) - gate_hu) / gate_hu, 0.0, 1.0)
    return (residual_hu * weight).astype(np.float32)


def _gated(pred: StackPrediction, stack_hu: np.ndarray, gate_hu: float, hu_min: float,
           hu_max: float) -> StackPrediction:
    """``pred`` (on the grid of ``stack_hu``, (S, H, W) HU) with its change from the AVG gated
    (:func:`gate_residual`) and added to the AVG as it is."""
    residual = gate_residual(pred.hu - _windowed_hu(stack_hu, hu_min, hu_max), gate_hu)
    return dataclasses.replace(pred, hu=stack_hu.astype(np.float32) + residual)


def _shape3(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(S, H, W) of a slice stack's shape; ValueError for another number of axes."""
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected a non-empty (S, H, W) slice stack, got shape {shape}")
    return shape[0], shape[1], shape[2]


def _windowed_hu(stack_hu: np.ndarray, hu_min: float, hu_max: float) -> np.ndarray:
    """(S, H, W) HU as the generator sees it: windowed to [-1, 1] and back to HU by the same
    functions as its output (so a generator returning its input has a residual of exactly 0)."""
    unit = torch.from_numpy(hu_to_unit(stack_hu.astype(np.float32), hu_min, hu_max))[:, None]
    return unit_slices_to_hu(unit, (stack_hu.shape[1], stack_hu.shape[2]), hu_min, hu_max)


def _field_to_native(field_vox: np.ndarray, native: tuple[int, int, int],
                     work: tuple[int, int, int]) -> np.ndarray:
    """A displacement field (3, S', H', W') in working-grid voxels along (S, H, W) -> (3, S, H,
    W) float32 in native voxels: each component resampled to ``native`` and scaled by the
    working step over the native one, ``(n - 1) / (n' - 1)`` on the corner-aligned grids."""
    scales = [1.0 if m == 1 else (n - 1) / (m - 1) for n, m in zip(native, work, strict=True)]
    return np.stack([resample_stack(c, native) * np.float32(k)
                     for c, k in zip(field_vox, scales, strict=True)]).astype(np.float32)


def predict_volume(net_g: nn.Module, stack: SliceStack, *, hu_min: float, hu_max: float,
                   resize_to: int = 0, batch_size: int = 1, context_slices: int = 0,
                   device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None,
                   size_rule: SliceSizeRule | None = None,
                   windows: VolumeWindows | None = None,
                   phase_pct: float | None = None,
                   working_spacing_mm: Sequence[float] = NATIVE) -> np.ndarray:
    """The predicted volume for ``stack``: (I, J, K) float32 HU in the source's voxel order and
    shape (``stack.info``), clipped to [hu_min, hu_max] by the network's output range (run at
    ``working_spacing_mm``, see :func:`predict_hu`)."""
    pred = predict_hu(net_g, stack.hu, hu_min=hu_min, hu_max=hu_max, resize_to=resize_to,
                      batch_size=batch_size, context_slices=context_slices, device=device,
                      amp_dtype=amp_dtype, size_rule=size_rule, windows=windows,
                      phase_pct=phase_pct, spacing_mm=stack.stack_spacing_mm,
                      working_spacing_mm=working_spacing_mm)
    return np.ascontiguousarray(from_slice_stack(pred.hu, stack.info.affine))


def float32_storage(info: VolumeInfo) -> VolumeInfo:
    """``info`` with float32 on-disk storage and no scaling: for volumes that are not CT values
    on the source's integer grid, such as a standard deviation in HU. Shape and affine kept."""
    header = info.header.copy()
    header.set_data_dtype(np.float32)
    header.set_slope_inter(1.0, 0.0)
    return dataclasses.replace(info, header=header)
