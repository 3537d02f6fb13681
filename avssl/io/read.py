"""`read_clip`: one synchronized audio-video sample from any common video file.

Timeline (docs/ARCHITECTURE.md): t = 0 is the first video frame's presentation time; the audio
stream is placed on it by its own start time, so a stream that starts late is read late.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .backends import get_backend
from .backends._common import NoDecodableData, ReadStats
from .backends import pyav
from .backends.pyav import AudioRequest
from .errors import CorruptMedia, DamagedMediaWarning, EmptyFile, MediaError, MissingFile, NoAudioStream, NoVideoStream
from .types import Clip, ClipSpec

# ITU-R BS.775 downmix weights for 5.1 (FL, FR, FC, LFE, BL/SL, BR/SR) -> stereo; LFE dropped.
_DOWNMIX_51 = np.array(
    [[1.0, 0.0, 0.7071, 0.0, 0.7071, 0.0], [0.0, 1.0, 0.7071, 0.0, 0.0, 0.7071]], dtype=np.float32
)


def read_clip(
    path: str | os.PathLike,
    start: float,
    spec: ClipSpec,
    *,
    backend: str | None = None,
    av_offset: float = 0.0,
    video: bool = True,
    audio: bool = True,
) -> Clip:
    """Read the sample starting at `start` (s): `spec.num_frames` frames and the audio around them.

    Video: frame i is the frame displayed at `start + i / spec.fps` (the last frame whose
    timestamp is <= that time, so variable frame rate and B-frames are handled by real
    timestamps), turned by the file's rotation metadata, and resized to `spec.frame_size`
    (int: short side; (H, W): exact) while decoding, so huge inputs never exist full-size in RGB.
    Audio: `spec.audio_samples` samples at `spec.audio_rate` of the window of
    `spec.audio_duration` s centred on the video clip's centre plus `av_offset`; channels are
    averaged to mono, or for stereo taken as is / duplicated from mono / downmixed from 5.1
    (ITU weights). Read with PyAV for every backend.

    Padding rule for clips reaching outside the video: a requested time after the last frame
    shows the last frame (repeated), before the first frame the first frame; audio outside the
    audio stream is zeros. `backend`: "pyav" | "decord" | "torchcodec" | None or "auto" (the default,
    `avssl.io.DEFAULT_BACKEND` = "pyav", the fastest in benchmarks/clip_reading.md).

    Timestamps: frames are picked by the file's presentation times when they can be trusted; for a
    file whose times are missing or garbage (AVI with B-frames, as UCF101/HMDB51 store them; see
    avssl.io.timestamps) every backend decodes forward from the start with PyAV and frame k is shown
    from k / fps (`clip.read_info["timestamps"] == "synthesized"`).

    Damage: undecodable packets are skipped (video: the last good frame is shown in their place;
    audio: their samples are zeros), counted in `clip.decode_errors` (details in `clip.read_info`) and
    reported once per file with a `DamagedMediaWarning`. A clip fails only when a requested stream's
    window has no decodable data (CorruptMedia).

    Raises (avssl.io.errors): MissingFile, EmptyFile, CorruptMedia (truncated, not a video, no
    decodable data in the window, ...), NoVideoStream (video requested, none in the file),
    NoAudioStream (audio requested, none).
    """
    path = str(Path(path))
    if not os.path.exists(path):
        raise MissingFile(path, "no such file")
    if os.path.getsize(path) == 0:
        raise EmptyFile(path, "file is empty")
    if not (video or audio):
        raise ValueError("read_clip: ask for video, audio or both")
    be = get_backend(backend)
    start = float(start)
    times = start + np.arange(spec.num_frames, dtype=np.float64) / float(spec.fps)
    centre = start + spec.video_duration / 2.0 + float(av_offset)
    audio_start = centre - spec.audio_duration / 2.0
    req = AudioRequest(audio_start, spec.audio_samples, int(spec.audio_rate), int(spec.audio_channels)) if audio else None
    stats = ReadStats()
    try:
        frames, raw = be.read(path, times if video else None, spec.frame_size, req, stats)
    except NoDecodableData as e:
        raise CorruptMedia(path, f"no decodable data in the requested window: {e}") from e
    except MediaError as e:
        if e.path != path:  # errors raised deep inside carry the container's name; re-anchor on ours
            raise type(e)(path, e.detail) from e
        raise
    except Exception as e:  # any decoder failure: find out what is wrong with the file
        raise _diagnose(path, video, audio, e) from e
    vid = torch.from_numpy(frames) if frames is not None else None
    wav = _finish_audio(raw, req) if raw is not None else None
    errors = stats.video_errors + stats.audio_errors
    if errors:
        # One message per file (the warnings registry shows each distinct text once); the counts are on the clip.
        warnings.warn(DamagedMediaWarning(f"{path}: damaged packets skipped while reading (counted in Clip.decode_errors)"),
                      stacklevel=2)
    return Clip(video=vid, audio=wav, frame_times=torch.from_numpy(times), audio_start=audio_start, start=start,
                decode_errors=errors, read_info=stats.as_dict())


def read_clips(
    path: str | os.PathLike,
    starts,
    spec: ClipSpec,
    *,
    backend: str | None = None,
    video: bool = True,
    audio: bool = True,
) -> list[Clip]:
    """Several clips of one file from ONE decode: the same `Clip`s as ``[read_clip(path, s, spec, ...)
    for s in starts]`` (same frames, same audio samples), at the cost of one open and one forward
    video decode from the keyframe before the earliest clip to the end of the latest.

    Worth it when the clips overlap or lie close together (a short video's eval clips:
    `avssl.io.sampling.read_groups` decides); for clips far apart in a long video, separate reads
    seek past the frames between them. Video: the backend answers every clip's frame times in one
    pass. Audio: each clip's window as `read_clip` reads it (PyAV, a fresh decoder per window), so the
    samples are the per-clip read's. `decode_errors` / `read_info` of each clip are those of the whole
    call. Errors: as `read_clip`.
    """
    starts = [float(s) for s in np.asarray(starts, dtype=np.float64).reshape(-1)]
    if not starts:
        return []
    path = str(Path(path))
    if not os.path.exists(path):
        raise MissingFile(path, "no such file")
    if os.path.getsize(path) == 0:
        raise EmptyFile(path, "file is empty")
    if not (video or audio):
        raise ValueError("read_clips: ask for video, audio or both")
    be = get_backend(backend)
    T = spec.num_frames
    per_clip = [s + np.arange(T, dtype=np.float64) / float(spec.fps) for s in starts]
    reqs = [AudioRequest(s + spec.video_duration / 2.0 - spec.audio_duration / 2.0, spec.audio_samples,
                         int(spec.audio_rate), int(spec.audio_channels)) for s in starts] if audio else []
    stats = ReadStats()
    try:
        frames = be.read(path, np.concatenate(per_clip), spec.frame_size, None, stats)[0] if video else None
        # Each window with a fresh audio decoder, as read_clip decodes it: decoders keep state across a
        # seek (AAC's noise substitution draws from a generator), so one long decode would give other
        # samples in noise-substituted bands. Audio decoding is a small part of a read.
        raws = [pyav.read_audio(path, r, stats) for r in reqs]
    except NoDecodableData as e:
        raise CorruptMedia(path, f"no decodable data in the requested windows: {e}") from e
    except MediaError as e:
        if e.path != path:
            raise type(e)(path, e.detail) from e
        raise
    except Exception as e:  # any decoder failure: find out what is wrong with the file
        raise _diagnose(path, video, audio, e) from e
    errors = stats.video_errors + stats.audio_errors
    if errors:
        warnings.warn(DamagedMediaWarning(f"{path}: damaged packets skipped while reading (counted in Clip.decode_errors)"),
                      stacklevel=2)
    out = []
    for k, s in enumerate(starts):
        vid = torch.from_numpy(np.ascontiguousarray(frames[k * T : (k + 1) * T])) if video else None
        wav = _finish_audio(raws[k], reqs[k]) if audio else None
        out.append(Clip(video=vid, audio=wav, frame_times=torch.from_numpy(per_clip[k]), audio_start=reqs[k].start
                        if audio else s + spec.video_duration / 2.0 - spec.audio_duration / 2.0, start=s,
                        decode_errors=errors, read_info=stats.as_dict()))
    return out


def _finish_audio(raw, req: AudioRequest) -> torch.Tensor:
    """Native-rate window (buf [C,S], rate, media time of buf[:,0]) -> exactly req.num_samples at req.rate."""
    import torchaudio.functional as AF

    buf, rate, t0 = raw
    x = torch.from_numpy(_mix(buf, req.channels))
    if rate != req.rate:
        x = AF.resample(x, rate, req.rate)
    first = int(round((req.start - t0) * req.rate))
    out = x[:, first : first + req.num_samples]
    if out.shape[1] < req.num_samples:  # cannot happen with the margin, but never return short audio
        out = torch.nn.functional.pad(out, (0, req.num_samples - out.shape[1]))
    return out.clamp_(-1.0, 1.0).contiguous()


def _mix(buf: np.ndarray, channels: int) -> np.ndarray:
    c = buf.shape[0]
    if channels == c:
        return buf
    if channels == 1:
        return buf.mean(axis=0, keepdims=True)
    if channels == 2:
        if c == 1:
            return np.repeat(buf, 2, axis=0)
        if c == 6:
            return (_DOWNMIX_51 @ buf) / _DOWNMIX_51.sum(axis=1, keepdims=True)
        return buf[:2]
    raise ValueError(f"audio_channels={channels} is not supported from a {c}-channel stream (use 1 or 2)")


def _diagnose(path: str, video: bool, audio: bool, err: Exception) -> MediaError:
    """Turn a backend's failure into the typed error that names the file's actual problem."""
    import av

    detail = f"{type(err).__name__}: {err}"
    try:
        with av.open(path) as c:
            if video and not c.streams.video:
                return NoVideoStream(path, "the file has no video stream")
            if audio and not c.streams.audio:
                return NoAudioStream(path, "the file has no audio stream")
    except av.error.FFmpegError as e:
        return CorruptMedia(path, f"{type(e).__name__}: {e}")
    return CorruptMedia(path, detail)
