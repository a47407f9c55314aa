"""What the benchmarks measure the machine with and print about it (a helper, not a
benchmark): the CPU's name, the device's matrix-product rate, waiting for a GPU, and this
process's resident memory."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else what :mod:`platform` says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (GPU); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 4096,
                  reps: int = 4) -> float:
    """Best-of-``reps`` GFLOP/s of an n x n matrix product in ``dtype`` on ``device`` (one
    untimed product first)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = 0.0
    for _ in range(reps + 1):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def proc_status_mib(key: str) -> float:
    """``VmRSS`` or ``VmHWM`` (peak) of this process from /proc/self/status, MiB. Unlike
    ``ru_maxrss``, the peak is this process's own, not that of the parent it was forked from."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {key}")
