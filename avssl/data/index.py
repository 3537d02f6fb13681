"""The dataset index: a columnar `Manifest` of probed videos plus an `IndexReport` of bad files.

A training video's identity is its manifest `id` (int64): memory banks, CMA positive sets,
checkpoints and embedding shards key on it and compare `Manifest.fingerprint()`.

Columns are numpy arrays and the paths one packed UTF-8 buffer + offsets, so a manifest of
10^6 videos is a handful of arrays (no per-video Python objects) that pickles small into
each DataLoader worker. Dataset lists that carry labels (Kinetics, VGGSound, AudioSet) give the
manifest a categorical `label` column (int32 code per row, -1 none) and its `label_names`.

What a source names (folder, file, text list, dataset CSV + media root, split) is decided by
`avssl.data.sources.resolve_source`; every listed entry is either indexed or in the report.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avssl.data.sources import BadFile, describe, resolve_source
from avssl.io.errors import MediaError, NoAudioStream
from avssl.io.probe import probe
from avssl.utils.pools import clean_process_pool

__all__ = ["Manifest", "IndexReport", "BadFile", "build_index", "list_videos", "split_cache_path",
           "MISSING_AUDIO_POLICIES"]

MISSING_AUDIO_POLICIES = ("skip", "zeros", "error")

# column name -> dtype (path is stored separately as packed bytes)
_COLUMNS = {
    "id": np.int64,
    "duration": np.float64,
    "fps": np.float64,
    "num_frames": np.int64,
    "width": np.int32,
    "height": np.int32,
    "rotation": np.int16,
    "video_start": np.float64,
    "has_audio": np.bool_,
    "audio_rate": np.int32,
    "audio_channels": np.int16,
    "audio_start": np.float64,
}


class Manifest:
    """Columnar table of videos. `m.id`, `m.duration`, ... are numpy arrays; `m.path(i)` a str.

    Paths are stored as given (relative to `root` when the index was built with one);
    `m.resolve(i)` joins them with `root`.
    """

    def __init__(self, columns: dict[str, np.ndarray], path_bytes: np.ndarray, path_offsets: np.ndarray,
                 root: str | None = None, label: np.ndarray | None = None, label_names: list[str] | None = None):
        n = len(path_offsets) - 1
        for name, dtype in _COLUMNS.items():
            col = np.ascontiguousarray(columns[name], dtype=dtype)
            if col.shape != (n,):
                raise ValueError(f"column {name!r} has shape {col.shape}, expected ({n},)")
            setattr(self, name, col)
        self._path_bytes = np.ascontiguousarray(path_bytes, dtype=np.uint8)
        self._path_offsets = np.ascontiguousarray(path_offsets, dtype=np.int64)
        self.root = None if root is None else str(root)
        if len(np.unique(self.id)) != n:
            raise ValueError("manifest ids must be unique")
        # optional categorical labels: code per row (-1: none) into label_names
        self.label = None if label is None else np.ascontiguousarray(label, dtype=np.int32)
        self.label_names = None if label is None else [str(x) for x in (label_names or [])]
        if self.label is not None:
            if self.label.shape != (n,):
                raise ValueError(f"label column has shape {self.label.shape}, expected ({n},)")
            if n and (self.label.min() < -1 or self.label.max() >= len(self.label_names)):
                raise ValueError("label codes must be -1 or index label_names")

    # construction -----------------------------------------------------------------
    @classmethod
    def from_rows(cls, rows: list[dict], root: str | None = None) -> "Manifest":
        """Build from dicts holding `path` and every column (used by build_index and tests);
        rows that all hold a `label` string give the manifest its label column."""
        cols = {name: np.array([r[name] for r in rows], dtype=dtype) for name, dtype in _COLUMNS.items()}
        encoded = [r["path"].encode("utf-8") for r in rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(b) for b in encoded])
        buf = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        label, names = None, None
        if rows and all("label" in r for r in rows):
            label, names = encode_labels([r["label"] for r in rows])
        return cls(cols, buf, offsets, root, label, names)

    def with_labels(self, labels) -> "Manifest":
        """The same rows with a label column: `labels` one string (or None) per row."""
        code, names = encode_labels(labels)
        if len(code) != len(self):
            raise ValueError(f"{len(code)} labels for a manifest of {len(self)} rows")
        return Manifest({n: getattr(self, n) for n in _COLUMNS}, self._path_bytes, self._path_offsets, self.root,
                        code, names)

    def label_of(self, i: int) -> str | None:
        """The dataset's label of row i (None without labels)."""
        if self.label is None or self.label[i] < 0:
            return None
        return self.label_names[int(self.label[i])]

    # access -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._path_offsets) - 1

    def path(self, i: int) -> str:
        a, b = self._path_offsets[i], self._path_offsets[i + 1]
        return self._path_bytes[a:b].tobytes().decode("utf-8")

    @property
    def paths(self) -> list[str]:
        return [self.path(i) for i in range(len(self))]

    def resolve(self, i: int) -> str:
        p = self.path(i)
        return p if self.root is None or os.path.isabs(p) else os.path.join(self.root, p)

    def row(self, i: int) -> dict:
        """One video as a plain dict (path + every column as Python scalars; `label` when labelled)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} out of range for manifest of {len(self)}")
        i = i % len(self)
        out = {"path": self.path(i)}
        out.update({name: getattr(self, name)[i].item() for name in _COLUMNS})
        if self.label is not None:
            out["label"] = self.label_of(i)
        return out

    def __getitem__(self, i: int) -> dict:
        return self.row(i)

    def position_of(self, ids) -> np.ndarray:
        """Row positions of the given ids (KeyError if one is absent)."""
        order = np.argsort(self.id, kind="stable")
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.id, ids, sorter=order)
        pos = np.clip(pos, 0, len(self) - 1)
        rows = order[pos]
        if len(self) == 0 or not np.array_equal(self.id[rows], ids):
            raise KeyError("some ids are not in the manifest")
        return rows

    def select(self, rows) -> "Manifest":
        """A new manifest with the given row positions (ids and labels kept)."""
        rows = np.asarray(rows, dtype=np.int64)
        paths = [self.path(int(i)) for i in rows]
        buf, off = _pack(paths)
        return Manifest({n: getattr(self, n)[rows] for n in _COLUMNS}, buf, off, self.root,
                        None if self.label is None else self.label[rows], self.label_names)

    def fingerprint(self) -> str:
        """Stable hash of (id, path) pairs in row order: memory banks and checkpoints store it."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.id, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(self._path_offsets, dtype="<i8").tobytes())
        h.update(self._path_bytes.tobytes())
        return h.hexdigest()[:16]

    # persistence ------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
        arrays = {name: getattr(self, name) for name in _COLUMNS}
        if self.label is not None:
            lb, lo = _pack(self.label_names)
            arrays.update(label=self.label, label_name_bytes=lb, label_name_offsets=lo)
        np.savez(tmp, path_bytes=self._path_bytes, path_offsets=self._path_offsets,
                 root=np.array("" if self.root is None else self.root), **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Manifest":
        with np.load(path, allow_pickle=False) as z:
            root = str(z["root"]) or None
            label = names = None
            if "label" in z.files:
                label, names = z["label"], _unpack(z["label_name_bytes"], z["label_name_offsets"])
            return cls({name: z[name] for name in _COLUMNS}, z["path_bytes"], z["path_offsets"], root, label, names)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Manifest) or self.fingerprint() != other.fingerprint():
            return False
        if (self.label is None) != (other.label is None):
            return False
        if self.label is not None and (self.label_names != other.label_names
                                       or not np.array_equal(self.label, other.label)):
            return False
        return all(np.array_equal(getattr(self, n), getattr(other, n)) for n in _COLUMNS)

    def __repr__(self) -> str:
        return f"Manifest({len(self)} videos, fingerprint={self.fingerprint()}, root={self.root!r})"


