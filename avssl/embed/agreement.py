"""Audio-visual agreement: does the sound of a clip / video belong to its picture?

The trained model answers it directly: the cosine ``s_i = <v_i, a_i>`` of a row's video and audio
projections (unit vectors). Raw cosines are not comparable across models or collections, so each
is calibrated against mismatched pairs of the same collection:

    pct_video_i = P_j( <v_i, a_j> < s_i ) + 1/2 P_j( <v_i, a_j> = s_i )   (its picture, other sound)
    pct_audio_i = P_j( <v_j, a_i> < s_i ) + 1/2 P_j( <v_j, a_i> = s_i )   (its sound, other pictures)
    agreement_i = (pct_video_i + pct_audio_i) / 2                           in [0, 1]

over rows ``j`` of OTHER videos that have an audio track: all of them when there are at most
``negatives``, else a seeded uniform sample of ``negatives`` rows per block of rows (rows of the
row's own video that land in the sample are left out). A sound unrelated to the picture (dubbed,
music bed, off-screen narration) is one more mismatched pair, so its agreement is ~ uniform on
[0, 1] (median 0.5); a sound that belongs scores near 1 with a model that learned the
correspondence. Averaging both directions cancels hubs: an audio embedding close to every video
(e.g. room tone) has a high raw cosine with its own picture and with every other.

A silent track is a different failure from an unrelated one and is detected from the audio
itself: ``rms_db`` = 20 log10 RMS of the clip's audio window (dBFS, floor -150), per video the
power mean over its clips. Extraction stores it per shard (``clip-audio-rms_db.npy``,
``video-audio-rms_db.npy``); for collections extracted before, it is decoded again from the files.

Flags, one per video (the first that applies): ``no-audio`` (the file has no audio stream),
``silent`` (``rms_db < silence_db``), ``unrelated`` (``agreement < threshold``), ``ok``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from . import shards as sh

RMS_LAYER = "rms_db"
RMS_FLOOR_DB = -150.0
SILENCE_DB = -45.0  # below: room tone / hiss at most (the generated world's silent clips hold -50 dBFS noise)
THRESHOLD = 0.5  # calibrated agreement below the median of mismatched pairs
FLAGS = ("no-audio", "silent", "unrelated", "ok")
VIDEO_FILE, CLIP_FILE, INFO_FILE = "agreement.csv", "agreement_clips.csv", "agreement.json"
VIDEO_COLUMNS = {"video_id": np.int64, "path": str, "has_audio": np.int64, "rms_db": np.float64,
                 "similarity": np.float64, "pct_video": np.float64, "pct_audio": np.float64,
                 "agreement": np.float64, "clip_agreement": np.float64, "flag": str}
CLIP_COLUMNS = {"video_id": np.int64, "path": str, "clip_index": np.int64, "clip_start": np.float64,
                "has_audio": np.int64, "rms_db": np.float64, "similarity": np.float64, "pct_video": np.float64,
                "pct_audio": np.float64, "agreement": np.float64}


def rms_db(audio) -> np.ndarray:
    """dBFS of ``[..., C, S]`` waveforms in [-1, 1]: ``20 log10 sqrt(mean x^2)`` over channels and
    samples, floored at -150 (digital silence). Returns ``[...]`` float64."""
    x = np.asarray(audio, dtype=np.float64)
    ms = np.mean(np.square(x), axis=(-2, -1))
    with np.errstate(divide="ignore"):
        return np.maximum(10.0 * np.log10(ms), RMS_FLOOR_DB)


def pool_rms_db(clip_db: np.ndarray, axis: int = -1) -> np.ndarray:
    """Power mean of per-clip dBFS (the RMS of the clips' audio taken together)."""
    return np.maximum(10.0 * np.log10(np.mean(10.0 ** (np.asarray(clip_db, np.float64) / 10.0), axis=axis)),
                      RMS_FLOOR_DB)


def _percentile(own: np.ndarray, others: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per row: (#others < own + #others == own / 2) / #valid others (NaN without any)."""
    below = ((others < own[:, None]) & valid).sum(1)
    tied = ((others == own[:, None]) & valid).sum(1)
    n = valid.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (below + 0.5 * tied) / n, np.nan)


class _ArrayRows:
    """An in-memory ``[N, D]`` array behind the `shards.MappedRows` interface (``len``, ``rows``)."""

    def __init__(self, x):
        self.x = np.asarray(x)
        if self.x.ndim != 2:
            raise ValueError(f"expected [N, D] rows, got shape {self.x.shape}")

    def __len__(self) -> int:
        return len(self.x)

    def rows(self, index) -> np.ndarray:
        return np.asarray(self.x[np.asarray(index)], dtype=np.float32)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def calibrated_agreement(video, audio, groups=None, pool=None, *, negatives: int = 256, seed: int = 0,
                         block: int = 1024, normalize: bool = False) -> dict[str, np.ndarray]:
    """Raw and calibrated audio-visual agreement of paired rows (see the module doc).

    ``video``, ``audio``: ``[N, D]`` arrays or `shards.MappedRows` (row i of both = the same clip /
    video; read ``block`` rows at a time, so a memory-mapped collection is never loaded whole); unit
    rows, or ``normalize=True`` for cosines of other features. ``groups`` ``[N]``: rows of the same
    group never calibrate each other (clips of one video; default: every row its own group).
    ``pool`` bool ``[N]``: rows usable as mismatched partners (default all; extraction's rows
    without an audio track are left out). The sample for rows ``[b, b + block)`` is drawn from
    ``default_rng([seed, b])``, so results depend on nothing but (inputs, negatives, seed, block).
    Returns ``{"similarity", "pct_video", "pct_audio", "agreement"}``, each float64 ``[N]``.
    """
    v = video if hasattr(video, "rows") else _ArrayRows(video)
    a = audio if hasattr(audio, "rows") else _ArrayRows(audio)
    n = len(v)
    if len(a) != n or getattr(v, "x", v).shape[1:] != getattr(a, "x", a).shape[1:]:
        raise ValueError(f"video and audio must be paired [N, D] rows, got {getattr(v, 'x', v).shape} and "
                         f"{getattr(a, 'x', a).shape}")
    groups = np.arange(n) if groups is None else np.asarray(groups)
    pool_idx = np.flatnonzero(np.ones(n, bool) if pool is None else np.asarray(pool, bool))
    if groups.shape != (n,):
        raise ValueError(f"groups must be [N]={n}, got {groups.shape}")
    if negatives < 1:
        raise ValueError("negatives must be >= 1")
    prep = _unit_rows if normalize else (lambda x: x)
    out = {k: np.full(n, np.nan) for k in ("similarity", "pct_video", "pct_audio")}
    fixed = None
    if len(pool_idx) <= negatives:  # every partner, read once
        fixed = (pool_idx, prep(v.rows(pool_idx)), prep(a.rows(pool_idx)))
    for b in range(0, n, block):
        e = min(b + block, n)
        vb, ab = prep(v.rows(np.arange(b, e))), prep(a.rows(np.arange(b, e)))
        own = np.einsum("nd,nd->n", vb, ab).astype(np.float64)
        if fixed is not None:
            j, vj, aj = fixed
        else:
            j = np.sort(np.random.default_rng([seed, b]).choice(pool_idx, size=negatives, replace=False))
            vj, aj = prep(v.rows(j)), prep(a.rows(j))
        valid = groups[b:e, None] != groups[j][None, :]
        out["similarity"][b:e] = own
        out["pct_video"][b:e] = _percentile(own, (vb @ aj.T).astype(np.float64), valid)
        out["pct_audio"][b:e] = _percentile(own, (ab @ vj.T).astype(np.float64), valid)
    out["agreement"] = (out["pct_video"] + out["pct_audio"]) / 2
    return out


def flag_videos(has_audio, rms, agreement, *, silence_db: float = SILENCE_DB,
                threshold: float = THRESHOLD) -> np.ndarray:
    """One flag per video (object array): no-audio > silent > unrelated > ok (see module doc).
    An unknown RMS (NaN) never flags silent; an unknown agreement never flags unrelated."""
    has_audio, rms, agreement = np.asarray(has_audio), np.asarray(rms, float), np.asarray(agreement, float)
    flag = np.full(len(has_audio), "ok", dtype=object)
    flag[agreement < threshold] = "unrelated"
    flag[rms < silence_db] = "silent"
    flag[has_audio == 0] = "no-audio"
    return flag


# ------------------------------------------------------------------------------ collections


def _decode_rms(out_dir, clips: dict, spec, progress: bool) -> tuple[np.ndarray, int]:
    """Per-clip dBFS decoded again from the files (collections extracted without it):
    ``(rms [clips], clips that could not be read -> NaN)``."""
    from tqdm.auto import tqdm

    from avssl.io import read_clip
    from avssl.io.errors import MediaError

    rms = np.full(len(clips["video_id"]), np.nan)
    failed = 0
    for i in tqdm(range(len(rms)), desc="decode audio (rms)", unit="clip", disable=not progress):
        if not clips["has_audio"][i]:
            rms[i] = RMS_FLOOR_DB
            continue
        try:
            rms[i] = rms_db(read_clip(clips["path"][i], float(clips["clip_start"][i]), spec, video=False).audio)
        except (MediaError, OSError):
            failed += 1
    return rms, failed


def collection_rms(out_dir, clips: dict, *, decode: bool = True, progress: bool = True) -> tuple[np.ndarray, dict]:
    """Per-clip dBFS of a collection: stored by extraction where present, else decoded (``decode``)
    or NaN. Returns ``(rms [clips], counts {"stored", "decoded", "unreadable", "unknown"})``."""
    from .api import spec_from

    out_dir = Path(out_dir)
    meta = sh.read_meta(out_dir)
    rms = np.full(len(clips["video_id"]), np.nan)
    counts = {"stored": 0, "decoded": 0, "unreadable": 0, "unknown": 0}
    missing = np.zeros(len(rms), bool)
    for s in np.unique(clips["shard"]):
        sel = clips["shard"] == s
        f = sh.shards_dir(out_dir) / sh.shard_name(int(s)) / f"{sh.array_name('clip', 'audio', RMS_LAYER)}.npy"
        if f.exists():
            rms[sel] = np.load(f)[clips["row"][sel], 0].astype(np.float64)
            counts["stored"] += int(sel.sum())
        else:
            missing |= sel
    if missing.any():
        if decode:
            sub = {k: v[missing] for k, v in clips.items()}
            got, failed = _decode_rms(out_dir, sub, spec_from(meta["spec"]), progress)
            rms[missing] = got
            counts["decoded"] = int(missing.sum()) - failed
            counts["unreadable"] = failed
        else:
            counts["unknown"] = int(missing.sum())
    return rms, counts


def agreement(out_dir, *, layer: str = "proj", negatives: int = 256, seed: int = 0, silence_db: float = SILENCE_DB,
              threshold: float = THRESHOLD, decode_rms: bool = True, write: bool = True,
              progress: bool = True) -> tuple[dict, dict, dict]:
    """Agreement scores of every clip and video of a complete collection (see module doc).

    Returns ``(videos, clips, info)``: column tables (`VIDEO_COLUMNS`, `CLIP_COLUMNS`; rows in
    collection order) and ``{"counts": {flag: n}, "rms": {...}, parameters, "collection_key"}``.
    With ``write`` they are saved next to the collection as agreement.csv, agreement_clips.csv and
    agreement.json (the key says which state of the collection they describe).
    """
    from .api import PROJ

    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    meta = sh.read_meta(out_dir)
    for m in ("video", "audio"):
        if layer not in (meta.get("layers") or {}).get(m, []):
            raise sh.CollectionError(f"{out_dir}: agreement needs both modalities' {layer!r} arrays; extracted "
                                     f"layers are {meta.get('layers')}")
    key = sh.collection_key(out_dir)
    res = {}
    for level in ("clip", "video"):
        kind = "clips" if level == "clip" else "videos"
        table = sh.concat_tables([sh.read_shard_table(out_dir, s, kind) for s in sh.done_shards(out_dir)], kind)
        v, a = sh.MappedRows(out_dir, level, "video", layer), sh.MappedRows(out_dir, level, "audio", layer)
        if not len(v) == len(a) == len(table["video_id"]):
            raise sh.CollectionError(f"{out_dir}: {level} video rows {len(v)}, audio rows {len(a)}, table rows "
                                     f"{len(table['video_id'])} differ")
        groups = table["video_id"] if level == "clip" else None
        res[level] = (table, calibrated_agreement(v, a, groups, table["has_audio"] == 1, negatives=negatives,
                                                  seed=seed, normalize=layer != PROJ))
    clips_t, c = res["clip"]
    videos_t, w = res["video"]
    clip_rms, rms_counts = collection_rms(out_dir, clips_t, decode=decode_rms, progress=progress)
    # per video: power mean of its clips' dBFS and mean of its clips' agreement (clips are grouped by video)
    vid_index = {int(i): r for r, i in enumerate(videos_t["video_id"])}
    owner = np.array([vid_index[int(i)] for i in clips_t["video_id"]], dtype=np.int64)
    nv = len(videos_t["video_id"])
    count = np.bincount(owner, minlength=nv).astype(np.float64)
    unknown = np.bincount(owner, weights=~np.isfinite(clip_rms), minlength=nv)
    power = np.bincount(owner, weights=np.nan_to_num(10.0 ** (clip_rms / 10.0)), minlength=nv)
    with np.errstate(divide="ignore", invalid="ignore"):
        video_rms = np.where((count > 0) & (unknown == 0), np.maximum(10.0 * np.log10(power / count), RMS_FLOOR_DB),
                             np.nan)
        scored = np.bincount(owner, weights=np.isfinite(c["agreement"]), minlength=nv)
        clip_mean = np.bincount(owner, weights=np.nan_to_num(c["agreement"]), minlength=nv) / scored
    videos = {"video_id": videos_t["video_id"], "path": videos_t["path"], "has_audio": videos_t["has_audio"],
              "rms_db": video_rms, "similarity": w["similarity"], "pct_video": w["pct_video"],
              "pct_audio": w["pct_audio"], "agreement": w["agreement"], "clip_agreement": clip_mean,
              "flag": flag_videos(videos_t["has_audio"], video_rms, w["agreement"], silence_db=silence_db,
                                  threshold=threshold)}
    clips = {"video_id": clips_t["video_id"], "path": clips_t["path"], "clip_index": clips_t["clip_index"],
             "clip_start": clips_t["clip_start"], "has_audio": clips_t["has_audio"], "rms_db": clip_rms,
             "similarity": c["similarity"], "pct_video": c["pct_video"], "pct_audio": c["pct_audio"],
             "agreement": c["agreement"]}
    info = {"format": "avssl-agreement", "version": 1, "collection_key": key, "layer": layer, "negatives": negatives,
            "seed": seed, "silence_db": silence_db, "threshold": threshold, "rms": rms_counts,
            "counts": {f: int((videos["flag"] == f).sum()) for f in FLAGS}, "videos": nv,
            "clips": len(clips["video_id"]), "seconds": round(time.perf_counter() - t0, 2)}
    if write:
        write_agreement(out_dir, videos, clips, info)
    return videos, clips, info


def _write_csv(path: Path, table: dict, columns: dict) -> None:
    import csv

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(columns))
        w.writerows(zip(*[[repr(float(x)) if t is np.float64 else x for x in table[c]] for c, t in columns.items()]))
    os.replace(tmp, path)


def write_agreement(out_dir, videos: dict, clips: dict, info: dict) -> None:
    """agreement.csv (per video), agreement_clips.csv (per clip), agreement.json (written last)."""
    out_dir = Path(out_dir)
    (out_dir / INFO_FILE).unlink(missing_ok=True)
    _write_csv(out_dir / VIDEO_FILE, videos, VIDEO_COLUMNS)
    _write_csv(out_dir / CLIP_FILE, clips, CLIP_COLUMNS)
    sh.write_json_atomic(out_dir / INFO_FILE, info)


def read_agreement(out_dir, *, check: bool = True) -> tuple[dict, dict]:
    """``(videos table, info)`` as written by `agreement`; with ``check``, refuses (CollectionError)
    scores of another state of the collection."""
    import csv

    out_dir = Path(out_dir)
    if not (out_dir / INFO_FILE).exists():
        raise sh.CollectionError(f"{out_dir}: no agreement scores (compute them: avssl-retrieve agreement "
                                 f"{out_dir})")
    info = json.loads((out_dir / INFO_FILE).read_text())
    if check and info.get("collection_key") != sh.collection_key(out_dir):
        raise sh.CollectionError(f"{out_dir / INFO_FILE}: computed for another state of the collection; recompute")
    with open(out_dir / VIDEO_FILE, newline="") as f:
        rows = list(csv.reader(f))
    if rows[0] != list(VIDEO_COLUMNS):
        raise sh.CollectionError(f"{out_dir / VIDEO_FILE}: header {rows[0]} != {list(VIDEO_COLUMNS)}")
    cols = list(zip(*rows[1:])) if len(rows) > 1 else [() for _ in VIDEO_COLUMNS]
    table = {c: np.array(col, dtype=object if t is str else t) for (c, t), col in zip(VIDEO_COLUMNS.items(), cols)}
    return table, info


def ranked(videos: dict, *, flagged_only: bool = False) -> np.ndarray:
    """Row order for a report: flagged videos first (no-audio, silent, unrelated), then by
    increasing agreement (NaN last)."""
    rank = np.array([FLAGS.index(f) for f in videos["flag"]])
    score = np.nan_to_num(np.asarray(videos["agreement"], float), nan=np.inf)
    order = np.lexsort((score, rank))
    return order[rank[order] < FLAGS.index("ok")] if flagged_only else order
