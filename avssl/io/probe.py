"""Probe a media file's metadata: container and stream headers, no full decode.

`probe(path) -> MediaInfo` reads what the demuxer knows (duration, average frame
rate, frame count, picture size, codecs, stream start times, audio rate/channels)
and does three cheap checks so that bad files are caught at indexing time rather
than in the middle of a training run:

* the first video frame is decoded once: it proves the stream is decodable and is
  where FFmpeg attaches the display matrix (PyAV has no stream-level side-data API);
* the first audio packets (AUDIO_PACKETS) are decoded in the same pass: an audio track that gives
  no sample is reported (`extra['audio_undecodable']`) and the file counts as having no audio;
  the first video packets' timestamps are checked (`extra['timestamps']`, avssl.io.timestamps);
* the demuxer is asked for the last packets (seek near the end, demux only), so a
  file cut short while its header still announces the full duration is reported as
  truncated;
* text files and still images that FFmpeg happily "opens" (as ANSI art, image2, ...)
  are refused as not-a-video.

Times follow the project convention: seconds, t = 0 at the first video frame.
`video_start` / `audio_start` are the raw stream start times (container timeline),
so a reader places audio at `audio_start - video_start` on the media timeline.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import av

from avssl.io.errors import CorruptMedia, EmptyFile, MediaError, MissingFile, NoVideoStream
from avssl.io.timestamps import CHECK_PACKETS, timestamp_verdict
from avssl.io.types import MediaInfo

__all__ = ["probe", "VIDEO_EXTENSIONS"]

VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".mpg", ".mpeg", ".ts", ".3gp", ".ogv", ".wmv",
)

# FFmpeg demuxers that open non-video files (text as ANSI art, single pictures).
_NOT_VIDEO_FORMATS = {"tty", "image2", "image2pipe", "ansi", "bin", "xbin", "idf", "adf"}
_NOT_VIDEO_FORMAT_SUFFIX = ("_pipe",)
_NOT_VIDEO_CODECS = {"ansi", "bintext", "xbin", "idf"}

# First bytes of containers we know; a file that has one but fails to demux was cut/damaged.
_SIGNATURES = (
    (4, b"ftyp"), (4, b"moov"), (4, b"mdat"), (4, b"free"), (4, b"wide"),  # ISO BMFF / QuickTime
    (0, b"\x1a\x45\xdf\xa3"),  # EBML: Matroska / WebM
    (0, b"RIFF"),  # AVI / WAV
    (0, b"FLV"),
    (0, b"OggS"),
    (0, b"\x00\x00\x01\xba"),  # MPEG-PS
    (0, b"\x30\x26\xb2\x75"),  # ASF / WMV
)

# Audio packets decoded at probe time: a stream none of whose first packets gives a sample is undecodable.
AUDIO_PACKETS = 8
# Packets (all probed streams) demuxed at most in the first pass (late audio: ~5 s of a typical file).
PASS_PACKETS = 400

# A file whose demuxable packets stop this much before the announced end is truncated.
_TRUNCATION_SLACK_S = 0.5


def probe(path: str | os.PathLike) -> MediaInfo:
    """Return a `MediaInfo` for `path` or raise a typed `MediaError`.

    Raises `MissingFile`, `EmptyFile`, `TruncatedMedia` (cut short, e.g. 'moov atom not
    found'), `NotMedia` (text, picture, unknown bytes), `CorruptMedia` (other demux or
    decode failures) or `NoVideoStream` (e.g. an audio-only file). `TruncatedMedia` and
    `NotMedia` are `CorruptMedia` subclasses.

    `rotation` is the angle (degrees, in {0, 90, 180, 270}) by which the decoded picture
    must be rotated counter-clockwise for display: the FFmpeg display-matrix convention,
    i.e. PyAV's `VideoFrame.rotation` modulo 360. `width`/`height` are the stored
    (decoded) picture size; the displayed size is in `extra['display_size']`.

    `num_frames` is the container's count when it has one and it agrees with
    duration*fps and with the packets holding data; otherwise it is estimated as
    round(duration*fps) and `extra['num_frames_estimated']` is True (WebM/Matroska never
    store a count; over-reporting headers keep theirs in `extra['num_frames_header']`).
    When a whole file's header announces a longer duration than its packets cover, the
    duration is taken from the packets (`extra['duration_from'] == 'packets'`, the header's in
    `extra['duration_header']`).
    """
    p = Path(path)
    if not p.exists():
        raise MissingFile(p)
    if not p.is_file():
        raise NotMedia(p, "not a regular file")
    size = p.stat().st_size
    if size == 0:
        raise EmptyFile(p)
    try:
        container = av.open(str(p), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise _open_failure(p, e) from e
    try:
        return _probe_open(p, container, size)
    except MediaError:
        raise
    except (av.error.FFmpegError, ValueError, OverflowError, ZeroDivisionError) as e:
        raise CorruptMedia(p, f"{type(e).__name__}: {e}") from e
    finally:
        container.close()


class TruncatedMedia(CorruptMedia):
    """The file is cut short: header present but data or index missing ('moov atom not found')."""

    reason = "truncated"


class NotMedia(CorruptMedia):
    """The file is not audio/video at all (text, picture, random bytes)."""

    reason = "not-a-video"


def _open_failure(p: Path, err: Exception) -> MediaError:
    with open(p, "rb") as f:
        head = f.read(16)
    if any(head[off : off + len(sig)] == sig for off, sig in _SIGNATURES):
        # A known container header that FFmpeg cannot demux: typically an MP4 whose
        # index (moov, written last) was never written or was cut off.
        return TruncatedMedia(p, f"container header present but demuxing failed: {err}")
    return NotMedia(p, f"FFmpeg could not recognise the data: {err}")


def _seconds(value, time_base) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _parse_hms(text: str) -> float | None:
    # Matroska per-stream DURATION tag, e.g. '00:00:02.000000000'.
    try:
        h, m, s = text.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except (ValueError, AttributeError):
        return None


def _stream_duration(stream, container) -> float | None:
    d = _seconds(stream.duration, stream.time_base)
    if d is not None and d > 0:
        return d
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    d = _parse_hms(tag) if tag else None
    if d is not None and d > 0:
        return d
    return None


def _probe_open(p: Path, c, size: int) -> MediaInfo:
    fmt = c.format.name
    if fmt in _NOT_VIDEO_FORMATS or fmt.endswith(_NOT_VIDEO_FORMAT_SUFFIX):
        raise NotMedia(p, f"FFmpeg reads it as '{fmt}', not a video container")
    if not c.streams.video:
        kinds = ",".join(s.type for s in c.streams) or "none"
        raise NoVideoStream(p, f"streams: {kinds}")
    vs = c.streams.video[0]
    last_indexed = _last_indexed_packet(vs)  # before any decoding/demuxing adds entries
    real_packets = _packets_with_data(vs)
    vcc = vs.codec_context
    if vcc.name in _NOT_VIDEO_CODECS:
        raise NotMedia(p, f"video codec '{vcc.name}' is text art")
    if not vcc.width or not vcc.height:
        raise CorruptMedia(p, "video stream has no picture size")
    extra: dict = {"container": fmt, "file_size": size}

    container_start = c.start_time / av.time_base if c.start_time is not None else 0.0
    video_start = _seconds(vs.start_time, vs.time_base)
    if video_start is None:
        video_start = container_start

    duration = _stream_duration(vs, c)
    if duration is None:
        if c.duration is None:
            raise CorruptMedia(p, "no duration in stream or container header")
        # The container's span starts at its earliest stream; measure from the video's start.
        duration = c.duration / av.time_base - (video_start - container_start)
        extra["duration_from"] = "container"
    if not duration > 0:
        raise CorruptMedia(p, f"non-positive duration {duration}")

    rate = vs.average_rate or vs.guessed_rate or vs.base_rate
    fps = float(rate) if rate else 0.0
    header_frames = int(vs.frames or 0)
    if fps <= 0 and header_frames > 0:
        fps = header_frames / duration
    if fps <= 0:
        raise CorruptMedia(p, "no frame rate")

    has_audio = bool(c.streams.audio)
    audio_rate = audio_channels = 0
    audio_codec = ""
    audio_start = 0.0
    if has_audio:
        aus = c.streams.audio[0]
        acc = aus.codec_context
        audio_rate = int(acc.sample_rate or aus.rate or 0)
        audio_channels = int(acc.layout.nb_channels if acc.layout is not None else acc.channels)
        audio_codec = acc.name
        a0 = _seconds(aus.start_time, aus.time_base)
        audio_start = container_start if a0 is None else a0
        ad = _stream_duration(aus, c)
        if ad is not None:
            extra["audio_duration"] = ad
        if audio_rate <= 0 or audio_channels <= 0:
            raise CorruptMedia(p, "audio stream without sample rate or channels")

    first, audio_ok, ts_verdict = _first_frames(p, c, vs, c.streams.audio[0] if has_audio else None)
    extra["timestamps"] = ts_verdict.reason  # "pts": trusted; else the reader synthesizes times
    if audio_ok is not None and not audio_ok[0]:
        # An audio stream no decoder reads: the file is indexed as having no audio (the index's
        # missing_audio policy applies) and the reason is kept.
        extra["audio_undecodable"] = f"{audio_codec}: {audio_ok[1]}"
        has_audio = False
        audio_rate = audio_channels = 0
    rotation = int(round(first.rotation)) % 360 if first is not None else 0
    if rotation % 90:
        extra["rotation_exact"] = rotation
        rotation = int(90 * round(rotation / 90)) % 360
    w, h = vcc.width, vcc.height
    extra["display_size"] = (h, w) if rotation in (90, 270) else (w, h)

    data_end = _check_not_truncated(p, c, vs, video_start, duration, fps, size, last_indexed)
    if data_end is not None and data_end - video_start < duration - 1.5 / fps:
        # A complete file whose header over-reports (duration / frame count beyond its last
        # packet, e.g. a patched AVI header or empty trailing MP4 samples): trust the packets.
        extra["duration_header"] = float(duration)
        extra["duration_from"] = "packets"
        duration = data_end - video_start
    estimate = int(round(duration * fps))
    # Headers may lack a count (WebM) or over-report it (broken muxers): trust duration*fps then.
    if header_frames > 0 and abs(header_frames - estimate) <= max(2, 0.02 * estimate) and (
            real_packets is None or real_packets >= header_frames):
        num_frames = header_frames
    else:
        num_frames = max(1, estimate)
        extra["num_frames_estimated"] = True
        if header_frames > 0:
            extra["num_frames_header"] = header_frames
    return MediaInfo(
        path=str(p),
        duration=float(duration),
        fps=fps,
        num_frames=int(num_frames),
        width=int(w),
        height=int(h),
        rotation=rotation,
        video_codec=vcc.name,
        video_start=float(video_start),
        has_audio=has_audio,
        audio_rate=audio_rate,
        audio_channels=audio_channels,
        audio_codec=audio_codec,
        audio_start=float(audio_start),
        extra=extra,
    )


def _first_frames(p: Path, c, vs, aus):
    """One demuxing pass from the start: the first decoded video frame, whether the first audio
    packets decode, and the timestamp verdict of the first video packets (avssl.io.timestamps).

    Returns (frame, audio, verdict); audio is None when there is no audio stream or none of its
    packets came within the pass (stream starting late), else (decodes: bool, detail). Audio is
    undecodable when its first AUDIO_PACKETS packets (or all of a shorter stream) give no sample."""
    streams = [vs] if aus is None else [vs, aus]
    first = None
    pts, dts = [], []
    tried = frames = 0
    err = ""
    n = 0
    try:
        for pkt in c.demux(*streams):
            n += 1
            if pkt.stream.index == vs.index:
                if pkt.size and len(pts) < CHECK_PACKETS:
                    pts.append(pkt.pts)
                    dts.append(pkt.dts)
                if first is None:
                    try:
                        decoded = pkt.decode()
                    except av.error.FFmpegError as e:
                        raise CorruptMedia(p, f"first video frame does not decode: {e}") from e
                    if decoded:
                        first = decoded[0]
            elif frames == 0 and tried < AUDIO_PACKETS:
                tried += bool(pkt.size)
                try:
                    frames += sum(f.samples for f in pkt.decode())
                except av.error.FFmpegError as e:
                    err = f"{type(e).__name__}: {e}"
            audio_done = aus is None or frames > 0 or tried >= AUDIO_PACKETS
            if (first is not None and audio_done and len(pts) >= CHECK_PACKETS) or n >= PASS_PACKETS:
                break
    except av.error.FFmpegError as e:
        if first is None:
            raise CorruptMedia(p, f"first video frame does not decode: {e}") from e
    if first is None:
        raise CorruptMedia(p, "video stream has no decodable frame")
    audio = None
    if aus is not None and tried:
        audio = (True, "") if frames else (False, f"its first {tried} packet(s) gave no sample ({err or 'no error'})")
    rate = vs.average_rate or vs.guessed_rate or vs.base_rate
    verdict = timestamp_verdict(pts, vs.time_base, float(rate) if rate else 0.0, dts, c.format.name)
    return first, audio, verdict


def _packets_with_data(vs) -> int | None:
    """Number of indexed video packets holding data, when the demuxer has a full index (MP4, AVI).

    MP4 sample tables may list empty samples that the demuxer skips: the header's frame count
    then exceeds the frames that exist (decord trusts it)."""
    entries = vs.index_entries
    n = len(entries)
    if n < 2:
        return None
    return sum(1 for i in range(n) if entries[i].size > 0)


def _last_indexed_packet(vs):
    """The last index entry holding data, read from the file's own index (before any demuxing,
    which appends entries as it goes); None without an index (Matroska without cues, cut files)."""
    entries = vs.index_entries
    n = len(entries)
    if n < 2:
        return None
    for i in range(n - 1, -1, -1):
        if entries[i].size > 0:
            e = entries[i]
            return float(e.timestamp * vs.time_base), int(e.pos), int(e.size)
    return None


def _index_is_complete(last_indexed, data_end: float, fps: float, size: int) -> bool:
    """True when the file's index lists packets up to where the data really ends, inside the
    file: the file is whole and only its header's duration/count is too large (not truncated)."""
    if last_indexed is None:
        return False
    t, pos, nbytes = last_indexed
    if pos < 0 or pos + nbytes > size:
        return False
    return abs(data_end - t) <= 4.0 / fps + 0.1


