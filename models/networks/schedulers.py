"""Learning-rate schedules by name (``--lr_policy``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch.optim import Optimizer, lr_scheduler

from models.networks._lookup import lookup
from util.errors import ConfigError


@dataclass(frozen=True)
class Schedule:
    """The training-length options a schedule is built from (all counted in epochs).

    epoch_count: number of the first epoch of this run (1, or later when resuming);
    n_epochs: epochs at the initial rate; n_epochs_decay: epochs of linear decay to 0;
    lr_decay_iters: epochs between two x0.1 steps of the ``step`` policy.
    """

    epoch_count: int
    n_epochs: int
    n_epochs_decay: int
    lr_decay_iters: int


def _linear(optimizer: Optimizer, s: Schedule) -> lr_scheduler.LRScheduler:
    """Constant for ``n_epochs`` epochs, then linear decay towards 0 over ``n_epochs_decay``."""
    def factor(e: int) -> float:
        return 1.0 - max(0, e + s.epoch_count - s.n_epochs) / (s.n_epochs_decay + 1)

    return lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)


def _step(optimizer: Optimizer, s: Schedule) -> lr_scheduler.LRScheduler:
    """x0.1 every ``lr_decay_iters`` epochs."""
    if s.lr_decay_iters < 1:
        raise ConfigError(f"--lr_decay_iters must be >= 1 with --lr_policy step, "
                          f"got {s.lr_decay_iters}")
    return lr_scheduler.StepLR(optimizer, step_size=s.lr_decay_iters, gamma=0.1)


def _plateau(optimizer: Optimizer, _s: Schedule) -> lr_scheduler.LRScheduler:
    """x0.2 when the monitored loss has not improved by 1 % for 5 epochs."""
    return lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.2, threshold=0.01,
                                          patience=5)


def _cosine(optimizer: Optimizer, s: Schedule) -> lr_scheduler.LRScheduler:
    """Half a cosine from the initial rate to 0 over ``n_epochs`` epochs."""
    if s.n_epochs < 1:
        raise ConfigError(f"--n_epochs must be >= 1 with --lr_policy cosine, got {s.n_epochs}")
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=s.n_epochs, eta_min=0.0)


#: ``--lr_policy`` name -> scheduler builder.
LR_POLICIES: dict[str, Callable[[Optimizer, Schedule], lr_scheduler.LRScheduler]] = {
    "linear": _linear,
    "step": _step,
    "plateau": _plateau,
    "cosine": _cosine,
}


def get_scheduler(optimizer: Optimizer, lr_policy: str, *, epoch_count: int, n_epochs: int,
                  n_epochs_decay: int, lr_decay_iters: int) -> lr_scheduler.LRScheduler:
    """Scheduler for ``optimizer``; call its ``step()`` once per epoch (``step(metric)`` for
    ``plateau``).

    ``linear``: for epoch index e counted from 0, the rate is multiplied by
    ``1 - max(0, e + epoch_count - n_epochs) / (n_epochs_decay + 1)``.
    """
    build = lookup(LR_POLICIES, lr_policy, "--lr_policy")
    if n_epochs < 0 or n_epochs_decay < 0:
        raise ConfigError(f"--n_epochs and --n_epochs_decay must be >= 0, got {n_epochs} and "
                          f"{n_epochs_decay}")
    return build(optimizer, Schedule(epoch_count, n_epochs, n_epochs_decay, lr_decay_iters))
