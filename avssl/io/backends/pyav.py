"""PyAV backend: seek to the keyframe before the first needed frame, decode forward, convert only
the frames that are shown at the requested times (scaled by swscale during the RGB conversion, so
a 4K source never exists as a full-size RGB array). Also the audio reader of every backend."""

from __future__ import annotations

import math
from dataclasses import dataclass

import av
import numpy as np

from avssl.io.timestamps import cached_verdict, check_container, remember

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


def keyframe_times(path: str) -> np.ndarray | None:
    """Times (s, media timeline, sorted) of the video keyframes the container's index lists, read without
    decoding; None when it lists none (no video, Matroska without cues, raw streams). The index holds
    decode times, up to a few frames before the presentation times: a cost hint for planning reads
    (`avssl.io.sampling.read_groups`), never used to pick frames."""
    with av.open(path) as container:
        if not container.streams.video:
            return None
        vs = container.streams.video[0]
        tb = float(vs.time_base)
        entries = vs.index_entries
        ts = [e.timestamp for e in entries if e.is_keyframe]
        if not ts:
            return None
        return np.sort(np.asarray(ts, dtype=np.float64) * tb - video_origin(container))


def read(path: str, times: np.ndarray | None, frame_size, audio: AudioRequest | None, stats: C.ReadStats | None = None):
    """Decode the frames shown at `times` (media timeline) and/or the audio window, from one open.

    Files whose timestamps cannot be trusted (avssl.io.timestamps) are decoded forward from the start
    with synthesized times. Undecodable packets are skipped and counted in `stats`."""
    stats = stats if stats is not None else C.ReadStats()
    stats.decoder = stats.decoder or NAME
    with av.open(path) as container:
        origin = video_origin(container)
        frames = None
        if times is not None and container.streams.video:
            verdict, key = cached_verdict(path)
            rewind = verdict is None
            if rewind:  # first read of this file in this process: check on this open (demux only)
                verdict = remember(key, check_container(container))
            frames = _read_video(container, times, frame_size, origin, verdict, stats, rewind)
        elif times is not None:
            frames = _read_video(container, times, frame_size, origin, None, stats)
        wav = None if audio is None else read_audio_from(container, audio, origin, stats)
    return frames, wav


def _read_video(container, times: np.ndarray, frame_size, origin: float, verdict=None, stats=None,
                rewind: bool = False) -> np.ndarray:
    """Frames shown at `times`. `rewind`: the container was read from (timestamp check): seek back
    to the start before decoding from there."""
    vs = container.streams.video[0]
    vs.codec_context.thread_count = C.DECODE_THREADS
    tb = vs.time_base
    ccw = None
    out_hw = None
    stats = stats if stats is not None else C.ReadStats()

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

    if verdict is not None and not verdict.trusted:
        # The file's times are guesses or garbage: frame k (output order = display order) is shown
        # from k / fps. Counting needs every frame from the start, so no seek.
        stats.timestamps = "synthesized"
        if rewind:
            _rewind(container, vs)
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        result = _decode_forward(container, vs, times, origin, convert, check_first=False,
                                 synth_step=1.0 / float(rate) if rate else 1.0 / 25)
        return _finish(result, stats)
    first_needed = float(times.min())
    sought = first_needed > 0
    if sought:
        container.seek(int((first_needed + origin) / tb), stream=vs, backward=True, any_frame=False)
    elif rewind:
        _rewind(container, vs)
    try:
        result = _decode_forward(container, vs, times, origin, convert, check_first=sought)
    except _NoFrameAfterSeek:
        # Nothing decodes after the keyframe the index points to: the header announces frames that
        # are not there (empty trailing samples, over-reported duration). Decode from the start;
        # the padding rule then shows the last real frame.
        result = None
    if result is None:  # the seek landed after the first needed frame: decode from the start instead
        _rewind(container, vs)
        result = _decode_forward(container, vs, times, origin, convert, check_first=False)
    return _finish(result, stats)


def _rewind(container, vs) -> None:
    """Back to the stream's first packet."""
    try:
        container.seek(vs.start_time if vs.start_time is not None else 0, stream=vs, backward=True)
    except av.error.FFmpegError:
        container.seek(0, stream=vs, backward=True)