def _check_not_truncated(p: Path, c, vs, video_start: float, duration: float, fps: float, size: int,
                         last_indexed=None) -> float | None:
    """Cheap truncation checks: index entries past EOF, and demuxing the tail (no decode).

    Returns where the video packets end (container time, s); a complete file whose header
    announces more than that (its index ends with its data) is not truncated, and the caller
    takes the duration from the packets."""
    entries = vs.index_entries
    n = len(entries)
    if n:
        last = entries[n - 1]
        if last.pos >= 0 and last.size > 0 and last.pos + last.size > size:
            raise TruncatedMedia(p, f"index points to byte {last.pos + last.size} but the file has {size}")
    tb = vs.time_base
    tail_from = max(video_start, video_start + duration - 1.0)
    try:
        c.seek(int(math.floor(tail_from / tb)), stream=vs, backward=True, any_frame=False)
    except av.error.FFmpegError:
        c.seek(0)
    end = None
    try:
        for pkt in c.demux(vs):
            if pkt.pts is None and pkt.dts is None:
                continue  # the flush packet at end of stream
            t = pkt.pts if pkt.pts is not None else pkt.dts
            pkt_end = float((t + (pkt.duration or 0)) * tb)
            end = pkt_end if end is None else max(end, pkt_end)
    except av.error.FFmpegError as e:
        raise TruncatedMedia(p, f"demuxing the tail failed: {e}") from e
    expected_end = video_start + duration
    slack = _TRUNCATION_SLACK_S + 2.0 / fps
    if end is None or (end < expected_end - slack and not _index_is_complete(last_indexed, end, fps, size)):
        got = "no packets" if end is None else f"packets end at {end - video_start:.2f}s"
        raise TruncatedMedia(p, f"header says {duration:.2f}s of video, {got}")
    return end

