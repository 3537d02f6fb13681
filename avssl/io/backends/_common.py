"""Helpers every backend shares: output geometry, rotation, frame choice by timestamp."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Decoders run single-threaded: DataLoader workers give the parallelism, and one thread per
# decoder keeps N workers on N cores instead of oversubscribing them.
DECODE_THREADS = 1
# A frame whose timestamp is within this of a requested time counts as displayed at it
# (float timestamps from rational time bases are not exact).
TIME_EPS = 1e-4


def output_size(display_hw: tuple[int, int], frame_size) -> tuple[int, int]:
    """(H, W) of the returned frames, given the displayed (rotated) size and ClipSpec.frame_size."""
    dh, dw = display_hw
    if frame_size is None:
        return dh, dw
    if isinstance(frame_size, (int, np.integer)):
        s = int(frame_size)
        if s <= 0:
            raise ValueError(f"frame_size must be > 0, got {frame_size}")
        if dh <= dw:
            return s, max(1, int(round(dw * s / dh)))
        return max(1, int(round(dh * s / dw))), s
    h, w = (int(v) for v in frame_size)
    if h <= 0 or w <= 0:
        raise ValueError(f"frame_size must be positive, got {frame_size}")
    return h, w


def normalise_rotation(angle) -> int:
    """Display-matrix angle (counter-clockwise degrees, any sign) -> one of 0, 90, 180, 270."""
    if angle is None:
        return 0
    a = int(round(float(angle) / 90.0)) * 90
    return a % 360


def rotate_to_display(img: np.ndarray, ccw: int) -> np.ndarray:
    """Turn a stored frame [H,W,3] by the display matrix's counter-clockwise angle."""
    if ccw == 0:
        return img
    return np.ascontiguousarray(np.rot90(img, k=ccw // 90))


def stored_size(out_hw: tuple[int, int], ccw: int) -> tuple[int, int]:
    """Size to scale the stored (unrotated) frame to, so that it has `out_hw` once rotated."""
    return (out_hw[1], out_hw[0]) if ccw in (90, 270) else out_hw


def frame_indices(frame_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    """For each requested time, the index of the frame displayed then: the last one with
    timestamp <= time. Before the first frame -> 0; after the last -> the last (padding rule).
    `frame_times` must be sorted (presentation order)."""
    idx = np.searchsorted(frame_times, np.asarray(times) + TIME_EPS, side="right") - 1
    return np.clip(idx, 0, len(frame_times) - 1)


@dataclass
class ReadStats:
    """What one read met, filled by the backend that did the work (see `Clip.read_info`).

    `video_errors` / `audio_errors`: video packets the decoder rejected (skipped: the last good frame
    is shown in their place) plus frames it flagged corrupt (its error concealment, kept), and audio
    packets it rejected (their samples stay zero), counted where they touch the clip's window.
    `timestamps`: "pts" (frames picked by the file's presentation times) or "synthesized" (frame k
    at k / fps, decoded forward from the start: see avssl.io.timestamps). `decoder`: the backend that
    produced the frames ("pyav" when decord/torchcodec handed a file over)."""

    video_errors: int = 0
    audio_errors: int = 0
    timestamps: str = "pts"
    decoder: str = ""
    fallback: str = ""  # why another backend took over, if one did

    def as_dict(self) -> dict:
        return {"video_errors": self.video_errors, "audio_errors": self.audio_errors,
                "timestamps": self.timestamps, "decoder": self.decoder, "fallback": self.fallback}


class NoDecodableData(Exception):
    """A requested stream's window met undecodable packets and not one good frame/sample (read_clip
    turns it into CorruptMedia naming the file)."""