def encode_labels(labels) -> tuple[np.ndarray, list[str]]:
    """Strings (None / '' = no label) -> (int32 codes, -1 for none; sorted distinct names)."""
    arr = np.array(["" if x is None else str(x) for x in labels], dtype=object)
    names, code = np.unique(arr.astype(str), return_inverse=True) if len(arr) else (np.array([], str), np.zeros(0, int))
    names = [str(x) for x in names]
    code = code.astype(np.int32)
    if "" in names:  # "" sorts first: shift it out to -1
        empty = names.index("")
        code = np.where(code == empty, -1, code - (code > empty))
        names.pop(empty)
    return code.astype(np.int32), names


@dataclass
class IndexReport:
    """What indexing found: bad files with reasons, and how much work a run did."""

    total: int = 0
    indexed: int = 0
    bad: list[BadFile] = field(default_factory=list)
    no_audio: list[str] = field(default_factory=list)
    audio_undecodable: list[str] = field(default_factory=list)  # audio stream present, no sample decodes (in no_audio too)
    probed: int = 0  # files probed in this run (the rest came from the cache)
    cached: int = 0
    missing_audio: str = "zeros"
    source: dict = field(default_factory=dict)  # what the source was: format, file, split, notes

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in self.bad:
            out[b.reason] = out.get(b.reason, 0) + 1
        return out

    def summary(self) -> str:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts().items())) or "none"
        src = f"{self.source['describe']}; " if self.source.get("describe") else ""
        return (f"{src}indexed {self.indexed}/{self.total} entries (probed {self.probed}, cached {self.cached}); "
                f"left out {len(self.bad)} ({reasons}); without audio {len(self.no_audio)} "
                f"(policy {self.missing_audio}; {len(self.audio_undecodable)} with undecodable audio)")

    def write_csv(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "reason", "detail"])
            for b in self.bad:
                w.writerow([b.path, b.reason, b.detail])
        return path

    def write_json(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"total": self.total, "indexed": self.indexed, "probed": self.probed, "cached": self.cached,
                "missing_audio": self.missing_audio, "counts": self.counts(), "no_audio": self.no_audio,
                "audio_undecodable": self.audio_undecodable,
                "source": self.source, "bad": [dataclasses.asdict(b) for b in self.bad]}
        path.write_text(json.dumps(data, indent=1))
        return path


