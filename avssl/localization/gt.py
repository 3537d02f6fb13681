"""Ground-truth maps from bounding boxes, at the heatmap's resolution.

Two conventions (facts from the public evaluators hche11/Localizing-Visual-Sounds-the-Hard-Way
``testset_gt`` and stoneMo/SLAVC ``bbox2gtmap``):

- VGG-SS: boxes ``(xmin, ymin, xmax, ymax)`` normalised to [0, 1]; clipped to [0, 1],
  scaled by the map size and truncated to int; the map is the union (1 inside any box).
- Flickr-SoundNet: each annotator's box, in pixels of a 256x256 annotation frame, scaled
  by ``size / 256`` and truncated; the per-box maps are *summed*, halved and clipped to 1,
  so a pixel that one annotator marked counts 0.5 and two or more count 1 (consensus).

A box covers rows ``ymin:ymax`` and columns ``xmin:xmax`` (end-exclusive, as in both repos).
Both take either normalised boxes or pixel boxes with their ``source_size``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = Sequence[float]


def _size_hw(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def scale_boxes(
    boxes: Sequence[Box],
    size: int | tuple[int, int],
    *,
    normalized: bool,
    source_size: int | tuple[int, int] | None = None,
) -> np.ndarray:
    """Integer pixel boxes ``[K, 4]`` (xmin, ymin, xmax, ymax) on a ``size`` (H, W) map.

    ``normalized=True``: coordinates in [0, 1] (clipped). Otherwise pixel coordinates on a
    ``source_size`` (H, W) image (clipped to it). Truncation toward zero as the references.
    """
    h, w = _size_hw(size)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if normalized:
        if source_size is not None:
            raise ValueError("source_size is only for pixel boxes")
        px = np.floor(np.clip(b, 0.0, 1.0) * np.array([w, h, w, h])).astype(np.int64)
    else:
        if source_size is None:
            raise ValueError("pixel boxes need source_size (the annotated image's (H, W))")
        sh, sw = _size_hw(source_size)
        b = np.clip(b, 0.0, np.array([sw, sh, sw, sh], dtype=np.float64))
        # size * v / source (in this order) reproduces the references' integer pixels.
        px = np.floor(np.array([w, h, w, h]) * b / np.array([sw, sh, sw, sh])).astype(np.int64)
    if (px[:, 2] < px[:, 0]).any() or (px[:, 3] < px[:, 1]).any():
        raise ValueError(f"boxes must be (xmin, ymin, xmax, ymax) with max >= min, got {b.tolist()}")
    return px


def _box_maps(px: np.ndarray, h: int, w: int) -> np.ndarray:
    maps = np.zeros((len(px), h, w), dtype=np.float32)
    for m, (x0, y0, x1, y1) in zip(maps, px):
        m[y0:y1, x0:x1] = 1.0
    return maps


def vggss_gt_map(
    boxes: Sequence[Box],
    size: int | tuple[int, int] = 224,
    *,
    normalized: bool = True,
    source_size: int | tuple[int, int] | None = None,
) -> np.ndarray:
    """Binary float32 ``[H, W]`` map: 1 inside the union of ``boxes``. No box -> all zeros."""
    h, w = _size_hw(size)
    if len(boxes) == 0:
        return np.zeros((h, w), np.float32)
    px = scale_boxes(boxes, (h, w), normalized=normalized, source_size=source_size)
    return _box_maps(px, h, w).max(axis=0)


def flickr_gt_map(
    boxes: Sequence[Box],
    size: int | tuple[int, int] = 224,
    *,
    normalized: bool = False,
    source_size: int | tuple[int, int] | None = 256,
) -> np.ndarray:
    """Consensus float32 ``[H, W]`` map: per-annotator box maps summed, halved, clipped to 1.

    Defaults match the Flickr-SoundNet XML (pixel boxes on a 256x256 frame). Pass
    ``normalized=True, source_size=None`` for [0, 1] boxes.
    """
    h, w = _size_hw(size)
    if len(boxes) == 0:
        return np.zeros((h, w), np.float32)
    px = scale_boxes(boxes, (h, w), normalized=normalized, source_size=None if normalized else source_size)
    return np.minimum(_box_maps(px, h, w).sum(axis=0) / 2.0, 1.0)


def gt_map(
    boxes: Sequence[Box],
    style: str,
    size: int | tuple[int, int] = 224,
    *,
    normalized: bool = True,
    source_size: int | tuple[int, int] | None = None,
) -> np.ndarray:
    """Dispatch on ``style`` ('vggss' union | 'flickr' consensus)."""
    if style == "vggss":
        return vggss_gt_map(boxes, size, normalized=normalized, source_size=source_size)
    if style == "flickr":
        return flickr_gt_map(boxes, size, normalized=normalized, source_size=source_size)
    raise ValueError(f"unknown ground-truth style {style!r} (vggss | flickr)")
