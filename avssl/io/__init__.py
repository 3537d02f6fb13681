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


try:  # probe lives in avssl/io/probe.py (written separately)
    from .probe import probe
except ModuleNotFoundError as e:  # only tolerate that module being absent, not its own import errors
    if e.name != f"{__name__}.probe":
        raise


__all__ = [
    "Clip", "ClipSpec", "MediaInfo", "read_clip", "available_backends", "probe",
    "MediaError", "MissingFile", "EmptyFile", "CorruptMedia", "NoVideoStream", "NoAudioStream",
    "BackendUnavailable",
]
