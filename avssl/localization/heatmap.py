"""Sound-source heatmaps from the shared audio-visual embedding space.

A heatmap is the cosine similarity between a clip's audio embedding ``a`` (``[D]``, from
``AVModel.embed_audio``) and the video embedding at every spatio-temporal position
(``AVModel.video_dense_embeddings``: the video projection head applied per position, so
both live in the same space): ``S[t, y, x] = <a, v[:, t, y, x]> / (|a| |v[:, t, y, x]|)``,
in [-1, 1]. Maps are kept raw (cosine) for open-set confidences and normalised only for
display and for the cIoU protocol.

Also here: the sliding-window ``HeatmapTrack`` for whole files (``video_heatmap_track``)
and the two model-free baselines (centre-prior Gaussian, whole image).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F


class DenseAVModel(Protocol):
    """What a model needs for localization (``avssl.models.AVModel`` satisfies it)."""

    def embed_audio(self, spec: torch.Tensor) -> torch.Tensor: ...  # [B,1,F,Tf] -> [B,D]

    def video_dense_embeddings(self, video: torch.Tensor) -> torch.Tensor: ...  # [B,3,T,H,W] -> [B,D,T',H',W']


def similarity_maps(audio_emb: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of paired audio ``[B, D]`` and dense video ``[B, D, T, h, w]`` -> ``[B, T, h, w]``."""
    if audio_emb.ndim != 2 or dense.ndim != 5 or audio_emb.shape[:2] != dense.shape[:2]:
        raise ValueError(f"expected audio [B,D] and video [B,D,T,h,w] with equal B, D; got {tuple(audio_emb.shape)}, {tuple(dense.shape)}")
    a = F.normalize(audio_emb.float(), dim=1)
    v = F.normalize(dense.float(), dim=1)
    return torch.einsum("bd,bdthw->bthw", a, v)


