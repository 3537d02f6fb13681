"""Where clips start: one random clip per visit for training, N evenly spaced clips for evaluation.

Both take the video's duration and the clip's duration (seconds) and return start times on the
media timeline (t = 0 at the first video frame). Randomness comes only from the numpy Generator
passed in, so a seed reproduces every start.
"""

from __future__ import annotations

import numpy as np


def _check(duration: float, clip_duration: float) -> None:
    if not np.isfinite(duration) or duration < 0:
        raise ValueError(f"duration must be a finite number >= 0, got {duration}")
    if not np.isfinite(clip_duration) or clip_duration <= 0:
        raise ValueError(f"clip_duration must be > 0, got {clip_duration}")


def train_clip_start(duration: float, clip_duration: float, rng: np.random.Generator) -> float:
    """Uniform random start in [0, duration - clip_duration]; 0.0 when the video is shorter than the clip.

    A short video's clip is then padded by the reader (see `read_clip`).
    """
    _check(duration, clip_duration)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    latest = duration - clip_duration
    if latest <= 0:
        return 0.0
    return float(rng.uniform(0.0, latest))


def eval_clip_starts(duration: float, clip_duration: float, n: int) -> np.ndarray:
    """`n` starts spaced evenly so the clips cover the video: the first at 0, the last ending at `duration`.

    Deterministic (no randomness). With a video shorter than the clip every start is 0.0.
    Returns float64 [n].
    """
    _check(duration, clip_duration)
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    latest = max(duration - clip_duration, 0.0)
    if n == 1:
        # One clip: the centre one (the usual single-clip evaluation).
        return np.array([latest / 2.0])
    return np.linspace(0.0, latest, int(n))


def audio_room(duration: float, start: float, video_duration: float, audio_duration: float,
               av_offset: float = 0.0) -> tuple[float, float]:
    """How far (s) the audio window of the clip at ``start`` (centred on the video clip's centre,
    moved by ``av_offset``) can move earlier and later and stay inside ``[0, duration]``:
    ``(earlier, later)``, each >= 0 (0 when it already reaches past that end)."""
    _check(duration, video_duration)
    lo = start + video_duration / 2.0 + av_offset - audio_duration / 2.0
    return max(lo, 0.0), max(duration - (lo + audio_duration), 0.0)


def sync_anchor_starts(duration: float, video_duration: float, audio_duration: float
                       ) -> tuple[tuple[float, int], tuple[float, int]] | None:
    """The two video clips of a synchronization test: ``((early_start, +1), (late_start, -1))``.

    The early clip starts where its own audio window begins at the file's start (or at 0), and is
    compared with audio shifted LATER (+1); the late clip ends its own audio window (or itself) at
    the file's end and is compared with audio shifted EARLIER (-1). So every shift up to
    ``duration - audio_duration`` stays inside the file, where a shifted window differs from the own
    one only by its timing, never by zero-filled silence. None when the own audio cannot fit
    (``audio_duration > duration``)."""
    _check(duration, video_duration)
    if audio_duration > duration + 1e-9:
        return None
    early = max(0.0, (audio_duration - video_duration) / 2.0)
    late = max(min(duration - video_duration, duration - (video_duration + audio_duration) / 2.0), early)
    return (early, 1), (late, -1)


def shift_feasible(duration: float, start: float, video_duration: float, audio_duration: float, shift: float,
                   tol: float = 1e-6) -> bool:
    """Whether the audio window of the clip at ``start`` moved by ``shift`` s (signed) stays inside the file."""
    earlier, later = audio_room(duration, start, video_duration, audio_duration)
    return (shift <= later + tol) if shift >= 0 else (-shift <= earlier + tol)