def _finish(result, stats) -> np.ndarray:
    frames, errors, all_stale = result
    stats.video_errors += errors
    if all_stale:
        raise C.NoDecodableData(f"video: {errors} undecodable packet(s) and no good frame in the requested window")
    return frames


class _Failed:
    """Marker yielded by `_frames` for a packet the decoder rejected (or the demuxer could not read)."""

    __slots__ = ("packet", "error")

    def __init__(self, packet, error):
        self.packet, self.error = packet, error


def _frames(container, vs):
    """Decoded frames of `vs`; each packet with data is yielded just before it is decoded, and a
    `_Failed` marker for each packet that does not decode (skipped: damage is not fatal). A demuxing
    error ends the stream (cut file) after flushing the frames the decoder still holds."""
    packets = container.demux(vs)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as e:  # the file ends in garbage / is cut mid-packet
            yield _Failed(None, e)
            try:
                yield from vs.codec_context.decode(None)
            except av.error.FFmpegError:
                pass
            return
        if packet.size:
            yield packet
        try:
            decoded = packet.decode()  # the final empty packet flushes the decoder
        except av.error.FFmpegError as e:
            yield _Failed(packet, e)
            continue
        yield from decoded


class _NoFrameAfterSeek(Exception):
    """Decoding forward from a seek gave no frame at all."""


def _decode_forward(container, vs, times, origin, convert, check_first: bool, synth_step: float | None = None):
    """Answer every requested time with the frame shown then. Returns (frames [T,H,W,3], number of
    decoding errors met, True when every answer is stale), or None when `check_first` and the seek
    landed after the first needed time.

    Stale answer: the frame shown at t is the last good frame because the packet(s) of the frame(s)
    after it failed at or before t (damage); a window of only stale answers has no decodable data.
    `synth_step`: synthesized times (frame k at k * synth_step; a failed packet takes one slot)."""
    order = np.argsort(times, kind="stable")
    out: list = [None] * len(times)
    cache_key, cache_img = None, None
    prev = None
    prev_time = None
    k = 0  # next requested time (in sorted order) still unanswered
    n_out = 0  # frames output so far (synthesized times)
    errors = 0
    failures: list[float] = []  # media times of failed packets (inf: unknown)
    stale = 0
    step = 1.0 / float(vs.average_rate) if vs.average_rate else 1.0 / 30
    tb = vs.time_base

    def answer(frame, key):
        nonlocal cache_key, cache_img
        if key != cache_key:
            cache_key, cache_img = key, convert(frame)
        return cache_img

    def is_stale(t) -> bool:
        lo = -math.inf if prev_time is None else prev_time
        return any(lo < f <= t + C.TIME_EPS for f in failures)

    # Between the keyframe and the clip only reference frames are needed to reach it: skipping
    # non-reference (B) frames there saves their decoding. Full decoding resumes at the first
    # *packet* stamped SKIP_MARGIN s before the first needed time, decided before that packet is
    # sent: deciding on decoded frames instead came too late when the seek landed within the
    # margin (the decoder holds several packets before its first frame comes out, and a B-frame
    # of the clip among them was dropped: frame k-1 shown at k's time). The same rule holds in the
    # gaps between requested times (several clips from one decode, avssl.io.read_clips): a packet is
    # fully decoded iff some requested time lies within SKIP_MARGIN of its timestamp.
    cc = vs.codec_context
    sorted_t = np.asarray(times, dtype=np.float64)[order]
    can_skip = synth_step is None

    def full_decode(pkt) -> bool:
        if pkt.pts is None:
            return True
        pt = float(pkt.pts * tb) - origin
        j = int(np.searchsorted(sorted_t, pt - SKIP_MARGIN))
        if j == 0 and not check_first:
            return True  # before the first requested time without a seek: decoded as it comes
        return j < len(sorted_t) and sorted_t[j] <= pt + SKIP_MARGIN

    skipping = False
    for frame in _frames(container, vs):
        if isinstance(frame, av.Packet):  # a packet about to be decoded: full decoding or references only?
            if can_skip:
                skip = not full_decode(frame)
                if skip != skipping:
                    cc.skip_frame = "NONREF" if skip else "DEFAULT"
                    skipping = skip
            continue
        if isinstance(frame, _Failed):
            errors += 1
            p = frame.packet
            if synth_step is not None:
                failures.append(n_out * synth_step)
                n_out += 1  # the lost frame keeps its slot: later frames keep their times
            elif p is not None and (p.pts if p.pts is not None else p.dts) is not None:
                failures.append(float((p.pts if p.pts is not None else p.dts) * tb) - origin)
            else:
                failures.append(prev_time + step if prev_time is not None else 0.0)
            continue
        if synth_step is not None:
            ft = n_out * synth_step
            n_out += 1
        elif frame.pts is not None:
            ft = float(frame.pts * tb) - origin
        else:  # no timestamp (rare): assume a constant rate after the previous frame
            ft = 0.0 if prev_time is None else prev_time + step
        if getattr(frame, "is_corrupt", False):
            errors += 1  # concealed by the decoder: kept, but counted
        if prev is None and check_first and ft > times[order[0]] + C.TIME_EPS:
            return None
        while k < len(order) and times[order[k]] + C.TIME_EPS < ft:
            src = prev if prev is not None else frame  # before the first frame: show the first
            stale += prev is not None and is_stale(times[order[k]])
            out[order[k]] = answer(src, id(src))
            k += 1
        if k == len(order):
            break
        prev, prev_time = frame, ft
    if skipping:
        cc.skip_frame = "DEFAULT"
    if prev is None:
        if check_first and not errors:
            raise _NoFrameAfterSeek()
        raise C.NoDecodableData(f"video: no decodable frame ({errors} undecodable packet(s))")
    while k < len(order):  # past the last frame: repeat it (padding rule)
        stale += is_stale(times[order[k]])
        out[order[k]] = answer(prev, id(prev))
        k += 1
    return np.stack(out), errors, stale == len(times)


