"""Speed paths, each an option and each switched off, with a log line, where the device lacks it.

- mixed precision (``--amp bf16|fp16``): autocast around the forward passes and losses; fp16
  adds a gradient scaler (bf16 has float32's exponent range and needs none). fp16 needs a CUDA
  GPU; bf16 runs on CUDA GPUs that support it and on the CPU. ``--amp auto`` (training's
  default) is bf16 on CPUs with bfloat16 matrix units (Intel AMX, flag ``amx_bf16``), where it
  was measured to win, and float32 elsewhere.
- ``--channels_last``: networks and inputs in (N, H, W, C) memory order.
- ``--compile``: ``torch.compile`` (inductor); needs a C++ compiler on the CPU, triton on GPUs.
- TF32 matmuls and convolutions on Ampere (compute capability 8.0) or newer unless ``--no_tf32``;
  the cudnn autotuner unless ``--no_cudnn_benchmark``. Both concern CUDA only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from util.errors import ConfigError

logger = logging.getLogger(__name__)

#: ``--amp`` value -> autocast dtype (None: full float32).
AMP_DTYPES: dict[str, torch.dtype | None] = {"off": None, "bf16": torch.bfloat16,
                                             "fp16": torch.float16}
#: ``--amp`` values: the dtypes above and ``auto`` (see :func:`resolve_amp`).
AMP_MODES: tuple[str, ...] = (*AMP_DTYPES, "auto")
#: /proc/cpuinfo flag of CPUs with bfloat16 matrix units (Intel AMX), where oneDNN runs bf16
#: convolutions and matrix products several times faster than float32.
BF16_MATRIX_FLAG = "amx_bf16"
#: Compute capability from which CUDA GPUs have TF32 tensor cores (Ampere).
TF32_MIN_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class SpeedSettings:
    """What is on for one device after :func:`resolve_speed`: ``amp_dtype`` (None = float32)."""

    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--amp mode`` on ``device``; None (logged) where unsupported.

    ``auto``: bf16 on a CPU with bfloat16 matrix units (:func:`cpu_has_bf16_matrix_units`),
    float32 otherwise (GPUs included: ask for ``--amp bf16`` there)."""
    if mode not in AMP_MODES:
        raise ConfigError(f"unknown --amp '{mode}'; valid: {', '.join(AMP_MODES)}")
    if mode == "auto":
        if device.type == "cpu" and cpu_has_bf16_matrix_units():
            logger.info("--amp auto: bf16 (this CPU has bfloat16 matrix units, %s)",
                        BF16_MATRIX_FLAG)
            return torch.bfloat16
        logger.info("--amp auto: float32 on %s", device)
        return None
    dtype = AMP_DTYPES[mode]
    if dtype is torch.float16 and device.type != "cuda":
        logger.info("--amp fp16: off on %s (fp16 autocast with a grad scaler needs a CUDA GPU; "
                    "--amp bf16 runs on the CPU)", device)
        return None
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        logger.info("--amp bf16: off, %s has no bfloat16 support; try --amp fp16",
                    torch.cuda.get_device_name(device))
        return None
    return dtype


def cpu_has_bf16_matrix_units(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when ``cpuinfo`` lists the ``amx_bf16`` flag and torch has oneDNN (mkldnn); False
    where the file is missing (not Linux) or unreadable."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(line.startswith("flags") and BF16_MATRIX_FLAG in line.split()
               for line in text.splitlines())


def compile_supported(device: torch.device) -> str | None:
    """None when ``torch.compile`` can build kernels for ``device``, else the reason it cannot."""
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return "no C++ compiler (g++, c++ or clang++) on PATH"
    return None


