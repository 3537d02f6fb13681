"""Video batch transform on device: uint8 ``[B, T, H, W, 3]`` -> normalised float ``[B, 3, T, h, w]``.

Reference preset (AVID-CMA ``VideoPrep_MSC_CJ``): training = random resized crop (224, area
0.08-1, aspect 3/4-4/3; one crop per clip shared by its frames), horizontal flip (p 0.5),
colour jitter (brightness/contrast/saturation 0.4, hue 0.2; one draw per clip); evaluation =
resize the short side to ``crop / 0.875`` and centre-crop. Both end with the ImageNet
mean/std normalisation the reference uses.

Crop + resize + flip of the whole batch is one ``grid_sample`` call (a per-clip affine map);
the jitter is torchvision's functional ops on each clip's ``[T, 3, h, w]`` stack (after the
crop, so on small images), in a random order per clip like ``ColorJitter``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VideoAugment(nn.Module):
    """``forward(video uint8 [B,T,H,W,3], generator=None) -> float [B,3,T,crop,crop]``.

    Args:
        crop_size: output side (reference 224).
        train: random crop/flip/jitter if True, else resize + centre crop (``eval_resize_ratio``).
        scale, ratio: RandomResizedCrop area fraction and aspect range.
        flip_prob: horizontal flip probability.
        jitter: (brightness, contrast, saturation, hue) strengths; None or zeros: no jitter.
        mean, std: normalisation (ImageNet, as the reference).
    Random draws come from ``generator`` (a CPU ``torch.Generator``) when given, so a seeded
    generator gives the same batch twice.
    """

    def __init__(self, crop_size: int = 224, train: bool = True, scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), flip_prob: float = 0.5,
                 jitter: Optional[Sequence[float]] = (0.4, 0.4, 0.4, 0.2), eval_resize_ratio: float = 0.875,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        if crop_size <= 0:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {scale}")
        self.crop_size = int(crop_size)
        self.train_mode = bool(train)
        self.scale, self.ratio = tuple(map(float, scale)), tuple(map(float, ratio))
        self.flip_prob = float(flip_prob)
        self.jitter = tuple(float(j) for j in jitter) if jitter is not None else (0.0, 0.0, 0.0, 0.0)
        if len(self.jitter) != 4 or not 0 <= self.jitter[3] <= 0.5:
            raise ValueError(f"jitter is (brightness, contrast, saturation, hue<=0.5), got {jitter}")
        self.eval_resize_ratio = float(eval_resize_ratio)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1, 1), persistent=False)

    # ---------------------------------------------------------------- parameters
    def sample_crops(self, b: int, h: int, w: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``[B, 4]`` (top, left, height, width) in pixels, torchvision RandomResizedCrop's rule:
        up to 10 draws of (area, log-aspect) per clip, the first that fits; else a centre crop
        with the aspect clamped to ``ratio``."""
        tries = 10
        area = h * w * torch.empty(b, tries).uniform_(*self.scale, generator=generator)
        logr = torch.empty(b, tries).uniform_(math.log(self.ratio[0]), math.log(self.ratio[1]), generator=generator)
        cw = torch.sqrt(area * torch.exp(logr)).round()
        ch = torch.sqrt(area / torch.exp(logr)).round()
        ok = (cw <= w) & (ch <= h) & (cw > 0) & (ch > 0)
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((b,), -1))
        # fallback: whole frame at the clamped aspect
        in_ratio = w / h
        if in_ratio < self.ratio[0]:
            fw, fh = w, round(w / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            fh, fw = h, round(h * self.ratio[1])
        else:
            fw, fh = w, h
        idx = first.clamp_min(0)
        cw = torch.where(first >= 0, cw.gather(1, idx[:, None])[:, 0], torch.tensor(float(fw)))
        ch = torch.where(first >= 0, ch.gather(1, idx[:, None])[:, 0], torch.tensor(float(fh)))
        u = torch.rand(b, 2, generator=generator)
        top = torch.where(first >= 0, torch.floor(u[:, 0] * (h - ch + 1)), torch.floor((h - ch) / 2))
        left = torch.where(first >= 0, torch.floor(u[:, 1] * (w - cw + 1)), torch.floor((w - cw) / 2))
        return torch.stack([top, left, ch, cw], 1)

    # ---------------------------------------------------------------- transform
    def forward(self, video: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if video.ndim != 5 or video.shape[-1] != 3:
            raise ValueError(f"VideoAugment expects uint8 [B, T, H, W, 3], got shape {tuple(video.shape)}")
        if video.dtype != torch.uint8:
            raise TypeError(f"VideoAugment expects uint8 frames, got {video.dtype}")
        b, t, h, w, _ = video.shape
        x = video.permute(0, 1, 4, 2, 3).float().div_(255.0)  # [B, T, 3, H, W]
        x = self._train_geometry(x, generator) if self.train_mode else self._eval_geometry(x)
        if self.train_mode and any(self.jitter):
            x = self._color_jitter(x, generator)
        x = x.permute(0, 2, 1, 3, 4)  # [B, 3, T, h, w]
        return (x - self.mean) / self.std

    def _train_geometry(self, x: torch.Tensor, generator) -> torch.Tensor:
        b, t, c, h, w = x.shape
        s = self.crop_size
        top, left, ch, cw = self.sample_crops(b, h, w, generator).unbind(1)
        flip = torch.rand(b, generator=generator) < self.flip_prob
        # affine map from the output grid ([-1, 1], align_corners=False) to the crop box
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = torch.where(flip, -cw / w, cw / w)
        theta[:, 0, 2] = (2 * left + cw) / w - 1
        theta[:, 1, 1] = ch / h
        theta[:, 1, 2] = (2 * top + ch) / h - 1
        theta = theta.to(x.device).repeat_interleave(t, 0)  # same crop for every frame of a clip
        grid = F.affine_grid(theta, [b * t, c, s, s], align_corners=False)
        out = F.grid_sample(x.reshape(b * t, c, h, w), grid, mode="bilinear", padding_mode="border",
                            align_corners=False)
        return out.view(b, t, c, s, s)

    def _eval_geometry(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        short = int(self.crop_size / self.eval_resize_ratio)
        y = TF.resize(x.reshape(b * t, c, h, w), [short], antialias=True)
        y = TF.center_crop(y, [self.crop_size, self.crop_size])
        return y.reshape(b, t, c, self.crop_size, self.crop_size)

    def _color_jitter(self, x: torch.Tensor, generator) -> torch.Tensor:
        bri, con, sat, hue = self.jitter
        b = x.shape[0]
        u = torch.rand(b, 4, generator=generator)
        factors = [1 + bri * (2 * u[:, 0] - 1), 1 + con * (2 * u[:, 1] - 1), 1 + sat * (2 * u[:, 2] - 1),
                   hue * (2 * u[:, 3] - 1)]
        orders = torch.argsort(torch.rand(b, 4, generator=generator), 1)
        ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
        active = (bri > 0, con > 0, sat > 0, hue > 0)
        clips = []
        for i in range(b):  # per-clip factors; each op runs on the clip's [T, 3, h, w] stack at once
            clip = x[i]
            for k in orders[i].tolist():
                if active[k]:
                    clip = ops[k](clip, float(factors[k][i]))
            clips.append(clip)
        return torch.stack(clips).clamp_(0, 1)
