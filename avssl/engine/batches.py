"""Training batches that keep every rank in step whatever the data, and the run's data account.

The failure this prevents: under DDP every optimizer step is a collective (gradient all-reduce,
memory-bank gather, in-batch gathers), so a rank that skips a step, or brings a smaller batch,
leaves the others waiting forever or gathering mismatched shapes. The policy:

1. Each rank loads FULL batches: a failed item is replaced in the DataLoader worker by another
   item of the same rank's share, drawn from ``(seed, epoch, step, rank)``
   (`avssl.data.collate.fill_batch`, `ResumableDistributedSampler.replacement_order`), a bounded
   number of reads per failed item, never repeating a video id in the batch.
2. `agree_on_step`: one small all_reduce per step (host integers, on a gloo group even under NCCL)
   sums each rank's "my batch is incomplete" flag with its counts. If any rank could not fill its
   batch, ALL ranks skip that step, so ranks always step together, with equal batch sizes, and the
   step counter advances identically on every rank.

Duplicates: a replacement never repeats a video id within a rank's batch. Across ranks one video
can still appear twice in a global step (several clips per video); the memory bank averages the
rows of one id before its update (`avssl.memory.bank.update_banks`: every row of an id gets the
bit-identical mean, so ``index_copy_`` with repeated ids stays deterministic) and the in-batch
losses mask rows of the same id out of the negatives.

Why replace rather than shrink: an equal batch on every rank is what `all_gather_with_grad` and the
in-batch losses assume, and a full batch keeps the effective batch size (and the number of in-batch
negatives) that the recipe asks for. Why the same rank's share: shares stay disjoint (no item twice
in one global step) and the draw needs no communication. Why skip-all over anything cleverer:
a step missing on one rank must be missing on all; it is rare (a rank's share must run out of
readable items within the attempt budget) and it is counted.

The account (`DataCounts`, summed over ranks, identical on every rank):
``requested = used + dropped``; ``failed`` slots are either ``replaced`` (and then used) or lie in
skipped steps (and then dropped, together with the good clips of those steps); ``damaged`` of the
used clips were read with damaged packets skipped (``decode_errors`` packets in all).
`FailureLog` keeps the files behind the failures (path, reason, count) and behind the damaged clips,
bounded, merged over ranks and written by rank 0 to ``data_failures.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from avssl.data.collate import BatchFiller, ItemFailure, keep_batch
from avssl.utils import distributed as du
from avssl.engine.samplers import BatchRequestSampler, ResumableDistributedSampler

__all__ = ["DataCounts", "FailureLog", "StepVerdict", "agree_on_step", "training_loader", "write_failure_report",
           "DEFAULT_REPLACE_ATTEMPTS"]

DEFAULT_REPLACE_ATTEMPTS = 8  # replacement reads per failed item (config: data.replace_attempts)


@dataclass
class DataCounts:
    """Clips of a run, summed over ranks. ``requested = used + dropped`` always.

    requested: slots the samplers asked for. failed: slots whose sampled item could not be read.
    replaced: failed slots filled by another item of the rank's share (these clips are used).
    replacement_failures: replacement candidates that could not be read either.
    used: clips that went into optimizer steps. dropped: clips of skipped steps (the unfilled slots
    and the good clips that had to be left out with them). skipped_steps: steps every rank skipped.
    damaged: used clips whose read skipped damaged packets (`Clip.decode_errors` > 0; the decoder
    concealed or left out what it could not decode); decode_errors: those packets, summed.
    """

    requested: int = 0
    used: int = 0
    failed: int = 0
    replaced: int = 0
    replacement_failures: int = 0
    dropped: int = 0
    skipped_steps: int = 0
    damaged: int = 0
    decode_errors: int = 0

    def add(self, other: "DataCounts") -> "DataCounts":
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)
        return self

    def as_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        if self.requested != self.used + self.dropped:
            raise AssertionError(f"data account does not add up: {self.as_dict()}")


@dataclass
class StepVerdict:
    take: bool  # every rank has a full batch: run the step
    counts: DataCounts  # this step's clips, summed over ranks


def agree_on_step(batch: dict) -> StepVerdict:
    """Collective (one all_reduce of 7 integers): do all ranks have a full batch, and this step's counts.

    `batch` is a `fill_batch` result. Every rank must call this once per step, in the same order.
    Damaged clips count only when the step is taken (they are then used)."""
    damaged = batch.get("damaged", ())
    incomplete, requested, failed, replaced, retry, n_damaged, errors = du.all_reduce_sum_ints(
        [not batch["complete"], batch["requested"], len(batch["failed"]), batch["replaced"],
         len(batch["replacement_failures"]), len(damaged), sum(int(d[3]) for d in damaged)])
    take = incomplete == 0
    counts = DataCounts(requested=requested, used=requested if take else 0, failed=failed, replaced=replaced,
                        replacement_failures=retry, dropped=0 if take else requested, skipped_steps=0 if take else 1,
                        damaged=n_damaged if take else 0, decode_errors=errors if take else 0)
    return StepVerdict(take, counts)


def training_loader(dataset, sampler: ResumableDistributedSampler, *, max_attempts: int = DEFAULT_REPLACE_ATTEMPTS,
                    num_workers: int = 0, pin_memory: bool = False, generator: torch.Generator | None = None,
                    ) -> DataLoader:
    """A DataLoader of full batches from the sampler's current position: `BatchRequestSampler` requests,
    filled by `BatchFiller` (in the workers), so each element is a `fill_batch` dict."""
    return DataLoader(BatchFiller(dataset, max_attempts), batch_size=None, sampler=BatchRequestSampler(sampler),
                      num_workers=num_workers, collate_fn=keep_batch, pin_memory=pin_memory,
                      persistent_workers=False, generator=generator)


class FailureLog:
    """Files behind the failed reads: ``{path: {"video_id", "reason", "detail", "failures"}}``, at most
    `max_files` paths (further files are only counted in ``unlisted_failures``: the report stays small
    on a collection that is mostly broken); and files whose used clips had damaged packets skipped:
    ``damaged = {path: {"video_id", "clips", "decode_errors"}}`` (same bound). Mergeable across ranks
    and checkpointable (plain data)."""

    def __init__(self, max_files: int = 1000):
        self.max_files = int(max_files)
        self.files: dict[str, dict] = {}
        self.unlisted_failures = 0
        self.damaged: dict[str, dict] = {}

    def add_damaged(self, damaged) -> None:
        """Record `avssl.data.collate.ItemDamage` entries (clips that were used)."""
        for d in damaged:
            item, video_id, path, errors = d
            rec = self.damaged.get(path)
            if rec is None:
                if len(self.damaged) >= self.max_files:
                    continue  # counted in DataCounts.damaged all the same
                rec = self.damaged[path] = {"video_id": int(video_id), "clips": 0, "decode_errors": 0}
            rec["clips"] += 1
            rec["decode_errors"] += int(errors)

    def add(self, failures) -> None:
        for f in failures:
            f = ItemFailure(*f)
            rec = self.files.get(f.path)
            if rec is not None:
                rec["failures"] += 1
            elif len(self.files) < self.max_files:
                self.files[f.path] = {"video_id": int(f.video_id), "reason": f.reason, "detail": f.detail[:300],
                                      "failures": 1}
            else:
                self.unlisted_failures += 1

    def merge(self, other: "FailureLog") -> "FailureLog":
        for path, rec in other.files.items():
            mine = self.files.get(path)
            if mine is not None:
                mine["failures"] += rec["failures"]
            elif len(self.files) < self.max_files:
                self.files[path] = dict(rec)
            else:
                self.unlisted_failures += rec["failures"]
        self.unlisted_failures += other.unlisted_failures
        for path, rec in other.damaged.items():
            mine = self.damaged.get(path)
            if mine is not None:
                mine["clips"] += rec["clips"]
                mine["decode_errors"] += rec["decode_errors"]
            elif len(self.damaged) < self.max_files:
                self.damaged[path] = dict(rec)
        return self

    def state_dict(self) -> dict:
        return {"files": {p: dict(r) for p, r in self.files.items()}, "unlisted_failures": self.unlisted_failures,
                "damaged": {p: dict(r) for p, r in self.damaged.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.files = {p: dict(r) for p, r in state.get("files", {}).items()}
        self.unlisted_failures = int(state.get("unlisted_failures", 0))
        self.damaged = {p: dict(r) for p, r in state.get("damaged", {}).items()}  # older checkpoints: none

    def gathered(self) -> "FailureLog":
        """Collective: every rank's log merged (in rank order) into a new log (this one without a group)."""
        merged = FailureLog(self.max_files)
        for state in du.all_gather_objects(self.state_dict()):
            part = FailureLog(self.max_files)
            part.load_state_dict(state)
            merged.merge(part)
        return merged


def write_failure_report(path: str | os.PathLike, log: FailureLog, counts: DataCounts | dict | None = None,
                         extra: dict | None = None) -> Path:
    """Write ``{"counts", "files": [{"path", "video_id", "reason", "detail", "failures"}], "unlisted_failures",
    "damaged_files": [{"path", "video_id", "clips", "decode_errors"}]}`` atomically (files sorted by path)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = counts.as_dict() if isinstance(counts, DataCounts) else counts
    doc = {"counts": counts, **(extra or {}),
           "files": [{"path": p, **r} for p, r in sorted(log.files.items())],
           "unlisted_failures": log.unlisted_failures,
           "damaged_files": [{"path": p, **r} for p, r in sorted(log.damaged.items())]}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)
    return path
