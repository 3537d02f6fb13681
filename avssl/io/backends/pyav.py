"""PyAV backend: seek to the keyframe before the first needed frame, decode forward, convert only
the frames that are shown at the requested times (scaled by swscale during the RGB conversion, so
a 4K source never exists as a full-size RGB array). Also the audio reader of every backend."""

from __future__ import annotations

import math
from dataclasses import dataclass

import av
import numpy as np

from . import _common as C

NAME = "pyav"
SKIP_MARGIN = 0.5  # s


@dataclass(frozen=True)
class AudioRequest:
    """Audio window on the media timeline: `num_samples` at `rate` from `start` (s), `channels` out."""

    start: float
    num_samples: int
    rate: int
    channels: int


def available() -> bool:
    return True


def video_origin(container) -> float:
    """Media-timeline origin (s, stream clock): the first video frame's presentation time."""
    if not container.streams.video:
        return 0.0
    vs = container.streams.video[0]
    return float(vs.start_time * vs.time_base) if vs.start_time is not None else 0.0


def read(path: str, times: np.ndarray | None, frame_size, audio: AudioRequest | None):
    """Decode the frames shown at `times` (media timeline) and/or the audio window, from one open."""
    with av.open(path) as container:
        origin = video_origin(container)
        frames = None if times is None else _read_video(container, times, frame_size, origin)
        wav = None if audio is None else read_audio_from(container, audio, origin)
    return frames, wav


def _read_video(container, times: np.ndarray, frame_size, origin: float) -> np.ndarray:
    vs = container.streams.video[0]
    vs.codec_context.thread_count = C.DECODE_THREADS
    tb = vs.time_base
    ccw = None
    out_hw = None

    def convert(frame) -> np.ndarray:
        nonlocal ccw, out_hw
        if ccw is None:
            ccw = C.normalise_rotation(getattr(frame, "rotation", 0))
            display = (frame.width, frame.height) if ccw in (90, 270) else (frame.height, frame.width)
            out_hw = C.output_size(display, frame_size)
        h, w = C.stored_size(out_hw, ccw)
        if (h, w) == (frame.height, frame.width):
            img = frame.to_ndarray(format="rgb24")
        else:
            # AREA averages every source pixel on big downscales (no aliasing), like cv2.INTER_AREA.
            img = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
        return C.rotate_to_display(img, ccw)

    first_needed = float(times.min())
    sought = first_needed > 0
    if sought:
        container.seek(int((first_needed + origin) / tb), stream=vs, backward=True, any_frame=False)
    try:
        result = _decode_forward(container, vs, times, origin, convert, check_first=sought)
    except _NoFrameAfterSeek:
        # Nothing decodes after the keyframe the index points to: the header announces frames that
        # are not there (empty trailing samples, over-reported duration). Decode from the start;
        # the padding rule then shows the last real frame.
        result = None
    if result is None:  # the seek landed after the first needed frame: decode from the start instead
        container.seek(0, stream=vs, backward=True)
        result = _decode_forward(container, vs, times, origin, convert, check_first=False)
    return result


def _frames(container, vs):
    """Decoded frames of `vs`, each packet yielded just before it is decoded (packets with data only)."""
    for packet in container.demux(vs):
        if packet.size:
            yield packet
        yield from packet.decode()  # the final empty packet flushes the decoder


class _NoFrameAfterSeek(Exception):
    """Decoding forward from a seek gave no frame at all."""


