"""Exact nearest-neighbour search and cross-modal retrieval metrics, chunked.

Scores are dot products (cosine similarity when rows are L2-normalised, which is how
extraction stores the projection space; pass ``normalize=True`` otherwise). Nothing here
ever holds a ``[num_queries, num_items]`` matrix: queries and the collection are walked in
``query_chunk x chunk`` blocks, so memory stays bounded for collections of 10^6 items on
CPU, and each block is moved to ``device`` (a GPU when available) on its own.

Tie handling (stated once, used everywhere):

* ``nearest``: among equal scores the lower collection index comes first, so results do not
  depend on the chunk size.
* ranks: a query's rank is ``1 + g`` under ``ties="optimistic"``, ``1 + g + t`` under
  ``"pessimistic"`` (the default) and the expectation under a uniformly random order of the
  tied items under ``"mean"``, where ``g`` counts non-positive items that score strictly
  higher than the query's best positive and ``t`` those that score exactly the same.
  Pessimistic is the default so that a collapsed model (all embeddings equal) scores
  R@1 = 0 rather than 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

TIES = ("pessimistic", "optimistic", "mean")


def _check_pair(query: torch.Tensor, collection: torch.Tensor) -> None:
    if query.ndim != 2 or collection.ndim != 2:
        raise ValueError(f"expected 2-D [N, D] embeddings, got query {tuple(query.shape)}, "
                         f"collection {tuple(collection.shape)}")
    if query.shape[1] != collection.shape[1]:
        raise ValueError(f"embedding sizes differ: query D={query.shape[1]}, collection D={collection.shape[1]}")
    if collection.shape[0] == 0:
        raise ValueError("empty collection")


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(x)


def _block(x: torch.Tensor, lo: int, hi: int, device, normalize: bool) -> torch.Tensor:
    # float32 per block: shards may be float16, and half matmuls on CPU are slow and lossy.
    b = x[lo:hi].to(device=device, dtype=torch.float32, non_blocking=True)
    return F.normalize(b, dim=1) if normalize else b


def _default_device(device):
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _chunk_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of each row, ties broken towards the lower column (exactly, not by luck)."""
    kk = min(k + 1, scores.shape[1])
    vals, idx = torch.topk(scores, kk, dim=1)
    if kk > k:
        # the (k+1)-th value equal to the k-th: topk may have kept any of the tied columns; redo those rows.
        crowded = vals[:, k] == vals[:, k - 1]
        vals, idx = vals[:, :k], idx[:, :k]
        if crowded.any():
            rows = crowded.nonzero().squeeze(1)
            v, i = torch.sort(scores[rows], dim=1, descending=True, stable=True)
            vals[rows], idx[rows] = v[:, :k], i[:, :k]
    # topk's order among equal values is unspecified; make it index-ascending.
    order = torch.sort(idx, dim=1).indices
    vals, idx = vals.gather(1, order), idx.gather(1, order)
    v, o = torch.sort(vals, dim=1, descending=True, stable=True)
    return v, idx.gather(1, o)


