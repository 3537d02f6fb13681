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


def sync_trial_starts(duration: float, video_duration: float, audio_duration: float, shift: float
                      ) -> list[tuple[float, float]]:
    """The two trials of a synchronization test at ``shift`` s: ``[(start, +shift), (start', -shift)]``.

    Two audio windows ``shift`` apart are centred in the file (centres ``D/2 -+ shift/2``); the first
    trial is the video clip synchronized with the earlier window, compared with the later one (its
    audio shifted by +shift); the second the video of the later window against the earlier one. Own and
    shifted windows are then the same two windows, equally far from the file's ends, so nothing but
    their timing tells them apart (not zero-filled silence, not the encoder's start- or end-of-file
    artefacts). ``[]`` when they do not fit (``shift > duration - audio_duration``) or the video clip
    would have to leave the file."""
    _check(duration, video_duration)
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    if shift > duration - audio_duration + 1e-9:
        return []
    out = []
    for centre, sign in ((duration / 2.0 - shift / 2.0, 1.0), (duration / 2.0 + shift / 2.0, -1.0)):
        start = centre - video_duration / 2.0
        if start < -1e-9 or start + video_duration > max(duration, video_duration) + 1e-9:
            return []
        out.append((max(start, 0.0), sign * shift))
    return out


def shift_feasible(duration: float, start: float, video_duration: float, audio_duration: float, shift: float,
                   tol: float = 1e-6) -> bool:
    """Whether the audio window of the clip at ``start`` moved by ``shift`` s (signed) stays inside the file."""
    earlier, later = audio_room(duration, start, video_duration, audio_duration)
    return (shift <= later + tol) if shift >= 0 else (-shift <= earlier + tol)
