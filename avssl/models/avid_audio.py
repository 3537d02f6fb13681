"""The AVID audio network: a VGG-style 2D conv net on the log-spectrogram, max-pooled to 512-d.

Layer for layer as the released checkpoints: a 7x7/2 conv stem + BN + ReLU (``conv1``), four
plain (non-residual) blocks of two 3x3 convs (``block1``..``block4``; strides 2, 2, 2, 1), a
global max-pool. The same class with narrower widths is the ``tiny`` audio encoder.

Layout: the library's contract is ``[B, 1, F, T]`` (frequency, time), but the reference net
was trained on ``[B, 1, T, F]`` (200 x 257), and its non-square-strided stack is not
transpose-invariant for loaded weights. So ``reference_layout=True`` (AVID) transposes the
input to ``[B, 1, T, F]`` internally, and transposes feature maps back to ``[B, C, F', T']``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

from .avid_video import _check_input


class ConvBlock2D(nn.Module):
    """Two 3x3 convs, each followed by BN and ReLU; the first may stride. No shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: Sequence[int] = (1, 1)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=tuple(stride), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(x)))


class Conv2DNet(nn.Module):
    """Audio encoder ``[B, 1, F, T] -> [B, out_dim]``.

    ``forward_features`` names: ``conv1`` (stem), ``block1``.., as ``[B, C, F', T']``, and
    ``pool`` ([B, out_dim]).
    """

    def __init__(self, stem_width: int = 64, widths: Sequence[int] = (64, 128, 256, 512),
                 strides: Sequence[int] = (2, 2, 2, 1), pool: str = "max", reference_layout: bool = True):
        super().__init__()
        if len(widths) != len(strides) or not widths:
            raise ValueError(f"widths {widths} and strides {strides} must be non-empty and of equal length")
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        self.reference_layout = reference_layout
        self.conv1 = nn.Sequential(
            nn.Conv2d(1, stem_width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
        )
        self.block_names = [f"block{i + 1}" for i in range(len(widths))]
        in_ch = stem_width
        for name, w, s in zip(self.block_names, widths, strides):
            self.add_module(name, ConvBlock2D(in_ch, w, (s, s)))
            in_ch = w
        self.pool = nn.AdaptiveMaxPool2d(1) if pool == "max" else nn.AdaptiveAvgPool2d(1)
        self.out_dim = in_ch
        self.last_map = self.block_names[-1]

    def forward_features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        _check_input(x, 4, 1, "audio")
        if self.reference_layout:
            x = x.transpose(2, 3)  # [B,1,F,T] -> the reference's [B,1,T,F]
        back = (lambda m: m.transpose(2, 3)) if self.reference_layout else (lambda m: m)
        feats = OrderedDict()
        x = self.conv1(x)
        feats["conv1"] = back(x)
        for name in self.block_names:
            x = getattr(self, name)(x)
            feats[name] = back(x)
        feats["pool"] = self.pool(x).flatten(1)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)["pool"]


def avid_conv2d() -> Conv2DNet:
    """The AVID audio network (Conv2D depth 10, 512-d, ~4.7M parameters)."""
    return Conv2DNet(64, (64, 128, 256, 512), (2, 2, 2, 1), pool="max", reference_layout=True)
