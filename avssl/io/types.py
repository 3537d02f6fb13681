"""Plain data carriers of the I/O layer (see docs/ARCHITECTURE.md, 'Conventions')."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class ClipSpec:
    """What one training/eval sample holds.

    Reference (AVID) recipe: 8 frames at 16 fps, 2 s of 24 kHz mono audio.
    `frame_size`: None keeps the decoded size, an int sets the short side, (H, W) is exact.
    """

    num_frames: int = 8
    fps: float = 16.0
    frame_size: int | tuple[int, int] | None = None
    audio_rate: int = 24000
    audio_channels: int = 1
    audio_duration: float = 2.0

    @property
    def video_duration(self) -> float:
        return self.num_frames / self.fps

    @property
    def audio_samples(self) -> int:
        return int(round(self.audio_duration * self.audio_rate))


@dataclass
class Clip:
    """One decoded sample. `video` uint8 [T,H,W,3]; `audio` float32 [C,S] in [-1, 1].

    `frame_times` are the requested times (s, media timeline) of each frame; `audio_start`
    is the media time of audio sample 0; `start` the clip's requested start.

    `decode_errors`: damage met while reading this clip (0 on a clean file): video packets the
    decoder rejected (skipped, the last good frame shown instead) and frames it flagged corrupt
    (concealed, kept), plus audio packets it rejected (their samples are zeros). Datasets pass it on
    so trainers can log totals. Video damage is counted by PyAV (the default backend, and the one
    decord/torchcodec hand a file to when they fail on it); decord and torchcodec conceal what they
    can decode without reporting it. `read_info`: the details, {"video_errors", "audio_errors",
    "timestamps": "pts" | "synthesized", "decoder": backend that decoded the frames, "fallback":
    why another backend took over ("" if none)}.
    """

    video: torch.Tensor | None
    audio: torch.Tensor | None
    frame_times: torch.Tensor
    audio_start: float
    start: float
    decode_errors: int = 0
    read_info: dict = field(default_factory=dict)


@dataclass
class MediaInfo:
    """What probing a file tells (no frame decoding). Times in seconds."""

    path: str
    duration: float
    fps: float
    num_frames: int
    width: int
    height: int
    rotation: int = 0
    video_codec: str = ""
    video_start: float = 0.0
    has_audio: bool = False
    audio_rate: int = 0
    audio_channels: int = 0
    audio_codec: str = ""
    audio_start: float = 0.0
    extra: dict = field(default_factory=dict)
