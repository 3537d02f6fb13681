"""Typed media errors: every failure names the file and the reason.

Datasets catch `MediaError` to skip (and report) a bad sample instead of stopping a run.
"""

from __future__ import annotations


class MediaError(Exception):
    """A media file could not be used. `path` names it, `reason` says why (short, stable)."""

    reason = "unreadable"

    def __init__(self, path, detail: str = ""):
        self.path = str(path)
        self.detail = detail
        msg = f"{self.path}: {self.reason}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class MissingFile(MediaError):
    reason = "missing"


class EmptyFile(MediaError):
    reason = "zero-byte"


class CorruptMedia(MediaError):
    """The container or a stream could not be demuxed/decoded (truncated, 'moov atom not found', not a video)."""

    reason = "corrupt"


class NoVideoStream(MediaError):
    reason = "no-video-stream"


class NoAudioStream(MediaError):
    reason = "no-audio-stream"


class BackendUnavailable(RuntimeError):
    """A decoder backend was requested that is not installed / usable on this machine."""


class DamagedMediaWarning(UserWarning):
    """A file had undecodable packets that were skipped (the clip was still read; see Clip.decode_errors)."""
