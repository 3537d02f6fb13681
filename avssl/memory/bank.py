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

from avssl.engine.distributed import all_gather_varlen

__all__ = ["MemoryBank", "MemoryBankMismatchError", "average_duplicates"]


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
    def _check_indices(self, indices: torch.Tensor) -> torch.Tensor:
        if indices.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {tuple(indices.shape)}")
        if indices.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"indices must be an integer tensor, got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_items):
            raise IndexError(f"indices out of range [0, {self.num_items}): "
                             f"min {int(indices.min())}, max {int(indices.max())}")
        return indices.long().to(self.bank.device)

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
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"embeddings must be [B, {self.dim}], got {tuple(embeddings.shape)}")
        if embeddings.shape[0] != indices.shape[0]:
            raise ValueError(f"{indices.shape[0]} indices for {embeddings.shape[0]} embeddings")
        indices = self._check_indices(indices)
        new = F.normalize(embeddings.detach().to(self.bank.device, self.bank.dtype), dim=1)
        all_ids = all_gather_varlen(indices)
        all_new = all_gather_varlen(new)
        if all_ids.numel() == 0:
            return
        uniq, mean_new = average_duplicates(all_ids, all_new)
        old = self.bank.index_select(0, uniq)
        updated = F.normalize(self.momentum * old + (1.0 - self.momentum) * mean_new, dim=1)
        self.bank.index_copy_(0, uniq, updated)  # ids are unique here: deterministic

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
        forbidden = indices.unsqueeze(1)
        if exclude is not None:
            if exclude.ndim != 2 or exclude.shape[0] != indices.shape[0]:
                raise ValueError(f"exclude must be [B, P] with B={indices.shape[0]}, "
                                 f"got {tuple(exclude.shape)}")
            exclude = exclude.long().to(dev)
            if exclude.numel() and (int(exclude.min()) < 0 or int(exclude.max()) >= self.num_items):
                raise IndexError(f"exclude ids out of range [0, {self.num_items})")
            forbidden = torch.cat([forbidden, exclude], 1)
        big = 2 * self.num_items + forbidden.shape[1]  # sentinel beyond any draw
        srt = torch.sort(forbidden, dim=1).values
        dup = torch.zeros_like(srt, dtype=torch.bool)
        dup[:, 1:] = srt[:, 1:] == srt[:, :-1]
        srt = torch.sort(srt.masked_fill(dup, big), dim=1).values
        num_forbidden = (~dup).sum(1)
        allowed = self.num_items - num_forbidden  # [B]
        if int(allowed.min()) < 1:
            raise ValueError("a row forbids every slot: nothing left to sample")
        u = torch.rand((indices.shape[0], k), generator=generator, dtype=torch.float64,
                       device=generator.device if generator is not None else dev).to(dev)
        r = (u * allowed.unsqueeze(1)).floor().long()
        r = torch.minimum(r, (allowed - 1).unsqueeze(1))  # guard u*allowed rounding to allowed
        ref = srt - torch.arange(srt.shape[1], device=dev).unsqueeze(0)
        ref = ref.masked_fill(srt >= big, big)
        shift = torch.searchsorted(ref.contiguous(), r.contiguous(), right=True)
        return r + shift