def resolve_speed(device: torch.device, *, amp: str = "off", channels_last: bool = False,
                  use_compile: bool = False) -> SpeedSettings:
    """The speed paths that ``device`` can take among those asked for (each refusal logged)."""
    reason = compile_supported(device) if use_compile else None
    if reason is not None:
        logger.info("--compile: off on %s (%s)", device, reason)
    settings = SpeedSettings(amp_dtype=resolve_amp(amp, device), channels_last=channels_last,
                             compile=use_compile and reason is None)
    logger.info("speed paths on %s: amp %s, channels_last %s, compile %s", device,
                settings.amp_dtype or "off", settings.channels_last, settings.compile)
    return settings


def configure_backends(device: torch.device, *, tf32: bool = True,
                       cudnn_benchmark: bool = True) -> None:
    """Set TF32 (Ampere or newer only) and the cudnn autotuner for a CUDA ``device``; on the
    CPU neither exists and both are logged as off."""
    if device.type != "cuda":
        logger.info("TF32 and cudnn benchmark: off on %s (CUDA only)", device)
        return
    capability = torch.cuda.get_device_capability(device)
    use_tf32 = tf32 and capability >= TF32_MIN_CAPABILITY
    if tf32 and not use_tf32:
        logger.info("TF32: off, %s has compute capability %d.%d (TF32 needs 8.0 or newer)",
                    torch.cuda.get_device_name(device), *capability)
    precision = "tf32" if use_tf32 else "ieee"
    torch.backends.cuda.matmul.fp32_precision = precision
    # torch swaps this module for a CudnnModule whose ``conv`` the module's stubs leave out.
    torch.backends.cudnn.conv.fp32_precision = precision  # type: ignore[attr-defined]
    torch.backends.cudnn.benchmark = cudnn_benchmark
    logger.info("TF32 %s, cudnn benchmark %s on %s", "on" if use_tf32 else "off",
                "on" if cudnn_benchmark else "off", torch.cuda.get_device_name(device))


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``'s type; a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for fp16 only (a pass-through otherwise)."""
    return torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` (N, C, H, W) in channels_last order when asked, else unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def speed_up_network(net: nn.Module, settings: SpeedSettings,
                     wrap: Callable[[nn.Module], nn.Module] | None = None) -> nn.Module:
    """``net`` in channels_last order when asked, then ``wrap``-ped (e.g. in
    DistributedDataParallel), then compiled when asked; the parameters stay the same objects."""
    if settings.channels_last:
        # Module.to takes memory_format at run time; its overloads in the stubs leave it out.
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if wrap is not None:
        net = wrap(net)
    if settings.compile:
        # torch.compile of a module returns a module (OptimizedModule); stubs say a callable.
        net = cast(nn.Module, torch.compile(net))
    return net


def make_adam(params: Iterable[nn.Parameter], *, lr: float, betas: tuple[float, float],
              device: torch.device) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all tensors) on CPU and CUDA devices.

    The default per-tensor loop reads and writes every parameter, gradient and moment several
    times; on the CPU, for a 54 M-parameter U-Net, it is about an order of magnitude slower.
    """
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=device.type in ("cpu", "cuda"))


def step_in_backward(optimizer: torch.optim.Optimizer,
                     active: Callable[[], bool]) -> list[RemovableHandle]:
    """While ``active()``, update each of ``optimizer``'s parameters as soon as backward has
    accumulated its gradient, then drop that gradient.

    The update is ``optimizer.step()`` itself (it skips every parameter without a gradient, and
    at that moment only this one has one), so its state, hyper-parameters, schedulers and
    ``state_dict`` are those of the usual step after backward, and for an element-wise
    optimiser such as Adam the weights are bit-identical to it. What changes is memory: the
    gradients of all parameters (4 bytes each) never exist at the same time. Not for
    DistributedDataParallel (gradients are averaged after they accumulate) nor with a gradient
    scaler (it checks every gradient before any update). Returns the hooks' handles.
    """
    def hook(param: torch.Tensor) -> None:
        if active():
            optimizer.step()
            param.grad = None

    return [p.register_post_accumulate_grad_hook(hook)
            for group in optimizer.param_groups for p in group["params"]]
