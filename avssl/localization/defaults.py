"""Model inputs for localization: the clip spec and eval transforms a model was trained with,
with a frame geometry that keeps the *whole* frame.

Boxes are fractions of the whole frame, so no part of it should be cropped away. Clips are
decoded as in training (``spec.frame_size``: the short side) and each is brought to the model's
``crop_size`` by a spatial policy (``avssl.data.spatial``): ``letterbox`` (default: the whole
frame fitted inside, aspect kept, padded), ``stretch`` (aspect not kept; what the public
VGG-SS / Flickr evaluators do at 224x224) or ``resize_crop`` (the pretraining eval crop; the cut
edges then score lowest). The video transform returned only normalises and carries that policy
(``input_policy``), which the heatmap functions apply per clip; every heatmap is put back on the
frame through the clip's placement.
"""

from __future__ import annotations

from collections.abc import Mapping

LOCALIZATION_MODES = ("letterbox", "stretch", "resize_crop")


def localization_inputs(spec, transforms_config: Mapping | None = None, device="cpu", mode: str = "letterbox"):
    """``(spec, video_transform, audio_transform)`` for localization with a model trained
    under ``transforms_config`` (the pretraining config's ``transforms`` section); ``mode``: the
    frame geometry (``video_transform.input_policy``, see the module doc)."""
    from avssl.transforms.config import default_transforms

    if mode not in LOCALIZATION_MODES:
        raise ValueError(f"localization spatial mode must be one of {LOCALIZATION_MODES}, got {mode!r}")
    tc = {k: dict(v or {}) for k, v in dict(transforms_config or {}).items()}
    video = tc.setdefault("video", {})
    crop = video.get("crop_size")
    if isinstance(crop, (list, tuple)):  # VideoAugment takes one side
        if len(set(int(c) for c in crop)) != 1:
            raise ValueError(f"transforms.video.crop_size must be square for localization, got {crop}")
        video["crop_size"] = int(crop[0])
    video["eval_mode"] = mode
    video_t, audio_t = default_transforms(spec, device, tc)
    return spec, video_t, audio_t
