"""Approximate nearest-neighbour search over an extracted collection (faiss), re-ranked exactly.

One index per array of a collection (``{level}-{modality}-{layer}``), stored next to it::

    out_dir/search/video-video-proj.faiss   the faiss index (ids = row numbers of `load_collection`)
    out_dir/search/video-video-proj.json    the collection state it was built from (`collection_key`),
                                            its parameters and its measured recall

Search = the index's top ``candidates`` rows per query (inner product on compressed codes), then
the exact dot products of those rows read from the memory-mapped shard arrays, sorted: the
scores returned are exact, only the candidate set is approximate. Two index structures:

* ``ivf`` (default): k-means cells over the rows (``nlist`` ~ 4 sqrt(N)); a query scans the
  ``nprobe`` cells whose centroids score highest. Builds in about a minute for 10^6 rows on one
  core (benchmarks/search.md).
* ``hnsw``: a navigable small-world graph (``M`` links per row); faster queries on hard,
  weakly clustered data, but ~10x slower to build.

Codes are 8-bit scalar quantised (``codec="sq8"``, 1 byte per dimension: 128 MB for 10^6 rows of
128) or float32 (``"flat"``). The search depth (``nprobe`` / ``efSearch``) is not guessed: the
build measures recall@k against exact search on queries made from a seeded sample of the
collection's own rows (every modality extracted at that level and layer), each moved by noise of
the collection's nearest-neighbour distance and its own clip / video left out of both result
lists, so that each stands for a query from outside the collection (`held_out_queries`), and keeps
the smallest depth at which the queries of EVERY modality reach ``target_recall`` (cross-modal
queries lie farther from the rows than same-modal ones and need the deeper search: measured 0.94
vs 1.0 at the same depth on the CPU preset's embeddings); the measured recall (the smallest of
the modalities') is stored with the index.

An index whose collection changed since it was built (re-extracted, shards added, overwritten)
is refused (`StaleIndex`), never silently used.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avssl.utils.errors import UserError

from . import shards as sh

INDEX_DIRNAME = "search"
KINDS = ("ivf", "hnsw")
CODECS = ("sq8", "flat")
FAISS_PIN = "faiss-cpu==1.15.1"
EXACT_CHUNK = 65536  # rows per exact-search block (bounded memory whatever the collection size)
SCORE_BUDGET = 1 << 22  # float32 scores held at once by exact_search (16 MiB): queries x block rows


class NoIndex(sh.CollectionError):
    """No search index was built for this array of the collection."""


class StaleIndex(sh.CollectionError):
    """The index was built from another state of its collection."""


def require_faiss():
    """The faiss module, or a `UserError` saying how to install it (an optional dependency)."""
    try:
        import faiss
    except ImportError:
        raise UserError(f"approximate search needs faiss: pip install 'avssl[search]' (or {FAISS_PIN}); "
                        "exact search works without it") from None
    return faiss


def index_paths(out_dir, level: str = "video", modality: str = "video", layer: str = "proj") -> tuple[Path, Path]:
    """``(index file, info file)`` of one array's index."""
    name = sh.array_name(level, modality, layer)
    d = Path(out_dir) / INDEX_DIRNAME
    return d / f"{name}.faiss", d / f"{name}.json"


