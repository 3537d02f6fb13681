"""Encoders, projection heads and the audio-visual model (see docs/ARCHITECTURE.md)."""

from .av_model import AVModel
from .avid_audio import Conv2DNet, avid_conv2d
from .avid_video import R2Plus1DNet, avid_r2plus1d_18
from .checkpoint import CheckpointMismatchError, load_avid_checkpoint
from .heads import ProjectionHead
from .registry import (AUDIO_ENCODERS, PRESETS, VIDEO_ENCODERS, build_audio_encoder, build_av_model,
                       build_video_encoder)
from .tiny import tiny_audio, tiny_video
from .torchvision_video import TorchvisionVideoEncoder

__all__ = [
    "AVModel", "ProjectionHead", "R2Plus1DNet", "Conv2DNet", "TorchvisionVideoEncoder",
    "avid_r2plus1d_18", "avid_conv2d", "tiny_video", "tiny_audio",
    "build_video_encoder", "build_audio_encoder", "build_av_model", "VIDEO_ENCODERS", "AUDIO_ENCODERS", "PRESETS",
    "load_avid_checkpoint", "CheckpointMismatchError",
]
