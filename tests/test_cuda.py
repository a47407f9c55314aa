"""The CUDA paths: the training step, inference against the CPU, channels_last, torchrun, DDP.

Marked ``cuda`` and skipped without a CUDA GPU; ``benchmarks/gpu_check.py`` runs them
(``pytest -m cuda``). Each is small: ``unet_64`` with ngf 8 on 64 x 64 slices. The checks are
written against a device (and a process-group backend) so that they read the same on any; the
tests give them the first GPU and nccl.
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from models import create_model
from models.base_model import BaseModel
from models.inference import predict_hu
from models.networks import define_G
from tests.conftest import write_pair_tree
from tests.parsed import parsed_settings
from util.speed import SpeedSettings, speed_up_network, to_memory_format

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA GPU (torch.cuda.is_available() is False)")]
CUDA = torch.device("cuda", 0)
#: Largest |CUDA - CPU| (HU) of a float32 prediction, TF32 off: only the order of float32
#: sums differs (~1e-6 of the 4095-HU window, ~0.01 HU); under half the 1-HU step of the int16
#: volumes test.py writes.
CPU_CUDA_ATOL_HU = 0.5
#: Largest |channels_last - NCHW| of the generator's output, in window units ([-1, 1]): 1e-4 is
#: 0.2 HU on the default 4095-HU window.
LAYOUT_ATOL = 1e-4


@pytest.fixture
def exact_float32() -> Iterator[None]:
    """IEEE float32 matmuls and convolutions (no TF32), deterministic cudnn algorithms and no
    autotuning for the test; the previous settings restored afterwards (building a model on a
    GPU turns TF32 and the autotuner on, see util.speed.configure_backends)."""
    # torch swaps cudnn for a module whose ``conv`` the stubs leave out (as in util/speed.py).
    conv = torch.backends.cudnn.conv  # type: ignore[attr-defined]
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (matmul.fp32_precision, conv.fp32_precision, cudnn.benchmark, cudnn.deterministic)
    matmul.fp32_precision = conv.fp32_precision = "ieee"
    cudnn.benchmark, cudnn.deterministic = False, True
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision, cudnn.benchmark, cudnn.deterministic = before


def tiny_generator() -> nn.Module:
    """``unet_64``, ngf 8, instance norm, no dropout, weights from seed 0, on the CPU."""
    torch.manual_seed(0)
    return define_G(1, 1, 8, "unet_64", norm="instance", use_dropout=False)


def random_slices(n: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """(n, 1, 64, 64) float32 in [-1, 1] on ``device``."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 64, 64, generator=gen) * 2 - 1).to(device)


def training_model(tmp_path: Path, gpu_ids: str, amp: str) -> BaseModel:
    """A pix2pix training model (unet_64, ngf and ndf 8, batch 2), set up."""
    settings = parsed_settings("--dataroot", str(tmp_path), "--checkpoints_dir", str(tmp_path),
                               "--netG", "unet_64", "--ngf", "8", "--ndf", "8", "--norm",
                               "instance", "--axial_slice", "--preprocess", "none",
                               "--gpu_ids", gpu_ids, "--batch_size", "2", "--amp", amp,
                               "--recipe", "pix2pix")
    torch.manual_seed(0)
    model = create_model(settings)
    model.setup()
    return model


def check_training_step(model: BaseModel) -> None:
    """One step: every loss finite, every weight finite and on the model's device, and most
    weight tensors of G and of D changed."""
    before = {name: [p.detach().clone() for p in net.parameters()]
              for name, net in model.networks().items()}
    model.set_input({"A": random_slices(2, torch.device("cpu")),
                     "B": random_slices(2, torch.device("cpu"), seed=1)})
    model.optimize_parameters()
    losses = model.get_current_losses()
    assert set(losses) == set(model.loss_names)
    assert all(math.isfinite(v) for v in losses.values()), losses
    for name, net in model.networks().items():
        after = [p.detach() for p in net.parameters()]
        assert all(p.device == model.device and bool(torch.isfinite(p).all()) for p in after)
        moved = sum(not torch.equal(a, b) for a, b in zip(after, before[name], strict=True))
        assert moved > len(after) // 2, f"net{name}: {moved} of {len(after)} tensors moved"


