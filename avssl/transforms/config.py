"""Batch transforms from a config's ``transforms`` section: the one place that turns
``{"video": VideoAugment kwargs, "audio": LogSpectrogram kwargs}`` into modules, for the trainer,
the embedding tools and localization alike."""

from __future__ import annotations

from collections.abc import Mapping

from avssl.transforms.audio import LogSpectrogram
from avssl.transforms.video import VideoAugment

__all__ = ["batch_transforms", "default_transforms"]


def batch_transforms(transforms_config: Mapping | None, audio_rate: int, train: bool,
                     ) -> tuple[VideoAugment, LogSpectrogram]:
    """``(video_transform, audio_transform)`` for batches: uint8 ``[B,T,H,W,3]`` -> float
    ``[B,3,T,H,W]`` (train: flip + colour jitter + normalisation; eval: normalisation) and
    waveform ``[B,C,S]`` -> log-spectrogram ``[B,1,F,Tf]``. The per-item resize/crop is the video
    transform's ``input_policy`` (``avssl.data.spatial``), applied by the datasets / clip readers;
    ``audio.sample_rate`` defaults to ``audio_rate``."""
    tc = dict(transforms_config or {})
    video_kw = dict(tc.get("video") or {})
    audio_kw = dict(tc.get("audio") or {})
    audio_kw.setdefault("sample_rate", audio_rate)
    return VideoAugment(**video_kw, train=train, geometry=False), LogSpectrogram(**audio_kw)


def default_transforms(spec, device, transforms_config: Mapping | None = None):
    """``(video_transform, audio_transform)`` for evaluation, on ``device``, for clips of ``spec``
    (an ``avssl.io.ClipSpec``): `batch_transforms` with ``train=False``, so a checkpoint's model
    sees the preprocessing it was trained with (``transforms_config``: the pretraining config's
    ``transforms`` section) without augmentation."""
    video_t, audio_t = batch_transforms(transforms_config, spec.audio_rate, train=False)
    return video_t.to(device), audio_t.to(device)
