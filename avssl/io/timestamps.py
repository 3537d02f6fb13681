"""Can a file's video timestamps be trusted? A cheap per-file verdict every backend asks first.

Frame-accurate reading (seek, then pick frames by presentation time) is only right when the
packets carry presentation times that are finite, increasing apart from B-frame reordering, and
spaced like the frame rate says. Real collections break this in three ways:

* no per-frame pts: AVI stores none, only the chunk order (its clock: chunk k at k / rate). Without
  B-frames that is exact. With B-frames the display order differs from the chunk order and the
  times are guesses: FFmpeg 5 leaves them unset, FFmpeg 7+ (PyAV's wheels) guesses them from the
  decode order, one frame late, and with Xvid's "packed B-frames" (UCF101: a P and a B frame in one
  chunk, then an empty N-VOP chunk) up to two frames late with gaps; decord's FFmpeg reads the
  missing value as AV_NOPTS_VALUE * time_base (about -3e17 s) and returns one frame for every time;
* duplicate or decreasing times beyond the reordering window (broken muxers, concatenated streams);
* times whose spacing does not fit the rate (the span of N packets far from N / fps).

For such a file the reader decodes forward from the start and gives frame k (in output order, which
is display order) the time k / fps: "synthesized" times. That is exact for a constant-rate file
(AVI has no other clock) and is the only honest choice when the stored times are garbage.

`timestamp_verdict(pts, time_base, fps, dts, container)` is the pure rule; `check_container` demuxes
the first packets of an open container (no decoding, the caller seeks back); `file_verdict(path)`
opens the file for it; answers are cached per (path, size, mtime) in this process (`cached_verdict`,
`remember`), so a worker pays the check once per file.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["TimestampVerdict", "timestamp_verdict", "check_container", "file_verdict", "cached_verdict", "remember",
           "CHECK_PACKETS"]

# Packets examined from the start of the stream: enough to see every B-frame pattern and a GOP start
# of most files, cheap enough (demux only) to run on every first read of a file.
CHECK_PACKETS = 48
# A packet may be presented this many frame periods before one decoded earlier (B-frame reordering).
REORDER_FRAMES = 16


@dataclass(frozen=True)
class TimestampVerdict:
    """`trusted`: pick frames by the file's pts. Otherwise times are synthesized (frame k at k / fps).
    `reason`: "pts" (trusted), "no-pts", "non-monotonic", "implausible" or "unknown" (no packets)."""

    trusted: bool
    reason: str
    detail: str = ""


TRUSTED = TimestampVerdict(True, "pts")


def timestamp_verdict(pts: list, time_base, fps: float, dts: list | None = None,
                      container: str = "") -> TimestampVerdict:
    """The rule, on the presentation (and decode) times (stream units, None when absent) of the first
    video packets holding data, in decode order, and the container's FFmpeg format name.

    Trusted iff: not an AVI whose packets are reordered (some pts != dts: B-frames, times guessed by
    the demuxer, reason "no-pts"); every packet has a pts; all are finite; no two are equal; none lies more than
    REORDER_FRAMES frame periods before the largest seen so far; and the span max - min of n packets
    is within [0.25, 10] x (n - 1) / fps (+ 2 s slack above: variable frame rate)."""
    if not pts:
        return TimestampVerdict(True, "unknown", "no video packets to check")
    if "avi" in container.split(",") and dts is not None:
        reordered = sum(1 for p, d in zip(pts, dts) if p is not None and d is not None and p != d)
        if reordered:
            return TimestampVerdict(False, "no-pts", f"AVI with B-frames: {reordered} of the first {len(pts)} "
                                    "video packets are reordered, their times are the demuxer's guesses")
    missing = sum(1 for p in pts if p is None)
    if missing:
        return TimestampVerdict(False, "no-pts", f"{missing} of the first {len(pts)} video packets have no pts")
    tb = float(time_base) if time_base else 0.0
    sec = [float(p) * tb for p in pts]
    if not all(math.isfinite(s) for s in sec) or tb <= 0:
        return TimestampVerdict(False, "implausible", "non-finite packet times")
    if len(set(pts)) < len(pts):
        return TimestampVerdict(False, "non-monotonic", f"{len(pts) - len(set(pts))} duplicate packet times")
    period = 1.0 / fps if fps and fps > 0 else 1.0 / 30
    top = -math.inf
    for i, s in enumerate(sec):
        if s < top - REORDER_FRAMES * period:
            return TimestampVerdict(False, "non-monotonic", f"packet {i} at {s:.3f}s comes after {top:.3f}s")
        top = max(top, s)
    n = len(sec)
    if n >= 4:
        span, expected = max(sec) - min(sec), (n - 1) * period
        if span > 10 * expected + 2.0 or span < 0.25 * expected:
            return TimestampVerdict(False, "implausible",
                                    f"{n} packets span {span:.3g}s, the rate says {expected:.3g}s")
    return TRUSTED


def check_container(container, vs=None, max_packets: int = CHECK_PACKETS) -> TimestampVerdict:
    """Verdict for an open PyAV container, from its first `max_packets` video packets (demux only).
    Leaves the container positioned after them: seek before decoding."""
    import av

    vs = vs if vs is not None else container.streams.video[0]
    rate = vs.average_rate or vs.guessed_rate or vs.base_rate
    fps = float(rate) if rate else 0.0
    pts, dts = [], []
    try:
        for pkt in container.demux(vs):
            if pkt.size:
                pts.append(pkt.pts)
                dts.append(pkt.dts)
                if len(pts) >= max_packets:
                    break
    except av.error.FFmpegError:
        pass  # damaged / cut early: judge what was read
    return timestamp_verdict(pts, vs.time_base, fps, dts, container.format.name)


_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 1024


def cached_verdict(path: str) -> tuple[TimestampVerdict | None, tuple | None]:
    """(verdict or None, cache key) for `path` from this process's cache (key None: no such file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    key = (str(path), st.st_size, st.st_mtime_ns)
    v = _CACHE.get(key)
    if v is not None:
        _CACHE.move_to_end(key)
    return v, key


def remember(key, verdict: TimestampVerdict) -> TimestampVerdict:
    if key is not None:
        _CACHE[key] = verdict
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return verdict


def file_verdict(path: str) -> TimestampVerdict:
    """`check_container` on `path` (its own short-lived open), cached per (path, size, mtime) in this
    process: a DataLoader worker pays one open + demuxing CHECK_PACKETS packets per file (~2 ms)."""
    import av

    v, key = cached_verdict(path)
    if v is not None:
        return v
    try:
        with av.open(str(path)) as c:
            v = check_container(c) if c.streams.video else TRUSTED
    except av.error.FFmpegError:
        return TRUSTED  # the reader's own open reports what is wrong with the file
    return remember(key, v)