def list_videos(source, root: str | os.PathLike | None = None, split: str | None = None,
                fmt: str = "auto") -> list[str]:
    """Paths of the files `source` names (`avssl.data.sources.resolve_source`): a folder
    (recursive, video extensions), a media file, a text list, a dataset CSV, or a sequence.
    Returned paths are relative to `root` when given (and under it), else as found; dataset
    rows without a file are not in it (see `resolve_source(...).missing`)."""
    return resolve_source(source, media_root=root, split=split, fmt=fmt).paths


def _probe_one(full_path: str) -> tuple[str, dict | None, tuple[str, str] | None]:
    # Runs in worker processes: returns plain data only (errors as (reason, detail)).
    try:
        info = probe(full_path)
    except MediaError as e:
        return full_path, None, (e.reason, e.detail or str(e))
    except PermissionError as e:
        return full_path, None, ("unreadable", f"permission denied: {e.strerror or e}")
    keys = ("duration", "fps", "num_frames", "width", "height", "rotation", "video_start", "has_audio",
            "audio_rate", "audio_channels", "audio_start")
    note = info.extra.get("audio_undecodable")  # kept as the detail of a good row (empty reason)
    return full_path, {k: getattr(info, k) for k in keys}, (("", f"audio-undecodable: {note}") if note else None)


_INFO_COLUMNS = {k: v for k, v in _COLUMNS.items() if k != "id"}
_CACHE_VERSION = 2


def _pack(strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [t.encode("utf-8") for t in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(e) for e in encoded], dtype=np.int64)
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _unpack(buf: np.ndarray, offsets: np.ndarray) -> list[str]:
    text = buf.tobytes()
    bounds = offsets.tolist()
    return [text[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:])]


