"""Write real encoded media (H.264/AAC mp4, VP9/Opus webm, ...) with PyAV.

Used by the generated world, the training-cache transcoder, the localization MP4 and
the tests. One function, so every writer in the project encodes the same way.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

# container extension -> (video codec, audio codec, pixel format)
DEFAULT_CODECS = {
    ".mp4": ("libx264", "aac", "yuv420p"),
    ".mkv": ("libx264", "aac", "yuv420p"),
    ".mov": ("libx264", "aac", "yuv420p"),
    ".webm": ("libvpx-vp9", "libopus", "yuv420p"),
    ".avi": ("mpeg4", "pcm_s16le", "yuv420p"),
}


def _as_numpy(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def write_av(
    path: str | os.PathLike,
    video: np.ndarray | torch.Tensor | None,
    fps: float,
    audio: np.ndarray | torch.Tensor | None = None,
    audio_rate: int = 48000,
    *,
    video_codec: str | None = None,
    audio_codec: str | None = None,
    gop: int | None = None,
    crf: int | None = 23,
    bframes: int | None = None,
    audio_bitrate: int = 128_000,
    audio_start: float = 0.0,
    rotation: int | None = None,
    preset: str = "veryfast",
    frame_times=None,
) -> Path:
    """Encode frames `video` uint8 [T,H,W,3] (RGB) at `fps` and/or `audio` float [C,S] in [-1,1].

    `gop` sets the keyframe interval (None: encoder default), `bframes` the number of
    B-frames (None: encoder default). `audio_start` (s) delays the audio stream's first
    packet relative to the video (to test stream-start alignment). `rotation` writes
    display-matrix rotation metadata: the clockwise angle (90, 180, 270) by which a player turns
    the stored frames for display, as phones record portrait video (ffprobe shows -rotation).
    `frame_times` (s, one per frame, increasing) writes a variable frame rate stream (millisecond
    timestamps; `fps` is then only the nominal rate). MJPEG is written full-range (yuvj420p). The
    file is written to a temporary name and renamed, so a killed writer never leaves a half file
    under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    dv, da, pix = DEFAULT_CODECS.get(ext, DEFAULT_CODECS[".mp4"])
    video_codec = video_codec or dv
    audio_codec = audio_codec or da
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    fmt = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm", ".avi": "avi"}.get(ext)
    frames = None if video is None else _as_numpy(video)
    wav = None if audio is None else _as_numpy(audio).astype(np.float32)
    if frames is not None and (frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8):
        raise ValueError(f"video must be uint8 [T,H,W,3], got {frames.dtype} {frames.shape}")
    if wav is not None and wav.ndim != 2:
        raise ValueError(f"audio must be [C,S], got {wav.shape}")

    muxer_opts = {}
    if fmt in ("mp4", "mov") and wav is not None and audio_start:
        # The edit list that delays a stream is written in the movie timescale (1000 by default,
        # i.e. whole ms, which moved the audio ~0.7 ms); the audio rate makes it sample-exact.
        muxer_opts["movie_timescale"] = str(int(audio_rate))
    with av.open(str(tmp), mode="w", format=fmt, options=muxer_opts) as out:
        vs = as_ = None
        if frames is not None:
            rate = Fraction(fps).limit_denominator(1001)
            vs = out.add_stream(video_codec, rate=rate)
            vs.width, vs.height = frames.shape[2], frames.shape[1]
            vs.pix_fmt = "yuvj420p" if video_codec == "mjpeg" else pix
            if frame_times is not None:
                vs.time_base = vs.codec_context.time_base = Fraction(1, 1000)
            opts = {}
            if video_codec in ("libx264", "libx265"):
                opts["preset"] = preset
                if crf is not None:
                    opts["crf"] = str(crf)
                if bframes is not None:
                    opts["bf"] = str(bframes)
                if video_codec == "libx265":
                    opts["x265-params"] = "log-level=error"
                else:  # x264's macroblock-tree SIMD reads uninitialised memory on small frames (64x64):
                    # the same frames encoded to different bytes from run to run; without it they do not
                    opts["x264-params"] = "mbtree=0"
            elif video_codec in ("mpeg4", "mjpeg"):
                opts.update({"qmin": "2", "qmax": "4"})  # sharp small frames (the default 200 kb/s blurs them)
            elif video_codec.startswith("libvpx"):
                opts.update({"deadline": "realtime", "cpu-used": "8", "b": "0", "crf": str(crf or 32)})
            if gop is not None:
                vs.codec_context.gop_size = int(gop)
                if video_codec in ("libx264", "libx265"):
                    key = "x264-params" if video_codec == "libx264" else "x265-params"
                    opts[key] = ":".join(filter(None, (opts.get(key), f"keyint={gop}:min-keyint={gop}:scenecut=0")))
            vs.options = opts
            if rotation:
                # The legacy "rotate" tag is ignored by current muxers; the display matrix is what
                # players and decoders read. Its angle is counter-clockwise, `rotation` is clockwise.
                vs.set_display_rotation(-int(rotation))
        if wav is not None:
            as_ = out.add_stream(audio_codec, rate=int(audio_rate))
            layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(wav.shape[0])
            if layout is None:
                raise ValueError(f"unsupported channel count {wav.shape[0]}")
            as_.layout = layout
            if audio_codec not in ("pcm_s16le", "flac"):
                as_.bit_rate = audio_bitrate

        if vs is not None:
            pts = None
            if frame_times is not None:
                pts = np.round(np.asarray(frame_times, dtype=np.float64) * 1000).astype(np.int64)
                if len(pts) != len(frames) or np.any(np.diff(pts) <= 0):
                    raise ValueError("frame_times must give one increasing time (>= 1 ms apart) per frame")
            for i, f in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
                vf.pts = i if pts is None else int(pts[i])
                for pkt in vs.encode(vf):
                    out.mux(pkt)
            for pkt in vs.encode():
                out.mux(pkt)
        if as_ is not None:
            _encode_audio(out, as_, wav, int(audio_rate), audio_start)
    os.replace(tmp, path)
    return path


