"""Training cache: a one-time transcode of an indexed collection to small, seek-friendly files.

Each video becomes an H.264/AAC mp4 with a short side of `short_side` pixels, `fps` frames per
second, a keyframe every `gop` frames (so a clip read seeks to a keyframe at most `gop` frames
back), and mono audio at `audio_rate`. Rotation metadata is applied to the pixels, so cached
files are upright with no rotation tag. The cache's manifest keeps the source manifest's ids.

Resumable: finished outputs (written atomically by `write_av`, temp file + rename) are skipped.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from avssl.data.index import BadFile, IndexReport, Manifest
from avssl.io.errors import MediaError
from avssl.io.probe import probe
from avssl.io.writer import write_av

__all__ = ["CacheSpec", "build_training_cache", "transcode_video"]


@dataclass(frozen=True)
class CacheSpec:
    short_side: int = 128
    fps: float = 16.0
    gop: int = 8
    audio_rate: int = 24000
    crf: int = 23


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def transcode_video(src: str, dst: str | os.PathLike, spec: CacheSpec = CacheSpec()) -> Path:
    """Decode `src` sequentially once and write `dst` following `spec` (see module doc)."""
    info = probe(src)
    f = spec.short_side / min(info.width, info.height)
    w2, h2 = _even(info.width * f), _even(info.height * f)
    n_out = max(1, int(math.floor(info.duration * spec.fps + 1e-6)))
    targets = np.arange(n_out) / spec.fps  # output frame k shows the source frame displayed at k/fps
    frames = np.empty((n_out, h2, w2, 3), dtype=np.uint8)
    k = 0
    prev = None  # (av frame, converted array or None)
    try:
        with av.open(src) as c:
            vs = c.streams.video[0]
            vs.thread_type = "AUTO"
            for fr in c.decode(vs):
                if fr.pts is None:
                    continue
                t = float(fr.pts * vs.time_base) - info.video_start
                while k < n_out and targets[k] < t - 1e-6:
                    src_frame = prev if prev is not None else [fr, None]
                    if src_frame[1] is None:
                        src_frame[1] = src_frame[0].reformat(width=w2, height=h2, format="rgb24").to_ndarray()
                    frames[k] = src_frame[1]
                    k += 1
                if k >= n_out:
                    break
                prev = [fr, None]
            while k < n_out and prev is not None:  # the tail shows the last frame
                if prev[1] is None:
                    prev[1] = prev[0].reformat(width=w2, height=h2, format="rgb24").to_ndarray()
                frames[k] = prev[1]
                k += 1
            audio = None
            if info.has_audio:
                c.seek(0)
                rs = av.AudioResampler(format="fltp", layout="mono", rate=spec.audio_rate)
                chunks = []
                for af in c.decode(c.streams.audio[0]):
                    chunks += [x.to_ndarray() for x in rs.resample(af)]
                chunks += [x.to_ndarray() for x in rs.resample(None)]
                if chunks:
                    audio = np.concatenate(chunks, axis=1).astype(np.float32)
    except av.error.FFmpegError as e:
        raise MediaError(src, f"transcode failed: {e}") from e
    if k == 0:
        raise MediaError(src, "no decodable video frame")
    if info.rotation:  # make pixels upright; np.rot90 turns counter-clockwise like the display matrix
        frames = np.ascontiguousarray(np.rot90(frames, k=info.rotation // 90, axes=(1, 2)))
    audio_start = 0.0
    if audio is not None:
        lead = info.audio_start - info.video_start
        if lead >= 0:
            audio_start = lead
        else:  # audio begins before the first frame: drop what precedes t = 0
            audio = audio[:, int(round(-lead * spec.audio_rate)):]
    return write_av(dst, frames, spec.fps, audio, spec.audio_rate, gop=spec.gop, crf=spec.crf,
                    audio_start=audio_start)


def _job(args):
    src, dst, spec = args
    if not os.path.exists(dst):
        try:
            transcode_video(src, dst, spec)
        except MediaError as e:
            return dst, None, (e.reason, str(e)), False
        done_now = True
    else:
        done_now = False
    try:
        i = probe(dst)
    except MediaError as e:
        return dst, None, (e.reason, str(e)), done_now
    row = {k: getattr(i, k) for k in ("duration", "fps", "num_frames", "width", "height", "rotation",
                                      "video_start", "has_audio", "audio_rate", "audio_channels", "audio_start")}
    return dst, row, None, done_now


def _cache_name(manifest: Manifest, i: int) -> str:
    p = manifest.path(i)
    if os.path.isabs(p) or p.startswith(".."):
        return f"{int(manifest.id[i]):09d}.mp4"
    return str(Path(p).with_suffix(".mp4"))


def build_training_cache(manifest: Manifest, out_dir: str | os.PathLike, spec: CacheSpec = CacheSpec(),
                         workers: int = 2, progress: bool = True) -> tuple[Manifest, IndexReport]:
    """Transcode every manifest row into `out_dir`; return the cache's manifest (same ids) and a report.

    The manifest's paths are relative to `out_dir` (its `root`); it is also saved as
    `out_dir/manifest.npz`. `report.probed` counts the files transcoded in this run (0 on a
    re-run over a finished cache). Sources that fail are listed in `report.bad`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [_cache_name(manifest, i) for i in range(len(manifest))]
    if len(set(names)) != len(names):
        names = [f"{int(i):09d}.mp4" for i in manifest.id]
    jobs = [(manifest.resolve(i), str(out_dir / names[i]), spec) for i in range(len(manifest))]
    report = IndexReport(total=len(jobs))
    results = {}
    bar = tqdm(total=len(jobs), desc="training cache", unit="video", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=int(workers)) as pool:
            for res in pool.map(_job, jobs, chunksize=1):
                results[res[0]] = res
                bar.update(1)
    else:
        for j in jobs:
            res = _job(j)
            results[res[0]] = res
            bar.update(1)
    bar.close()
    rows = []
    for i, (_, dst, _) in enumerate(jobs):
        _, row, err, done_now = results[dst]
        report.probed += int(done_now)
        if err is not None:
            report.bad.append(BadFile(manifest.path(i), err[0], err[1]))
            continue
        rows.append(dict(row, path=names[i], id=int(manifest.id[i])))
    report.indexed = len(rows)
    report.cached = report.total - report.probed
    cache_manifest = Manifest.from_rows(rows, root=str(out_dir))
    cache_manifest.save(out_dir / "manifest.npz")
    return cache_manifest, report
