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

import warnings
from collections.abc import Callable, Sequence

import torch

__all__ = ["SCHEDULE_UNITS", "schedule_unit", "build_lr_scheduler", "scheduler_steps", "group_settings",
           "restart_schedule"]

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


def scheduler_steps(state: dict) -> int:
    """How many times a scheduler was stepped, read from its ``state_dict()`` (a chain: its members')."""
    if "_schedulers" in state:
        return int(state["_schedulers"][0]["last_epoch"])
    return int(state["last_epoch"])


def group_settings(optimizer: torch.optim.Optimizer) -> list[dict]:
    """Each parameter group's hyper-parameters (lr = its base rate, before any schedule; weight decay,
    betas, ...), without the parameters: what `restart_schedule` puts back after a checkpoint's were loaded."""
    out = []
    for group in optimizer.param_groups:
        settings = {k: v for k, v in group.items() if k not in ("params", "initial_lr")}
        settings["lr"] = group.get("initial_lr", group["lr"])
        out.append(settings)
    return out


def restart_schedule(optimizer: torch.optim.Optimizer, settings: Sequence[dict],
                     make_scheduler: Callable[[torch.optim.Optimizer], object], steps: int):
    """A run resumed under changed optimiser settings (``resume=force`` with a new lr / weight decay /
    milestones / gamma / warm-up): every parameter group takes this config's hyper-parameters back
    (``settings``, from `group_settings` before the checkpoint's were loaded; its moments are kept),
    ``make_scheduler(optimizer)`` builds the new lr rule and is stepped ``steps`` times, so the next update
    uses lr(steps) of the NEW rule, as if the run had followed it from the start."""
    for group, hyper in zip(optimizer.param_groups, settings):
        group.update(hyper)
        group.pop("initial_lr", None)  # the new scheduler records its own base rate
    sched = make_scheduler(optimizer)
    with warnings.catch_warnings():  # no optimizer step between these: torch's order warning does not apply
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(int(steps)):
            sched.step()
    return sched
