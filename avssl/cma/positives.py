"""Positive-set discovery for Cross-Modal Agreement (CMA).

For every instance i, the k instances j != i with the highest agreement score

    consensus: min(cos_v(i, j), cos_a(i, j))     (reference)
    union:     max(cos_v(i, j), cos_a(i, j))
    video:     cos_v(i, j)
    audio:     cos_a(i, j)

computed from the (L2-normalised) video and audio memory banks.

Exact search runs over row chunks: a chunk of c queries needs two [c, N] score
matrices, so memory is bounded by ``max_chunk_bytes`` whatever N is; the N x N matrix
is never materialised. When torch.distributed is initialised each rank searches a
disjoint contiguous share of the rows and the shares are all-gathered (rank order),
so every rank ends with the identical [N, k] table.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from avssl.engine.distributed import all_gather_varlen, rank, world_size

__all__ = ["find_positives", "agreement_scores", "MODES", "auto_chunk_size", "positive_recall"]

MODES = ("consensus", "union", "video", "audio")


def _bank_tensor(bank) -> torch.Tensor:
    t = getattr(bank, "bank", bank)  # accept a MemoryBank or a plain [N, D] tensor
    if not isinstance(t, torch.Tensor) or t.ndim != 2:
        raise TypeError(f"expected a MemoryBank or an [N, D] tensor, got {type(bank).__name__}")
    return t


def agreement_scores(video_q: torch.Tensor, audio_q: torch.Tensor, video_bank: torch.Tensor,
                     audio_bank: torch.Tensor, mode: str) -> torch.Tensor:
    """Agreement scores [c, N] of query rows (video_q, audio_q: [c, D]) with every slot."""
    if mode == "video":
        return video_q @ video_bank.T
    if mode == "audio":
        return audio_q @ audio_bank.T
    scores = video_q @ video_bank.T
    other = audio_q @ audio_bank.T
    if mode == "consensus":
        return torch.minimum(scores, other, out=scores)
    if mode == "union":
        return torch.maximum(scores, other, out=scores)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def auto_chunk_size(num_items: int, mode: str, max_chunk_bytes: int, itemsize: int = 4) -> int:
    """Rows per chunk so that the chunk's score matrices fit in ``max_chunk_bytes``."""
    mats = 1 if mode in ("video", "audio") else 2
    # + the top-k workspace, which is small; one extra matrix covers the masking copy.
    per_row = (mats + 1) * num_items * itemsize
    return max(1, int(max_chunk_bytes // per_row))


@torch.no_grad()
def find_positives(video_bank, audio_bank, k: int = 32, mode: str = "consensus",
                   chunk_size: int | None = None, device: str | torch.device | None = None,
                   max_chunk_bytes: int = 256 * 2**20, approximate: bool = False,
                   projection_dim: int = 32, oversample: int = 8, seed: int = 0,
                   progress: bool = False) -> torch.LongTensor:
    """The k most agreeing other instances of every instance.

    Args:
        video_bank, audio_bank: MemoryBank or [N, D] tensors (normalised here).
        k: positives per instance (reference 32).
        mode: 'consensus' (reference) | 'union' | 'video' | 'audio'.
        chunk_size: query rows per matrix product; default from ``max_chunk_bytes``.
        device: where to compute ('cuda' for GPU); default the banks' device.
        max_chunk_bytes: memory budget of one chunk's score matrices.
        approximate: coarse search on random projections of both banks (dimension
            ``projection_dim``) to keep ``k * oversample`` candidates per row, then
            exact re-ranking of the candidates. Recall vs the exact search is
            measured in benchmarks/cma_topk.md (see ``positive_recall``).
        seed: seed of the random projection (identical on every rank).
        progress: show a tqdm bar over chunks.

    Returns:
        LongTensor [N, k] on CPU, each row sorted by decreasing score, never containing
        its own row id.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    v_all = _bank_tensor(video_bank)
    a_all = _bank_tensor(audio_bank)
    if v_all.shape != a_all.shape:
        raise ValueError(f"video and audio banks differ in shape: {tuple(v_all.shape)} vs "
                         f"{tuple(a_all.shape)}")
    n = v_all.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} instances, got {k}")
    dev = torch.device(device) if device is not None else v_all.device
    v_all = F.normalize(v_all.to(dev, torch.float32), dim=1)
    a_all = F.normalize(a_all.to(dev, torch.float32), dim=1)

    # This rank's contiguous share of the query rows.
    world, me = world_size(), rank()
    share = math.ceil(n / world)
    lo, hi = min(n, me * share), min(n, (me + 1) * share)

    if approximate:
        gen = torch.Generator().manual_seed(seed)
        proj = torch.randn(v_all.shape[1], projection_dim, generator=gen).to(dev) / math.sqrt(projection_dim)
        v_search, a_search = v_all @ proj, a_all @ proj
        k_search = min(n - 1, k * oversample)
    else:
        v_search, a_search, k_search = v_all, a_all, k

    if chunk_size is None:
        chunk_size = auto_chunk_size(n, mode, max_chunk_bytes)
    chunk_size = max(1, int(chunk_size))
    out = torch.empty((hi - lo, k), dtype=torch.long, device=dev)
    starts = range(lo, hi, chunk_size)
    for start in tqdm(starts, disable=not progress, desc=f"CMA top-{k} ({mode})", unit="chunk"):
        stop = min(hi, start + chunk_size)
        rows = torch.arange(start, stop, device=dev)
        scores = agreement_scores(v_search[start:stop], a_search[start:stop], v_search, a_search, mode)
        scores[torch.arange(stop - start, device=dev), rows] = -math.inf  # never itself
        top = torch.topk(scores, k_search, dim=1, sorted=True).indices
        if approximate:  # exact re-ranking of the candidates
            cv = (v_all[top] * v_all[start:stop].unsqueeze(1)).sum(2)
            ca = (a_all[top] * a_all[start:stop].unsqueeze(1)).sum(2)
            exact = {"consensus": torch.minimum(cv, ca), "union": torch.maximum(cv, ca),
                     "video": cv, "audio": ca}[mode]
            top = top.gather(1, torch.topk(exact, k, dim=1, sorted=True).indices)
        out[start - lo:stop - lo] = top
        del scores
    out = out.cpu()
    return all_gather_varlen(out)


def positive_recall(found: torch.Tensor, reference: torch.Tensor) -> float:
    """Share of the reference positives present in ``found`` (row-wise set overlap)."""
    if found.shape[0] != reference.shape[0]:
        raise ValueError("found and reference must have the same number of rows")
    hits = (found.unsqueeze(2) == reference.unsqueeze(1)).any(1).sum()
    return float(hits) / reference.numel()
