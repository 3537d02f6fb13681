"""Batch transforms on device: `VideoAugment` (video) and `LogSpectrogram` (audio)."""

from .audio import LogSpectrogram
from .video import IMAGENET_MEAN, IMAGENET_STD, VideoAugment

__all__ = ["LogSpectrogram", "VideoAugment", "IMAGENET_MEAN", "IMAGENET_STD"]
