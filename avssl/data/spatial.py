"""Per-item spatial policy: every clip leaves the dataset at ONE configured shape, whatever its
size, aspect ratio or rotation, so any mix of files batches.

A ``SpatialPolicy`` turns a clip's frames uint8 ``[T, H, W, 3]`` (as the readers return them:
rotation applied, short side resized to ``ClipSpec.frame_size``) into ``[T, h, w, 3]`` with one
geometry shared by all frames of the clip. Modes (the reference recipe, AVID-CMA
``VideoPrep_MSC_CJ``, is ``random_resized_crop`` for training and ``resize_crop`` for evaluation):

- ``random_resized_crop``: torchvision ``RandomResizedCrop``'s rule on the item's own (H, W):
  up to 10 draws of (area fraction in ``scale``, log-uniform aspect in ``ratio``), the first box
  that fits; else the whole frame at the clamped aspect, centred. The box is resized to ``size``.
- ``resize_crop``: short side to ``int(size / resize_ratio)`` (torchvision ``Resize``), centre
  crop ``size`` (``CenterCrop``); with ``resize_ratio`` 0.875 that is the reference's eval crop.
- ``letterbox``: the whole frame fitted inside ``size`` (aspect kept), centred, padded with
  ``fill`` (ImageNet mean colour: zero after normalisation). For heatmaps, where the whole frame matters.
- ``stretch``: resize to ``size`` ignoring aspect (what the public VGG-SS / Flickr evaluators do at 224x224).
- ``none``: frames unchanged (items batch only when all files decode to one size).

Each item also gets its *placement* (``Placement``, as a float32 ``[12]`` tensor that collates):
output size, source size, the crop box in source pixels and the content box in output pixels.
Output pixels inside the content box map linearly onto the crop box; ``map_to_source`` uses it
to put an output-space map (a heatmap) back onto the source frame at its true aspect ratio.
Horizontal flips (done later, on the batch) are not part of the placement.

Random draws come from a ``numpy.random.Generator`` passed in, so an item stays a pure function
of the dataset's (seed, epoch, index).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

__all__ = ["MODES", "EVAL_MODES", "SpatialPolicy", "Placement", "policy_from_config", "input_policy_of",
           "sample_resized_crop", "as_placements", "source_coords", "sample_at", "map_to_source",
           "DEFAULT_CROP", "DEFAULT_SCALE", "DEFAULT_RATIO", "DEFAULT_RESIZE_RATIO"]

MODES = ("random_resized_crop", "resize_crop", "letterbox", "stretch", "none")
EVAL_MODES = ("resize_crop", "letterbox", "stretch", "none")
DEFAULT_CROP = 224
DEFAULT_SCALE = (0.08, 1.0)
DEFAULT_RATIO = (3 / 4, 4 / 3)
DEFAULT_RESIZE_RATIO = 0.875
MEAN_RGB_U8 = (124, 116, 104)  # round(255 * ImageNet mean): letterbox bars normalise to ~0


@dataclass(frozen=True)
class Placement:
    """Where an output (model input) image came from in its source frame.

    ``out_hw`` output size; ``src_hw`` source frame size; ``crop`` (top, left, height, width) in
    source pixels; ``content`` (top, left, height, width) in output pixels. Pixel-edge
    coordinates: output point ``content_top + (y - crop_top) * content_h / crop_h`` shows source
    point ``y`` (same for x), for source points inside the crop box.
    """

    out_hw: tuple[float, float]
    src_hw: tuple[float, float]
    crop: tuple[float, float, float, float]
    content: tuple[float, float, float, float]

    def to_tensor(self) -> torch.Tensor:
        """float32 ``[12]``: out_h, out_w, src_h, src_w, crop (t, l, h, w), content (t, l, h, w)."""
        return torch.tensor([*self.out_hw, *self.src_hw, *self.crop, *self.content], dtype=torch.float32)

    @classmethod
    def from_tensor(cls, t) -> "Placement":
        v = [float(x) for x in torch.as_tensor(t).reshape(-1).tolist()]
        if len(v) != 12:
            raise ValueError(f"a placement has 12 numbers, got {len(v)}")
        return cls((v[0], v[1]), (v[2], v[3]), tuple(v[4:8]), tuple(v[8:12]))

    @classmethod
    def identity(cls, h: int, w: int) -> "Placement":
        return cls((h, w), (h, w), (0.0, 0.0, h, w), (0.0, 0.0, h, w))


def sample_resized_crop(h: int, w: int, scale, ratio, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random resized crop of an ``h x w`` frame.

    torchvision's ``RandomResizedCrop.get_params`` rule (area fraction uniform in ``scale``,
    log-aspect uniform in ``log(ratio)``, 10 tries, centred clamped-aspect fallback), written
    out because torchvision draws from the global torch RNG and items need a numpy Generator.
    """
    area = h * w
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(lo, hi))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def _pair(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(v) for v in size)
    return h, w


