"""Distributed helpers in a single process: no-ops without torchrun, unwrapping and digests.

The two-process run itself is tests/test_distributed_training.py.
"""

import torch
from torch import nn

from util.distributed import (
    SINGLE_PROCESS,
    init_distributed,
    is_main_process,
    no_grad_sync,
    state_digest,
    unwrap,
    weights_digest,
    wrap_ddp,
)


def test_without_torchrun_everything_is_one_process(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx, gpu_ids = init_distributed([])
    assert ctx == SINGLE_PROCESS
    assert ctx.is_main
    assert not ctx.enabled
    assert gpu_ids == []
    assert is_main_process()
    net = nn.Linear(2, 2)
    assert wrap_ddp(net, torch.device("cpu")) is net
    with no_grad_sync(net):
        net(torch.zeros(1, 2))


def test_rank_from_the_environment(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()


def test_unwrap_peels_compile_and_data_parallel():
    net = nn.Linear(2, 2)
    assert unwrap(torch.compile(nn.DataParallel(net))) is net
    assert unwrap(net) is net


def test_digest_follows_the_weights_and_matches_a_saved_copy(tmp_path):
    torch.manual_seed(0)
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert weights_digest(a) == weights_digest(torch.compile(b))
    torch.save(a.state_dict(), tmp_path / "w.pth")
    assert state_digest(torch.load(tmp_path / "w.pth", weights_only=True)) == weights_digest(a)
    with torch.no_grad():
        b.bias[0] += 1e-6
    assert weights_digest(a) != weights_digest(b)
