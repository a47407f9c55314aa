"""Data-parallel training on PyTorch's own engine (DistributedDataParallel), launched by torchrun.

``torchrun --nproc_per_node N train.py ...`` starts N processes and gives each ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``. Without them (a plain
``python train.py``) there is one process and every helper here is a no-op. On GPUs the backend
is nccl and process ``LOCAL_RANK`` takes GPU ``LOCAL_RANK``; on the CPU it is gloo.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from util.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: ``rank`` of ``world_size``, ``local_rank`` on its
    machine, and the ``backend`` (None when there is one process)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints, logs and pages (rank 0)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1


#: The context of a plain, single-process run.
SINGLE_PROCESS = DistContext()


def env_world_size() -> int:
    """``WORLD_SIZE`` set by torchrun (1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    """``RANK`` set by torchrun (0 without it); readable before the process group exists."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Whether this is rank 0 (or the only process)."""
    return env_rank() == 0


def init_distributed(gpu_ids: list[int]) -> tuple[DistContext, list[int]]:
    """Join the torchrun job, if there is one; returns the context and the GPU ids this process
    uses: ``[LOCAL_RANK]`` on GPUs (any ``--gpu_ids`` other than -1), [] on the CPU."""
    world_size = env_world_size()
    if world_size <= 1:
        return DistContext(), gpu_ids
    rank, local_rank = env_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    if gpu_ids:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"torchrun process with LOCAL_RANK {local_rank} needs GPU "
                              f"{local_rank}, but only {torch.cuda.device_count()} are visible; "
                              "start at most one process per GPU (--nproc_per_node)")
        gpu_ids = [local_rank]
        torch.cuda.set_device(local_rank)
    backend = "nccl" if gpu_ids else "gloo"
    dist.init_process_group(backend=backend,
                            device_id=torch.device("cuda", local_rank) if gpu_ids else None)
    ctx = DistContext(rank=rank, local_rank=local_rank, world_size=world_size, backend=backend)
    logger.info("distributed: rank %d of %d (local rank %d), backend %s", rank, world_size,
                local_rank, backend)
    return ctx, gpu_ids


def barrier() -> None:
    """Wait for every process (no-op with one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(net: nn.Module, device: torch.device) -> nn.Module:
    """``net`` in DistributedDataParallel when the job has several processes (else ``net``).

    Batch norm becomes SyncBatchNorm on GPUs (statistics over the global batch); on the CPU
    SyncBatchNorm does not run, so statistics stay per process, and rank 0's running statistics
    are broadcast to the others at every forward (``broadcast_buffers``).
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return net
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        if device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
            logger.info("batch norm synchronised across %d processes", dist.get_world_size())
        else:
            logger.info("batch norm statistics per process on the CPU (SyncBatchNorm needs GPUs)")
    return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                   else None)


def no_grad_sync(net: nn.Module) -> contextlib.AbstractContextManager:
    """A context in which ``net`` (DDP, possibly compiled) runs without gradient all-reduce:
    for forward passes whose parameters get no gradient, e.g. D in the generator's step."""
    no_sync = getattr(net, "no_sync", None)
    return no_sync() if no_sync is not None else contextlib.nullcontext()


def unwrap(net: nn.Module) -> nn.Module:
    """The plain module inside compile / DistributedDataParallel / DataParallel wrappers."""
    while isinstance(net, DistributedDataParallel | nn.DataParallel) or hasattr(net, "_orig_mod"):
        inner = net._orig_mod if hasattr(net, "_orig_mod") else net.module
        if not isinstance(inner, nn.Module):
            raise TypeError(f"{type(net).__name__} wraps a {type(inner).__name__}, not a module")
        net = inner
    return net


def weights_digest(net: nn.Module) -> str:
    """SHA-256 (16 hex digits) of a network's state dict: names, dtypes, shapes and values.

    The same on two ranks exactly when they hold identical weights and buffers; equal to the
    digest of the state dict loaded back from a checkpoint of the network.
    """
    return state_digest(unwrap(net).state_dict())


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 (16 hex digits) of a state dict, as in :func:`weights_digest`."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.flatten().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
