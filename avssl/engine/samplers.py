"""Samplers: a resumable, distributed-aware training sampler and a non-padding eval sampler.

Why not `torch.utils.data.DistributedSampler`: it cannot skip the batches a killed run already
consumed (resume would replay them), and for evaluation it pads by duplicating samples, which
biases metrics computed over the union of ranks.

`BatchRequestSampler` groups a training sampler's indices into `BatchRequest`s: the batch plus
where its replacements come from (`ResumableDistributedSampler.replacement_order`), so a batch
with unreadable items can be refilled inside a DataLoader worker from the same rank's share,
deterministically (`avssl.data.collate.BatchFiller`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Sampler


class ResumableDistributedSampler(Sampler[int]):
    """Training order: a fresh permutation per epoch from ``(seed, epoch)``, split across ranks.

    Every rank draws the same permutation and takes the strided share ``perm[rank::world_size]``,
    so shares are disjoint. Lengths are equalised (ranks must run the same number of steps under
    DDP):

    - ``drop_last=True`` (training default): the permutation is truncated to a multiple of
      ``world_size * batch_size`` so that every rank sees the same number of FULL batches; the
      dropped tail changes every epoch.
    - ``drop_last=False``: the permutation is padded by repeating its first elements until its
      length is a multiple of ``world_size`` (so at most ``world_size - 1`` samples are seen twice
      in that epoch).

    Resuming: ``set_epoch(epoch, batches_consumed)`` skips the first ``batches_consumed *
    batch_size`` indices of this rank's share, so a resumed run continues with exactly the
    batches the killed run would have drawn next.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
    ):
        if num_items <= 0:
            raise ValueError(f"num_items must be positive, got {num_items}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.num_items = num_items
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.epoch = 0
        self.batches_consumed = 0
        if drop_last and self.per_rank_total < batch_size:
            raise ValueError(
                f"{num_items} items cannot fill one batch of {batch_size} on each of {num_replicas} ranks"
            )

    # ---- sizes
    @property
    def per_rank_total(self) -> int:
        """Samples per rank in a full epoch (before skipping)."""
        if self.drop_last:
            return (self.num_items // (self.num_replicas * self.batch_size)) * self.batch_size
        return math.ceil(self.num_items / self.num_replicas)

    @property
    def batches_per_epoch(self) -> int:
        if self.drop_last:
            return self.per_rank_total // self.batch_size
        return math.ceil(self.per_rank_total / self.batch_size)

    # ---- position
    def set_epoch(self, epoch: int, batches_consumed: int = 0) -> None:
        if not 0 <= batches_consumed <= self.batches_per_epoch:
            raise ValueError(f"batches_consumed {batches_consumed} outside [0, {self.batches_per_epoch}]")
        self.epoch = epoch
        self.batches_consumed = batches_consumed

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batches_consumed": self.batches_consumed, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"sampler seed {state['seed']} in checkpoint != configured seed {self.seed}")
        self.set_epoch(state["epoch"], state["batches_consumed"])

    # ---- iteration
    def _permutation(self, epoch: int) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            return torch.randperm(self.num_items, generator=g)
        return torch.arange(self.num_items)

    def epoch_order(self) -> torch.Tensor:
        """The full (all ranks) order for the current epoch, after truncation/padding."""
        perm = self._permutation(self.epoch)
        total = self.per_rank_total * self.num_replicas
        if total <= perm.numel():
            return perm[:total]
        reps = math.ceil(total / perm.numel())
        return perm.repeat(reps)[:total]

    def __iter__(self) -> Iterator[int]:
        share = self.epoch_order()[self.rank :: self.num_replicas]
        start = self.batches_consumed * self.batch_size
        return iter(share[start:].tolist())

    def __len__(self) -> int:
        return max(self.per_rank_total - self.batches_consumed * self.batch_size, 0)

    def replacement_order(self, position: int, epoch: int | None = None) -> list[int]:
        """Candidates to replace unreadable items of batch `position` of `epoch` (default: the current).

        This rank's whole share of the epoch's permutation, ``perm[rank::world_size]`` BEFORE
        truncation or padding (so the items the truncated tail leaves out this epoch are candidates
        too), shuffled by ``np.random.default_rng([seed, epoch, position, rank])``. A pure function of
        those four numbers: a resumed run, any worker count and any worker draw the same candidates.
        Shares of different ranks stay disjoint, so no item is drawn by two ranks in one step.
        """
        perm = self._permutation(self.epoch if epoch is None else epoch)
        share = perm[self.rank :: self.num_replicas].numpy()
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, position, self.rank])
        return share[rng.permutation(len(share))].tolist()


@dataclass(frozen=True)
class BatchRequest:
    """One training batch to load: `indices` (dataset items), its number `position` in `epoch`, and the
    sampler that knows the rank's share (pickles as a few scalars, so a worker can recompute it)."""

    indices: tuple[int, ...]
    position: int
    epoch: int
    sampler: ResumableDistributedSampler

    def candidates(self) -> list[int]:
        """Replacement candidates, best first (`ResumableDistributedSampler.replacement_order`)."""
        return self.sampler.replacement_order(self.position, self.epoch)


class BatchRequestSampler(Sampler[BatchRequest]):
    """Yields the `sampler`'s indices grouped into `BatchRequest`s of ``sampler.batch_size``, from
    its current position (``batches_consumed``) to the end of the epoch; a last incomplete batch is
    kept unless the sampler has ``drop_last`` (shares are equal, so every rank yields the same number
    of requests of the same sizes). Use with ``DataLoader(..., batch_size=None)``: the dataset gets
    whole requests (`avssl.data.collate.BatchFiller`)."""

    def __init__(self, sampler: ResumableDistributedSampler):
        self.sampler = sampler

    def __iter__(self) -> Iterator[BatchRequest]:
        s = self.sampler
        it = iter(s)
        position = s.batches_consumed
        while True:
            chunk = tuple(itertools.islice(it, s.batch_size))
            if not chunk or (s.drop_last and len(chunk) < s.batch_size):
                return
            yield BatchRequest(chunk, position, s.epoch, s)
            position += 1

    def __len__(self) -> int:
        return max(self.sampler.batches_per_epoch - self.sampler.batches_consumed, 0)


class EvalShardSampler(Sampler[int]):
    """Deterministic eval order with NO padding: rank r gets ``range(r, N, world_size)``.

    Ranks may get shares differing by one sample. Gather results with variable-size collectives
    (e.g. `torch.distributed.all_gather_object`) keyed by the returned indices; every item is then
    counted exactly once across ranks.
    """

    def __init__(self, num_items: int, *, num_replicas: int = 1, rank: int = 0):
        if num_items < 0:
            raise ValueError(f"num_items must be >= 0, got {num_items}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.num_items = num_items
        self.num_replicas = num_replicas
        self.rank = rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_items, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_items, self.num_replicas))
