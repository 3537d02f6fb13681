"""torchcodec backend (only when torchcodec imports against the system FFmpeg): frames played at
the requested times, resized inside the decoder; decoders kept open per process
(avssl.io.decoder_cache: torchcodec's exact mode scans every packet on each open); audio through PyAV
like every backend.

Files torchcodec cannot be trusted on are handed to the PyAV backend (`stats.fallback` says why):
untrusted file timestamps (avssl.io.timestamps: AVI with B-frames, where torchcodec trusts FFmpeg's
guessed times and is one to two frames late), a stream range that is not finite or does not fit the
frame count, and any torchcodec error (damaged packets, frames near the end it fails to find)."""

from __future__ import annotations

import numpy as np

from avssl.io.decoder_cache import decoder_cache, file_key
from avssl.io.timestamps import file_verdict

from . import _common as C
from . import pyav

NAME = "torchcodec"
_UNAVAILABLE_REASON: str | None = None


def available() -> bool:
    global _UNAVAILABLE_REASON
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception as e:  # ImportError, or its FFmpeg libraries fail to load
        _UNAVAILABLE_REASON = f"{type(e).__name__}: {e}"
        return False
    return True


def unavailable_reason() -> str | None:
    available()
    return _UNAVAILABLE_REASON


def read(path: str, times, frame_size, audio, stats: C.ReadStats | None = None):
    stats = stats if stats is not None else C.ReadStats()
    frames = None if times is None else _read_video(path, times, frame_size, stats)
    wav = None if audio is None else pyav.read_audio(path, audio, stats)
    return frames, wav


def _read_video(path: str, times: np.ndarray, frame_size, stats: C.ReadStats) -> np.ndarray:
    verdict = file_verdict(path)
    if not verdict.trusted:
        return _pyav_instead(path, times, frame_size, stats, f"file timestamps: {verdict.reason}")
    fs = tuple(frame_size) if isinstance(frame_size, (tuple, list)) else frame_size
    key = (NAME, file_key(path), fs)
    cache = decoder_cache()
    try:
        opened = cache.get(key, lambda: _open(path, frame_size))
        if opened.bad:
            return _pyav_instead(path, times, frame_size, stats, f"torchcodec stream range: {opened.bad}")
        frames = _decode(opened, times)
    except Exception as e:  # torchcodec raises RuntimeError/ValueError/IndexError on damaged or odd files
        cache.discard(key)  # its state after a failure is not trusted for the next read
        return _pyav_instead(path, times, frame_size, stats, f"torchcodec: {type(e).__name__}: {e}")
    stats.decoder = NAME
    return frames


def _pyav_instead(path: str, times, frame_size, stats: C.ReadStats, why: str) -> np.ndarray:
    stats.decoder, stats.fallback = pyav.NAME, why
    frames, _ = pyav.read(path, times, frame_size, None, stats)  # raises a typed MediaError if PyAV fails too
    return frames


def _implausible(begin, end, num_frames, fps) -> str:
    """Why torchcodec's stream range cannot be used to place times ("" if it can)."""
    if begin is None or end is None:
        return ""
    begin, end = float(begin), float(end)
    if not (np.isfinite(begin) and np.isfinite(end)) or abs(begin) > 1e7 or end < begin:
        return f"begin {begin:.3g}s, end {end:.3g}s"
    if num_frames and fps and num_frames >= 4:
        span, expected = end - begin, num_frames / float(fps)
        if span > 10 * expected + 2.0 or span < 0.25 * expected:
            return f"{num_frames} frames span {span:.3g}s, {fps:.3g} fps says {expected:.3g}s"
    return ""


class _Opened:
    """One file opened at one output size: the "exact" decoder and its stream range, or why its range
    cannot be used (`bad`)."""

    __slots__ = ("dec", "begin", "end", "bad")

    def __init__(self, dec=None, begin=0.0, end=None, bad: str = ""):
        self.dec, self.begin, self.end, self.bad = dec, begin, end, bad

    def close(self) -> None:
        self.dec = None  # torchcodec has no close(): the decoder goes with its last reference


def _open(path: str, frame_size) -> _Opened:
    """The per-open cost the decoder cache pays once per file: a header-only open for the displayed
    size, then the decoding open, which scans every packet to index the file."""
    from torchcodec.decoders import VideoDecoder

    # Header-only open for the displayed size; the decoding open below uses "exact", which indexes
    # the packets (no decoding), because "approximate" maps times to frames by the header's
    # average fps and fails on variable frame rate files.
    md = VideoDecoder(path, seek_mode="approximate", num_ffmpeg_threads=C.DECODE_THREADS).metadata
    # torchcodec already applies the rotation: its width/height are the displayed ones.
    display = (md.height, md.width)
    out_hw = C.output_size(display, frame_size)
    kw = {}
    if out_hw != display:
        from torchcodec.transforms import Resize

        kw["transforms"] = [Resize(size=out_hw)]  # resized inside the decoder: bounded memory
    dec = VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=C.DECODE_THREADS, dimension_order="NHWC", **kw)
    md = dec.metadata
    bad = _implausible(md.begin_stream_seconds, md.end_stream_seconds, md.num_frames, md.average_fps)
    if bad:
        return _Opened(bad=bad)
    end = md.end_stream_seconds
    return _Opened(dec, float(md.begin_stream_seconds or 0.0), None if end is None else float(end))


def _decode(opened: _Opened, times: np.ndarray) -> np.ndarray:
    abs_t = np.asarray(times, dtype=np.float64) + opened.begin
    abs_t = np.maximum(abs_t, opened.begin)
    if opened.end is not None:  # past the last frame: the last frame (padding rule)
        abs_t = np.minimum(abs_t, opened.end - 1e-6)
    uniq, inverse = np.unique(abs_t, return_inverse=True)
    batch = opened.dec.get_frames_played_at(uniq.tolist()).data.numpy()
    return np.ascontiguousarray(batch[inverse])
