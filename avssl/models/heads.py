"""MLP projection heads (the reference's ``Head``: Linear, ReLU, ..., Linear)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class _ChannelLastBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last dim of ``[..., C]`` (a head applied per position sees [B,T,H,W,C])."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)


class ProjectionHead(nn.Module):
    """``[..., in_dim] -> [..., dims[-1]]``: one Linear per entry of ``dims`` with a ReLU between.

    ``ProjectionHead(512, [512, 512, 128])`` is the AVID head (three Linear layers, keys
    ``projection.0/2/4``). ``dims`` may be an int (a single Linear). Works on any leading
    shape, so it can be applied per spatio-temporal position (channel-last maps).
    ``norm=True`` puts a BatchNorm before each hidden ReLU (not in the reference layout): a
    randomly initialised encoder's pooled post-ReLU features all point the same way, so every
    clip starts with nearly the same embedding (cosine ~0.99) and contrastive training first
    spends hundreds of steps pulling them apart; centring them per batch removes that phase.
    """

    def __init__(self, in_dim: int, dims: int | Sequence[int] = (512, 512, 128), norm: bool = False):
        super().__init__()
        dims = [int(dims)] if isinstance(dims, int) else [int(d) for d in dims]
        if not dims or min(dims) <= 0 or in_dim <= 0:
            raise ValueError(f"need in_dim > 0 and positive dims, got in_dim={in_dim}, dims={dims}")
        layers: list[nn.Module] = []
        for i, d in enumerate(dims):
            layers.append(nn.Linear(in_dim, d))
            in_dim = d
            if i < len(dims) - 1:
                if norm:  # BN before each hidden ReLU: centres the all-positive pooled features
                    layers.append(_ChannelLastBatchNorm(d))
                layers.append(nn.ReLU(inplace=True))
        self.projection = nn.Sequential(*layers)
        self.in_dim = layers[0].in_features
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(x)