class _ProbeCache:
    """On-disk probe cache, columnar like the manifest: one row per file ever seen (path, size,
    mtime_ns, id or -1, probe error reason/detail or "", and the probed columns), in one .npz.

    Loading 10^6 rows is array reads plus one pass splitting the packed paths (no JSON parse,
    no per-row dicts); see benchmarks/index_scale.md. `next_id` is never lowered, so an id is
    never reused even after its file disappears."""

    def __init__(self, paths: list[str], cols: dict[str, np.ndarray], reasons: list[str], details: list[str],
                 next_id: int):
        self.paths, self.cols, self.reasons, self.details, self.next_id = paths, cols, reasons, details, next_id
        self.row_of = {p: i for i, p in enumerate(paths)}

    @classmethod
    def empty(cls) -> "_ProbeCache":
        cols = {"size": np.zeros(0, np.int64), "mtime_ns": np.zeros(0, np.int64), "id": np.zeros(0, np.int64)}
        cols.update({k: np.zeros(0, dt) for k, dt in _INFO_COLUMNS.items()})
        return cls([], cols, [], [], 0)

    @classmethod
    def load(cls, path: Path) -> "_ProbeCache":
        if not path.exists():
            return cls.empty()
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"PK":  # npz (zip)
            with np.load(path, allow_pickle=False) as z:
                if int(z["version"]) != _CACHE_VERSION:
                    return cls.empty()
                cols = {k: z[k] for k in ["size", "mtime_ns", "id", *_INFO_COLUMNS]}
                return cls(_unpack(z["path_bytes"], z["path_offsets"]), cols,
                           _unpack(z["reason_bytes"], z["reason_offsets"]),
                           _unpack(z["detail_bytes"], z["detail_offsets"]), int(z["next_id"]))
        return cls._from_json(path)  # version-1 caches (JSON) are read once and rewritten as npz

    @classmethod
    def _from_json(cls, path: Path) -> "_ProbeCache":
        data = json.loads(path.read_text())
        if data.get("version") != 1:
            return cls.empty()
        files = data["files"]
        paths = list(files)
        n = len(paths)
        cols = {"size": np.zeros(n, np.int64), "mtime_ns": np.zeros(n, np.int64), "id": np.full(n, -1, np.int64)}
        cols.update({k: np.zeros(n, dt) for k, dt in _INFO_COLUMNS.items()})
        reasons, details = [""] * n, [""] * n
        for i, p in enumerate(paths):
            e = files[p]
            cols["size"][i], cols["mtime_ns"][i] = e.get("size", -1), e.get("mtime_ns", -1)
            if e.get("id") is not None:
                cols["id"][i] = e["id"]
            if e.get("error"):
                reasons[i], details[i] = e["error"][0], e["error"][1]
            elif e.get("info"):
                for k in _INFO_COLUMNS:
                    cols[k][i] = e["info"][k]
        return cls(paths, cols, reasons, details, int(data.get("next_id", 0)))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        pb, po = _pack(self.paths)
        rb, ro = _pack(self.reasons)
        db, do = _pack(self.details)
        with open(tmp, "wb") as f:  # a file object: np.savez must not append ".npz" to the name
            np.savez(f, version=np.int64(_CACHE_VERSION), next_id=np.int64(self.next_id), path_bytes=pb,
                     path_offsets=po, reason_bytes=rb, reason_offsets=ro, detail_bytes=db, detail_offsets=do,
                     **self.cols)
        os.replace(tmp, path)


def split_cache_path(cache: str | os.PathLike | None, split: str) -> Path | None:
    """The probe cache of one split, beside the configured `cache`: `idx/ucf.npz` + 'test' ->
    `idx/ucf.test.npz` (no suffix: '.npz' added); None stays None.

    One cache file per source: rows are keyed by the path as listed (relative to the media root
    for dataset lists), so two lists under different roots would collide on equal names, and ids
    come from one counter per file. Each split of a dataset gets its own file from one setting."""
    if cache is None or str(cache) == "":
        return None
    c = Path(cache)
    return c.with_name(f"{c.stem if c.suffix else c.name}.{split}{c.suffix or '.npz'}")


