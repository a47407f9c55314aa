"""What the machine offers a training: the device, its memory and the CPU's bfloat16 units.

Read without side effects (no CUDA context is made for the CPU, nothing is allocated); the
plan of a run (:mod:`options.plan`) sizes the batch and the volumes held from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from util.speed import cpu_has_bf16_matrix_units

#: What is assumed where the system does not say how much memory it has (bytes): 4 GiB.
FALLBACK_MEMORY_BYTES = 4 * 2**30


@dataclass(frozen=True)
class MachineFacts:
    """The machine a training runs on.

    ``device``: ``cuda:<i>`` or ``cpu``, where the networks run; ``device_memory_bytes``: the
    GPU's total memory, or the RAM available on the CPU; ``ram_bytes``: the RAM available
    (where the volumes are held, whatever the device); ``bf16_matrix_units``: the CPU has
    bfloat16 matrix units (Intel AMX), where ``--amp auto`` trains in bf16; ``gpu_name``: the
    GPU's name ("" on the CPU).
    """

    device: str
    device_memory_bytes: int
    ram_bytes: int
    bf16_matrix_units: bool
    gpu_name: str = ""

    @property
    def on_gpu(self) -> bool:
        """Whether the networks run on a CUDA GPU."""
        return self.device.startswith("cuda")


def available_ram_bytes(meminfo: Path = Path("/proc/meminfo")) -> int:
    """RAM available to a new process in bytes: ``MemAvailable`` of ``meminfo`` (Linux), else
    the physical memory the system reports, else :data:`FALLBACK_MEMORY_BYTES`."""
    try:
        for line in meminfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the file counts kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return FALLBACK_MEMORY_BYTES


def survey_machine(gpu_ids: list[int]) -> MachineFacts:
    """The facts of this machine for a training on ``gpu_ids`` (empty: the CPU; else the first
    id is the device the batch size is planned for)."""
    ram = available_ram_bytes()
    bf16 = cpu_has_bf16_matrix_units()
    if not gpu_ids:
        return MachineFacts(device="cpu", device_memory_bytes=ram, ram_bytes=ram,
                            bf16_matrix_units=bf16)
    props = torch.cuda.get_device_properties(gpu_ids[0])
    return MachineFacts(device=f"cuda:{gpu_ids[0]}", device_memory_bytes=int(props.total_memory),
                        ram_bytes=ram, bf16_matrix_units=bf16, gpu_name=str(props.name))
