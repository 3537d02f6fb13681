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


def read_groups(starts, clip_span: float, duration: float, *, keyframes=None, whole_video_max: float = 20.0,
                merge_gap: float = 0.5) -> list[list[int]]:
    """Which clips to decode together (`avssl.io.read_clips`: one forward decode per group).

    Clip k covers ``[starts[k], starts[k] + clip_span)``; clips are taken in start order. With the
    file's ``keyframes`` (s, `avssl.io.keyframe_times`), a clip joins the previous group when the
    keyframe a read of its own would start from (the last one at or before its start) lies at most
    ``merge_gap`` s after the previous clip's end: the group's decode has then reached that keyframe
    anyway (or nearly), so continuing costs less than a new open, seek and decode from the keyframe;
    otherwise it starts a group. Dense keyframes (a training cache: every 0.5 s) thus give separate
    reads, sparse ones (sources: every 8 s) one decode for the clips between two keyframes.
    Without keyframes (None / empty: the container lists none): one group when the video is short
    (``duration <= whole_video_max``), else a clip joins when it starts at most ``merge_gap`` s after
    the previous one ends. ``merge_gap=-inf`` and ``whole_video_max=0`` read every clip alone.
    Returns lists of indices into ``starts`` (each in start order), covering every clip once.
    """
    starts = np.asarray(starts, dtype=np.float64)
    if starts.ndim != 1:
        raise ValueError(f"starts must be 1-D, got shape {starts.shape}")
    if len(starts) == 0:
        return []
    order = [int(i) for i in np.argsort(starts, kind="stable")]
    kf = None if keyframes is None else np.sort(np.asarray(keyframes, dtype=np.float64))
    if kf is not None and len(kf) == 0:
        kf = None
    if kf is None and whole_video_max > 0 and duration <= whole_video_max:
        return [order]
    groups = [[order[0]]]
    for i in order[1:]:
        end_prev = starts[groups[-1][-1]] + clip_span
        if kf is not None:
            j = int(np.searchsorted(kf, starts[i], side="right")) - 1
            seek_from = kf[j] if j >= 0 else -np.inf
            join = seek_from <= end_prev + merge_gap
        else:
            join = starts[i] - end_prev <= merge_gap
        if join:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


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
