"""Video batch transform on device: uint8 ``[B, T, H, W, 3]`` -> normalised float ``[B, 3, T, h, w]``.

Reference preset (AVID-CMA ``VideoPrep_MSC_CJ``): training = random resized crop (224, area
0.08-1, aspect 3/4-4/3; one crop per clip shared by its frames), horizontal flip (p 0.5),
colour jitter (brightness/contrast/saturation 0.4, hue 0.2; one draw per clip); evaluation =
resize the short side to ``crop / 0.875`` and centre-crop. Both end with the ImageNet
mean/std normalisation the reference uses.

Where the geometry runs: the training and evaluation builders use ``geometry=False``: the
datasets already resized and cropped every item to ``crop_size`` with the same recipe
(``avssl.data.spatial.SpatialPolicy``, per item, before collation, so files of any size and
aspect ratio batch; ``VideoAugment.input_policy`` is that policy), and this transform only
flips, jitters (training) and normalises. ``geometry=True`` (the default, for batches of one
frame size) does the crop here: crop + resize + flip of the whole batch is one ``grid_sample``
call (a per-clip affine map); evaluation runs the policy's resize + crop on the batch.
The jitter (after the crop, so on small images) is batched tensor ops with one factor per
clip, in a random order per clip like ``ColorJitter`` (same formulas as torchvision's ops).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avssl.data.spatial import (DEFAULT_CROP, DEFAULT_RATIO, DEFAULT_RESIZE_RATIO, DEFAULT_SCALE, SpatialPolicy,
                                policy_from_config)

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
        eval_resize_ratio: evaluation resizes the short side to ``crop_size / eval_resize_ratio``.
        eval_mode: evaluation geometry (``avssl.data.spatial``): ``resize_crop`` (reference),
            ``letterbox`` (whole frame, padded) or ``stretch`` (whole frame, aspect not kept).
        geometry: False when the dataset already brought every item to ``crop_size`` (its
            ``input_policy``): then training only flips + jitters + normalises and evaluation
            only normalises; inputs must be ``crop_size`` x ``crop_size``.
        mean, std: normalisation (ImageNet, as the reference).
    Random draws come from ``generator`` (a CPU ``torch.Generator``) when given, so a seeded
    generator gives the same batch twice.
    """

    def __init__(self, crop_size: int = DEFAULT_CROP, train: bool = True, scale: Sequence[float] = DEFAULT_SCALE,
                 ratio: Sequence[float] = DEFAULT_RATIO, flip_prob: float = 0.5,
                 jitter: Optional[Sequence[float]] = (0.4, 0.4, 0.4, 0.2),
                 eval_resize_ratio: float = DEFAULT_RESIZE_RATIO, eval_mode: Optional[str] = None,
                 geometry: bool = True, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        if crop_size <= 0:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {scale}")
        self.crop_size = int(crop_size)
        self.train_mode = bool(train)
        self.geometry = bool(geometry)
        self.scale, self.ratio = tuple(map(float, scale)), tuple(map(float, ratio))
        self.flip_prob = float(flip_prob)
        self.jitter = tuple(float(j) for j in jitter) if jitter is not None else (0.0, 0.0, 0.0, 0.0)
        if len(self.jitter) != 4 or not 0 <= self.jitter[3] <= 0.5:
            raise ValueError(f"jitter is (brightness, contrast, saturation, hue<=0.5), got {jitter}")
        self.eval_resize_ratio = float(eval_resize_ratio)
        self.eval_mode = eval_mode or "resize_crop"
        # the per-item geometry this transform stands for (validates mode / ratios)
        self.policy = policy_from_config({"crop_size": self.crop_size, "scale": self.scale, "ratio": self.ratio,
                                          "eval_resize_ratio": self.eval_resize_ratio, "eval_mode": self.eval_mode},
                                         train=self.train_mode)
        if self.policy.mode == "none":
            raise ValueError("VideoAugment needs an eval_mode that produces crop_size frames, not 'none'")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1, 1), persistent=False)

    @property
    def input_policy(self) -> SpatialPolicy:
        """What each item must have been through before this transform: the recipe's per-item
        policy (``geometry=False``) or ``none`` (``geometry=True``: the transform crops)."""
        return self.policy if not self.geometry else SpatialPolicy("none")

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
        if not self.geometry and (h, w) != (self.crop_size, self.crop_size):
            raise ValueError(f"VideoAugment(geometry=False) expects {self.crop_size}x{self.crop_size} frames (the "
                             f"dataset's spatial policy makes them), got {h}x{w}")
        x = video.permute(0, 1, 4, 2, 3).float().div_(255.0)  # [B, T, 3, H, W]
        if self.train_mode:
            x = self._train_geometry(x, generator) if self.geometry else self._flip(x, generator)
            if any(self.jitter):
                x = self._color_jitter(x, generator)
        elif self.geometry:
            x = self._eval_geometry(x)
        x = x.permute(0, 2, 1, 3, 4)  # [B, 3, T, h, w]
        return (x - self.mean) / self.std

    def _flip(self, x: torch.Tensor, generator) -> torch.Tensor:
        """Mirror each clip with probability ``flip_prob`` (in place on the chosen clips; ids on the host)."""
        flip = torch.rand(x.shape[0], generator=generator) < self.flip_prob
        ids = flip.nonzero().flatten()
        if ids.numel():
            ids = ids.to(x.device, non_blocking=True)
            x.index_copy_(0, ids, x.index_select(0, ids).flip(-1))
        return x

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
        # one sampling grid per clip, shared (expanded, not copied) by its frames
        grid = F.affine_grid(theta.to(x.device), [b, c, s, s], align_corners=False)
        grid = grid.unsqueeze(1).expand(b, t, s, s, 2).reshape(b * t, s, s, 2)
        out = F.grid_sample(x.reshape(b * t, c, h, w), grid, mode="bilinear", padding_mode="border",
                            align_corners=False)
        return out.view(b, t, c, s, s)

    def _eval_geometry(self, x: torch.Tensor) -> torch.Tensor:
        """The eval policy (deterministic, one frame size per batch) on the whole batch at once."""
        b, t, c, h, w = x.shape
        p = self.policy.place(h, w)
        y = self.policy.apply_chw(x.reshape(b * t, c, h, w), p)
        return y.reshape(b, t, c, *y.shape[-2:])

    def _color_jitter(self, x: torch.Tensor, generator) -> torch.Tensor:
        """Per-clip factors and a per-clip random op order (as ``ColorJitter``), applied as
        batched tensor ops: at each of the 4 positions of the order, each op runs once on
        the clips that have it there (ids known on the host, so no device sync)."""
        bri, con, sat, hue = self.jitter
        b = x.shape[0]
        u = torch.rand(b, 4, generator=generator)
        factors = torch.stack([1 + bri * (2 * u[:, 0] - 1), 1 + con * (2 * u[:, 1] - 1),
                               1 + sat * (2 * u[:, 2] - 1), hue * (2 * u[:, 3] - 1)])  # [4, B]
        orders = torch.argsort(torch.rand(b, 4, generator=generator), 1)
        ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
        active = (bri > 0, con > 0, sat > 0, hue > 0)
        dev_factors = factors.to(x.device, non_blocking=True)
        for position in range(4):
            for k in range(4):
                if not active[k]:
                    continue
                clips = (orders[:, position] == k).nonzero().flatten()  # host tensor: no sync
                if clips.numel() == 0:
                    continue
                if clips.numel() == b:  # everyone: no gather/scatter
                    x = ops[k](x, dev_factors[k])
                    continue
                ids = clips.to(x.device, non_blocking=True)
                x.index_copy_(0, ids, ops[k](x.index_select(0, ids), dev_factors[k].index_select(0, ids)))
        return x.clamp_(0, 1)


