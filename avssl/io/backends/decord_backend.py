"""decord backend: VideoReaders kept open per process (avssl.io.decoder_cache: decord indexes the whole
file on every open), decoding scaled frames
(width/height) of the indices computed from the real frame timestamps; audio through PyAV
(decord's AudioReader decodes the whole track, too slow for long files).

Files decord cannot be trusted on are handed to the PyAV backend (`stats.fallback` says why):
untrusted file timestamps (avssl.io.timestamps: AVI with B-frames, where decord reads the missing pts
as about -3e17 s and returns one frame for every time), timestamps decord reports that are not
finite / not increasing / do not span the stream, display-matrix rotation, phantom index entries,
and any decord error (e.g. damaged packets)."""

from __future__ import annotations

import numpy as np

from avssl.io.decoder_cache import decoder_cache, file_key
from avssl.io.timestamps import cached_verdict, check_container, remember

from . import _common as C
from . import pyav

NAME = "decord"


def available() -> bool:
    try:
        import decord  # noqa: F401
    except Exception:
        return False
    return True


def read(path: str, times, frame_size, audio, stats: C.ReadStats | None = None):
    stats = stats if stats is not None else C.ReadStats()
    frames = None
    if times is not None:
        frames = _read_video(path, times, frame_size, stats)
    wav = None if audio is None else pyav.read_audio(path, audio, stats)
    return frames, wav


def _stream_geometry(path: str):
    import av

    with av.open(path) as c:
        if not c.streams.video:
            return None
        vs = c.streams.video[0]
        cc = vs.codec_context
        verdict, key = cached_verdict(path)
        if verdict is None:  # first read of this file in this process: check the first packets' times
            verdict = remember(key, check_container(c, vs))
            try:
                c.seek(vs.start_time if vs.start_time is not None else 0, stream=vs, backward=True)
            except av.error.FFmpegError:
                pass  # the rotation read below then comes from a later frame: the same display matrix
        # The display matrix is on the stream's side data; decode one frame only if needed.
        ccw = 0
        try:
            for frame in c.decode(vs):
                ccw = C.normalise_rotation(getattr(frame, "rotation", 0))
                break
        except av.error.FFmpegError:
            pass
        return cc.height, cc.width, ccw, _has_empty_samples(vs), verdict


def _has_empty_samples(vs) -> bool:
    """True when the file's index lists video samples without data (the header's frame count is
    larger than the frames that exist). decord counts and seeks by those phantom frames and fails
    (DECORDError) or, per upstream reports, can spin forever in get_batch near them."""
    entries = vs.index_entries
    n = len(entries)
    return n > 1 and any(entries[i].size == 0 for i in range(n))


class _Opened:
    """One file opened for reading at one output size: the VideoReader (None when the file goes to
    PyAV) with its frame order and times, or the reason the file is handed to PyAV."""

    __slots__ = ("vr", "order", "rel", "fallback")

    def __init__(self, vr=None, order=None, rel=None, fallback: str = ""):
        self.vr, self.order, self.rel, self.fallback = vr, order, rel, fallback

    def close(self) -> None:
        self.vr = None  # decord has no close(): its file and decoder go with the last reference


def _open(path: str, frame_size) -> _Opened:
    """Probe the geometry, open the VideoReader (decord demuxes the whole file to index it) and check
    its timestamps: the per-open cost that the decoder cache pays once per file."""
    import decord

    geom = _stream_geometry(path)
    if geom is not None and not geom[4].trusted:
        return _Opened(fallback=f"file timestamps: {geom[4].reason}")
    if geom is not None and (geom[2] != 0 or geom[3]):
        # decord 0.6 returns a mis-shaped buffer (4 "channels") for display-matrix-rotated
        # streams, and fails on indexed-but-empty samples (over-reported frame count), so those
        # files are decoded by PyAV (real packet timestamps) instead of returning garbage/hanging.
        return _Opened(fallback="rotation" if geom[2] else "empty index entries")
    h0, w0 = (geom[0], geom[1]) if geom is not None else (None, None)
    kw = {}
    if frame_size is not None and h0:
        oh, ow = C.output_size((h0, w0), frame_size)
        if (oh, ow) != (h0, w0):
            kw = {"width": ow, "height": oh}
    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=C.DECODE_THREADS, **kw)
        n = len(vr)
        # Real presentation times (VFR, B-frames); the container's frame count can be over-reported,
        # so only frames with a timestamp are used.
        ts = np.asarray(vr.get_frame_timestamp(list(range(n))))[:, 0].astype(np.float64)
        fps = float(vr.get_avg_fps() or 0.0)
    except decord.DECORDError as e:
        return _Opened(fallback=f"decord: {e}")
    bad = _implausible(ts, fps)
    if bad:
        return _Opened(fallback=f"decord timestamps: {bad}")
    order = np.argsort(ts, kind="stable")
    return _Opened(vr, order, ts[order] - ts[order[0]])


def _read_video(path: str, times: np.ndarray, frame_size, stats: C.ReadStats) -> np.ndarray:
    import decord

    fs = tuple(frame_size) if isinstance(frame_size, (tuple, list)) else frame_size
    key = (NAME, file_key(path), fs)
    cache = decoder_cache()
    opened = cache.get(key, lambda: _open(path, frame_size))
    if opened.vr is None:
        return _pyav_instead(path, times, frame_size, stats, opened.fallback)
    stats.decoder = NAME
    try:
        idx = opened.order[C.frame_indices(opened.rel, times)]
        uniq, inverse = np.unique(idx, return_inverse=True)
        batch = opened.vr.get_batch(uniq.tolist()).asnumpy()
    except decord.DECORDError as e:
        # decord's decoder thread runs ahead of the requested frames; on a file with damaged
        # packets after them it fails the whole read, or not, depending on thread timing (a
        # test failed under load only). PyAV decodes just up to the frames asked for. The reader
        # is dropped: its state after a failure is not trusted for the next read.
        cache.discard(key)
        return _pyav_instead(path, times, frame_size, stats, f"decord: {e}")
    return np.ascontiguousarray(batch[inverse])


def _implausible(ts: np.ndarray, fps: float) -> str:
    """Why decord's frame timestamps (s, index order) cannot be used to pick frames ("" if they can):
    not finite, huge (AV_NOPTS_VALUE read as a time: about -3e17 s), repeated, or spanning far more
    or less than the frame count at the average rate."""
    n = len(ts)
    if n == 0:
        return "no frames"
    if not np.all(np.isfinite(ts)) or np.abs(ts).max() > 1e7:
        return f"not finite or absurd (min {ts.min():.3g}s)"
    if n >= 2 and len(np.unique(ts)) < n:
        return f"{n - len(np.unique(ts))} repeated"
    if n >= 4 and fps > 0:
        span, expected = float(ts.max() - ts.min()), (n - 1) / fps
        if span > 10 * expected + 2.0 or span < 0.25 * expected:
            return f"{n} frames span {span:.3g}s, {fps:.3g} fps says {expected:.3g}s"
    return ""


def _pyav_instead(path: str, times, frame_size, stats: C.ReadStats, why: str) -> np.ndarray:
    stats.decoder, stats.fallback = pyav.NAME, why
    stats.video_errors = 0  # the PyAV read counts what it meets itself
    frames, _ = pyav.read(path, times, frame_size, None, stats)  # raises a typed MediaError if PyAV fails too
    return frames