def build_index(source, cache: str | os.PathLike | None = None, workers: int = 2,
                root: str | os.PathLike | None = None, missing_audio: str = "zeros",
                progress: bool = True, split: str | None = None, fmt: str = "auto") -> tuple[Manifest, IndexReport]:
    """Probe every video `source` names and return `(Manifest, IndexReport)`.

    `source`: anything `avssl.data.sources.resolve_source` takes (folder, media file, text list,
    Kinetics / AudioSet / VGGSound CSV, sequence of paths) or a `ResolvedSource`. `root`: the
    media root (dataset lists look their files up under it, default the list's folder; other
    sources store paths relative to it). `split`: rows of that split of a dataset list. `fmt`:
    the source format ('auto' detects it). Labels of dataset lists become the manifest's label
    column. Every listed entry is indexed or reported: `report.total == report.indexed +
    len(report.bad)` (rows without a file: 'missing' with the names tried; a listed file twice:
    'duplicate'; a symlink to nothing: 'dangling-symlink'; no read permission: 'unreadable').

    `cache`: a columnar .npz file (any name; a version-1 JSON cache is read and rewritten)
    holding each file's size, mtime, id and probe result; a re-run probes only new or changed
    files and keeps every known file's id. New files get ids never used before
    (the cache remembers the next free id), so ids are stable across re-runs. Without a cache
    ids are 0..n-1 in path order.
    Bad files (missing, zero-byte, truncated, not-a-video, no-video-stream, corrupt) are left
    out and listed in the report with their reason. Files without audio follow `missing_audio`:
    'skip' (left out, listed with reason 'no-audio'), 'zeros' (kept; the dataset returns
    silence) or 'error' (raise `NoAudioStream`). `report.probed` counts the files probed now.
    """
    if missing_audio not in MISSING_AUDIO_POLICIES:
        raise ValueError(f"missing_audio must be one of {MISSING_AUDIO_POLICIES}, got {missing_audio!r}")
    resolved = resolve_source(source, media_root=root, split=split, fmt=fmt, progress=progress)
    root = resolved.root
    listed, labels_in = resolved.paths, resolved.labels
    seen: dict[str, int] = {}
    paths, labels, dupes = [], [], []
    for k, p in enumerate(listed):
        if p in seen:  # the same file listed again (or two rows naming one file): reported, not indexed twice
            dupes.append(BadFile(p, "duplicate", f"entry {k + 1} repeats entry {seen[p] + 1}"))
            continue
        seen[p] = k
        paths.append(p)
        if labels_in is not None:
            labels.append(labels_in[k])
    del seen
    cache_path = Path(cache) if cache is not None else None
    old = _ProbeCache.load(cache_path) if cache_path else _ProbeCache.empty()

    def full(p: str) -> str:
        return p if root is None or os.path.isabs(p) else os.path.join(str(root), p)

    report = IndexReport(total=resolved.rows, missing_audio=missing_audio,
                         source={"format": resolved.format, "root": root, "split": resolved.split,
                                 "rows": resolved.rows, "describe": describe(resolved), **resolved.notes})
    report.bad.extend(resolved.missing)
    report.bad.extend(dupes)
    n = len(paths)
    size = np.full(n, -1, np.int64)
    mtime = np.full(n, -1, np.int64)
    missing = np.zeros(n, bool)
    unreachable: dict[int, tuple[str, str]] = {}  # row -> (reason, detail) found before probing
    for i, p in enumerate(paths):
        fp = full(p)
        try:
            st = os.stat(fp)
        except (FileNotFoundError, NotADirectoryError):
            missing[i] = True
            if os.path.islink(fp):
                unreachable[i] = ("dangling-symlink", f"symlink to {os.readlink(fp)}, which does not exist")
            continue
        except PermissionError as e:
            missing[i] = True
            unreachable[i] = ("unreadable", f"cannot stat: {e.strerror or e}")
            continue
        if not os.access(fp, os.R_OK):
            missing[i] = True
            unreachable[i] = ("unreadable", "no read permission")
            continue
        size[i], mtime[i] = st.st_size, st.st_mtime_ns
    old_row = np.array([old.row_of.get(p, -1) for p in paths], dtype=np.int64)
    known = old_row >= 0
    src = np.where(known, old_row, 0)
    cached = known & ~missing
    if len(old.paths):
        cached &= (old.cols["size"][src] == size) & (old.cols["mtime_ns"][src] == mtime)
    else:
        cached[:] = False
    report.cached = int(cached.sum())

    # this run's table, in path order: cached rows copied column-wise, the rest probed below
    cols = {k: np.zeros(n, dt) for k, dt in _INFO_COLUMNS.items()}
    ids = np.full(n, -1, np.int64)
    if len(old.paths):
        for k in _INFO_COLUMNS:
            cols[k][cached] = old.cols[k][src[cached]]
        ids[known] = old.cols["id"][src[known]]  # a changed file keeps its id
    reasons = [old.reasons[src[i]] if cached[i] else "" for i in range(n)]
    details = [old.details[src[i]] if cached[i] else "" for i in range(n)]
    for i in np.flatnonzero(missing):
        reasons[i], details[i] = unreachable.get(int(i), ("missing", "no such file"))

    todo = [paths[i] for i in np.flatnonzero(~cached & ~missing)]
    if todo:
        pos = {p: i for i, p in enumerate(paths)}
        by_full = {full(p): p for p in todo}

        def store(fp, info, err):
            i = pos[by_full[fp]]
            if err is not None:
                reasons[i], details[i] = err
            if info is not None:
                for k in _INFO_COLUMNS:
                    cols[k][i] = info[k]

        bar = tqdm(total=len(todo), desc="probing videos", unit="file", disable=not progress)
        if workers and workers > 1 and len(todo) > 1:
            # workers from a clean fork server: a decoder inherited from this process could hang a worker
            with clean_process_pool(workers, preload=(__name__,)) as pool:
                chunks = max(1, min(64, len(todo) // (4 * int(workers))))
                for fp, info, err in pool.map(_probe_one, list(by_full), chunksize=chunks):
                    store(fp, info, err)
                    bar.update(1)
        else:
            for fp in by_full:
                store(*_probe_one(fp))
                bar.update(1)
        bar.close()
        report.probed = len(todo)

    keep = np.zeros(n, bool)
    for i, p in enumerate(paths):
        if reasons[i]:
            report.bad.append(BadFile(p, reasons[i], details[i]))
            continue
        if not cols["has_audio"][i]:
            undecodable = details[i].startswith("audio-undecodable")
            if missing_audio == "error":
                raise NoAudioStream(full(p), f"missing_audio='error'{'; ' + details[i] if undecodable else ''}")
            report.no_audio.append(p)
            if undecodable:
                report.audio_undecodable.append(p)
            if missing_audio == "skip":
                report.bad.append(BadFile(p, "audio-undecodable" if undecodable else "no-audio",
                                          details[i] if undecodable else "left out by missing_audio='skip'"))
                continue
        keep[i] = True

    next_id = old.next_id
    if cache_path:
        new_ids = np.flatnonzero(keep & (ids < 0))  # first indexed now: ids never used before
        ids[new_ids] = next_id + np.arange(len(new_ids))
        next_id += len(new_ids)
        manifest_ids = ids[keep]
        # files of earlier runs not listed now stay in the cache, so their ids survive a return
        # (and a listed file missing right now keeps its row: same id if it comes back)
        gone = {paths[i] for i in np.flatnonzero(missing)}
        listed = set(paths)
        rest = [j for j, p in enumerate(old.paths) if p not in listed or p in gone]
        stored = ~missing
        table_cols = {"size": np.concatenate([size[stored], old.cols["size"][rest]]),
                      "mtime_ns": np.concatenate([mtime[stored], old.cols["mtime_ns"][rest]]),
                      "id": np.concatenate([ids[stored], old.cols["id"][rest]])}
        for k in _INFO_COLUMNS:
            table_cols[k] = np.concatenate([cols[k][stored], old.cols[k][rest]])
        idx = np.flatnonzero(stored).tolist()
        _ProbeCache([paths[i] for i in idx] + [old.paths[j] for j in rest], table_cols,
                    [reasons[i] for i in idx] + [old.reasons[j] for j in rest],
                    [details[i] for i in idx] + [old.details[j] for j in rest], next_id).save(cache_path)
    else:
        manifest_ids = np.arange(int(keep.sum()), dtype=np.int64)
    kept = np.flatnonzero(keep)
    mcols = {k: cols[k][kept] for k in _INFO_COLUMNS}
    mcols["id"] = manifest_ids
    pbuf, poff = _pack([paths[i] for i in kept])
    report.indexed = len(kept)
    label, names = encode_labels([labels[i] for i in kept]) if labels_in is not None else (None, None)
    manifest = Manifest(mcols, pbuf, poff, None if root is None else str(root), label, names)
    return manifest, report
