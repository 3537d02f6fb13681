"""Width/depth-reduced encoders that train in minutes on 2 CPU cores (8x64x64 clips, 2 s audio).

Same layer types as the AVID networks (so the code paths are the same), fewer channels and
stages: video 16 -> (16, 32, 64) with one (2+1)D block per stage (~0.12M parameters), audio
16 -> (16, 32, 64) plain conv blocks (~0.075M parameters); both 64-d.
"""

from __future__ import annotations

from .avid_audio import Conv2DNet
from .avid_video import R2Plus1DNet


def tiny_video(width: int = 16, pool: str = "max", last_spatial_stride: int = 2, temporal_stride: int = 2
               ) -> R2Plus1DNet:
    """``last_spatial_stride=1``: a 7x7 last map at 56x56 input instead of 4x4 at about the same
    CPU cost (the last stage is the cheapest), for finer localization maps. ``temporal_stride=1``:
    every frame kept to the last map (8 slots for 8 frames instead of 2)."""
    return R2Plus1DNet(width, (width, 2 * width, 4 * width), (1, 1, 1), pool=pool,
                       last_spatial_stride=last_spatial_stride, temporal_stride=temporal_stride)


def tiny_audio(width: int = 16, pool: str = "max") -> Conv2DNet:
    return Conv2DNet(width, (width, 2 * width, 4 * width), (2, 2, 2), pool=pool, reference_layout=False)