def _decode_forward(container, vs, times, origin, convert, check_first: bool):
    order = np.argsort(times, kind="stable")
    out: list = [None] * len(times)
    cache_key, cache_img = None, None
    prev = None
    prev_time = None
    k = 0  # next requested time (in sorted order) still unanswered
    step = 1.0 / float(vs.average_rate) if vs.average_rate else 1.0 / 30

    def answer(frame, key):
        nonlocal cache_key, cache_img
        if key != cache_key:
            cache_key, cache_img = key, convert(frame)
        return cache_img

    # Between the keyframe and the clip only reference frames are needed to reach it: skipping
    # non-reference (B) frames there saves their decoding. Full decoding resumes at the first
    # *packet* stamped SKIP_MARGIN s before the first needed time, decided before that packet is
    # sent: deciding on decoded frames instead came too late when the seek landed within the
    # margin (the decoder holds several packets before its first frame comes out, and a B-frame
    # of the clip among them was dropped: frame k-1 shown at k's time).
    cc = vs.codec_context
    first_needed = times[order[0]]
    skipping = check_first and first_needed - SKIP_MARGIN > 0
    if skipping:
        cc.skip_frame = "NONREF"
    for frame in _frames(container, vs):
        if isinstance(frame, av.Packet):  # a packet about to be decoded: is full decoding due?
            if skipping and (frame.pts is None or float(frame.pts * vs.time_base) - origin >= first_needed - SKIP_MARGIN):
                cc.skip_frame = "DEFAULT"
                skipping = False
            continue
        if frame.pts is not None:
            ft = float(frame.pts * vs.time_base) - origin
        else:  # no timestamp (rare, some AVI): assume a constant rate after the previous frame
            ft = 0.0 if prev_time is None else prev_time + step
        if prev is None and check_first and ft > times[order[0]] + C.TIME_EPS:
            return None
        while k < len(order) and times[order[k]] + C.TIME_EPS < ft:
            src = prev if prev is not None else frame  # before the first frame: show the first
            out[order[k]] = answer(src, id(src))
            k += 1
        if k == len(order):
            break
        prev, prev_time = frame, ft
    if skipping:
        cc.skip_frame = "DEFAULT"
    if prev is None:
        if check_first:
            raise _NoFrameAfterSeek()
        raise av.error.InvalidDataError(0, "no decodable video frame")
    while k < len(order):  # past the last frame: repeat it (padding rule)
        out[order[k]] = answer(prev, id(prev))
        k += 1
    return np.stack(out)


def _to_float_planar(frame) -> np.ndarray:
    """Any PyAV audio frame -> float32 [channels, samples] in [-1, 1]."""
    arr = frame.to_ndarray()
    ch = len(frame.layout.channels)
    if not frame.format.is_planar:
        arr = arr.reshape(-1, ch).T
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / 32768.0
    if arr.dtype == np.int32:
        return arr.astype(np.float32) / 2147483648.0
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - 128.0) / 128.0
    return arr.astype(np.float32, copy=False)


def read_audio(path: str, req: AudioRequest) -> np.ndarray:
    with av.open(path) as container:
        return read_audio_from(container, req, video_origin(container))


def read_audio_from(container, req: AudioRequest, origin: float) -> np.ndarray:
    """Audio window `req` from an open container, at the native rate and channel count.

    Returns (float32 [C_native, S_native], native_rate, first sample's media time); the caller
    mixes and resamples. Samples outside the stream stay zero."""
    from avssl.io.errors import NoAudioStream

    if not container.streams.audio:
        raise NoAudioStream(container.name, "the file has no audio stream")
    ast = container.streams.audio[0]
    ast.codec_context.thread_count = C.DECODE_THREADS
    rate = int(ast.codec_context.sample_rate or ast.rate)
    channels = int(ast.codec_context.channels or len(ast.layout.channels))
    # Margin around the window so the resampling filter has real context at both ends.
    margin = 0.02
    n0 = int(math.floor((req.start - margin) * rate))
    n_total = int(math.ceil((req.num_samples / req.rate + 2 * margin) * rate)) + 1
    buf = np.zeros((channels, n_total), dtype=np.float32)
    seek_to = n0 / rate + origin - 0.1  # a little earlier: codecs start decoding at a packet boundary
    stream_start = float(ast.start_time * ast.time_base) if ast.start_time is not None else 0.0
    # Always seek: the container may already have been read past the window (video first).
    container.seek(int(max(seek_to, stream_start) / ast.time_base), stream=ast, backward=True, any_frame=False)
    pos = None
    for frame in container.decode(ast):
        data = _to_float_planar(frame)
        if frame.pts is not None:
            pos = int(round((float(frame.pts * ast.time_base) - origin) * rate))
        elif pos is None:
            pos = int(round((stream_start - origin) * rate))
        a, b = pos - n0, pos - n0 + data.shape[1]
        lo, hi = max(a, 0), min(b, n_total)
        if hi > lo:
            buf[: data.shape[0], lo:hi] = data[: buf.shape[0], lo - a : hi - a]
        pos += data.shape[1]
        if a >= n_total:
            break
    return buf, rate, n0 / rate
