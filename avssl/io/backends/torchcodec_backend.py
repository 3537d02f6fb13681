"""torchcodec backend (only when torchcodec imports against the system FFmpeg): frames played at
the requested times, resized inside the decoder; audio through PyAV like every backend."""

from __future__ import annotations

import numpy as np

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


def read(path: str, times, frame_size, audio):
    frames = None if times is None else _read_video(path, times, frame_size)
    wav = None if audio is None else pyav.read_audio(path, audio)
    return frames, wav


def _read_video(path: str, times: np.ndarray, frame_size) -> np.ndarray:
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
    begin = float(md.begin_stream_seconds or 0.0)
    end = md.end_stream_seconds
    abs_t = np.asarray(times, dtype=np.float64) + begin
    abs_t = np.maximum(abs_t, begin)
    if end is not None:  # past the last frame: the last frame (padding rule)
        abs_t = np.minimum(abs_t, float(end) - 1e-6)
    uniq, inverse = np.unique(abs_t, return_inverse=True)
    batch = dec.get_frames_played_at(uniq.tolist()).data.numpy()
    return np.ascontiguousarray(batch[inverse])