@torch.no_grad()
def nearest(
    query_emb,
    collection_emb,
    k: int = 10,
    chunk: int = 65536,
    *,
    query_chunk: int = 1024,
    normalize: bool = False,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` collection items for each query: ``(scores [Q, k], indices [Q, k])``.

    Rows are sorted by decreasing score, equal scores by increasing index. ``k`` is capped
    at the collection size. Results are returned on the CPU.
    """
    query_emb, collection_emb = _as_tensor(query_emb), _as_tensor(collection_emb)
    if query_emb.ndim == 1:
        s, i = nearest(query_emb[None], collection_emb, k, chunk, query_chunk=query_chunk, normalize=normalize,
                       device=device)
        return s[0], i[0]
    _check_pair(query_emb, collection_emb)
    if k < 1 or chunk < 1 or query_chunk < 1:
        raise ValueError("k, chunk and query_chunk must be >= 1")
    device = _default_device(device)
    n = collection_emb.shape[0]
    k = min(k, n)
    out_s, out_i = [], []
    for q0 in range(0, query_emb.shape[0], query_chunk):
        q = _block(query_emb, q0, q0 + query_chunk, device, normalize)
        best_s = best_i = None
        for c0 in range(0, n, chunk):
            c = _block(collection_emb, c0, c0 + chunk, device, normalize)
            s, i = _chunk_topk(q @ c.T, min(k, c.shape[0]))
            i = i + c0
            best_s, best_i = merge_topk(best_s, best_i, s, i, k)
        out_s.append(best_s.cpu())
        out_i.append(best_i.cpu())
    return torch.cat(out_s), torch.cat(out_i)


@dataclass
class RankCounts:
    """Per query: ``greater`` non-positives scoring above its best positive, ``tied`` equal to it."""

    greater: torch.Tensor  # int64 [Q]
    tied: torch.Tensor  # int64 [Q]

    def ranks(self, ties: str = "pessimistic") -> torch.Tensor:
        """1-based rank of the best positive (float64 [Q]; integral unless ``ties='mean'``)."""
        if ties not in TIES:
            raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
        g, t = self.greater.double(), self.tied.double()
        if ties == "optimistic":
            return g + 1
        if ties == "pessimistic":
            return g + t + 1
        return g + 1 + t / 2

    def recall_at(self, k: int, ties: str = "pessimistic") -> float:
        """Fraction of queries whose best positive is within the top ``k``."""
        if ties == "mean":
            # P(rank <= k) when the positive lands uniformly among its t+1 tied places.
            g, t = self.greater.double(), self.tied.double()
            return ((k - g) / (t + 1)).clamp(0, 1).mean().item()
        return (self.ranks(ties) <= k).double().mean().item()


def _positive_mask(q_ids, c_ids, positives, q0, q1, c0, c1, device):
    if positives is not None:
        p = positives[q0:q1].to(device)
        cols = torch.arange(c0, c1, device=device)
        return p[:, None] == cols[None, :]
    return q_ids[q0:q1].to(device)[:, None] == c_ids[c0:c1].to(device)[None, :]


@torch.no_grad()
def positive_rank_counts(
    query_emb,
    collection_emb,
    positives=None,
    *,
    query_ids=None,
    collection_ids=None,
    chunk: int = 65536,
    query_chunk: int = 1024,
    normalize: bool = False,
    device=None,
) -> RankCounts:
    """Count, per query, the non-positive items above / level with its best positive.

    Positives are either ``positives`` (int [Q]: one collection row per query; default
    ``arange(Q)``, i.e. row ``i`` of both sets is the same clip) or every collection row whose
    ``collection_ids`` equals the query's ``query_ids`` (e.g. all clips of the same video).

    Two passes over the same blocks: the first reads each query's best positive score out of
    the block matmul, the second counts against it. Reading the positive from the same
    computation (not a separate dot product) keeps ties exact despite float rounding. The
    first pass only visits blocks that hold a positive.
    """
    query_emb, collection_emb = _as_tensor(query_emb), _as_tensor(collection_emb)
    _check_pair(query_emb, collection_emb)
    nq, n = query_emb.shape[0], collection_emb.shape[0]
    if (query_ids is None) != (collection_ids is None):
        raise ValueError("give both query_ids and collection_ids, or neither")
    if query_ids is not None and positives is not None:
        raise ValueError("give positives or ids, not both")
    if query_ids is None:
        positives = torch.arange(nq) if positives is None else _as_tensor(positives).long()
        if positives.shape != (nq,):
            raise ValueError(f"positives must be [Q]={nq}, got {tuple(positives.shape)}")
        if nq and (positives.min() < 0 or positives.max() >= n):
            raise ValueError(f"positive index out of range [0, {n})")
    else:
        query_ids, collection_ids = _as_tensor(query_ids).long(), _as_tensor(collection_ids).long()
        if query_ids.shape != (nq,) or collection_ids.shape != (n,):
            raise ValueError("ids must be 1-D and match the number of rows")
        missing = ~torch.isin(query_ids, collection_ids)
        if missing.any():
            raise ValueError(f"{int(missing.sum())} queries have no positive in the collection "
                             f"(e.g. id {int(query_ids[missing][0])})")
    device = _default_device(device)
    greater = torch.zeros(nq, dtype=torch.long)
    tied = torch.zeros(nq, dtype=torch.long)
    for q0 in range(0, nq, query_chunk):
        q1 = min(q0 + query_chunk, nq)
        q = _block(query_emb, q0, q1, device, normalize)
        # blocks holding any positive of this query block
        if positives is not None:
            pos_rows = positives[q0:q1]
        else:
            pos_rows = torch.isin(collection_ids, query_ids[q0:q1]).nonzero().squeeze(1)
        pos_blocks = torch.unique(pos_rows // chunk).tolist()
        best = torch.full((q1 - q0,), float("-inf"), device=device)
        for b in pos_blocks:
            c0, c1 = b * chunk, min(b * chunk + chunk, n)
            s = q @ _block(collection_emb, c0, c1, device, normalize).T
            m = _positive_mask(query_ids, collection_ids, positives, q0, q1, c0, c1, device)
            best = torch.maximum(best, s.masked_fill(~m, float("-inf")).amax(dim=1))
        g = torch.zeros(q1 - q0, dtype=torch.long, device=device)
        t = torch.zeros_like(g)
        for c0 in range(0, n, chunk):
            c1 = min(c0 + chunk, n)
            s = q @ _block(collection_emb, c0, c1, device, normalize).T
            m = _positive_mask(query_ids, collection_ids, positives, q0, q1, c0, c1, device)
            g += ((s > best[:, None]) & ~m).sum(1)
            t += ((s == best[:, None]) & ~m).sum(1)
        greater[q0:q1], tied[q0:q1] = g.cpu(), t.cpu()
    return RankCounts(greater, tied)


def rank_metrics(counts: RankCounts, ks=(1, 5, 10), ties: str = "pessimistic") -> dict[str, float]:
    """``{"R@k": recall (0-1), "median_rank", "mean_rank", "num_queries"}``; ranks are 1-based."""
    r = counts.ranks(ties)
    out = {f"R@{k}": counts.recall_at(k, ties) for k in ks}
    out["median_rank"] = float(r.median().item()) if len(r) else float("nan")  # lower median
    out["mean_rank"] = float(r.mean().item()) if len(r) else float("nan")
    out["num_queries"] = int(len(r))
    return out


def cross_modal_retrieval(
    video_emb,
    audio_emb,
    ids=None,
    *,
    ks=(1, 5, 10),
    ties: str = "pessimistic",
    chunk: int = 65536,
    query_chunk: int = 1024,
    normalize: bool = False,
    device=None,
) -> dict[str, dict[str, float]]:
    """Audio->video and video->audio retrieval between paired rows of one collection.

    Row ``i`` of ``video_emb`` and of ``audio_emb`` come from the same clip. With ``ids``
    (e.g. video ids of per-clip rows) a retrieved row counts as correct when it shares the
    query's id; otherwise only the paired row does. Returns ``{"a2v": metrics, "v2a": metrics}``
    (see :func:`rank_metrics`).
    """
    video_emb, audio_emb = _as_tensor(video_emb), _as_tensor(audio_emb)
    if video_emb.shape[0] != audio_emb.shape[0]:
        raise ValueError(f"paired rows needed: {video_emb.shape[0]} video vs {audio_emb.shape[0]} audio")
    kw = dict(chunk=chunk, query_chunk=query_chunk, normalize=normalize, device=device)
    if ids is not None:
        kw.update(query_ids=ids, collection_ids=ids)
    return {
        "a2v": rank_metrics(positive_rank_counts(audio_emb, video_emb, **kw), ks, ties),
        "v2a": rank_metrics(positive_rank_counts(video_emb, audio_emb, **kw), ks, ties),
    }


def retrieval_metrics(video_emb, audio_emb, ids) -> dict[str, float]:
    """The trainer's held-out summary: audio->video and video->audio R@1 / R@5 over paired clips
    (a clip of the same video id counts as correct), chance ``k / N`` for N distinct videos and the
    number of clips."""
    ids = _as_tensor(ids)
    res = cross_modal_retrieval(video_emb, audio_emb, ids, ks=(1, 5))
    n = len(torch.unique(ids))
    return {
        "a2v_R@1": res["a2v"]["R@1"], "a2v_R@5": res["a2v"]["R@5"],
        "v2a_R@1": res["v2a"]["R@1"], "v2a_R@5": res["v2a"]["R@5"],
        "chance_R@1": 1.0 / n, "chance_R@5": min(5.0 / n, 1.0), "num_clips": int(video_emb.shape[0]),
    }


def merge_topk(best_s, best_i, s: torch.Tensor, i: torch.Tensor, k: int):
    """The running top-``k`` (scores, indices) merged with a later block's; ``best_s=None`` starts it.
    Earlier blocks hold lower indices, so a stable sort keeps ties index-ascending."""
    if best_s is None:
        return s, i
    s, i = torch.cat([best_s, s], 1), torch.cat([best_i, i], 1)
    s, order = torch.sort(s, dim=1, descending=True, stable=True)
    return s[:, :k], i.gather(1, order[:, :k])
