"""Encoders and models by name: ``build_video_encoder``, ``build_audio_encoder``, ``build_av_model``."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from torch import nn

from ..av_model import AVModel
from ..avid_audio import avid_conv2d
from ..avid_video import avid_r2plus1d_18
from ..heads import ProjectionHead
from ..tiny import tiny_audio, tiny_video
from ..torchvision_video import TORCHVISION_VIDEO, TorchvisionVideoEncoder

VIDEO_ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "avid_r2plus1d_18": avid_r2plus1d_18,
    "tiny": tiny_video,
    **{name: (lambda name=name, **kw: TorchvisionVideoEncoder(name, **kw)) for name in TORCHVISION_VIDEO},
}
AUDIO_ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "avid_conv2d": avid_conv2d,
    "tiny": tiny_audio,
}


def build_video_encoder(name: str, **kw: Any) -> nn.Module:
    if name not in VIDEO_ENCODERS:
        raise ValueError(f"unknown video encoder {name!r}; choose from {sorted(VIDEO_ENCODERS)}")
    return VIDEO_ENCODERS[name](**kw)


def build_audio_encoder(name: str, **kw: Any) -> nn.Module:
    if name not in AUDIO_ENCODERS:
        raise ValueError(f"unknown audio encoder {name!r}; choose from {sorted(AUDIO_ENCODERS)}")
    return AUDIO_ENCODERS[name](**kw)


def build_av_model(cfg: Mapping | str | None = None, *, video: str | None = None, audio: str | None = None,
                   proj_dim: int | Sequence[int] = (512, 512, 128), video_args: Mapping | None = None,
                   audio_args: Mapping | None = None, head_norm: bool = False, **extra: Any) -> AVModel:
    """An `AVModel` from names: ``build_av_model(video="tiny", audio="tiny", proj_dim=[32, 32, 16])``,
    a config mapping with those keys (``configs/model/*.yaml``), or a preset name (``"avid"``,
    ``"tiny"``, ``"r2plus1d_18"``, ``"r3d_18"``: the video encoder with the AVID audio net).
    ``proj_dim`` lists the head's Linear output sizes (reference ``[512, 512, 128]``); ``head_norm``
    adds a BatchNorm before each hidden ReLU of both heads (see `ProjectionHead`)."""
    if isinstance(cfg, str):
        cfg = PRESETS.get(cfg) or _unknown_preset(cfg)
    if cfg is not None:
        merged = {k: v for k, v in dict(cfg).items() if k not in ("name", "_target_")}
        merged.update({k: v for k, v in dict(video=video, audio=audio, video_args=video_args,
                                             audio_args=audio_args).items() if v is not None})
        if head_norm:
            merged["head_norm"] = True
        return build_av_model(**merged, **extra)
    if extra:
        raise TypeError(f"build_av_model got unexpected options {sorted(extra)}")
    if video is None or audio is None:
        raise ValueError("build_av_model needs a video and an audio encoder name")
    v = build_video_encoder(video, **dict(video_args or {}))
    a = build_audio_encoder(audio, **dict(audio_args or {}))
    dims = [int(proj_dim)] if isinstance(proj_dim, int) else list(proj_dim)
    return AVModel(v, a, ProjectionHead(v.out_dim, dims, norm=head_norm), ProjectionHead(a.out_dim, dims, norm=head_norm))


PRESETS: dict[str, dict] = {
    "avid": dict(video="avid_r2plus1d_18", audio="avid_conv2d", proj_dim=[512, 512, 128]),
    "tiny": dict(video="tiny", audio="tiny", proj_dim=[64, 64, 32]),
    "r2plus1d_18": dict(video="r2plus1d_18", audio="avid_conv2d", proj_dim=[512, 512, 128]),
    "r3d_18": dict(video="r3d_18", audio="avid_conv2d", proj_dim=[512, 512, 128]),
}


def _unknown_preset(name: str):
    raise ValueError(f"unknown model preset {name!r}; choose from {sorted(PRESETS)}")
