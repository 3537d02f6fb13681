"""Batching that survives bad files: failed items (None) are dropped and counted, never silent."""

from __future__ import annotations

import logging

from torch.utils.data import default_collate

log = logging.getLogger(__name__)

__all__ = ["collate_skip_bad", "dropped_in_process"]

_dropped = 0  # items dropped by collate calls in this process (workers have their own)


def dropped_in_process() -> int:
    """Items dropped so far by `collate_skip_bad` in this process (main process only when num_workers=0)."""
    return _dropped


def collate_skip_bad(items: list):
    """Stack the non-None items with `default_collate`; add `"dropped"`: how many were None.

    Returns None when every item of the batch failed. Because collate runs inside DataLoader
    workers, the count travels with the batch: a trainer sums `batch["dropped"]`, and counts
    `len(batch_items)` for a None batch (its batch size).
    """
    global _dropped
    good = [x for x in items if x is not None]
    n_bad = len(items) - len(good)
    _dropped += n_bad
    if n_bad:
        log.warning("collate_skip_bad: dropped %d of %d items", n_bad, len(items))
    if not good:
        return None
    batch = default_collate(good)
    batch["dropped"] = n_bad
    return batch
