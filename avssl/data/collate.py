"""Batching that survives bad files: failed items are replaced or dropped, always counted.

Two ways to batch items that may be None (a file that failed at read time):

* `collate_skip_bad` (evaluation, single-process tools): stack the good items, count the rest.
* `BatchFiller` (training): the dataset of a ``DataLoader(batch_size=None)`` whose sampler yields
  batch requests (`avssl.engine.samplers.BatchRequest`). A failed item is replaced by another
  item of the same rank's share (`fill_batch`), so every rank still gets a FULL batch of the
  requested size and ranks never disagree on batch sizes. The filling runs inside DataLoader
  workers (decoding replacements in parallel, prefetched) and depends only on the request, so
  it is identical for any worker count and in a resumed run.

Each failure is an `ItemFailure` (item, video id, path, reason, detail) that travels with the
batch, so a trainer can count failures across ranks and list the files in its run report; each
clip that was read but had damaged packets skipped (`Clip.decode_errors`, the item's
``decode_errors``) is an `ItemDamage` in the batch's ``damaged`` list, for the same account.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from torch.utils.data import Dataset, default_collate

log = logging.getLogger(__name__)

__all__ = ["collate_skip_bad", "dropped_in_process", "ItemFailure", "ItemDamage", "load_item", "item_video_id",
           "fill_batch", "BatchFiller", "keep_batch"]

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


# ============================================================================================
# replacing failed items (training)
# ============================================================================================


class ItemFailure(NamedTuple):
    """One item that could not be read: dataset `item`, manifest `video_id` (-1 unknown), file `path`,
    `reason` (the `MediaError.reason`: 'corrupt', 'missing', ...) and its `detail`."""

    item: int
    video_id: int
    path: str
    reason: str
    detail: str


class ItemDamage(NamedTuple):
    """A batch clip whose read skipped damaged packets: dataset `item`, manifest `video_id`, file `path`,
    `errors` (the item's ``decode_errors``: packets the decoder rejected + frames it concealed)."""

    item: int
    video_id: int
    path: str
    errors: int


def item_video_id(dataset, idx: int) -> int:
    """Manifest id of item `idx`'s video without reading it (`sample_plan` row -> `manifest.id`);
    the item number itself for datasets without a manifest."""
    plan = getattr(dataset, "sample_plan", None)
    manifest = getattr(dataset, "manifest", None)
    if plan is None or manifest is None:
        return int(idx)
    return int(manifest.id[plan(idx)[0]])


def _item_path(dataset, idx: int) -> str:
    try:
        row = dataset.sample_plan(idx)[0]
        return str(dataset._path(row)) if hasattr(dataset, "_path") else str(dataset.manifest.path(row))
    except Exception:  # a dataset without a manifest: the report still names the item
        return f"<item {idx}>"


def load_item(dataset, idx: int) -> tuple[Any, ItemFailure | None]:
    """``(dataset[idx], None)``, or ``(None, ItemFailure)`` when the dataset yields None for it.

    The reason comes from ``dataset.last_failure`` (``(path, reason, detail)`` of the failure the
    dataset just caught, set by `AVClipDataset`), else 'unreadable' (e.g. a video left out of a
    `DecodedClipDataset` when it was built; its reason was logged then)."""
    try:
        dataset.last_failure = None
    except AttributeError:  # a dataset with __slots__ or a read-only attribute: generic reason below
        pass
    item = dataset[idx]
    if item is not None:
        return item, None
    last = getattr(dataset, "last_failure", None)
    if last is not None:
        path, reason, detail = last
    else:
        path, reason, detail = _item_path(dataset, idx), "unreadable", "the dataset yielded no item"
    return None, ItemFailure(int(idx), item_video_id(dataset, idx), str(path), str(reason), str(detail))


def fill_batch(dataset, indices: Sequence[int], candidates: Callable[[], Iterable[int]], max_attempts: int,
               collate: Callable[[list], dict] = default_collate) -> dict:
    """Load `indices`; replace each failed item by the next readable candidate; collate if full.

    Contract (a pure function of the arguments, given the files):
      * every index is read once; the failed ones are ``failed`` (one `ItemFailure` per slot);
      * a failed slot takes the first candidate (in ``candidates()`` order, computed only if
        something failed) that is not an item of this batch, not of a video already in it (the
        failed ones' videos included), and not tried before for this batch: replacements never
        repeat a video id in the batch, so in-batch negatives keep their count and the memory bank
        sees each video once per rank;
      * at most ``max_attempts * len(failed)`` candidates are read in all; candidates that also
        fail are ``replacement_failures``; ``max_attempts = 0`` turns replacement off;
      * slots keep their order (a replacement sits where the failed item was).

    Returns a dict: the collated batch when every slot is filled (``complete`` True), else no
    tensors (``complete`` False: the caller skips the step), plus ``requested`` (len(indices)),
    ``failed``, ``replaced`` (slots filled by a candidate), ``replacement_failures`` and ``damaged``
    (an `ItemDamage` per filled slot whose item reports ``decode_errors`` > 0, in slot order).
    """
    slots: list = [None] * len(indices)
    taken = [int(i) for i in indices]  # the item behind each slot (a replacement's, once replaced)
    failed: list[ItemFailure] = []
    for s, idx in enumerate(indices):
        item, failure = load_item(dataset, idx)
        if item is None:
            failed.append(failure)
        slots[s] = item
    replaced, retry_failed = 0, []
    if failed and max_attempts > 0:
        seen_items = {int(i) for i in indices}
        seen_videos = {item_video_id(dataset, i) for i in indices}
        budget = max_attempts * len(failed)
        pool = iter(candidates())
        for s in range(len(slots)):
            while slots[s] is None and budget > 0:
                c = next(pool, None)
                if c is None:
                    budget = 0
                    break
                vid = item_video_id(dataset, c)
                if c in seen_items or vid in seen_videos:
                    continue
                seen_items.add(c)
                seen_videos.add(vid)
                budget -= 1
                item, failure = load_item(dataset, c)
                if item is None:
                    retry_failed.append(failure)
                else:
                    slots[s] = item
                    taken[s] = int(c)
                    replaced += 1
    complete = all(x is not None for x in slots)
    damaged = [ItemDamage(i, item_video_id(dataset, i), _item_path(dataset, i), int(x["decode_errors"]))
               for i, x in zip(taken, slots) if isinstance(x, dict) and x.get("decode_errors", 0)]
    if failed:
        log.warning("batch of %d: %d item(s) failed, %d replaced, %d replacement(s) also failed%s", len(slots),
                    len(failed), replaced, len(retry_failed), "" if complete else " -> batch incomplete")
    batch = collate(slots) if complete else {}
    batch.update(complete=complete, requested=len(slots), failed=failed, replaced=replaced,
                 replacement_failures=retry_failed, damaged=damaged)
    return batch


class BatchFiller(Dataset):
    """``filler[request]`` -> `fill_batch` of the request's indices from `dataset`, its candidates from
    ``request.candidates()`` (see `avssl.engine.samplers.BatchRequest`), at most `max_attempts`
    replacement reads per failed item. Serve it with ``DataLoader(filler, batch_size=None,
    sampler=BatchRequestSampler(...), collate_fn=keep_batch)``."""

    def __init__(self, dataset, max_attempts: int = 8):
        if int(max_attempts) < 0:
            raise ValueError(f"max_attempts must be >= 0, got {max_attempts}")
        self.dataset = dataset
        self.max_attempts = int(max_attempts)

    def __getitem__(self, request) -> dict:
        return fill_batch(self.dataset, request.indices, request.candidates, self.max_attempts)


def keep_batch(batch):
    """Identity collate for ``DataLoader(batch_size=None)`` over `BatchFiller` (batches come collated;
    a module-level function so spawned workers can unpickle it)."""
    return batch
