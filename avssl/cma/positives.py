"""Positive-set discovery for Cross-Modal Agreement (CMA).

For every instance i, the k instances j != i with the highest agreement score

    consensus: min(cos_v(i, j), cos_a(i, j))     (reference)
    union:     max(cos_v(i, j), cos_a(i, j))
    video:     cos_v(i, j)
    audio:     cos_a(i, j)

computed from the (L2-normalised) video and audio memory banks. Two exact searches:

``method="blocks"`` (the default on CPU). Both similarity matrices are symmetric (each bank against
itself), so the N x N matrix is tiled into b x b blocks and only blocks (I, J) with
I <= J are computed; each block serves the rows of I and, transposed, the rows of J,
which halves the matrix products. Every row keeps a running top-k (values and ids); its
k-th best value so far is a threshold that a pair must reach (>=) to enter the row's
top-k. Diagonal blocks (I, I) come first, in full, so that every row has a threshold
before the off-diagonal blocks, which go in bands (J - I = 1, 2, ...) so that the rows of
I and of J have seen about as many columns. In an off-diagonal block only the pairs whose
score reaches min(threshold of row i, threshold of row j) are extracted and merged into
the two rows' tables, so the top-k work follows the (few) candidates, not b^2.

In consensus mode the bound prunes a matrix product: consensus <= cos_v, so only the
video block is a product; the audio cosines are computed for the candidate pairs alone
(a sampled dense-dense product), or as one audio product when the candidates are many
(> ``CPU_DENSE_AUDIO_SHARE`` of the block; always on GPU). A pruned pair has cos_v below
its row's current k-th best, so its consensus is strictly below it too: it could never
enter that row's top-k, and the result is exact. On random unit banks in 128-d (k = 32)
the candidates are ~4 % of the off-diagonal pairs at N = 2e4 and ~1.2 % once rows have
seen 2.4e5 columns. ``union`` and the single-modality modes use symmetry only (their
products in full; the threshold only selects what to merge).

``method="rows"``: row chunks of c queries against the whole bank, two [c, N] score
matrices per chunk (the former default; also the path of ``approximate=True``).

Memory is bounded by ``max_chunk_bytes`` (chunk or block workspace) plus the [N, k]
tables; the N x N matrix is never materialised. When torch.distributed is initialised,
``rows`` searches a disjoint contiguous share of the rows per rank and all-gathers the
shares; ``blocks`` gives each rank a round-robin share of the block pairs (diagonal blocks
spread evenly), producing partial top-k tables for all rows, which are all-gathered and
merged (pruning with a rank's own, weaker thresholds is still exact). Every rank ends
with the identical [N, k] table, equal to the one-process table. Scores are float32 dot
products: pairs whose scores differ by a few ulps (or tie) may come in another order from
the two methods, block sizes or numbers of ranks, since a candidate's audio cosine comes
from a sampled or a dense product and products of other shapes round differently.
"""

from __future__ import annotations

import math
import time
import warnings

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from avssl.utils.distributed import all_gather_varlen, rank, world_size

__all__ = ["find_positives", "agreement_scores", "MODES", "METHODS", "auto_chunk_size",
           "auto_block_size", "positive_recall"]

MODES = ("consensus", "union", "video", "audio")
METHODS = ("blocks", "rows")

