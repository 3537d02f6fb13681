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