def cross_device_difference_hu(net: nn.Module, device: torch.device) -> tuple[float, float]:
    """(max |prediction on ``device`` - prediction on the CPU| in HU, the CPU prediction's
    standard deviation in HU) for a 6-slice stack of 64 x 64, batches of 4."""
    stack = np.random.default_rng(0).integers(-1000, 1500, (6, 64, 64)).astype(np.float32)
    on_cpu = predict_hu(net, stack, hu_min=-1024.0, hu_max=3071.0, batch_size=4).hu
    on_device = predict_hu(copy.deepcopy(net).to(device), stack, hu_min=-1024.0, hu_max=3071.0,
                           batch_size=4, device=device).hu
    assert on_cpu.shape == on_device.shape == stack.shape
    return float(np.abs(on_device - on_cpu).max()), float(on_cpu.std())


def layout_difference(net: nn.Module, device: torch.device) -> float:
    """Max |output of ``net`` in channels_last order - output in NCHW| ([-1, 1] units) on a
    batch of 2 slices; checks the channels_last copy's convolution weights are in that order."""
    net = net.to(device).eval()
    fast = speed_up_network(copy.deepcopy(net), SpeedSettings(channels_last=True))
    weight = next(p for p in fast.parameters() if p.ndim == 4 and min(p.shape[1:]) > 1)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()
    x = random_slices(2, device)
    with torch.inference_mode():
        return float((fast(to_memory_format(x, True)) - net(x)).abs().max())


def ddp_step_difference(device: torch.device, backend: str) -> tuple[float, bool]:
    """One SGD step of the generator in DistributedDataParallel on a 1-process ``backend``
    group and of an identical plain copy, same batch: (max |weight difference| between the
    two, whether the step moved the weights)."""
    net = tiny_generator().to(device)
    twin, start = copy.deepcopy(net), copy.deepcopy(net)
    x, y = random_slices(2, device), random_slices(2, device, seed=1)
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1,
                            device_id=device if device.type == "cuda" else None)
    try:
        ddp = DistributedDataParallel(net, device_ids=None if device.index is None
                                      else [device.index])
        for model in (ddp, twin):
            sgd = torch.optim.SGD(model.parameters(), lr=0.1)
            (model(x) - y).abs().mean().backward()
            sgd.step()
    finally:
        dist.destroy_process_group()
    pairs = list(zip(net.parameters(), twin.parameters(), strict=True))
    moved = any(not torch.equal(a, b) for a, b in zip(net.parameters(), start.parameters(),
                                                       strict=True))
    return max(float((a - b).detach().abs().max()) for a, b in pairs), moved


def torchrun_one_process(tmp_path: Path, gpu_ids: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 1 train.py`` for one epoch on 8 slices."""
    root = tmp_path / "data"
    write_pair_tree(root, "train", {"t1": (64, 64, 4), "t2": (64, 64, 4)})
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "1", str(REPO / "train.py"), "--dataroot", str(root), "--checkpoints_dir",
            str(tmp_path / "ck"), "--name", "ddp", "--model", "pix2pix", "--dataset_mode",
            "nifti_aligned", "--preprocess", "none", "--axial_slice", "--norm", "instance",
            "--batch_size", "2", "--netG", "unet_64", "--ngf", "4", "--ndf", "4", "--gpu_ids",
            gpu_ids, "--num_threads", "0", "--n_epochs", "1", "--n_epochs_decay", "0",
            "--val_freq", "0", "--no_html", "--recipe", "pix2pix"]
    return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_training_step_on_cuda_gives_finite_losses_and_moves_weights(tmp_path: Path,
                                                                      amp: str) -> None:
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name(CUDA)} has no bfloat16 support")
    model = training_model(tmp_path, "0", amp)
    assert model.device == CUDA
    assert model.speed.amp_dtype is (torch.bfloat16 if amp == "bf16" else None)
    check_training_step(model)


def test_cuda_and_cpu_predictions_agree_in_hu(exact_float32: None) -> None:  # noqa: ARG001
    difference_hu, spread_hu = cross_device_difference_hu(tiny_generator(), CUDA)
    assert spread_hu > 1.0  # the prediction varies, so agreeing means something
    assert difference_hu <= CPU_CUDA_ATOL_HU


def test_channels_last_matches_nchw_on_cuda(exact_float32: None) -> None:  # noqa: ARG001
    assert layout_difference(tiny_generator(), CUDA) <= LAYOUT_ATOL


def test_one_process_nccl_ddp_step_equals_the_plain_step(exact_float32: None  # noqa: ARG001
                                                         ) -> None:
    difference, moved = ddp_step_difference(CUDA, "nccl")
    assert moved
    assert difference <= 1e-6


def test_torchrun_one_process_trains_on_the_gpu(tmp_path: Path) -> None:
    proc = torchrun_one_process(tmp_path, "0")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "speed paths on cuda:0" in log
    state = torch.load(tmp_path / "ck" / "ddp" / "latest_net_G.pth", weights_only=True)
    assert all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())