def _frame_array(frame) -> np.ndarray:
    """An audio frame's samples, native dtype: planar [channels, samples], packed [1, samples * channels].

    Hand-written for `AudioFrame.to_ndarray`, which finds the planes by walking `extended_data` to a
    NULL that FFmpeg only guarantees up to 8 channels: a garbled AAC packet that decodes as a
    43-channel frame made it read wild pointers (segfault). Exactly the layout's planes are read here."""
    from av.audio.frame import format_dtypes
    from av.audio.plane import AudioPlane

    ch = frame.layout.nb_channels
    dtype = np.dtype(format_dtypes[frame.format.name])
    if ch < 1:
        return np.zeros((0, frame.samples), dtype)
    if not frame.format.is_planar:
        return np.frombuffer(AudioPlane(frame, 0), dtype=dtype, count=frame.samples * ch)[None]
    return np.stack([np.frombuffer(AudioPlane(frame, k), dtype=dtype, count=frame.samples) for k in range(ch)])


def _to_float_planar(frame) -> np.ndarray:
    """Any PyAV audio frame -> float32 [channels, samples] in [-1, 1]."""
    arr = _frame_array(frame)
    ch = frame.layout.nb_channels
    if not frame.format.is_planar:
        arr = arr.reshape(-1, ch).T
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / 32768.0
    if arr.dtype == np.int32:
        return arr.astype(np.float32) / 2147483648.0
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - 128.0) / 128.0
    return arr.astype(np.float32, copy=False)


# Margin (s) around an audio window so the resampling filter has real context at both ends.
AUDIO_MARGIN = 0.02


def audio_window(req: AudioRequest, rate: int) -> tuple[int, int]:
    """Native samples read for `req` from a stream at `rate` Hz: (first sample index n0 on the media
    timeline, count n_total), n0 = floor((start - margin) * rate), n_total = ceil((num_samples / req.rate
    + 2 margin) * rate) + 1."""
    n0 = int(math.floor((req.start - AUDIO_MARGIN) * rate))
    n_total = int(math.ceil((req.num_samples / req.rate + 2 * AUDIO_MARGIN) * rate)) + 1
    return n0, n_total


def read_audio(path: str, req: AudioRequest, stats: C.ReadStats | None = None) -> np.ndarray:
    with av.open(path) as container:
        return read_audio_from(container, req, video_origin(container), stats)