# Largest default block side on CPU: the element-wise passes over a block (threshold
# compare, candidate extraction) are memory bound and the per-block Python overhead is
# fixed. Measured on a 2-core AVX2 box, 1 thread, D = 128, late blocks (rows that have seen
# 2.4e5 columns): ~7.3 ns per pair at b = 1024, ~9.9 at 512, ~7.7 at 2048.
CPU_BLOCK_CAP = 1024
# Candidate share of an off-diagonal block above which consensus takes the audio block as
# one dense product (~4 ns per pair) rather than sampled dot products of the candidates
# (~30-40 ns each, plus their extraction); measured break-even ~6-8 %.
CPU_DENSE_AUDIO_SHARE = 0.08


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
    """Rows per chunk (``method="rows"``) so that the chunk's score matrices fit in
    ``max_chunk_bytes``."""
    mats = 1 if mode in ("video", "audio") else 2
    # + the top-k workspace, which is small; one extra matrix covers the masking copy.
    per_row = (mats + 1) * num_items * itemsize
    return max(1, int(max_chunk_bytes // per_row))


def auto_block_size(num_items: int, max_chunk_bytes: int, device: torch.device | str = "cpu") -> int:
    """Block side b (``method="blocks"``): ~16 bytes per block entry (video and audio
    blocks, the threshold matrix, the candidate mask and ids) within ``max_chunk_bytes``,
    capped at ``CPU_BLOCK_CAP`` on CPU, and at most ``num_items``."""
    b = int(math.isqrt(max(1, int(max_chunk_bytes // 16))))
    if torch.device(device).type == "cpu":
        b = min(b, CPU_BLOCK_CAP)
    return max(1, min(num_items, b))


@torch.no_grad()
def find_positives(video_bank, audio_bank, k: int = 32, mode: str = "consensus",
                   chunk_size: int | None = None, device: str | torch.device | None = None,
                   max_chunk_bytes: int = 256 * 2**20, approximate: bool = False,
                   projection_dim: int = 32, oversample: int = 8, seed: int = 0,
                   progress: bool = False, method: str | None = None,
                   stats: dict | None = None) -> torch.LongTensor:
    """The k most agreeing other instances of every instance.

    Args:
        video_bank, audio_bank: MemoryBank or [N, D] tensors (normalised here).
        k: positives per instance (reference 32).
        mode: 'consensus' (reference) | 'union' | 'video' | 'audio'.
        chunk_size: ``rows``: query rows per matrix product; ``blocks``: the block side b.
            Default from ``max_chunk_bytes`` (``auto_chunk_size`` / ``auto_block_size``).
        device: where to compute ('cuda' for GPU); default the banks' device.
        max_chunk_bytes: memory budget of one chunk's (block's) score matrices.
        approximate: coarse search on random projections of both banks (dimension
            ``projection_dim``) to keep ``k * oversample`` candidates per row, then
            exact re-ranking of the candidates (row chunks, whatever ``method``).
            Recall vs the exact search is measured in benchmarks/cma_topk.md (see
            ``positive_recall``).
        seed: seed of the random projection (identical on every rank).
        progress: show a tqdm bar over chunks (blocks).
        method: exact search, 'blocks' (symmetric blocks + threshold pruning) or 'rows' (row
            chunks); see the module docstring. Default: 'blocks' on CPU, 'rows' elsewhere
            (the blocks path has not yet run on a GPU: no device was lent when it was written;
            tests/test_cma.py checks it against brute force on CUDA wherever one is present).
        stats: optional dict, filled (``blocks`` only) with this rank's counters: blocks,
            pairs (ordered pair scores covered), audio_pairs (pairs whose audio cosine was
            computed; consensus), candidates (pairs extracted from off-diagonal blocks),
            dense_audio_blocks, and seconds: total, matmul (dense products), sampled
            (sampled audio products), gather (the final merge across ranks). CPU timings
            (on CUDA they include asynchronous work only partially).

    Returns:
        LongTensor [N, k] on CPU, each row sorted by decreasing score, never containing
        its own row id.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if method is not None and method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    v_all = _bank_tensor(video_bank)
    a_all = _bank_tensor(audio_bank)
    if v_all.shape != a_all.shape:
        raise ValueError(f"video and audio banks differ in shape: {tuple(v_all.shape)} vs "
                         f"{tuple(a_all.shape)}")
    n = v_all.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} instances, got {k}")
    dev = torch.device(device) if device is not None else v_all.device
    if method is None:
        method = "blocks" if dev.type == "cpu" else "rows"
    v_all = F.normalize(v_all.to(dev, torch.float32), dim=1)
    a_all = F.normalize(a_all.to(dev, torch.float32), dim=1)

    if method == "blocks" and not approximate:
        b = auto_block_size(n, max_chunk_bytes, dev) if chunk_size is None else max(1, min(n, int(chunk_size)))
        return _block_search(v_all, a_all, k, mode, b, progress, stats)
    return _row_search(v_all, a_all, k, mode, chunk_size, max_chunk_bytes, approximate,
                       projection_dim, oversample, seed, progress)


def _row_search(v_all, a_all, k, mode, chunk_size, max_chunk_bytes, approximate,
                projection_dim, oversample, seed, progress) -> torch.LongTensor:
    """``method="rows"`` (and the approximate search): row chunks against the whole bank."""
    n, dev = v_all.shape[0], v_all.device
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


def block_schedule(num_blocks: int, world: int = 1, me: int = 0) -> list[tuple[int, int]]:
    """Block pairs (I, J), I <= J, that rank ``me`` of ``world`` computes, in order: its
    diagonal blocks (I % world == me) first, then its round-robin share of the
    off-diagonal pairs taken in bands J - I = 1, 2, ... The shares of all ranks are
    disjoint and cover every pair once."""
    diag = [(i, i) for i in range(me, num_blocks, world)]
    off = [(i, i + d) for d in range(1, num_blocks) for i in range(num_blocks - d)]
    return diag + off[me::world]


class _TopK:
    """Running top-k (values, ids) of every row, each row in no particular order;
    -inf / -1 where empty."""

    def __init__(self, n: int, k: int, dev: torch.device):
        self.k = k
        self.vals = torch.full((n, k), -math.inf, device=dev)
        self.ids = torch.full((n, k), -1, dtype=torch.long, device=dev)

    def threshold(self, lo: int, hi: int) -> torch.Tensor:
        """The k-th best value so far of rows lo:hi (-inf while a row has fewer than k):
        rows are unsorted (a cheaper top-k when merging), so it is their min."""
        return self.vals[lo:hi].amin(1)

    def sorted(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, ids), each row by decreasing value."""
        vals, order = self.vals.sort(dim=1, descending=True, stable=True)
        return vals, self.ids.gather(1, order)

    def merge_dense(self, lo: int, scores: torch.Tensor, col_lo: int) -> None:
        """Merge a dense block of scores [rows lo:lo+r, columns col_lo:col_lo+c]."""
        r, c = scores.shape
        hi = lo + r
        cols = torch.arange(col_lo, col_lo + c, device=scores.device).expand(r, c)
        top = torch.cat([self.vals[lo:hi], scores], 1).topk(self.k, dim=1, sorted=False)
        self.ids[lo:hi] = torch.cat([self.ids[lo:hi], cols], 1).gather(1, top.indices)
        self.vals[lo:hi] = top.values

    def merge_sparse(self, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor) -> None:
        """Merge scattered entries (row ids in non-decreasing order, column ids, scores).
        Entries are packed per row into a [rows touched, most entries of a row] matrix
        (-inf padding), so the top-k runs over k + (a row's entries) columns of the
        touched rows only."""
        if rows.numel() == 0:
            return
        urows, inv, counts = torch.unique_consecutive(rows, return_inverse=True, return_counts=True)
        width = int(counts.max())
        pos = torch.arange(rows.numel(), device=rows.device) - (counts.cumsum(0) - counts).index_select(0, inv)
        pv = torch.full((urows.numel(), width), -math.inf, device=vals.device)
        pi = torch.full((urows.numel(), width), -1, dtype=torch.long, device=vals.device)
        pv.index_put_((inv, pos), vals)
        pi.index_put_((inv, pos), cols)
        top = torch.cat([self.vals.index_select(0, urows), pv], 1).topk(self.k, dim=1, sorted=False)
        self.ids[urows] = torch.cat([self.ids.index_select(0, urows), pi], 1).gather(1, top.indices)
        self.vals[urows] = top.values


def _sampled_dots(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """x[rows] . y[cols] for row-sorted (rows, cols): a sampled dense-dense product (CSR)."""
    counts = torch.bincount(rows, minlength=x.shape[0])
    crow = torch.zeros(x.shape[0] + 1, dtype=torch.long, device=x.device)
    torch.cumsum(counts, 0, out=crow[1:])
    with warnings.catch_warnings():  # "sparse CSR support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        pattern = torch.sparse_csr_tensor(crow, cols, torch.zeros(cols.numel(), device=x.device),
                                          (x.shape[0], y.shape[0]), check_invariants=False)
        return torch.sparse.sampled_addmm(pattern, x, y.T, beta=0.0).values()


def _true_words(flat: torch.Tensor) -> torch.Tensor:
    """Ids of the 8-byte words of a 1-d bool tensor (size a multiple of 8) holding a True."""
    return flat.view(torch.int64).nonzero().squeeze(1)


def _nonzero_flat(flat: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """Positions of the True entries of a 1-d bool tensor (size a multiple of 8), given
    its ``_true_words``. When few words hold a True (a sparse mask), only the bytes of
    those words are searched: ~3x faster than ``nonzero`` at a 1 % density; the same
    result."""
    if words.numel() > 0.3 * (flat.numel() // 8):
        return flat.nonzero().squeeze(1)
    inside = flat.view(-1, 8).index_select(0, words).view(-1).nonzero().squeeze(1)
    return (words.index_select(0, inside >> 3) << 3) | (inside & 7)


class _BlockSearch:
    """State of ``method="blocks"``: the banks, the running top-k of all rows, reused
    work buffers (views of their first ri * rj entries) and counters."""

    def __init__(self, v: torch.Tensor, a: torch.Tensor, k: int, mode: str, b: int):
        self.v, self.a, self.k, self.mode, self.b = v, a, k, mode, b
        dev = v.device
        self.table = _TopK(v.shape[0], k, dev)
        # candidate share of a block above which consensus takes the audio block in full
        share = min(1.0, max(0.0, CPU_DENSE_AUDIO_SHARE)) if dev.type == "cpu" else 0.0  # GPU: always
        # ... as a share of the mask's 8-byte words holding a candidate, if spread at random
        self.dense_words = 1 - (1 - share) ** 8
        self.buf_s = torch.empty(b * b, device=dev)
        self.buf_o = torch.empty(b * b, device=dev)
        # flat size padded to a multiple of 8 (read as int64 words), padding False
        self.buf_mask = torch.zeros(-(-b * b // 8) * 8, dtype=torch.bool, device=dev)
        self.stats = dict(blocks=0, pairs=0, audio_pairs=0, candidates=0, dense_audio_blocks=0)
        self.seconds = dict(matmul=0.0, sampled=0.0)

    def _mm(self, x: torch.Tensor, y: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        out = torch.mm(x, y.T, out=buf[:x.shape[0] * y.shape[0]].view(x.shape[0], y.shape[0]))
        self.seconds["matmul"] += time.perf_counter() - t0
        return out

    def _scores(self, i0: int, i1: int, j0: int, j1: int) -> torch.Tensor:
        """The exact score block or, for consensus, the video block (an upper bound)."""
        mode, v, a = self.mode, self.v, self.a
        first = a if mode == "audio" else v
        s = self._mm(first[i0:i1], first[j0:j1], self.buf_s)
        if mode == "union":
            torch.maximum(s, self._mm(a[i0:i1], a[j0:j1], self.buf_o), out=s)
        self.stats["blocks"] += 1
        self.stats["pairs"] += s.numel()
        return s

    def diagonal(self, i0: int, i1: int) -> None:
        """Block (I, I), in full."""
        s = self._scores(i0, i1, i0, i1)
        if self.mode == "consensus":
            torch.minimum(s, self._mm(self.a[i0:i1], self.a[i0:i1], self.buf_o), out=s)
            self.stats["audio_pairs"] += s.numel()
        s.fill_diagonal_(-math.inf)  # never itself
        self.table.merge_dense(i0, s, i0)

    def off_diagonal(self, i0: int, i1: int, j0: int, j1: int) -> None:
        """Block (I, J), I < J: serves the rows of I and, transposed, the rows of J. Only
        pairs whose score (bound) reaches min(row i's k-th best, the lowest k-th best of the
        rows of J) are extracted -- a per-row limit, compared by broadcasting, where the exact
        pairwise min(thr_i, thr_j) would need one more b x b pass (~10 % of a late block); the
        extra candidates are dropped at the merge -- and for consensus their audio cosines are
        then computed."""
        ri, rj = i1 - i0, j1 - j0
        st = self.stats
        s = self._scores(i0, i1, j0, j1)
        thr_i, thr_j = self.table.threshold(i0, i1), self.table.threshold(j0, j1)
        lim = torch.clamp_max(thr_i, thr_j.min())[:, None]  # [ri, 1] <= min(thr_i, thr_j) for every j
        mask_flat = self.buf_mask[:-(-ri * rj // 8) * 8]
        mask_flat[ri * rj:] = False
        mask = torch.ge(s, lim, out=mask_flat[:ri * rj].view(ri, rj))
        words = _true_words(mask_flat)
        exact = self.mode != "consensus"
        # many candidates: the audio block in full, exact consensus
        if not exact and words.numel() > self.dense_words * (mask_flat.numel() // 8):
            st["dense_audio_blocks"] += 1
            st["audio_pairs"] += ri * rj
            torch.minimum(s, self._mm(self.a[i0:i1], self.a[j0:j1], self.buf_o), out=s)
            torch.ge(s, lim, out=mask)
            words = _true_words(mask_flat)
            exact = True
        if words.numel() == 0:
            return
        flat = _nonzero_flat(mask_flat, words)
        st["candidates"] += flat.numel()
        if rj & (rj - 1) == 0:  # a power of two
            shift = rj.bit_length() - 1
            r, c = flat >> shift, flat & (rj - 1)
        else:
            r = torch.div(flat, rj, rounding_mode="floor")
            c = flat - r * rj
        vals = s.view(-1).index_select(0, flat)
        if not exact:  # consensus: the audio cosines of the candidates only
            st["audio_pairs"] += flat.numel()
            t0 = time.perf_counter()
            vals = torch.minimum(vals, _sampled_dots(self.a[i0:i1], self.a[j0:j1], r, c))
            self.seconds["sampled"] += time.perf_counter() - t0
        # entries that reach their row's threshold: rows of I (in row order), then rows of J
        # (the transposed block, sorted by row)
        ki = (vals >= thr_i.index_select(0, r)).nonzero().squeeze(1)
        kj = (vals >= thr_j.index_select(0, c)).nonzero().squeeze(1)
        cj = c.index_select(0, kj)
        order = torch.argsort(cj, stable=True)
        kj = kj.index_select(0, order)
        rows = torch.cat([r.index_select(0, ki) + i0, cj.index_select(0, order) + j0])
        cols = torch.cat([c.index_select(0, ki) + j0, r.index_select(0, kj) + i0])
        self.table.merge_sparse(rows, cols, torch.cat([vals.index_select(0, ki), vals.index_select(0, kj)]))


def _block_search(v: torch.Tensor, a: torch.Tensor, k: int, mode: str, b: int, progress: bool,
                  stats: dict | None) -> torch.LongTensor:
    """``method="blocks"``; see the module docstring."""
    t_start = time.perf_counter()
    n = v.shape[0]
    nb = math.ceil(n / b)
    world, me = world_size(), rank()
    search = _BlockSearch(v, a, k, mode, b)
    for bi, bj in tqdm(block_schedule(nb, world, me), disable=not progress,
                       desc=f"CMA top-{k} ({mode}, blocks)", unit="block"):
        i0, i1, j0, j1 = bi * b, min(n, bi * b + b), bj * b, min(n, bj * b + b)
        if bi == bj:
            search.diagonal(i0, i1)
        else:
            search.off_diagonal(i0, i1, j0, j1)
    t0 = time.perf_counter()
    vals, ids = search.table.sorted()
    if world > 1:  # merge the ranks' partial tables (every rank the same result)
        vals = all_gather_varlen(vals).view(world, n, k).permute(1, 0, 2).reshape(n, world * k)
        ids = all_gather_varlen(ids).view(world, n, k).permute(1, 0, 2).reshape(n, world * k)
        top = vals.topk(k, dim=1, sorted=True)
        ids = ids.gather(1, top.indices)
    if bool((ids < 0).any()):
        raise RuntimeError("blocks search left a row with fewer than k positives (non-finite bank?)")
    if stats is not None:
        stats.update(search.stats, seconds=dict(total=time.perf_counter() - t_start,
                                                gather=time.perf_counter() - t0, **search.seconds))
    return ids.cpu()


def positive_recall(found: torch.Tensor, reference: torch.Tensor) -> float:
    """Share of the reference positives present in ``found`` (row-wise set overlap)."""
    if found.shape[0] != reference.shape[0]:
        raise ValueError("found and reference must have the same number of rows")
    hits = (found.unsqueeze(2) == reference.unsqueeze(1)).any(1).sum()
    return float(hits) / reference.numel()