def cross_similarity_maps(audio_emb: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """Every audio ``[A, D]`` against every video ``[V, D, T, h, w]`` -> ``[A, V, T, h, w]``.

    Used to play the sound of one clip over the pictures of others (mismatched audio).
    """
    if audio_emb.ndim != 2 or dense.ndim != 5 or audio_emb.shape[1] != dense.shape[1]:
        raise ValueError(f"expected audio [A,D] and video [V,D,T,h,w]; got {tuple(audio_emb.shape)}, {tuple(dense.shape)}")
    a = F.normalize(audio_emb.float(), dim=1)
    v = F.normalize(dense.float(), dim=1)
    return torch.einsum("ad,vdthw->avthw", a, v)


def map_stride(input_size: int, map_size: int) -> int:
    """Total stride of an encoder whose ``input_size``-pixel input gave a ``map_size``-cell map:
    the power of two nearest ``input_size / map_size`` (every stride in our encoders is 1 or 2;
    a ratio such as 84 / 11 comes from the ceil of strided convolutions on odd sizes)."""
    if input_size < 1 or map_size < 1:
        raise ValueError(f"sizes must be positive, got input {input_size}, map {map_size}")
    return max(1, 2 ** round(math.log2(input_size / map_size)))


def upsample_maps(maps: torch.Tensor, size: int | tuple[int, int], align_corners: bool = False,
                  input_size: int | tuple[int, int] | None = None, cell_offset: float = 0.0,
                  placement=None) -> torch.Tensor:
    """Bilinear resample of ``[..., h, w]`` maps to ``[..., H, W]`` pixels covering the whole frame.

    Without ``input_size``: a plain resize, which puts cell ``j`` at the centre of the ``j``-th
    of ``h`` equal bands of the frame -- right for pooled grids (cell = mean of a pixel block).
    With ``input_size`` (the model input's ``(H_in, W_in)``): cell ``j`` is placed where its
    receptive field is centred, on input pixel ``stride * j + cell_offset`` (``map_stride``).
    Convolution stacks with "same" padding (ours, torchvision's) have ``cell_offset = 0``;
    a plain resize would put that cell at ``stride * j + (stride - 1) / 2``, shifting every
    map by half a cell to the bottom-right (3.5 px of a 56 px input at stride 8).
    Outside the outermost cell centres the map is held constant (border padding).

    ``placement`` (``avssl.data.spatial.Placement`` / float ``[12]``, or ``[N, 12]`` for maps
    ``[N, ..., h, w]``): the model input was cut from the frame by a spatial policy (crop,
    letterbox, stretch); the ``[H, W]`` output then covers the *source frame* (any size, e.g. the
    file's own resolution, so a 16:9 film gets a 16:9 map), each pixel taking the map value of
    the model-input point that shows it. Frame regions the input did not show (cropped away) get
    each map's minimum. Without it the model input is taken to be the whole frame, stretched.
    """
    size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    lead = maps.shape[:-2]
    h, w = maps.shape[-2:]
    if placement is not None:
        return _upsample_placed(maps, size, input_size, cell_offset, placement)
    x = maps.reshape(-1, 1, h, w).float()
    if input_size is None:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
        return x.reshape(*lead, *size)
    in_h, in_w = (input_size, input_size) if isinstance(input_size, int) else (int(v) for v in input_size)

    def axis(n_out: int, n_in: int, n_cells: int) -> torch.Tensor:
        # output pixel centre -> input pixel coordinate -> cell coordinate -> grid_sample's [-1, 1]
        # (align_corners=True: -1 and 1 are the centres of the first and last cells)
        pix = (torch.arange(n_out, dtype=torch.float32, device=x.device) + 0.5) * (n_in / n_out) - 0.5
        cell = (pix - cell_offset) / map_stride(n_in, n_cells)
        return cell * (2.0 / (n_cells - 1)) - 1.0 if n_cells > 1 else torch.zeros_like(cell)

    gy, gx = torch.meshgrid(axis(size[0], in_h, h), axis(size[1], in_w, w), indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).expand(x.shape[0], *size, 2)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return x.reshape(*lead, *size)


def _upsample_placed(maps, size, input_size, cell_offset, placement) -> torch.Tensor:
    """``upsample_maps`` onto the source frame through a spatial ``placement``."""
    from avssl.data.spatial import as_placements, sample_at, source_coords

    p = as_placements(placement)
    n = p.shape[0]
    lead, (h, w) = maps.shape[:-2], maps.shape[-2:]
    if n > 1 and (len(lead) == 0 or lead[0] != n):
        raise ValueError(f"{n} placements for maps of shape {tuple(maps.shape)}")
    ys, xs, iy, ix = source_coords(p, size, maps.device)  # model-input pixel coordinates of frame pixels
    in_hw = p[:, :2]
    if input_size is not None:
        want = (input_size, input_size) if isinstance(input_size, int) else tuple(int(v) for v in input_size)
        if not torch.all(in_hw == torch.tensor(want, dtype=in_hw.dtype)):
            raise ValueError(f"input_size {want} differs from the placement's output size {in_hw[0].tolist()}")
        # receptive-field centres: cell j on input pixel stride * j + cell_offset
        cy = (ys - cell_offset) / map_stride(want[0], h)
        cx = (xs - cell_offset) / map_stride(want[1], w)
    else:  # plain resize: cell j at the centre of the j-th of h equal bands of the input
        dev = ys.device
        cy = (ys + 0.5) * (h / in_hw[:, :1].to(dev)) - 0.5
        cx = (xs + 0.5) * (w / in_hw[:, 1:].to(dev)) - 0.5
    out = sample_at(maps.reshape(n, -1, h, w), cy, cx, iy, ix, fill="min")
    return out.reshape(*lead, *size)


def model_cell_offset(model) -> float | None:
    """Where the model's dense map cells sit in its input (``upsample_maps``'s ``cell_offset``),
    or None when the model does not say (then maps are resized plainly)."""
    return getattr(model, "dense_cell_offset", None)


def map_placement(model, input_hw) -> dict:
    """``upsample_maps`` keywords that place ``model``'s map cells on its ``input_hw`` input:
    ``{"input_size", "cell_offset"}``, or ``{}`` (plain resize) when the model does not declare
    its cell offset. Stored with maps that are upsampled later (tracks, evaluation results)."""
    offset = model_cell_offset(model)
    return {} if offset is None else {"input_size": tuple(int(v) for v in input_hw), "cell_offset": float(offset)}


def normalize_maps(maps: torch.Tensor, mode: str = "minmax", value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """Map heatmaps ``[..., H, W]`` to [0, 1].

    ``minmax``: per map (the metric protocol; a constant map becomes all zeros).
    ``fixed``: affine map of ``value_range`` (cosine: [-1, 1]) to [0, 1], clipped; keeps the
    absolute level, so a silent clip's weak map stays dark.
    ``global``: one min-max over the whole tensor (consistent colours over a video).
    """
    x = maps.float()
    if mode == "minmax":
        lo = x.amin(dim=(-2, -1), keepdim=True)
        hi = x.amax(dim=(-2, -1), keepdim=True)
        return torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(x))
    if mode == "fixed":
        lo, hi = value_range
        return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
    if mode == "global":
        lo, hi = x.min(), x.max()
        return (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    raise ValueError(f"unknown normalisation {mode!r} (minmax | fixed | global)")


@dataclass
class Heatmaps:
    """Raw cosine heatmaps of a batch.

    ``low_res`` ``[B, T', h, w]`` at the feature map's resolution; ``frames`` ``[B, T', H, W]``
    upsampled to the image; ``pooled`` ``[B, H, W]`` = mean over T' of ``frames``.
    """

    low_res: torch.Tensor
    frames: torch.Tensor
    pooled: torch.Tensor

    def normalized(self, mode: str = "minmax") -> "Heatmaps":
        return Heatmaps(normalize_maps(self.low_res, mode), normalize_maps(self.frames, mode), normalize_maps(self.pooled, mode))


@torch.no_grad()
def compute_heatmaps(
    model: DenseAVModel,
    video: torch.Tensor,
    spec: torch.Tensor | None = None,
    *,
    audio_emb: torch.Tensor | None = None,
    size: int | tuple[int, int] | None = None,
    align_corners: bool = False,
    placement=None,
) -> Heatmaps:
    """Heatmaps for a batch: ``video`` ``[B, 3, T, H, W]`` (model input), and either the
    log-spectrograms ``spec`` ``[B, 1, F, Tf]`` or precomputed ``audio_emb`` ``[B, D]``
    (e.g. another clip's sound). ``size`` defaults to the input's (H, W). Runs on the
    device of ``video``; the model must already be there and in eval mode.
    ``placement`` (``[B, 12]``, the items' spatial placements): ``frames`` / ``pooled`` are then
    maps over each source frame at ``size`` (default: the source size), see ``upsample_maps``.
    """
    if (spec is None) == (audio_emb is None):
        raise ValueError("give exactly one of spec / audio_emb")
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"video must be [B,3,T,H,W], got {tuple(video.shape)}")
    if audio_emb is None:
        audio_emb = model.embed_audio(spec)
    dense = model.video_dense_embeddings(video)
    low = similarity_maps(audio_emb.to(dense.device), dense)
    if placement is not None and size is None:
        from avssl.data.spatial import as_placements

        size = tuple(int(v) for v in as_placements(placement)[0, 2:4].tolist())
    frames = upsample_maps(low, size or tuple(video.shape[-2:]), align_corners, **map_placement(model, video.shape[-2:]),
                           placement=placement)
    return Heatmaps(low_res=low, frames=frames, pooled=frames.mean(dim=1))


# ---------------------------------------------------------------- baselines


def centre_prior_maps(n: int, size: int | tuple[int, int], sigma: float = 0.25, device=None) -> torch.Tensor:
    """``[n, H, W]`` fixed isotropic Gaussian at the image centre, peak 1; its standard
    deviation is ``sigma * min(H, W)`` pixels. Under the top-50% protocol only the ranking
    matters, so any sigma predicts the same central disc of half the image's area."""
    h, w = (size, size) if isinstance(size, int) else size
    ys = torch.arange(h, dtype=torch.float32, device=device) + 0.5 - h / 2
    xs = torch.arange(w, dtype=torch.float32, device=device) + 0.5 - w / 2
    s = sigma * min(h, w)
    g = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * s * s))
    return g.expand(n, h, w).clone()