def _encode_audio(out, stream, wav: np.ndarray, rate: int, start: float) -> None:
    cc = stream.codec_context
    fmt = cc.format.name if cc.format is not None else "fltp"
    frame_size = cc.frame_size or 1024
    wav = np.clip(wav, -1.0, 1.0)
    offset = int(round(start * rate))
    for s0 in range(0, wav.shape[1], frame_size):
        chunk = wav[:, s0 : s0 + frame_size]
        if fmt in ("s16", "s32"):
            arr = _to_int(chunk.T, fmt).reshape(1, -1)
        elif fmt in ("s16p", "s32p"):
            arr = _to_int(chunk, fmt)
        elif fmt == "flt":
            arr = np.ascontiguousarray(chunk.T).reshape(1, -1)
        else:  # fltp
            arr = np.ascontiguousarray(chunk)
        af = av.AudioFrame.from_ndarray(arr, format=fmt, layout=stream.layout.name)
        af.sample_rate = rate
        af.pts = s0
        af.time_base = Fraction(1, rate)
        for pkt in stream.encode(af):
            _mux_shifted(out, pkt, offset, rate)
    for pkt in stream.encode():
        _mux_shifted(out, pkt, offset, rate)


def _to_int(x: np.ndarray, fmt: str) -> np.ndarray:
    if fmt.startswith("s16"):
        return np.ascontiguousarray((x * 32767).round().astype(np.int16))
    return np.ascontiguousarray((x.astype(np.float64) * 2147483647).round().astype(np.int32))


def _mux_shifted(out, pkt, offset_samples: int, rate: int) -> None:
    # Encoders re-stamp frame pts, so a delayed stream start is applied on the packets.
    if offset_samples and pkt.pts is not None:
        shift = int(round(offset_samples / rate / pkt.time_base))
        pkt.pts += shift
        if pkt.dts is not None:
            pkt.dts += shift
    out.mux(pkt)


def write_wav(path: str | os.PathLike, audio: np.ndarray | torch.Tensor, rate: int) -> Path:
    """Write float [C,S] audio as 16-bit PCM WAV (soundfile)."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), _as_numpy(audio).T, rate, subtype="PCM_16")
    return path
