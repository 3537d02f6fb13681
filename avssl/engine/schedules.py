"""Learning-rate schedules counted in epochs or in optimisation steps (pretraining and fine-tuning).

One rule for both units. Let u be the number of scheduler steps taken so far (epochs finished, or
optimisation steps done) and W the warm-up length, in the same unit. The update made at u uses

    lr(u) = lr * w(u) * gamma ** #{m in milestones : m <= u},    w(u) = (u + 1) / W if u < W else 1

so with `unit="epoch"` the epochs e >= m run at lr x gamma (torch's MultiStepLR, stepped at epoch
ends, exactly as before this module existed), and with `unit="step"` the optimisation steps
s >= m do (the first m steps run at the full rate), the scheduler being stepped after every
optimisation step. A step budget (`trainer.max_steps`) can thus place its milestones without
arithmetic over the collection's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["SCHEDULE_UNITS", "schedule_unit", "build_lr_scheduler"]

SCHEDULE_UNITS = ("epoch", "step")


def schedule_unit(ocfg: dict) -> str:
    """`optim.schedule_unit` (default 'epoch'), checked."""
    unit = ocfg.get("schedule_unit") or "epoch"
    if unit not in SCHEDULE_UNITS:
        raise ValueError(f"optim.schedule_unit must be one of {SCHEDULE_UNITS}, got {unit!r}")
    return unit


def build_lr_scheduler(optimizer: torch.optim.Optimizer, milestones: Sequence[int] = (), gamma: float = 1.0,
                       warmup: int = 0):
    """The schedule of the module docstring on `optimizer` (its unit is how often the caller steps it).

    Without warm-up this is a plain `MultiStepLR` (the state dict of earlier checkpoints loads);
    with W > 1 a `ChainedScheduler` of a linear ramp (1/W -> 1 over W updates) and the milestones."""
    ms = sorted(int(m) for m in milestones)
    if any(m < 0 for m in ms):
        raise ValueError(f"milestones must be >= 0, got {list(milestones)}")
    warmup = int(warmup or 0)
    if warmup < 0:
        raise ValueError(f"warm-up length must be >= 0, got {warmup}")
    steps = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=ms, gamma=float(gamma))
    if warmup <= 1:
        return steps
    ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0,
                                             total_iters=warmup - 1)
    return torch.optim.lr_scheduler.ChainedScheduler([ramp, steps], optimizer=optimizer)