def read_audio_from(container, req: AudioRequest, origin: float, stats: C.ReadStats | None = None) -> np.ndarray:
    """Audio window `req` from an open container, at the native rate and channel count.

    Returns (float32 [C_native, S_native], native_rate, first sample's media time); the caller
    mixes and resamples. Samples outside the stream stay zero, and so do those of packets the
    decoder rejects (skipped and counted in `stats.audio_errors` when they touch the window). A
    window that meets rejected packets and not one good sample raises `NoDecodableData`."""
    from avssl.io.errors import NoAudioStream

    if not container.streams.audio:
        raise NoAudioStream(container.name, "the file has no audio stream")
    ast = container.streams.audio[0]
    if not ast.codec_context.is_open:  # a second window from the same open container reuses the decoder
        ast.codec_context.thread_count = C.DECODE_THREADS
    tb = ast.time_base
    rate = int(ast.codec_context.sample_rate or ast.rate)
    channels = int(ast.codec_context.channels or len(ast.layout.channels))
    n0, n_total = audio_window(req, rate)
    buf = np.zeros((channels, n_total), dtype=np.float32)
    seek_to = n0 / rate + origin - 0.1  # a little earlier: codecs start decoding at a packet boundary
    stream_start = float(ast.start_time * tb) if ast.start_time is not None else 0.0
    # Always seek: the container may already have been read past the window (video first).
    container.seek(int(max(seek_to, stream_start) / tb), stream=ast, backward=True, any_frame=False)
    pos = None
    resync = max(int(math.ceil(float(tb) * rate)) + 1, int(0.002 * rate))  # samples
    errors = 0
    covered = 0  # good samples written into the window
    pending = None  # (samples, position) of the first frame, placed once the next one is seen

    def place(data, at: int) -> int:
        a, b = at - n0, at - n0 + data.shape[1]
        lo, hi = max(a, 0), min(b, n_total)
        if hi > lo:
            buf[: data.shape[0], lo:hi] = data[: buf.shape[0], lo - a : hi - a]
        return max(hi - lo, 0)

    packets = container.demux(ast)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except av.error.FFmpegError:  # cut / garbage at the end of the file: the data ends here
            break
        try:
            decoded = packet.decode()
        except av.error.FFmpegError:
            # A damaged packet: its samples stay zero and the next frame is placed by its own pts
            # (the packet may have held several frames: parsers merge a garbled one with the next).
            if pending is not None:
                covered += place(*pending)
                pending = None
            pos = None
            t = packet.pts if packet.pts is not None else packet.dts
            if t is not None:
                p0 = int(round((float(t * tb) - origin) * rate))
                p1 = p0 + (int(round(float(packet.duration * tb) * rate)) if packet.duration else 0)
                if p1 - n0 >= 0 and p0 - n0 < n_total:
                    errors += 1
                if p0 - n0 >= n_total:
                    break
            else:
                errors += 1
            continue
        done = False
        for frame in decoded:
            data = _to_float_planar(frame)
            at = None if frame.pts is None else int(round((float(frame.pts * tb) - origin) * rate))
            if pending is not None:
                # The first frame after a seek is placed against the second: decoders may treat it as
                # a stream start (Opus trims its pre-skip again, and its pts is then off by up to 1 ms).
                p_data, p_at = pending
                pending = None
                if at is not None and abs(at - (p_at + p_data.shape[1])) <= resync:
                    p_at = at - p_data.shape[1]
                covered += place(p_data, p_at)
                pos = p_at + p_data.shape[1]
            if at is not None:
                # Frames follow each other sample-exactly; their pts may be rounded (Matroska: whole
                # ms, +-22 samples at 44.1 kHz). Jump only on a real gap or overlap.
                if pos is None:
                    pending = (data, at)
                    continue
                if abs(at - pos) > resync:
                    pos = at
            elif pos is None:
                pos = int(round((stream_start - origin) * rate))
            covered += place(data, pos)
            pos += data.shape[1]
            if pos - data.shape[1] - n0 >= n_total:
                done = True
                break
        if done:
            break
    if pending is not None:
        covered += place(*pending)
    if stats is not None:
        stats.audio_errors += errors
    if errors and not covered:
        raise C.NoDecodableData(f"audio: {errors} undecodable packet(s) and no good sample in the requested window")
    return buf, rate, n0 / rate
