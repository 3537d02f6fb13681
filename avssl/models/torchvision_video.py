"""torchvision's video ResNets (``r2plus1d_18``, ``r3d_18``, ``mc3_18``; random init) as encoders.

The classifier (``fc``) is dropped; the stages are run by hand so that every map is exposed:
``stem``, ``layer1``..``layer4`` ([B,C,T',H',W']) and ``pool`` ([B,512]).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models import video as tv_video

from .avid_video import _check_input

TORCHVISION_VIDEO = ("r2plus1d_18", "r3d_18", "mc3_18")


class TorchvisionVideoEncoder(nn.Module):
    def __init__(self, arch: str = "r2plus1d_18", pool: str = "avg"):
        super().__init__()
        if arch not in TORCHVISION_VIDEO:
            raise ValueError(f"unknown torchvision video arch {arch!r}; choose from {TORCHVISION_VIDEO}")
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        net = getattr(tv_video, arch)(weights=None)
        self.arch = arch
        self.stem, self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.stem, net.layer1, net.layer2, net.layer3, net.layer4)
        self.pool = nn.AdaptiveAvgPool3d(1) if pool == "avg" else nn.AdaptiveMaxPool3d(1)
        self.out_dim = net.fc.in_features
        self.last_map = "layer4"

    # every conv / pool has "same" padding ((k - 1) / 2), so a map cell j is centred on input pixel
    # stride * j (tests/test_models.py measures it from the gradients); localization reads this
    map_cell_offset = 0.0

    def forward_features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        _check_input(x, 5, 3, "video")
        feats = OrderedDict()
        for name in ("stem", "layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            feats[name] = x
        feats["pool"] = self.pool(x).flatten(1)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)["pool"]
