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


def read_groups(starts, clip_span: float, duration: float, *, whole_video_max: float = 20.0,
                merge_gap: float = 0.0) -> list[list[int]]:
    """Which clips to decode together (`avssl.io.read_clips`: one decode per group).

    Clip k covers ``[starts[k], starts[k] + clip_span)``. All clips form one group when the video is
    short (``duration <= whole_video_max``: one forward decode of it costs less than a seek and a
    decode from the keyframe per clip); otherwise clips are taken in start order and a clip joins the
    previous group when it starts at most ``merge_gap`` seconds after the previous clip ends (0:
    overlapping or touching clips), else it starts a group of its own. ``whole_video_max=0`` and
    ``merge_gap < -clip_span`` give one group per clip. Returns lists of indices into ``starts``
    (each sorted by start), covering every clip exactly once.
    """
    starts = np.asarray(starts, dtype=np.float64)
    if starts.ndim != 1:
        raise ValueError(f"starts must be 1-D, got shape {starts.shape}")
    if len(starts) == 0:
        return []
    order = [int(i) for i in np.argsort(starts, kind="stable")]
    if whole_video_max > 0 and duration <= whole_video_max:
        return [order]
    groups = [[order[0]]]
    for i in order[1:]:
        prev = groups[-1][-1]
        if starts[i] - (starts[prev] + clip_span) <= merge_gap:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
