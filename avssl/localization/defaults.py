"""Model inputs for localization: the clip spec and eval transforms a model was trained with,
adjusted so that the model sees the *whole* frame.

Boxes are fractions of the whole frame, so no part of it may be cropped away. The eval
video transform (``VideoAugment(train=False)``) resizes the short side to
``crop / eval_resize_ratio`` and centre-crops ``crop``; here frames are decoded straight to
``(crop, crop)`` (an exact size, aspect not kept -- as the field's evaluators stretch images
to 224x224) and ``eval_resize_ratio`` is set to 1, which turns that crop into the identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace


def whole_frame_spec(spec, transforms_config: Mapping | None = None):
    """``spec`` with ``frame_size = (crop, crop)`` when the video transform crops to ``crop``."""
    crop = ((transforms_config or {}).get("video") or {}).get("crop_size")
    if crop is None:
        return spec
    c = (int(crop), int(crop)) if not isinstance(crop, (list, tuple)) else tuple(int(x) for x in crop)
    return replace(spec, frame_size=c)


def localization_inputs(spec, transforms_config: Mapping | None = None, device="cpu"):
    """``(spec, video_transform, audio_transform)`` for localization with a model trained
    under ``transforms_config`` (the pretraining config's ``transforms`` section)."""
    from avssl.embed.extract import default_transforms

    spec = whole_frame_spec(spec, transforms_config)
    tc = {k: dict(v or {}) for k, v in dict(transforms_config or {}).items()}
    tc.setdefault("video", {})["eval_resize_ratio"] = 1.0
    video_t, audio_t = default_transforms(spec, device, tc)
    return spec, video_t, audio_t