def whole_image_maps(n: int, size: int | tuple[int, int], device=None) -> torch.Tensor:
    """``[n, H, W]`` constant maps: the prediction covers the whole image."""
    h, w = (size, size) if isinstance(size, int) else size
    return torch.ones(n, h, w, device=device)


# ---------------------------------------------------------------- whole files


@dataclass
class HeatmapTrack:
    """Heatmaps along a whole file: ``maps[k]`` (raw cosine, ``[K, h, w]``, low resolution)
    belongs to media time ``times[k]`` (s, the centre of its temporal slot).

    ``frame_maps`` turns it into one upsampled map per video frame (nearest slot in time), laid
    over the whole frame through ``spatial`` (the clips' placement), at the frame's own aspect.
    """

    times: np.ndarray
    maps: torch.Tensor
    clip_starts: np.ndarray
    audio_source: str = ""
    placement: dict = field(default_factory=dict)  # ``map_placement`` of the maps' model and input
    spatial: torch.Tensor | None = None  # the clips' spatial placement [12] (one file: one geometry); None: stretched

    def __post_init__(self):
        if len(self.times) != len(self.maps) or len(self.times) == 0:
            raise ValueError(f"track needs equal, non-zero numbers of times ({len(self.times)}) and maps ({len(self.maps)})")
        order = np.argsort(self.times, kind="stable")
        self.times = np.asarray(self.times, dtype=np.float64)[order]
        self.maps = self.maps[torch.as_tensor(order)]

    def index_at(self, t) -> np.ndarray:
        """Index of the slot whose time is nearest to each ``t``."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        j = np.clip(np.searchsorted(self.times, t), 1, len(self.times) - 1) if len(self.times) > 1 else np.zeros(t.shape, int)
        if len(self.times) > 1:
            left_closer = np.abs(t - self.times[j - 1]) <= np.abs(self.times[j] - t)
            j = np.where(left_closer, j - 1, j)
        return j

    def frame_maps(self, frame_times, size: int | tuple[int, int], norm: str = "global", align_corners: bool = False) -> torch.Tensor:
        """``[N, H, W]`` in [0, 1] for frames at ``frame_times``. ``norm``: ``global`` (one range for
        the whole track, the default for watching), ``minmax`` per map, or ``fixed`` cosine range."""
        maps = self.maps
        if norm == "global":
            lo, hi = maps.min(), maps.max()
            maps = (maps - lo) / (hi - lo) if hi > lo else torch.zeros_like(maps)
            norm = None
        sel = maps[torch.as_tensor(self.index_at(frame_times))]
        up = upsample_maps(sel, size, align_corners, **self.placement, placement=self.spatial)
        return up.clamp(0, 1) if norm is None else normalize_maps(up, norm)


def clip_starts_for(duration: float, clip_duration: float, stride: float) -> np.ndarray:
    """Window starts ``0, stride, ...`` so that every window lies within ``[0, duration)``;
    one window at 0 if the file is shorter than a clip."""
    if stride <= 0:
        raise ValueError(f"stride must be > 0, got {stride}")
    last = max(duration - clip_duration, 0.0)
    n = int(math.floor(last / stride + 1e-9)) + 1
    return np.arange(n, dtype=np.float64) * stride


@torch.no_grad()
def video_heatmap_track(
    model: DenseAVModel,
    path: str | os.PathLike,
    clip_spec,
    video_transform: Callable[[torch.Tensor], torch.Tensor],
    audio_transform: Callable[[torch.Tensor], torch.Tensor],
    *,
    stride: float = 0.5,
    audio_path: str | os.PathLike | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    backend: str | None = None,
    progress: bool = True,
    spatial=None,
    starts=None,
) -> HeatmapTrack:
    """Slide a clip window every ``stride`` seconds over ``path`` and compute per-slot heatmaps.

    ``clip_spec`` (``avssl.io.ClipSpec``) sets frames/fps/decode size and the audio window.
    ``spatial`` (``avssl.data.spatial.SpatialPolicy``; default: the transform's ``input_policy``,
    e.g. letterbox for ``localization_inputs``) shapes each clip before batching; its placement
    is kept in the track so maps land on the frame where the model saw them.
    ``video_transform`` maps uint8 ``[B, T, H, W, 3]`` to model input ``[B, 3, T, H, W]``;
    ``audio_transform`` maps waveforms ``[B, C, S]`` to ``[B, 1, F, Tf]``.
    ``audio_path``: take the sound from another file (mismatched audio); its windows loop
    over that file (window at video time s uses its audio at s mod its usable length).
    ``starts``: the clip start times (s) to use instead of the sliding grid (e.g. one clip).
    """
    from tqdm.auto import tqdm

    from avssl.data.spatial import input_policy_of
    from avssl.io import read_clip
    from avssl.io.probe import probe

    policy = spatial if spatial is not None else input_policy_of(video_transform)
    info = probe(path)
    if starts is None:
        starts = clip_starts_for(info.duration, clip_spec.video_duration, stride)
    starts = np.asarray(starts, dtype=np.float64).reshape(-1)
    other = None
    if audio_path is not None:
        other = probe(audio_path)
        if not other.has_audio:
            raise ValueError(f"{audio_path} has no audio stream")
        a_span = max(other.duration - clip_spec.audio_duration, 0.0)
    elif not info.has_audio:  # a MediaError: tools skip and list the file instead of stopping
        from avssl.io.errors import NoAudioStream

        raise NoAudioStream(path, "no decodable sound to localize; pass audio_path to play another file's sound")

    times, maps, placement, where = [], [], {}, None
    bar = tqdm(total=len(starts), desc=f"heatmaps {os.path.basename(str(path))}", unit="clip", disable=not progress)
    for b0 in range(0, len(starts), batch_size):
        chunk = starts[b0 : b0 + batch_size]
        vids, wavs = [], []
        for s in chunk:
            clip = read_clip(path, float(s), clip_spec, backend=backend, audio=other is None)
            frames, where = policy.apply(clip.video)  # eval policies: the same placement for every window
            vids.append(frames)
            if other is None:
                wavs.append(clip.audio)
            else:
                s_a = float(s) % a_span if a_span > 0 else 0.0
                wavs.append(read_clip(audio_path, s_a, clip_spec, backend=backend, video=False).audio)
        video = video_transform(torch.stack(vids).to(device))
        spec = audio_transform(torch.stack(wavs).to(device))
        placement = map_placement(model, video.shape[-2:])
        hm = compute_heatmaps(model, video, spec)
        t_slots = hm.low_res.shape[1]
        slot = clip_spec.video_duration / t_slots
        for s, m in zip(chunk, hm.low_res.cpu()):
            times.extend(float(s) + (k + 0.5) * slot for k in range(t_slots))
            maps.append(m)
        bar.update(len(chunk))
    bar.close()
    return HeatmapTrack(
        times=np.array(times),
        maps=torch.cat(maps, 0),
        clip_starts=starts,
        audio_source=str(audio_path or path),
        placement=placement,
        spatial=where,
    )
