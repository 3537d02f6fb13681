"""Media I/O: clip reading (several decoder backends), probing, writing. See docs/ARCHITECTURE.md."""

from .backends import available_backends
from .errors import (
    BackendUnavailable,
    CorruptMedia,
    EmptyFile,
    MediaError,
    MissingFile,
    NoAudioStream,
    NoVideoStream,
)
from .read import read_clip
from .types import Clip, ClipSpec, MediaInfo


def __getattr__(name):
    # probe lives in avssl/io/probe.py (written separately); imported on first use.
    if name == "probe":
        from .probe import probe

        return probe
    raise AttributeError(f"module 'avssl.io' has no attribute {name!r}")


__all__ = [
    "Clip", "ClipSpec", "MediaInfo", "read_clip", "available_backends", "probe",
    "MediaError", "MissingFile", "EmptyFile", "CorruptMedia", "NoVideoStream", "NoAudioStream",
    "BackendUnavailable",
]
