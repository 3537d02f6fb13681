"""Memory bank: one L2-normalised slot per training video, momentum-updated, kept
identical on every rank, with uniform negative sampling that excludes given ids.

Identity of a slot is the manifest id of the video (see docs/ARCHITECTURE.md); the
bank stores the manifest fingerprint and refuses to load a bank made on another index.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avssl.utils.distributed import all_gather_varlen

__all__ = ["MemoryBank", "MemoryBankMismatchError", "average_duplicates", "update_banks"]


class MemoryBankMismatchError(ValueError):
    """A saved memory bank does not match this one (size, dim or dataset index)."""


def average_duplicates(indices: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Group rows of ``values`` [M, D] by ``indices`` [M] and average each group.

    Returns ``(unique_ids [U] ascending, means [U, D])``. Deterministic on CPU and GPU:
    rows are stably sorted by id and summed with a float64 prefix sum (differences of
    the cumulative sum at segment ends), so no atomics (unlike ``index_add_`` on CUDA)
    and the result depends only on the order of the input rows.
    """
    if indices.ndim != 1 or values.ndim != 2 or values.shape[0] != indices.shape[0]:
        raise ValueError(f"expected indices [M] and values [M, D], got {tuple(indices.shape)} "
                         f"and {tuple(values.shape)}")
    order = torch.sort(indices, stable=True).indices
    ids = indices[order]
    vals = values[order].to(torch.float64)
    uniq, counts = torch.unique_consecutive(ids, return_counts=True)
    ends = torch.cumsum(counts, 0) - 1
    csum = torch.cumsum(vals, 0)
    seg = csum[ends]
    seg = torch.cat([seg[:1], seg[1:] - seg[:-1]], 0)
    means = seg / counts.unsqueeze(1).to(torch.float64)
    return uniq, means.to(values.dtype)