def _as_queries(queries, dim: int) -> np.ndarray:
    q = queries.detach().cpu().numpy() if isinstance(queries, torch.Tensor) else np.asarray(queries)
    q = np.ascontiguousarray(q.reshape(-1, q.shape[-1]) if q.ndim else q, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must be [D] or [Q, D] with D={dim}, got {tuple(np.shape(queries))}")
    return q


# ------------------------------------------------------------------------------ exact search


def _chunks(rows: sh.MappedRows, size: int = EXACT_CHUNK):
    """Consecutive shard blocks joined to about ``size`` rows: ``(first_row, float32 block)``."""
    buf, first, n = [], 0, 0
    for off, block in rows.blocks():
        if not buf:
            first = off
        buf.append(block)
        n += len(block)
        if n >= size:
            yield first, np.concatenate(buf) if len(buf) > 1 else buf[0]
            buf, n = [], 0
    if buf:
        yield first, np.concatenate(buf) if len(buf) > 1 else buf[0]


def exact_search(rows: sh.MappedRows, queries, k: int = 10, *, device=None,
                 chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by dot product over a memory-mapped array, block by block:
    ``(scores float32 [Q, k], rows int64 [Q, k])``, ties to the lower row (`retrieval.nearest`).
    Blocks of ``chunk`` rows (default: as many as keep ``Q x chunk`` scores within 16 MiB, at
    least 4096, at most 65536)."""
    from avssl.metrics.retrieval import merge_topk

    from .retrieval import nearest

    q = torch.from_numpy(_as_queries(queries, rows.dim))
    chunk = chunk or int(min(EXACT_CHUNK, max(4096, SCORE_BUDGET // max(1, len(q)))))
    if len(rows) == 0:
        raise ValueError("empty collection")
    k = min(k, len(rows))
    best_s = best_i = None
    for first, block in _chunks(rows, chunk):
        s, i = nearest(q, torch.from_numpy(block), k, chunk=chunk, query_chunk=max(1, SCORE_BUDGET // chunk),
                       device=device)
        i = i + first
        best_s, best_i = merge_topk(best_s, best_i, s, i, k)
    return best_s.numpy(), best_i.numpy()


def recall_at_k(approx: np.ndarray, exact: np.ndarray, k: int | None = None) -> float:
    """Mean over queries of ``|approx[:k] ∩ exact[:k]| / k`` (row ids; -1 never matches)."""
    approx, exact = np.asarray(approx), np.asarray(exact)
    k = k or exact.shape[1]
    hits = [len(set(a[:k].tolist()) & set(e[:k].tolist()) - {-1}) for a, e in zip(approx, exact)]
    return float(np.mean(hits) / k) if hits else float("nan")


# ------------------------------------------------------------------------------ the index


@dataclass
class SearchIndex:
    """A faiss index over one array of a collection, with its rows for exact re-ranking."""

    out_dir: Path
    level: str
    modality: str
    layer: str
    index: object  # faiss.Index
    info: dict
    rows: sh.MappedRows = field(repr=False)

    @property
    def name(self) -> str:
        return sh.array_name(self.level, self.modality, self.layer)

    def __len__(self) -> int:
        return len(self.rows)

    def _params(self, depth: int | None, n: int):
        faiss = require_faiss()
        depth = int(depth or self.info["depth"])
        if self.info["kind"] == "ivf":
            return faiss.SearchParametersIVF(nprobe=min(depth, self.info["nlist"]))
        return faiss.SearchParametersHNSW(efSearch=max(depth, n))  # HNSW returns at most efSearch rows

    def candidates(self, queries, n: int, depth: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The index's own top-``n`` per query, no re-ranking: ``(approximate scores float32 [Q, n],
        rows int64 [Q, n])``, -1 pads."""
        q = _as_queries(queries, self.rows.dim)
        n = min(n, len(self))
        s, idx = self.index.search(q, n, params=self._params(depth, n))
        return s.astype(np.float32), idx.astype(np.int64)

    def search(self, queries, k: int = 10, *, candidates: int | None = None, depth: int | None = None,
               rerank: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows for each query: ``(scores float32 [Q, k], rows int64 [Q, k])``.

        ``candidates`` (default: the build's, at least ``k``) rows come from the index, searched
        to ``depth`` (``nprobe`` cells for ivf, ``efSearch`` for hnsw; default: the calibrated
        one); with ``rerank`` their exact dot products with the query, read from the shard
        arrays, order them (ties to the lower row) and are the scores returned. A query whose
        index search returns fewer than ``k`` rows is padded with score -inf and row -1.
        """
        q = _as_queries(queries, self.rows.dim)
        k = min(int(k), len(self))
        if k < 1:
            raise ValueError("k must be >= 1")
        if not rerank:
            return self.candidates(q, k, depth)
        # as many candidates per result as the build calibrated (4 per result by default)
        n = max(k, int(candidates or math.ceil(self.info.get("candidates", 4 * k) * k / self.info.get("k", k))))
        out_s, out_i = [np.zeros((0, k), np.float32)], [np.zeros((0, k), np.int64)]
        for q0 in range(0, len(q), 1024):  # bounded memory: [1024, n, D] candidate rows at a time
            _, cand = self.candidates(q[q0:q0 + 1024], n, depth)
            valid = cand >= 0
            vecs = self.rows.rows(np.where(valid, cand, 0))  # [Q, n, D]
            scores = np.einsum("qnd,qd->qn", vecs, q[q0:q0 + 1024])
            scores[~valid] = -np.inf
            # lexsort: the last key is primary -> descending score, then ascending row
            order = np.lexsort((np.where(valid, cand, np.iinfo(np.int64).max), -scores), axis=1)[:, :k]
            s = np.take_along_axis(scores, order, 1).astype(np.float32)
            i = np.take_along_axis(cand, order, 1)
            i[~np.isfinite(s)] = -1
            out_s.append(s)
            out_i.append(i)
        return np.concatenate(out_s), np.concatenate(out_i)

    def save(self) -> tuple[Path, Path]:
        """Write the index and its info atomically (the info last: it marks the pair complete)."""
        faiss = require_faiss()
        idx_path, info_path = index_paths(self.out_dir, self.level, self.modality, self.layer)
        idx_path.parent.mkdir(parents=True, exist_ok=True)
        info_path.unlink(missing_ok=True)  # a crash between the two writes leaves no valid pair
        tmp = idx_path.with_name(f".{idx_path.name}.{os.getpid()}.tmp")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, idx_path)
        self.info["index_bytes"] = idx_path.stat().st_size
        sh.write_json_atomic(info_path, self.info)
        return idx_path, info_path


def _new_index(kind: str, codec: str, dim: int, nlist: int, hnsw_m: int):
    faiss = require_faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "ivf":
        quantizer = faiss.IndexFlatIP(dim)
        if codec == "flat":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, ip)
        else:
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, ip)
        index.own_fields = True
        quantizer.this.disown()  # the IVF index owns (and frees) its quantizer
        return index
    if codec == "flat":
        return faiss.IndexHNSWFlat(dim, hnsw_m, ip)
    return faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, hnsw_m, ip)


def default_nlist(n: int) -> int:
    """IVF cells for ``n`` rows: ``4 sqrt(n)``, but at least 39 training rows per cell (faiss's
    k-means minimum) and at least one cell."""
    return int(max(1, min(round(4 * math.sqrt(max(n, 1))), n // 39)))


def _calibration_queries(out_dir, level, modality, layer, n_rows, count, seed):
    """``(rows [Q, D], own_rows [Q], modality of each [Q])``: seeded rows of every modality extracted
    at this level and layer, and each one's own row (the same clip / video) in the indexed array."""
    meta = sh.read_meta(out_dir)
    rng = np.random.default_rng(seed)
    layers = meta.get("layers") or {}
    mods = [modality] + [m for m in meta.get("modalities", []) if m != modality and layer in (layers.get(m) or [])]
    per = max(1, count // len(mods))
    qs, selves, kinds = [], [], []
    for m in mods:
        rows = sh.MappedRows(out_dir, level, m, layer)
        if len(rows) != n_rows:
            continue
        pick = np.sort(rng.choice(n_rows, size=min(per, n_rows), replace=False))
        qs.append(rows.rows(pick))
        selves.append(pick)
        kinds += [m] * len(pick)
    return np.concatenate(qs), np.concatenate(selves), np.array(kinds)


def held_out_queries(rows: sh.MappedRows, queries: np.ndarray, selves: np.ndarray, seed: int = 0) -> np.ndarray:
    """Queries that stand for ones from outside the collection: each moved by Gaussian noise of the
    collection's median nearest-neighbour distance (measured on the queries that are rows of the
    indexed array, ``rows.rows(selves) == queries``, their own row left out). A row of the index is
    found by navigating to it (HNSW) and lies where the cells were fitted (IVF), which makes recall
    look better than for a new query; moved one neighbour spacing away it is no easier than a fresh
    one (a conservative calibration). Unit rows stay unit rows; other rows keep their norm."""
    if len(rows) < 2:
        return queries
    same = np.all(rows.rows(selves) == queries, axis=1)
    base = queries[same] if same.any() else queries
    s, i = exact_search(rows, base, 2, device="cpu")
    own = selves[same] if same.any() else selves
    nn = np.where(i[:, 0] == own, s[:, 1], s[:, 0])  # best score of another row
    n2 = np.maximum(np.sum(base * base, axis=1), 1e-12)
    dist = float(np.median(np.sqrt(np.maximum(2 - 2 * nn / n2, 0))))  # between the unit directions
    norms = np.linalg.norm(queries, axis=1, keepdims=True)
    z = np.random.default_rng([seed, 1]).standard_normal(queries.shape).astype(np.float32)
    moved = queries / np.maximum(norms, 1e-12) + dist * z / np.sqrt(queries.shape[1])
    moved /= np.linalg.norm(moved, axis=1, keepdims=True)
    return (moved * norms).astype(np.float32)


def _drop_self(idx: np.ndarray, selves: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(idx), k), -1, dtype=np.int64)
    for j, (row, me) in enumerate(zip(idx, selves)):
        kept = row[row != me] if me >= 0 else row
        out[j, : min(k, len(kept))] = kept[:k]
    return out


def build_index(
    out_dir,
    level: str = "video",
    modality: str = "video",
    layer: str = "proj",
    *,
    kind: str = "ivf",
    codec: str = "sq8",
    nlist: int | None = None,
    hnsw_m: int = 32,
    ef_construction: int = 80,
    k: int = 10,
    candidates: int | None = None,
    target_recall: float = 0.95,
    calibration_queries: int = 256,
    seed: int = 0,
    threads: int | None = None,
    progress: bool = True,
    save: bool = True,
) -> SearchIndex:
    """Build (and by default save) the index of one array of a complete collection.

    The depth is calibrated as described in the module doc: depths 1, 2, 4, ... are tried, each
    one searched with ``candidates`` (default ``4 k``) candidates and exact re-ranking, until
    recall@``k`` on the calibration queries reaches ``target_recall`` (the last depth tried is
    exhaustive for ivf). ``threads`` sets faiss's OpenMP threads (default: faiss's own choice).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
    if not 0 < target_recall <= 1:
        raise ValueError("target_recall must be in (0, 1]")
    faiss = require_faiss()
    from tqdm.auto import tqdm

    if threads:
        faiss.omp_set_num_threads(int(threads))
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    name = sh.array_name(level, modality, layer)
    key = sh.collection_key(out_dir, name)
    rows = sh.MappedRows(out_dir, level, modality, layer)
    n, dim = rows.shape
    if n == 0:
        raise sh.CollectionError(f"{out_dir}: {name} has no rows to index")
    candidates = int(candidates or 4 * k)
    nlist = int(nlist or default_nlist(n)) if kind == "ivf" else 0
    if kind == "ivf" and not 1 <= nlist <= n:
        raise ValueError(f"nlist must be in [1, {n}] (rows), got {nlist}")
    index = _new_index(kind, codec, dim, nlist, hnsw_m)
    if kind == "hnsw":
        index.hnsw.efConstruction = int(ef_construction)
    rng = np.random.default_rng(seed)
    bar = tqdm(total=n, unit="row", desc=f"index {name}", disable=not progress, dynamic_ncols=True)
    try:
        if not index.is_trained:  # k-means cells (ivf) / quantiser ranges (sq8) from a seeded sample
            train_n = min(n, max(64 * nlist, 20_000)) if kind == "ivf" else min(n, 100_000)
            sample = rows.rows(np.sort(rng.choice(n, size=train_n, replace=False)))
            if kind == "ivf":
                index.cp.seed = int(seed)
                index.cp.min_points_per_centroid = 1  # nlist <= n // 39 by default; a user's nlist is the user's
            bar.set_postfix_str(f"training on {train_n} rows")
            index.train(sample)
            del sample
        bar.set_postfix_str("adding")
        for _, block in _chunks(rows):
            index.add(block)
            bar.update(len(block))
        build_s = time.perf_counter() - t0
        # calibration: the smallest depth reaching the target recall
        bar.set_postfix_str("calibrating")
        queries, selves, kinds = _calibration_queries(out_dir, level, modality, layer, n, calibration_queries, seed)
        queries = held_out_queries(rows, queries, selves, seed)
        kk = max(1, min(k, n - 1))
        _, exact = exact_search(rows, queries, kk + 1, device="cpu")
        exact = _drop_self(exact, selves, kk)
        info = {"format": "avssl-search-index", "version": 1, "collection_key": key, "array": name,
                "level": level, "modality": modality, "layer": layer, "kind": kind, "codec": codec,
                "rows": n, "dim": dim, "nlist": nlist, "hnsw_m": hnsw_m if kind == "hnsw" else None,
                "ef_construction": ef_construction if kind == "hnsw" else None, "k": k,
                "candidates": candidates, "target_recall": target_recall, "seed": seed,
                "faiss_version": faiss.__version__, "calibration": []}
        si = SearchIndex(out_dir, level, modality, layer, index, info, rows)
        depth, limit = 1, nlist if kind == "ivf" else max(4096, candidates)
        while True:
            d = min(depth, limit)
            if kind == "hnsw":
                d = max(d, candidates)  # efSearch below the candidate count only returns fewer rows
            _, got = si.search(queries, kk + 1, candidates=candidates + 1, depth=d)
            got = _drop_self(got, selves, kk)
            per = {m: recall_at_k(got[kinds == m], exact[kinds == m], kk) for m in np.unique(kinds)}
            r = min(per.values())  # every kind of query (same-modal, cross-modal) reaches the target
            info["calibration"].append({"depth": d, "recall": round(r, 4),
                                        **{f"recall_{m}_queries": round(x, 4) for m, x in per.items()}})
            if r >= target_recall or d >= limit:
                break
            depth = d * 2
        info.update(depth=d, recall=r, calibration_queries=len(queries), build_seconds=round(build_s, 2),
                    calibrate_seconds=round(time.perf_counter() - t0 - build_s, 2), built=time.time())
    finally:
        bar.close()
    if save:
        si.save()
    return si


def load_index(out_dir, level: str = "video", modality: str = "video", layer: str = "proj") -> SearchIndex:
    """The saved index of one array; `NoIndex` when none was built, `StaleIndex` when the
    collection changed since (rebuild it)."""
    faiss = require_faiss()
    idx_path, info_path = index_paths(out_dir, level, modality, layer)
    name = sh.array_name(level, modality, layer)
    if not (idx_path.exists() and info_path.exists()):
        raise NoIndex(f"{out_dir}: no search index for {name} (build one: avssl-retrieve index {out_dir} "
                      f"--level {level} --modality {modality})")
    info = json.loads(info_path.read_text())
    if info.get("collection_key") != sh.collection_key(out_dir, name):
        raise StaleIndex(f"{idx_path}: built from another state of the collection (re-extracted or shards added "
                         f"since); rebuild it with avssl-retrieve index {out_dir} --level {level} "
                         f"--modality {modality}, or search exactly (--exact)")
    rows = sh.MappedRows(out_dir, level, modality, layer)
    try:
        index = faiss.read_index(str(idx_path))
    except RuntimeError as e:  # truncated / not a faiss file
        raise StaleIndex(f"{idx_path}: unreadable ({str(e).strip().splitlines()[-1][:200]}); rebuild it with "
                         f"avssl-retrieve index {out_dir} --level {level} --modality {modality}") from None
    if index.ntotal != len(rows) or index.d != rows.dim:
        raise StaleIndex(f"{idx_path}: holds {index.ntotal} rows of {index.d}, the collection "
                         f"{len(rows)} of {rows.dim}")
    return SearchIndex(Path(out_dir), level, modality, layer, index, info, rows)


def has_index(out_dir, level: str = "video", modality: str = "video", layer: str = "proj") -> bool:
    """Whether index files exist for this array (stale or not)."""
    return all(p.exists() for p in index_paths(out_dir, level, modality, layer))


def search_collection(out_dir, queries, *, level: str = "video", modality: str = "video", layer: str = "proj",
                      k: int = 10, exact: bool = False, device=None) -> tuple[np.ndarray, np.ndarray, str]:
    """``(scores [Q, k], rows [Q, k], method)``: through the array's index when one was built
    (``method`` = its kind; a stale one raises `StaleIndex`), else (or with ``exact``) exactly."""
    if not exact and has_index(out_dir, level, modality, layer):
        si = load_index(out_dir, level, modality, layer)
        s, i = si.search(queries, k)
        return s, i, si.info["kind"]
    rows = sh.MappedRows(out_dir, level, modality, layer)
    s, i = exact_search(rows, queries, k, device=device)
    return s, i, "exact"


def table_rows(out_dir, level: str, global_rows) -> dict[str, np.ndarray]:
    """The clip / video table rows of global row numbers (any order; -1 not allowed), reading
    only the shard tables that hold them."""
    out_dir = Path(out_dir)
    kind = "clips" if level == "clip" else "videos"
    shards = sh.done_shards(out_dir)
    offsets = [0]
    tables = {}
    rows = np.asarray(global_rows, dtype=np.int64).reshape(-1)
    counts = []
    for s in shards:
        with open(sh.shards_dir(out_dir) / sh.shard_name(s) / sh.DONE_MARKER) as f:
            counts.append(int(json.load(f)[kind]))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= offsets[-1]):
        raise IndexError(f"row out of range [0, {offsets[-1]})")
    which = np.searchsorted(offsets, rows, side="right") - 1
    out = {c: np.empty(len(rows), dtype=object if t is str else t) for c, t in sh.TABLES[kind].items()}
    for j in np.unique(which):
        if j not in tables:
            tables[j] = sh.read_shard_table(out_dir, shards[j], kind)
        sel = which == j
        for c in out:
            out[c][sel] = tables[j][c][rows[sel] - offsets[j]]
    return out