# Batched colour ops on [B, T, 3, h, w] in [0, 1] with one factor per clip ([B]).
# torchvision's functional ops take one scalar factor per call, hence these (same formulas:
# blend with black / the per-frame grey mean / the grey image, HSV hue rotation).
_GREY = (0.2989, 0.587, 0.114)


def _per_clip(f: torch.Tensor) -> torch.Tensor:
    return f.view(-1, 1, 1, 1, 1)


def _grey(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(2)
    return (_GREY[0] * r + _GREY[1] * g + _GREY[2] * b).unsqueeze(2)  # [B, T, 1, h, w]


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    f = _per_clip(f)
    return (f * x + (1 - f) * other).clamp_(0, 1)


def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * _per_clip(f)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, _grey(x).mean(dim=(-3, -2, -1), keepdim=True), f)


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, _grey(x), f)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of each clip by ``shift`` (fraction of a turn, [-0.5, 0.5])."""
    r, g, b = x.unbind(2)
    maxc, minc = x.amax(2), x.amin(2)
    delta = maxc - minc
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, 1), 0)
    d = torch.where(delta > 0, delta, 1)
    h = torch.where(maxc == r, (g - b) / d, torch.where(maxc == g, 2 + (b - r) / d, 4 + (r - g) / d))
    h = h / 6 + shift.view(-1, 1, 1, 1)
    h = h - torch.floor(h)  # mod 1 (floor is much cheaper than remainder on CPU)
    # HSV -> RGB: channel n in (5, 3, 1) is v - v*s*clamp(min(k, 4 - k), 0, 1), k = (n + 6h) mod 6
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 1, 3, 1, 1)
    k = n + 6 * h.unsqueeze(2)  # in [1, 11]: one wrap at most
    k = torch.where(k >= 6, k - 6, k)
    ramp = torch.minimum(k, 4 - k).clamp_(0, 1)
    return maxc.unsqueeze(2) - (maxc * sat).unsqueeze(2) * ramp