@dataclass(frozen=True)
class SpatialPolicy:
    """Per-item resize/crop to one output shape (see the module doc for the modes).

    ``size``: output side (int) or (H, W); ignored by ``none``. ``scale`` / ``ratio``: the random
    resized crop's area fraction and aspect ranges. ``resize_ratio``: ``resize_crop`` resizes the
    short side to ``int(size / resize_ratio)`` before the centre crop (1: crop the central square).
    ``fill``: letterbox padding colour (RGB uint8).
    """

    mode: str = "none"
    size: int | tuple[int, int] | None = None
    scale: tuple[float, float] = DEFAULT_SCALE
    ratio: tuple[float, float] = DEFAULT_RATIO
    resize_ratio: float = DEFAULT_RESIZE_RATIO
    fill: tuple[int, int, int] = MEAN_RGB_U8

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"spatial mode must be one of {MODES}, got {self.mode!r}")
        size = _pair(self.size)
        if self.mode != "none" and (size is None or min(size) < 1):
            raise ValueError(f"spatial mode {self.mode!r} needs a positive size, got {self.size!r}")
        scale, ratio = tuple(float(v) for v in self.scale), tuple(float(v) for v in self.ratio)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {self.scale}")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < lo <= hi, got {self.ratio}")
        if not 0 < float(self.resize_ratio) <= 1:
            raise ValueError(f"resize_ratio must be in (0, 1], got {self.resize_ratio}")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "ratio", ratio)
        object.__setattr__(self, "resize_ratio", float(self.resize_ratio))
        object.__setattr__(self, "fill", tuple(int(v) for v in self.fill))

    @property
    def random(self) -> bool:
        return self.mode == "random_resized_crop"

    def as_dict(self) -> dict:
        return asdict(self)

    # ---------------------------------------------------------------- geometry
    def _resized_hw(self, h: int, w: int) -> tuple[int, int]:
        """``resize_crop``'s intermediate size: torchvision ``Resize(int(size / resize_ratio))`` for a
        square output (short side fixed, long side ``int(short * long / short_in)``); for an (H, W)
        output the short side is raised until the resized frame covers (H, W) / resize_ratio."""
        oh, ow = self.size
        short_in, long_in = min(h, w), max(h, w)
        need = max(oh, ow * h / w) if h <= w else max(ow, oh * w / h)  # short side that covers (oh, ow)
        short = max(int(need / self.resize_ratio), math.ceil(need - 1e-9))
        long = int(short * long_in / short_in)
        rh, rw = (short, long) if h <= w else (long, short)
        return max(rh, oh), max(rw, ow)

    def place(self, h: int, w: int, rng: np.random.Generator | None = None) -> Placement:
        """The geometry for an ``h x w`` source frame (draws the random crop box from ``rng``)."""
        if self.mode == "none":
            return Placement.identity(h, w)
        oh, ow = self.size
        whole_out = (0.0, 0.0, float(oh), float(ow))
        if self.mode == "stretch":
            return Placement((oh, ow), (h, w), (0.0, 0.0, float(h), float(w)), whole_out)
        if self.mode == "letterbox":
            if oh * w <= ow * h:  # height-limited (exact integer comparison of the aspects)
                ch, cw = oh, max(1, min(ow, round(w * oh / h)))
            else:
                ch, cw = max(1, min(oh, round(h * ow / w))), ow
            return Placement((oh, ow), (h, w), (0.0, 0.0, float(h), float(w)),
                             (float((oh - ch) // 2), float((ow - cw) // 2), float(ch), float(cw)))
        if self.mode == "resize_crop":
            rh, rw = self._resized_hw(h, w)
            top, left = int(round((rh - oh) / 2.0)), int(round((rw - ow) / 2.0))  # torchvision center_crop
            sy, sx = h / rh, w / rw
            return Placement((oh, ow), (h, w), (top * sy, left * sx, oh * sy, ow * sx), whole_out)
        if rng is None:
            raise ValueError("random_resized_crop needs a numpy Generator (rng)")
        top, left, ch, cw = sample_resized_crop(h, w, self.scale, self.ratio, rng)
        return Placement((oh, ow), (h, w), (float(top), float(left), float(ch), float(cw)), whole_out)

    def apply_chw(self, x: torch.Tensor, p: Placement) -> torch.Tensor:
        """Frames ``[..., C, H, W]`` (uint8 or float) -> ``[..., C, h, w]`` with placement ``p``
        (from ``place`` on the same H, W). torchvision ops, bilinear with antialias."""
        if self.mode == "none":
            return x
        oh, ow = self.size
        if self.mode == "stretch":
            return TF.resize(x, [oh, ow], antialias=True)
        if self.mode == "letterbox":
            t, l, ch, cw = (int(v) for v in p.content)
            y = TF.resize(x, [ch, cw], antialias=True)
            pad = [l, t, ow - cw - l, oh - ch - t]
            if not any(pad):
                return y
            fill = list(self.fill) if x.dtype == torch.uint8 else [v / 255.0 for v in self.fill]
            return TF.pad(y, pad, fill=fill)
        if self.mode == "resize_crop":
            rh, rw = self._resized_hw(x.shape[-2], x.shape[-1])
            return TF.center_crop(TF.resize(x, [rh, rw], antialias=True), [oh, ow])
        t, l, ch, cw = (int(v) for v in p.crop)
        return TF.resized_crop(x, t, l, ch, cw, [oh, ow], antialias=True)

    def apply(self, video: torch.Tensor, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``video`` uint8 ``[T, H, W, 3]`` -> (``[T, h, w, 3]``, placement float32 ``[12]``);
        one geometry for all frames."""
        if video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"expected frames [T, H, W, 3], got {tuple(video.shape)}")
        h, w = int(video.shape[1]), int(video.shape[2])
        p = self.place(h, w, rng)
        if self.mode == "none":
            return video, p.to_tensor()
        out = self.apply_chw(video.permute(0, 3, 1, 2), p)
        return out.permute(0, 2, 3, 1).contiguous(), p.to_tensor()


def policy_from_config(video_cfg: Mapping | None, train: bool, mode: str | None = None) -> SpatialPolicy:
    """The dataset policy of a ``transforms.video`` config section (the same keys ``VideoAugment``
    reads: ``crop_size``, ``scale``, ``ratio``, ``eval_resize_ratio``, ``eval_mode``).

    Train: ``random_resized_crop``. Eval: ``mode`` if given, else ``eval_mode`` (default
    ``resize_crop``: short side ``crop_size / eval_resize_ratio``, centre crop).
    """
    c = dict(video_cfg or {})
    if train:
        mode = "random_resized_crop"
    else:
        mode = mode or c.get("eval_mode") or "resize_crop"
        if mode not in EVAL_MODES:
            raise ValueError(f"transforms.video.eval_mode must be one of {EVAL_MODES}, got {mode!r}")

    def get(key, default):
        v = c.get(key)
        return default if v is None else v

    return SpatialPolicy(mode, get("crop_size", DEFAULT_CROP), scale=tuple(get("scale", DEFAULT_SCALE)),
                         ratio=tuple(get("ratio", DEFAULT_RATIO)),
                         resize_ratio=float(get("eval_resize_ratio", DEFAULT_RESIZE_RATIO)))


# ---------------------------------------------------------------- output space -> source frame


def as_placements(placement) -> torch.Tensor:
    """Placements as float32 ``[N, 12]`` (from a ``Placement``, ``[12]`` or ``[N, 12]``)."""
    if isinstance(placement, Placement):
        placement = placement.to_tensor()
    p = torch.as_tensor(placement, dtype=torch.float32)
    if p.shape[-1] != 12:
        raise ValueError(f"placements are [..., 12], got {tuple(p.shape)}")
    return p.reshape(-1, 12)


def source_coords(placement, size: int | tuple[int, int] | None = None, device=None):
    """Output-space coordinates of the pixel centres of a ``size`` grid laid over the whole source frame.

    ``placement``: ``Placement`` or float ``[12]`` / ``[N, 12]``. ``size``: the target (H, W)
    (default: the source size; any size covering the same frame, e.g. the file's full
    resolution, works). Returns ``(ys [N, H], xs [N, W], inside_y [N, H], inside_x [N, W])``:
    output pixel-index coordinates (centre of output pixel i = i) and whether the point lies
    inside the crop box (outside it the output holds no information).
    """
    p = as_placements(placement).double()
    if size is None:
        if not torch.all(p[:, 2:4] == p[:1, 2:4]):
            raise ValueError("placements of different source sizes: give size")
        size = (int(round(float(p[0, 2]))), int(round(float(p[0, 3]))))
    th, tw = _pair(size)

    def axis(n_t, src, c0, cn, o0, on):
        s = (torch.arange(n_t, dtype=torch.float64)[None] + 0.5) * (src[:, None] / n_t)  # source pixel-edge coords
        o = o0[:, None] + (s - c0[:, None]) * (on[:, None] / cn[:, None]) - 0.5  # output pixel-index coords
        inside = (s >= c0[:, None] - 1e-9) & (s <= c0[:, None] + cn[:, None] + 1e-9)
        return o.float().to(device), inside.to(device)

    ys, iy = axis(th, p[:, 2], p[:, 4], p[:, 6], p[:, 8], p[:, 10])
    xs, ix = axis(tw, p[:, 3], p[:, 5], p[:, 7], p[:, 9], p[:, 11])
    return ys, xs, iy, ix


def sample_at(maps: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, iy: torch.Tensor, ix: torch.Tensor,
              fill: float | str = "min") -> torch.Tensor:
    """Bilinear samples of ``maps`` ``[N or 1, M, h, w]`` at grid coordinates ``ys [N, H]``, ``xs [N, W]``
    (index units of the map: cell i centred at i; held constant beyond the outer cells) ->
    ``[N, M, H, W]``; points outside (``iy`` / ``ix`` False) get ``fill`` (``"min"``: each map's minimum)."""
    n = max(maps.shape[0], ys.shape[0])
    m, h, w = maps.shape[1:]
    maps = maps.float().expand(n, m, h, w)
    ys, xs = ys.expand(n, -1), xs.expand(n, -1)
    gy = ys * (2.0 / (h - 1)) - 1.0 if h > 1 else torch.zeros_like(ys)
    gx = xs * (2.0 / (w - 1)) - 1.0 if w > 1 else torch.zeros_like(xs)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # [N, H, W, 2] (x, y)
    out = F.grid_sample(maps, grid.to(maps.device), mode="bilinear", padding_mode="border", align_corners=True)
    inside = (iy.expand(n, -1)[:, :, None] & ix.expand(n, -1)[:, None, :]).to(maps.device)[:, None]
    if bool(inside.all()):
        return out
    value = maps.amin(dim=(-2, -1), keepdim=True) if fill == "min" else torch.full_like(out[..., :1, :1], float(fill))
    return torch.where(inside, out, value.expand_as(out))


def map_to_source(maps: torch.Tensor, placement, size: int | tuple[int, int] | None = None,
                  fill: float | str = "min") -> torch.Tensor:
    """An output-space map ``[..., h_out, w_out]`` (e.g. a heatmap at model-input resolution) put
    back onto the source frame: ``[..., H, W]`` at ``size`` (default: the source size), aspect as
    the source. ``placement``: ``[12]`` (shared) or ``[N, 12]`` with maps ``[N, ..., h, w]``.
    Pixels outside the crop box get ``fill`` (``"min"``: the map's minimum)."""
    p = as_placements(placement)
    lead, (h, w) = maps.shape[:-2], maps.shape[-2:]
    if (h, w) != (int(p[0, 0]), int(p[0, 1])):
        raise ValueError(f"maps are {h}x{w} but the placement's output is {int(p[0, 0])}x{int(p[0, 1])}")
    n = p.shape[0]
    if n > 1 and (len(lead) == 0 or lead[0] != n):
        raise ValueError(f"{n} placements for maps of shape {tuple(maps.shape)}")
    ys, xs, iy, ix = source_coords(p, size, maps.device)
    out = sample_at(maps.reshape(n, -1, h, w), ys, xs, iy, ix, fill)
    return out.reshape(*lead, *out.shape[-2:])


def input_policy_of(video_transform) -> SpatialPolicy:
    """The per-clip geometry ``video_transform`` expects its inputs to have been through: its
    ``input_policy`` (``VideoAugment(geometry=False)``), else ``none`` (any other callable, or a
    transform that crops on the batch itself)."""
    p = getattr(video_transform, "input_policy", None)
    return p if isinstance(p, SpatialPolicy) else SpatialPolicy("none")