def _segment_means(indices: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Like ``average_duplicates`` but with one output row per input row (the mean of its
    id's group, ids in sorted order, duplicates kept): no data-dependent output size, so no
    device sync. Same float64 prefix-sum arithmetic, hence the same means."""
    order = torch.sort(indices, stable=True).indices
    ids = indices[order]
    start = torch.searchsorted(ids, ids)  # first row of each row's group
    stop = torch.searchsorted(ids, ids, right=True)  # one past its last row
    vals = values[order].to(torch.float64)
    csum = torch.cat([vals.new_zeros(1, vals.shape[1]), torch.cumsum(vals, 0)], 0)
    means = (csum[stop] - csum[start]) / (stop - start).unsqueeze(1).to(torch.float64)
    return ids, means.to(values.dtype)


def update_banks(banks, indices: torch.Tensor, embeddings) -> None:
    """Momentum update of several banks over the same slot ids (e.g. the video and the audio
    bank of one batch) with one id check, one gather across ranks and one duplicate
    averaging for all of them. ``MemoryBank.update`` is the one-bank case."""
    first = banks[0]
    if any(b.num_items != first.num_items or b.bank.device != first.bank.device for b in banks):
        raise ValueError("banks updated together must have the same slots and device")
    for bank, emb in zip(banks, embeddings, strict=True):
        if emb.ndim != 2 or emb.shape[1] != bank.dim:
            raise ValueError(f"embeddings must be [B, {bank.dim}], got {tuple(emb.shape)}")
        if emb.shape[0] != indices.shape[0]:
            raise ValueError(f"{indices.shape[0]} indices for {emb.shape[0]} embeddings")
    indices = first._check_indices(indices)
    new = torch.cat([F.normalize(emb.detach().to(b.bank.device, b.bank.dtype), dim=1)
                     for b, emb in zip(banks, embeddings)], 1)
    all_ids = all_gather_varlen(indices)
    all_new = all_gather_varlen(new)
    if all_ids.numel() == 0:
        return
    ids, mean_new = _segment_means(all_ids, all_new)
    col = 0
    for bank in banks:
        part = mean_new[:, col:col + bank.dim]
        col += bank.dim
        old = bank.bank.index_select(0, ids)
        updated = F.normalize(bank.momentum * old + (1.0 - bank.momentum) * part, dim=1)
        # rows of one id carry bit-identical values, so whichever copy lands is the same:
        # deterministic without first reducing to unique ids (which needs a device sync)
        bank.bank.index_copy_(0, ids, updated)


class MemoryBank(nn.Module):
    """``num_items`` x ``dim`` bank of unit vectors.

    Args:
        num_items: number of slots (training videos); slot i belongs to manifest id i.
        dim: embedding dimension.
        momentum: m in ``slot <- normalize(m * slot + (1 - m) * new)`` (reference 0.5).
        index_fingerprint: ``Manifest.fingerprint()`` of the dataset index the slots key on.
        seed: seed of the random initial bank (identical on every rank by construction,
            so no broadcast is needed).

    Buffers/state: ``bank`` [N, D]; the fingerprint travels in the module's extra state.
    """

    def __init__(self, num_items: int, dim: int, momentum: float = 0.5,
                 index_fingerprint: str | None = None, seed: int = 0) -> None:
        super().__init__()
        if num_items < 2:
            raise ValueError(f"a memory bank needs at least 2 slots, got {num_items}")
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.num_items = int(num_items)
        self.dim = int(dim)
        self.momentum = float(momentum)
        self.index_fingerprint = index_fingerprint
        gen = torch.Generator().manual_seed(seed)
        init = F.normalize(torch.randn(num_items, dim, generator=gen), dim=1)
        self.register_buffer("bank", init)

    # ------------------------------------------------------------------ state
    def get_extra_state(self) -> dict[str, Any]:
        return {"index_fingerprint": self.index_fingerprint, "momentum": self.momentum}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        theirs = state.get("index_fingerprint")
        if self.index_fingerprint is not None and theirs != self.index_fingerprint:
            raise MemoryBankMismatchError(
                f"memory bank was built on dataset index {theirs!r} but this run uses index "
                f"{self.index_fingerprint!r}: the memory slots would not line up with the videos")
        self.index_fingerprint = theirs

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        key = prefix + "bank"
        if key in state_dict and tuple(state_dict[key].shape) != tuple(self.bank.shape):
            raise MemoryBankMismatchError(
                f"memory bank {key!r} has shape {tuple(state_dict[key].shape)} but this bank is "
                f"{tuple(self.bank.shape)} (num_items, dim): was it saved for another dataset?")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def extra_repr(self) -> str:
        return (f"num_items={self.num_items}, dim={self.dim}, momentum={self.momentum}, "
                f"index_fingerprint={self.index_fingerprint!r}")

    # ------------------------------------------------------------------ access
    def _check_range(self, ids: torch.Tensor, what: str) -> None:
        """Ids must lie in [0, num_items). Checked eagerly on CPU; on an accelerator with a
        device-side assert, so the training step has no host<->device sync point."""
        if not ids.numel():
            return
        if ids.device.type == "cpu":
            lo, hi = ids.aminmax()
            if int(lo) < 0 or int(hi) >= self.num_items:
                raise IndexError(f"{what} out of range [0, {self.num_items}): min {int(lo)}, max {int(hi)}")
        else:
            torch._assert_async(((ids >= 0) & (ids < self.num_items)).all(),
                                f"{what} out of range [0, {self.num_items})")

    def _check_indices(self, indices: torch.Tensor) -> torch.Tensor:
        if indices.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {tuple(indices.shape)}")
        if indices.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"indices must be an integer tensor, got {indices.dtype}")
        self._check_range(indices, "indices")
        return indices.long().to(self.bank.device, non_blocking=True)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """Rows of the bank for ``indices`` (any shape), shape ``indices.shape + (D,)``."""
        ids = indices.to(self.bank.device).long()
        # index_select on the flat ids is ~1.5x faster than advanced indexing on CPU
        return self.bank.index_select(0, ids.reshape(-1)).view(*ids.shape, self.dim)

    @torch.no_grad()
    def update(self, indices: torch.Tensor, embeddings: torch.Tensor) -> None:
        """Momentum update of the slots ``indices`` [B] with ``embeddings`` [B, D].

        The new embeddings are L2-normalised first. With torch.distributed initialised
        the (index, embedding) pairs of all ranks are gathered (batch sizes may differ)
        so every rank applies the identical update. Several rows with the same id (many
        clips of one video, padded samplers) are averaged before the momentum step:
        ``slot <- normalize(m * slot + (1 - m) * mean(new rows of that id))``.
        """
        update_banks([self], indices, [embeddings])

    # ------------------------------------------------------------------ negatives
    def sample_negatives(self, indices: torch.Tensor, k: int, generator: torch.Generator | None = None,
                         exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Draw ``k`` slot ids per row, uniformly (with replacement) over all slots except
        ``indices[b]`` and any id in ``exclude[b]`` ([B, P], duplicates allowed).

        Exact and vectorised: with F_b the sorted distinct forbidden ids of row b, draw
        r uniform in [0, N - |F_b|) and map it to the r-th allowed id,
        ``r + #{j : F_b[j] - j <= r}`` (a searchsorted over ``F_b[j] - j``).
        Returns LongTensor [B, k] on the bank's device.
        """
        indices = self._check_indices(indices)
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        dev = self.bank.device
        gen_dev = generator.device if generator is not None else dev
        if exclude is None:
            # one draw over the N - 1 other slots, shifted past the row's own id: exactly
            # uniform, no sort/search and no sync (the common AVID case)
            r = torch.randint(0, self.num_items - 1, (indices.shape[0], k), generator=generator,
                              device=gen_dev).to(dev, non_blocking=True)
            return r + (r >= indices.unsqueeze(1)).long()
        forbidden = indices.unsqueeze(1)
        if exclude is not None:
            if exclude.ndim != 2 or exclude.shape[0] != indices.shape[0]:
                raise ValueError(f"exclude must be [B, P] with B={indices.shape[0]}, "
                                 f"got {tuple(exclude.shape)}")
            self._check_range(exclude, "exclude ids")
            exclude = exclude.long().to(dev, non_blocking=True)
            forbidden = torch.cat([forbidden, exclude], 1)
        big = 2 * self.num_items + forbidden.shape[1]  # sentinel beyond any draw
        srt = torch.sort(forbidden, dim=1).values
        dup = torch.zeros_like(srt, dtype=torch.bool)
        dup[:, 1:] = srt[:, 1:] == srt[:, :-1]
        srt = torch.sort(srt.masked_fill(dup, big), dim=1).values
        num_forbidden = (~dup).sum(1)
        allowed = self.num_items - num_forbidden  # [B]
        # a row with fewer forbidden columns than N - 1 always keeps a slot: only then is
        # the (syncing) check on the values skipped
        if forbidden.shape[1] >= self.num_items and int(allowed.min()) < 1:
            raise ValueError("a row forbids every slot: nothing left to sample")
        u = torch.rand((indices.shape[0], k), generator=generator, dtype=torch.float64,
                       device=gen_dev).to(dev, non_blocking=True)
        r = (u * allowed.unsqueeze(1)).floor().long()
        r = torch.minimum(r, (allowed - 1).unsqueeze(1))  # guard u*allowed rounding to allowed
        ref = srt - torch.arange(srt.shape[1], device=dev).unsqueeze(0)
        ref = ref.masked_fill(srt >= big, big)
        shift = torch.searchsorted(ref.contiguous(), r.contiguous(), right=True)
        return r + shift
