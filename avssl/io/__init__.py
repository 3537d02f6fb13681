"""Media I/O: clip reading (several decoder backends), probing, writing. See docs/ARCHITECTURE.md.

`read_clip(path, start, spec, backend=...)` decodes with one of `available_backends()`:
"pyav" (always), "decord", "torchcodec" (when its package and a system FFmpeg load).
The default (`backend=None` or "auto") is `DEFAULT_BACKEND` = "pyav": the fastest in
benchmarks/clip_reading.md for the whole sample on 10 s and 60 s 480p H.264 files and their training
caches (1.10-1.18x the reference loader's per-sample path, cost flat in the video's length) while
passing the same tests as the others, with no optional package. decord / torchcodec decoders stay open
per process (`avssl.io.decoder_cache`); `read_clips` reads several clips of a file from one decode.
"""

from .backends import DEFAULT_BACKEND, available_backends
from .errors import (
    BackendUnavailable,
    CorruptMedia,
    DamagedMediaWarning,
    EmptyFile,
    MediaError,
    MissingFile,
    NoAudioStream,
    NoVideoStream,
)
from .backends.pyav import keyframe_times
from .read import read_clip, read_clips
from .types import Clip, ClipSpec, MediaInfo


try:  # probe lives in avssl/io/probe.py (written separately)
    from .probe import probe
except ModuleNotFoundError as e:  # only tolerate that module being absent, not its own import errors
    if e.name != f"{__name__}.probe":
        raise


__all__ = [
    "Clip", "ClipSpec", "MediaInfo", "read_clip", "read_clips", "keyframe_times", "available_backends", "DEFAULT_BACKEND", "probe",
    "MediaError", "MissingFile", "EmptyFile", "CorruptMedia", "NoVideoStream", "NoAudioStream",
    "BackendUnavailable", "DamagedMediaWarning",
]
