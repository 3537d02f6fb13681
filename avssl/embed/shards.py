"""On-disk layout of an extracted embedding collection, readable with numpy + csv alone.

::

    out_dir/
      meta.json                   model, checkpoint, config, index fingerprint, layers, dtype, ...
      shards/shard_00000/         one unit of work: a contiguous run of ``shard_size`` videos
          clip-video-proj.npy     [clips in shard, D]   ({level}-{modality}-{layer}.npy)
          video-audio-proj.npy    [videos in shard, D]
          clip-audio-rms_db.npy   [clips in shard, 1] audio level of each clip's window (dBFS; with the
          video-audio-rms_db.npy  audio modality, for avssl.embed.agreement; absent in older collections,
                                  which read as before: no format version change)
          clips.csv  videos.csv  failed.csv
          done.json               written last; the directory is renamed into place after it
      index_failed.csv            files the indexer rejected (video_id -1)
      clips.csv  videos.csv  failed.csv   merged tables (written by `finalize`; failed.csv
                                  = index_failed.csv + every shard's decoding failures)
      agreement.csv agreement_clips.csv agreement.json   audio-visual agreement (avssl.embed.agreement)
      search/<array>.faiss + .json                      approximate search indexes (avssl.embed.search)

Per-clip table columns: ``video_id, path, clip_index, clip_start, clip_end, has_audio, shard,
row`` (``row`` = row in that shard's arrays; clip times in seconds on the video's timeline,
``has_audio`` 0 when the file has no sound and its audio rows embed silence). Per-video:
``video_id, path, num_clips, has_audio, shard, row``.
A shard is built in a hidden temporary directory and renamed into place, so a killed run
never leaves a half shard under a real name; the presence of ``done.json`` marks it done.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import socket
from pathlib import Path

import numpy as np

from avssl.utils.errors import UserError

FORMAT = "avssl-embeddings"
VERSION = 1
SHARDS_DIRNAME = "shards"
DONE_MARKER = "done.json"
INDEX_FAILED = "index_failed.csv"  # files the indexer rejected (never in any shard)
LEVELS = ("clip", "video")

CLIP_COLUMNS = {
    "video_id": np.int64,
    "path": str,
    "clip_index": np.int64,
    "clip_start": np.float64,
    "clip_end": np.float64,
    "has_audio": np.int64,
    "shard": np.int64,
    "row": np.int64,
}
VIDEO_COLUMNS = {"video_id": np.int64, "path": str, "num_clips": np.int64, "has_audio": np.int64, "shard": np.int64,
                 "row": np.int64}
FAILED_COLUMNS = {"video_id": np.int64, "path": str, "reason": str, "detail": str}
TABLES = {"clips": CLIP_COLUMNS, "videos": VIDEO_COLUMNS, "failed": FAILED_COLUMNS}

_SHARD_RE = re.compile(r"^shard_(\d{5,})$")
DTYPES = {"float16": np.float16, "float32": np.float32}


class CollectionError(UserError, RuntimeError):
    """An embedding collection is missing, incomplete, or not the one asked for (a `UserError`:
    the commands print it as one line)."""


class CollectionMismatch(CollectionError):
    """Resuming into a folder extracted with another model / index / settings."""


def shard_name(shard: int) -> str:
    return f"shard_{shard:05d}"


def array_name(level: str, modality: str, layer: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if "/" in layer or "/" in modality:
        raise ValueError(f"names may not contain '/': {modality!r} {layer!r}")
    return f"{level}-{modality}-{layer}"


# ------------------------------------------------------------------------------- tables


def empty_table(kind: str) -> dict[str, np.ndarray]:
    return {k: np.array([], dtype=object if t is str else t) for k, t in TABLES[kind].items()}


def write_table(path: str | os.PathLike, table: dict[str, np.ndarray], kind: str) -> None:
    cols = list(TABLES[kind])
    missing = set(cols) - set(table)
    if missing:
        raise ValueError(f"{kind} table lacks columns {sorted(missing)}")
    n = {len(table[c]) for c in cols}
    if len(n) > 1:
        raise ValueError(f"{kind} table columns have different lengths {n}")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        # repr() of a Python float is its shortest exact round-trip form
        w.writerows(zip(*[[repr(float(v)) if TABLES[kind][c] is np.float64 else v for v in table[c]] for c in cols]))


def read_table(path: str | os.PathLike, kind: str) -> dict[str, np.ndarray]:
    types = TABLES[kind]
    with open(path, newline="") as f:
        r = csv.reader(f)
        header = next(r, None)
        if header != list(types):
            raise CollectionError(f"{path}: header {header} != expected {list(types)}")
        rows = list(r)
    cols = list(zip(*rows)) if rows else [() for _ in types]
    return {
        k: (np.array(col, dtype=object) if t is str else np.array(col, dtype=t).reshape(-1))
        for (k, t), col in zip(types.items(), cols)
    }


def concat_tables(tables: list[dict[str, np.ndarray]], kind: str) -> dict[str, np.ndarray]:
    if not tables:
        return empty_table(kind)
    return {k: np.concatenate([t[k] for t in tables]) for k in TABLES[kind]}


# ------------------------------------------------------------------------------- meta


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_meta(out_dir: str | os.PathLike) -> dict:
    p = Path(out_dir) / "meta.json"
    if not p.exists():
        raise CollectionError(f"{out_dir}: no meta.json (not an extracted collection?)")
    meta = json.loads(p.read_text())
    if meta.get("format") != FORMAT:
        raise CollectionError(f"{p}: format {meta.get('format')!r} is not {FORMAT!r}")
    return meta


# ------------------------------------------------------------------------------- shards


def shards_dir(out_dir) -> Path:
    return Path(out_dir) / SHARDS_DIRNAME


def done_shards(out_dir) -> list[int]:
    """Indices of shards that were completely written (sorted)."""
    d = shards_dir(out_dir)
    if not d.is_dir():
        return []
    done = []
    for p in d.iterdir():
        m = _SHARD_RE.match(p.name)
        if m and (p / DONE_MARKER).exists():
            done.append(int(m.group(1)))
    return sorted(done)


def remove_partial_shards(out_dir, shards) -> list[Path]:
    """Delete temporary folders left by a killed writer of any shard in ``shards``."""
    d = shards_dir(out_dir)
    if not d.is_dir():
        return []
    wanted = {shard_name(s) for s in shards}
    removed = []
    for p in d.iterdir():
        if p.name.startswith(".") and p.name.split(".tmp.")[0].lstrip(".") in wanted:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def write_shard(
    out_dir,
    shard: int,
    arrays: dict[str, np.ndarray],
    clips: dict[str, np.ndarray],
    videos: dict[str, np.ndarray],
    failed: dict[str, np.ndarray],
    *,
    dtype: str = "float16",
    info: dict | None = None,
) -> Path:
    """Write one shard atomically: build it in a hidden folder, mark it done, rename it in.

    ``arrays`` maps :func:`array_name` keys to ``[rows, D]`` arrays (cast to ``dtype``).
    Clip arrays must have one row per ``clips`` row, video arrays one per ``videos`` row.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    for key, a in arrays.items():
        level = key.split("-", 1)[0]
        expect = len(clips["video_id"]) if level == "clip" else len(videos["video_id"])
        if a.ndim != 2 or a.shape[0] != expect:
            raise ValueError(f"{key}: shape {a.shape} but the {level} table has {expect} rows")
    root = shards_dir(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / shard_name(shard)
    if (final / DONE_MARKER).exists():
        raise CollectionError(f"{final} is already done; refusing to overwrite")
    tmp = root / f".{shard_name(shard)}.tmp.{socket.gethostname()}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for key, a in arrays.items():
        np.save(tmp / f"{key}.npy", np.ascontiguousarray(a, dtype=DTYPES[dtype]))
    write_table(tmp / "clips.csv", clips, "clips")
    write_table(tmp / "videos.csv", videos, "videos")
    write_table(tmp / "failed.csv", failed, "failed")
    done = {"shard": shard, "clips": len(clips["video_id"]), "videos": len(videos["video_id"]),
            "failed": len(failed["video_id"]), "arrays": sorted(arrays), **(info or {})}
    write_json_atomic(tmp / DONE_MARKER, done)
    if final.exists():  # a folder without done.json: debris from an older layout or crash
        shutil.rmtree(final)
    os.rename(tmp, final)  # atomic on POSIX
    return final


def read_shard_table(out_dir, shard: int, kind: str) -> dict[str, np.ndarray]:
    return read_table(shards_dir(out_dir) / shard_name(shard) / f"{kind}.csv", kind)


def finalize(out_dir, num_shards: int | None = None) -> dict[str, int]:
    """Merge the shard tables into ``clips.csv``, ``videos.csv`` and ``failed.csv`` at the top.

    Refuses (CollectionError) when a shard out of ``num_shards`` is not done. Returns row counts.
    """
    out_dir = Path(out_dir)
    done = done_shards(out_dir)
    if num_shards is not None:
        missing = sorted(set(range(num_shards)) - set(done))
        if missing:
            raise CollectionError(f"{out_dir}: shards not done yet: {missing[:10]}{'...' if len(missing) > 10 else ''}")
    counts = {}
    for kind in TABLES:
        parts = [read_shard_table(out_dir, s, kind) for s in done]
        if kind == "failed" and (out_dir / INDEX_FAILED).exists():
            parts.insert(0, read_table(out_dir / INDEX_FAILED, "failed"))
        t = concat_tables(parts, kind)
        tmp = out_dir / f".{kind}.csv.{os.getpid()}.tmp"
        write_table(tmp, t, kind)
        os.replace(tmp, out_dir / f"{kind}.csv")
        counts[kind] = len(t["video_id"])
    return counts


def load_collection(
    out_dir,
    level: str = "video",
    modality: str = "video",
    layer: str = "proj",
    *,
    mmap: bool = False,
    allow_incomplete: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(embeddings [N, D], table)`` of one array over all shards, rows in shard order.

    ``table`` is a dict of numpy columns (clip or video table, see module doc); row ``i`` of
    the table describes row ``i`` of ``embeddings``. ``mmap=True`` maps each shard instead of
    reading it, then concatenates (for one shard the map itself is returned).
    """
    out_dir = Path(out_dir)
    meta = read_meta(out_dir)
    done = done_shards(out_dir)
    missing = sorted(set(range(meta["num_shards"])) - set(done))
    if missing and not allow_incomplete:
        raise CollectionError(f"{out_dir}: {len(missing)} of {meta['num_shards']} shards missing (e.g. {missing[:5]}); "
                              "finish the extraction or pass allow_incomplete=True")
    name = array_name(level, modality, layer)
    kind = "clips" if level == "clip" else "videos"
    arrays, tables = [], []
    for s in done:
        f = shards_dir(out_dir) / shard_name(s) / f"{name}.npy"
        if not f.exists():
            raise CollectionError(f"{f} missing: extracted arrays are {meta.get('arrays')}")
        a = np.load(f, mmap_mode="r" if mmap else None)
        t = read_shard_table(out_dir, s, kind)
        if a.shape[0] != len(t["video_id"]):
            raise CollectionError(f"{f}: {a.shape[0]} rows but its table has {len(t['video_id'])}")
        if a.shape[0]:
            arrays.append(a)
        tables.append(t)
    if not arrays:
        emb = np.zeros((0, meta.get("dims", {}).get(name, 0)), dtype=DTYPES[meta["dtype"]])
    else:
        emb = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    return emb, concat_tables(tables, kind)


class MappedRows:
    """One array of a collection as per-shard memory maps (``np.load(mmap_mode='r')``), never
    concatenated: ``len``, ``shape``, ``rows(global_indices)`` (gathered, float32) and
    ``blocks()`` (``(first_row, float32 block)`` per shard). Row order = `load_collection`'s.

    Search re-ranks candidates and walks a collection of 10^6 rows through this without holding
    it in memory; the OS page cache keeps hot shards.
    """

    def __init__(self, out_dir, level: str = "video", modality: str = "video", layer: str = "proj", *,
                 allow_incomplete: bool = False):
        self.out_dir = Path(out_dir)
        meta = read_meta(self.out_dir)
        self.shards = done_shards(self.out_dir)
        missing = sorted(set(range(meta["num_shards"])) - set(self.shards))
        if missing and not allow_incomplete:
            raise CollectionError(f"{out_dir}: {len(missing)} of {meta['num_shards']} shards missing "
                                  f"(e.g. {missing[:5]}); finish the extraction first")
        self.name = array_name(level, modality, layer)
        self.maps = []
        for s in self.shards:
            f = shards_dir(self.out_dir) / shard_name(s) / f"{self.name}.npy"
            if not f.exists():
                raise CollectionError(f"{f} missing: extracted arrays are {meta.get('arrays')}")
            self.maps.append(np.load(f, mmap_mode="r"))
        dims = {m.shape[1] for m in self.maps if m.ndim == 2 and m.shape[0]}
        if len(dims) > 1:
            raise CollectionError(f"{self.out_dir}: shards of {self.name} have different widths {sorted(dims)}")
        self.dim = dims.pop() if dims else int(meta.get("dims", {}).get(self.name, 0))
        self.offsets = np.concatenate([[0], np.cumsum([m.shape[0] for m in self.maps])]).astype(np.int64)
        self.dtype = self.maps[0].dtype if self.maps else np.dtype(DTYPES[meta["dtype"]])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.dim

    def rows(self, index) -> np.ndarray:
        """Rows at global indices ``index`` (any shape ``S``) as float32 ``[*S, D]``."""
        index = np.asarray(index, dtype=np.int64)
        flat = index.reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= len(self)):
            raise IndexError(f"row index out of range [0, {len(self)})")
        out = np.empty((flat.size, self.dim), dtype=np.float32)
        shard_of = np.searchsorted(self.offsets, flat, side="right") - 1
        for s in np.unique(shard_of):
            sel = shard_of == s
            local = flat[sel] - self.offsets[s]
            order = np.argsort(local, kind="stable")  # ascending reads: sequential pages
            out[np.flatnonzero(sel)[order]] = self.maps[s][local[order]]
        return out.reshape(*index.shape, self.dim)

    def blocks(self):
        """``(first_row, float32 [rows, D])`` for each non-empty shard, in order."""
        for off, m in zip(self.offsets[:-1], self.maps):
            if m.shape[0]:
                yield int(off), np.asarray(m, dtype=np.float32)


def collection_key(out_dir, name: str | None = None) -> str:
    """sha256 naming the exact state of a collection (for indexes and scores derived from it).

    Covers meta.json and, per completed shard, its name, its ``done.json`` (host, pid and row
    counts of the writer) and the size of array ``name`` (every array when None): re-extracting,
    resuming more shards or overwriting changes the key, reading does not.
    """
    out_dir = Path(out_dir)
    h = hashlib.sha256()
    h.update((out_dir / "meta.json").read_bytes())
    for s in done_shards(out_dir):
        d = shards_dir(out_dir) / shard_name(s)
        h.update(f"\0{shard_name(s)}\0".encode())
        h.update((d / DONE_MARKER).read_bytes())
        for f in sorted(d.glob("*.npy") if name is None else [d / f"{name}.npy"]):
            h.update(f"\0{f.name}:{f.stat().st_size if f.exists() else -1}".encode())
    return h.hexdigest()
