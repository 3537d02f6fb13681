"""decord backend: one VideoReader per call (nothing kept between calls), decoding scaled frames
(width/height) of the indices computed from the real frame timestamps; audio through PyAV
(decord's AudioReader decodes the whole track, too slow for long files)."""

from __future__ import annotations

import numpy as np

from . import _common as C
from . import pyav

NAME = "decord"


def available() -> bool:
    try:
        import decord  # noqa: F401
    except Exception:
        return False
    return True


def read(path: str, times, frame_size, audio):
    frames = None
    if times is not None:
        frames = _read_video(path, times, frame_size)
    wav = None if audio is None else pyav.read_audio(path, audio)
    return frames, wav


def _stream_geometry(path: str):
    import av

    with av.open(path) as c:
        if not c.streams.video:
            return None
        vs = c.streams.video[0]
        cc = vs.codec_context
        # The display matrix is on the stream's side data; decode one frame only if needed.
        ccw = 0
        try:
            for frame in c.decode(vs):
                ccw = C.normalise_rotation(getattr(frame, "rotation", 0))
                break
        except av.error.FFmpegError:
            pass
        return cc.height, cc.width, ccw, _has_empty_samples(vs)


def _has_empty_samples(vs) -> bool:
    """True when the file's index lists video samples without data (the header's frame count is
    larger than the frames that exist). decord counts and seeks by those phantom frames and fails
    (DECORDError) or, per upstream reports, can spin forever in get_batch near them."""
    entries = vs.index_entries
    n = len(entries)
    return n > 1 and any(entries[i].size == 0 for i in range(n))


def _read_video(path: str, times: np.ndarray, frame_size) -> np.ndarray:
    import decord

    geom = _stream_geometry(path)
    if geom is not None and (geom[2] != 0 or geom[3]):
        # decord 0.6 returns a mis-shaped buffer (4 "channels") for display-matrix-rotated
        # streams, and fails on indexed-but-empty samples (over-reported frame count), so those
        # files are decoded by PyAV (real packet timestamps) instead of returning garbage/hanging.
        frames, _ = pyav.read(path, times, frame_size, None)
        return frames
    h0, w0 = (geom[0], geom[1]) if geom is not None else (None, None)
    kw = {}
    if frame_size is not None and h0:
        oh, ow = C.output_size((h0, w0), frame_size)
        if (oh, ow) != (h0, w0):
            kw = {"width": ow, "height": oh}
    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=C.DECODE_THREADS, **kw)
    except decord.DECORDError:
        return _pyav_instead(path, times, frame_size)
    try:
        n = len(vr)
        # Real presentation times (VFR, B-frames); the container's frame count can be over-reported,
        # so only frames with a timestamp are used.
        ts = np.asarray(vr.get_frame_timestamp(list(range(n))))[:, 0].astype(np.float64)
        order = np.argsort(ts, kind="stable")
        rel = ts[order] - ts[order[0]]
        idx = order[C.frame_indices(rel, times)]
        uniq, inverse = np.unique(idx, return_inverse=True)
        batch = vr.get_batch(uniq.tolist()).asnumpy()
    except decord.DECORDError:
        # decord's decoder thread runs ahead of the requested frames; on a file with damaged
        # packets after them it fails the whole read, or not, depending on thread timing (a
        # test failed under load only). PyAV decodes just up to the frames asked for.
        return _pyav_instead(path, times, frame_size)
    finally:
        del vr
    return np.ascontiguousarray(batch[inverse])


def _pyav_instead(path: str, times, frame_size) -> np.ndarray:
    frames, _ = pyav.read(path, times, frame_size, None)  # raises a typed MediaError if PyAV fails too
    return frames
