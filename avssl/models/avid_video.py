"""The AVID video network: R(2+1)D with a full 3D stem, max-pooled output.

Layer for layer as the released AVID / AVID+CMA checkpoints (parameter names and shapes
documented in ``avssl/models/checkpoint.py``): a 3x7x7 3D conv stem + BN + ReLU + 1x3x3
spatial max-pool, four stages (``conv2x``..``conv5x``) of (2+1)D residual blocks, and a
global max-pool to a 512-d vector. The same class with narrower widths is the ``tiny``
video encoder.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn


class R2Plus1DBlock(nn.Module):
    """Residual (2+1)D block: (1x3x3 spatial conv, BN, ReLU, 3x1x1 temporal conv, BN, ReLU) then
    (spatial conv, BN, ReLU, temporal conv), + shortcut, then BN (``out_bn``) and ReLU.

    Note the reference's order: the last temporal conv has no own BN; ``out_bn`` normalises
    the residual sum. The shortcut is a strided 1x1x1 conv when shape or stride changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: Sequence[int] = (1, 1, 1)):
        super().__init__()
        st, sh, sw = stride
        self.spt_conv1 = nn.Conv3d(in_ch, out_ch, (1, 3, 3), stride=(1, sh, sw), padding=(0, 1, 1), bias=False)
        self.spt_bn1 = nn.BatchNorm3d(out_ch)
        self.tmp_conv1 = nn.Conv3d(out_ch, out_ch, (3, 1, 1), stride=(st, 1, 1), padding=(1, 0, 0), bias=False)
        self.tmp_bn1 = nn.BatchNorm3d(out_ch)
        self.spt_conv2 = nn.Conv3d(out_ch, out_ch, (1, 3, 3), padding=(0, 1, 1), bias=False)
        self.spt_bn2 = nn.BatchNorm3d(out_ch)
        self.tmp_conv2 = nn.Conv3d(out_ch, out_ch, (3, 1, 1), padding=(1, 0, 0), bias=False)
        self.out_bn = nn.BatchNorm3d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.res = in_ch != out_ch or tuple(stride) != (1, 1, 1)
        if self.res:
            self.res_conv = nn.Conv3d(in_ch, out_ch, 1, stride=tuple(stride), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.spt_bn1(self.spt_conv1(x)))
        y = self.relu(self.tmp_bn1(self.tmp_conv1(y)))
        y = self.relu(self.spt_bn2(self.spt_conv2(y)))
        y = self.tmp_conv2(y)
        shortcut = self.res_conv(x) if self.res else x
        return self.relu(self.out_bn(y + shortcut))


class R2Plus1DNet(nn.Module):
    """Video encoder ``[B, 3, T, H, W] -> [B, out_dim]``.

    ``stem_width``: channels of the 3x7x7 stem; ``widths`` / ``blocks``: per stage (each stage
    after the first halves T, H and W). ``pool``: ``"max"`` (reference) or ``"avg"``.
    ``forward_features`` names: ``conv1`` (stem), ``conv2x``.. (stages, [B,C,T',H',W']),
    ``pool`` ([B, out_dim]). ``last_spatial_stride=1`` keeps the last stage at the previous
    stage's spatial resolution (finer localization maps; reference: 2). ``temporal_stride``: the
    time stride of every stage after the first (reference 2; 1 keeps all frames to the last map, so
    events a frame apart stay apart: T' = T instead of T / 2^(stages-1)).
    """

    def __init__(self, stem_width: int = 64, widths: Sequence[int] = (64, 128, 256, 512),
                 blocks: Sequence[int] = (2, 2, 2, 2), pool: str = "max", last_spatial_stride: int = 2,
                 temporal_stride: int = 2):
        super().__init__()
        if len(widths) != len(blocks) or not widths:
            raise ValueError(f"widths {widths} and blocks {blocks} must be non-empty and of equal length")
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        if last_spatial_stride not in (1, 2):
            raise ValueError(f"last_spatial_stride must be 1 or 2, got {last_spatial_stride}")
        if temporal_stride not in (1, 2):
            raise ValueError(f"temporal_stride must be 1 or 2, got {temporal_stride}")
        self.conv1 = nn.Sequential(
            nn.Conv3d(3, stem_width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(stem_width),
            nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        self.stage_names = [f"conv{i + 2}x" for i in range(len(widths))]
        in_ch = stem_width
        for i, (name, w, n) in enumerate(zip(self.stage_names, widths, blocks)):
            stride = (1, 1, 1) if i == 0 else (temporal_stride, 2, 2)
            if i == len(widths) - 1 and i > 0:
                stride = (temporal_stride, last_spatial_stride, last_spatial_stride)
            layers = [R2Plus1DBlock(in_ch, w, stride)] + [R2Plus1DBlock(w, w) for _ in range(n - 1)]
            self.add_module(name, nn.Sequential(*layers))
            in_ch = w
        self.pool = nn.AdaptiveMaxPool3d(1) if pool == "max" else nn.AdaptiveAvgPool3d(1)
        self.out_dim = in_ch
        self.last_map = self.stage_names[-1]

    # every conv / pool has "same" padding ((k - 1) / 2), so a map cell j is centred on input pixel
    # stride * j (tests/test_models.py measures it from the gradients); localization reads this
    map_cell_offset = 0.0

    def forward_features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        _check_input(x, 5, 3, "video")
        feats = OrderedDict()
        x = self.conv1(x)
        feats["conv1"] = x
        for name in self.stage_names:
            x = getattr(self, name)(x)
            feats[name] = x
        feats["pool"] = self.pool(x).flatten(1)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)["pool"]


def _check_input(x: torch.Tensor, ndim: int, channels: int, what: str) -> None:
    if x.ndim != ndim or x.shape[1] != channels:
        layout = "[B, 3, T, H, W]" if what == "video" else "[B, 1, F, T]"
        raise ValueError(f"{what} encoder expects {layout}, got shape {tuple(x.shape)}")


def avid_r2plus1d_18(pool: str = "max") -> R2Plus1DNet:
    """The AVID video network (R(2+1)D-18, 512-d, ~15.4M parameters)."""
    return R2Plus1DNet(64, (64, 128, 256, 512), (2, 2, 2, 2), pool=pool)
