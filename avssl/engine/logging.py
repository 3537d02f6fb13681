"""Run logging: a readable log file, TensorBoard scalars and step-time accounting (rank 0 writes)."""

from __future__ import annotations

import logging
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch


def setup_logger(run_dir: str | Path | None, rank: int = 0, name: str = "avssl.train") -> logging.Logger:
    """Logger writing ``<run_dir>/train.log`` and stderr on rank 0; silent (warnings only) elsewhere."""
    logger = logging.getLogger(f"{name}.{id(run_dir)}.{rank}")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    fmt = logging.Formatter("%(asctime)s | %(levelname)s | %(message)s", "%Y-%m-%d %H:%M:%S")
    if rank == 0:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(fmt)
        logger.addHandler(console)
        if run_dir is not None:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(Path(run_dir) / "train.log")
            fh.setFormatter(fmt)
            logger.addHandler(fh)
    return logger


def make_tb_writer(run_dir: str | Path | None, rank: int = 0, enabled: bool = True):
    """A `SummaryWriter` under ``<run_dir>/tensorboard`` on rank 0, else None."""
    if not enabled or rank != 0 or run_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(Path(run_dir) / "tensorboard"))


class StepTimer:
    """Wall time per phase of a training step (data wait, forward, loss + memory, backward).

    On CUDA the device is synchronised at phase ends when `cuda_sync` is set, so the split is
    the real one rather than kernel-launch time.
    """

    PHASES = ("data", "transform", "forward", "loss_memory", "backward")

    def __init__(self, cuda_sync: bool = False, warmup: int = 0):
        self.cuda_sync = cuda_sync and torch.cuda.is_available()
        self.warmup = warmup  # first steps left out of the totals (cuDNN autotuning, lazy init)
        self._seen = 0
        self.totals: dict[str, float] = defaultdict(float)
        self.last: dict[str, float] = {}
        self.steps = 0

    @contextmanager
    def phase(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda_sync:
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            self.last[name] = dt

    def end_step(self) -> dict[str, float]:
        self._seen += 1
        last, self.last = self.last, {}
        if self._seen > self.warmup:
            self.steps += 1
            for name, dt in last.items():
                self.totals[name] += dt
        return last

    def summary(self) -> dict[str, float]:
        """Mean seconds per step for each phase, plus 'step' (their sum) and shares."""
        n = max(self.steps, 1)
        out = {k: self.totals.get(k, 0.0) / n for k in self.PHASES}
        out["step"] = sum(out.values())
        for k in self.PHASES:
            out[f"share_{k}"] = out[k] / out["step"] if out["step"] > 0 else 0.0
        return out
