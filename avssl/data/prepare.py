"""Training cache: a one-time transcode of an indexed collection to small, seek-friendly files.

Each video becomes an H.264/AAC mp4 with a short side of `short_side` pixels, `fps` frames per
second, a keyframe every `gop` frames (so a clip read seeks to a keyframe at most `gop` frames
back), and mono audio at `audio_rate`. Rotation metadata is applied to the pixels, so cached
files are upright with no rotation tag. The cache's manifest keeps the source manifest's ids.

Resumable: finished outputs (written atomically, temp file + rename) are skipped, and the temporary
files a killed run left behind are removed on the next run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from avssl.data.index import BadFile, IndexReport, Manifest
from avssl.io.errors import MediaError
from avssl.io.probe import probe
from avssl.utils.pools import clean_process_pool

__all__ = ["CacheSpec", "build_training_cache", "transcode_video", "remove_stale_temps"]


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
    """Decode `src` once and write `dst` following `spec` (see module doc), streaming.

    Decode -> resize (swscale) -> rotate -> encode runs frame by frame, and the audio is
    resampled and encoded in encoder-sized chunks, so memory stays bounded by a few frames
    whatever the video's length (holding a 10-minute clip at 128p would take ~0.8 GB).
    Encoded like `avssl.io.writer.write_av` (H.264 veryfast/crf, fixed GOP, AAC), written to a
    temporary name and renamed, so an interrupted run leaves no half file under `dst`.
    """
    info = probe(src)
    f = spec.short_side / min(info.width, info.height)
    w2, h2 = _even(info.width * f), _even(info.height * f)  # stored orientation
    out_w, out_h = (h2, w2) if info.rotation in (90, 270) else (w2, h2)  # upright
    n_out = max(1, int(math.floor(info.duration * spec.fps + 1e-6)))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.tmp{os.getpid()}{dst.suffix}")
    lead = info.audio_start - info.video_start
    opts = {"movie_timescale": str(int(spec.audio_rate))} if info.has_audio and lead > 0 else {}
    try:
        with av.open(src) as c, av.open(str(tmp), mode="w", format="mp4", options=opts) as out:
            vout = _add_video_stream(out, spec, out_w, out_h)
            aout = _add_audio_stream(out, spec) if info.has_audio else None
            k = _stream_video(c, vout, out, info, spec, n_out, (w2, h2))
            if aout is not None:
                _stream_audio(c, aout, out, spec, lead)
    except av.error.FFmpegError as e:
        tmp.unlink(missing_ok=True)
        raise MediaError(src, f"transcode failed: {e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if k == 0:
        tmp.unlink(missing_ok=True)
        raise MediaError(src, "no decodable video frame")
    os.replace(tmp, dst)
    return dst


def _add_video_stream(out, spec: CacheSpec, w: int, h: int):
    from fractions import Fraction

    vs = out.add_stream("libx264", rate=Fraction(spec.fps).limit_denominator(1001))
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.codec_context.gop_size = int(spec.gop)
    vs.options = {"preset": "veryfast", "crf": str(spec.crf),
                  "x264-params": f"keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0"}
    return vs


def _add_audio_stream(out, spec: CacheSpec):
    st = out.add_stream("aac", rate=int(spec.audio_rate))
    st.layout = "mono"
    st.bit_rate = 128_000
    return st


def _stream_video(c, vout, out, info, spec: CacheSpec, n_out: int, stored_wh) -> int:
    """Encode output frame k = the source frame displayed at k/fps; returns frames written."""
    w2, h2 = stored_wh
    vs = c.streams.video[0]
    vs.thread_type = "AUTO"
    k = 0

    def emit(frame, times: int):
        nonlocal k
        img = frame.reformat(width=w2, height=h2, format="rgb24").to_ndarray()
        if info.rotation:  # make pixels upright; np.rot90 turns counter-clockwise like the display matrix
            img = np.ascontiguousarray(np.rot90(img, k=info.rotation // 90))
        vf = av.VideoFrame.from_ndarray(img, format="rgb24")
        for _ in range(times):
            vf.pts = k
            for pkt in vout.encode(vf):
                out.mux(pkt)
            k += 1

    prev = None
    for fr in c.decode(vs):
        if fr.pts is None:
            continue
        t = float(fr.pts * vs.time_base) - info.video_start
        # output frames whose time precedes this frame show the previous one (or this, at the start)
        due = 0
        while k + due < n_out and (k + due) / spec.fps < t - 1e-6:
            due += 1
        if due:
            emit(prev if prev is not None else fr, due)
        if k >= n_out:
            break
        prev = fr
    if prev is not None and k < n_out:  # the tail shows the last frame
        emit(prev, n_out - k)
    for pkt in vout.encode():
        out.mux(pkt)
    return k


def _stream_audio(c, aout, out, spec: CacheSpec, lead: float) -> None:
    """Resample to mono `spec.audio_rate` and encode chunk by chunk; a stream starting after the
    first video frame is delayed by `lead` s, one starting before it loses what precedes t = 0."""
    from fractions import Fraction

    c.seek(0)
    rs = av.AudioResampler(format="fltp", layout="mono", rate=spec.audio_rate)
    size = aout.codec_context.frame_size or 1024
    drop = int(round(-lead * spec.audio_rate)) if lead < 0 else 0
    shift = int(round(lead * spec.audio_rate)) if lead > 0 else 0
    pending = np.zeros((1, 0), np.float32)
    written = 0

    def encode(chunk):
        nonlocal written
        frames = [None] if chunk is None else [chunk]
        for ch in frames:
            if ch is not None:
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(ch), format="fltp", layout="mono")
                af.sample_rate = spec.audio_rate
                af.pts = written
                af.time_base = Fraction(1, spec.audio_rate)
                written += ch.shape[1]
            for pkt in aout.encode(af if ch is not None else None):
                if shift and pkt.pts is not None:
                    d = int(round(shift / spec.audio_rate / pkt.time_base))
                    pkt.pts += d
                    if pkt.dts is not None:
                        pkt.dts += d
                out.mux(pkt)

    def push(arrs):
        nonlocal pending, drop
        for a in arrs:
            a = a.astype(np.float32, copy=False)
            if drop:
                cut = min(drop, a.shape[1])
                a, drop = a[:, cut:], drop - cut
            pending = np.concatenate([pending, a], axis=1)
            while pending.shape[1] >= size:
                encode(pending[:, :size])
                pending = pending[:, size:]

    for af in c.decode(c.streams.audio[0]):
        push([x.to_ndarray() for x in rs.resample(af)])
    push([x.to_ndarray() for x in rs.resample(None)])
    if pending.shape[1]:
        encode(pending)
    encode(None)


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(dsts) -> int:
    """Delete the temporary files (``.<stem>.tmp<pid><suffix>``, see `transcode_video`) that a killed run
    left beside the outputs `dsts`; files of a process still running are kept. Returns how many went."""
    removed = 0
    for dst in dsts:
        dst = Path(dst)
        if not dst.parent.is_dir():
            continue
        for tmp in dst.parent.glob(f".{dst.stem}.tmp*{dst.suffix}"):
            pid = tmp.name[len(f".{dst.stem}.tmp"): len(tmp.name) - len(dst.suffix)]
            if pid.isdigit() and not _pid_alive(int(pid)):
                tmp.unlink(missing_ok=True)
                removed += 1
    return removed


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
    remove_stale_temps(j[1] for j in jobs)  # a killed run's half-written files (never counted as done)
    report = IndexReport(total=len(jobs))
    results = {}
    bar = tqdm(total=len(jobs), desc="training cache", unit="video", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with clean_process_pool(workers, preload=(__name__,)) as pool:  # no inherited decoders
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
