"""Vectorised numpy drawing of a clip's frames and the exact per-frame object boxes.

Every object is drawn for all frames at once on broadcast [T,H,W] coordinate grids;
its box is taken from the very mask that was painted, so ground truth and pixels agree.
"""

from __future__ import annotations

import numpy as np

from .world import NUM_GROUPS, SOURCE_CLASSES, ClipPlan


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of a unit shape in object coordinates (u right, v down; radius 1)."""
    rho = np.sqrt(u * u + v * v)
    if shape == "circle":
        return rho <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if shape == "triangle":  # apex up
        return (v <= 0.75) & (v >= -0.95) & (np.abs(u) <= (v + 0.95) / 1.7)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "cross":
        a, b = np.abs(u), np.abs(v)
        return ((a <= 0.3) & (b <= 0.95)) | ((b <= 0.3) & (a <= 0.95))
    if shape == "star":
        return rho <= 0.62 + 0.36 * np.cos(5 * np.arctan2(u, -v))
    if shape == "ring":
        return (rho <= 1.0) & (rho >= 0.55)
    if shape == "wide_ellipse":
        return u * u + (v / 0.55) ** 2 <= 1.0
    if shape == "tall_ellipse":
        return (u / 0.55) ** 2 + v * v <= 1.0
    if shape == "hexagon":
        return np.maximum(np.abs(u) * 0.866 + np.abs(v) * 0.5, np.abs(v)) <= 0.9
    raise ValueError(f"unknown shape {shape!r}")


def texture_shade(texture: str, u: np.ndarray, v: np.ndarray, phase: float) -> np.ndarray:
    """Brightness factor in [0.5, 1] painted in object coordinates (moves with the object)."""
    if texture == "solid":
        return np.ones_like(u)
    if texture == "checker":
        p = (np.floor(u * 2.5 + phase) + np.floor(v * 2.5 + phase)) % 2
    elif texture == "hstripes":
        p = (np.sin(v * 9.0 + 6.28 * phase) > 0).astype(np.float64)
    elif texture == "vstripes":
        p = (np.sin(u * 9.0 + 6.28 * phase) > 0).astype(np.float64)
    elif texture == "dstripes":
        p = (np.sin((u + v) * 7.0 + 6.28 * phase) > 0).astype(np.float64)
    elif texture == "dots":
        fu, fv = np.mod(u * 2.2 + phase, 1.0) - 0.5, np.mod(v * 2.2 + phase, 1.0) - 0.5
        p = (fu * fu + fv * fv < 0.06).astype(np.float64)
    elif texture == "rings":
        p = (np.sin(np.sqrt(u * u + v * v) * 14.0) > 0).astype(np.float64)
    else:
        raise ValueError(f"unknown texture {texture!r}")
    return 1.0 - 0.45 * p


def background(plan: ClipPlan, seed: int) -> np.ndarray:
    """float [H,W,3] low-saturation texture; a group shares its layout, a clip jitters it."""
    h, w = plan.height, plan.width
    grng = np.random.default_rng([seed, 0xB6, plan.group % (NUM_GROUPS + 1)])
    crng = np.random.default_rng(plan.extra["bg_seed"])
    yy, xx = np.meshgrid(np.arange(h) / h, np.arange(w) / w, indexing="ij")
    base = grng.uniform(70, 150, size=3)
    tint = grng.uniform(-25, 25, size=3)
    field_ = np.zeros((h, w))
    for _ in range(4):
        fx, fy = grng.uniform(1, 6, size=2) * grng.choice([-1, 1], size=2)
        ph = grng.uniform(0, 2 * np.pi) + crng.uniform(-0.8, 0.8)
        field_ += np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)
    field_ /= 4.0
    grain = crng.normal(0, 6.0, size=(h, w, 1))
    img = base[None, None] + (tint[None, None] + 20.0) * field_[..., None] + grain + crng.uniform(-15, 15)
    return img


def render_clip(plan: ClipPlan, seed: int | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Frames uint8 [T,H,W,3] and, per drawn object, boxes int [T,4] (x0,y0,x1,y1; x1,y1 exclusive).

    Rows of an object's boxes are -1 where it has no pixel in frame t (never for the
    generator's trajectories, which keep objects inside the frame).
    """
    seed = plan.seed if seed is None else seed
    t = np.arange(plan.num_frames) / plan.fps
    h, w = plan.height, plan.width
    img = np.broadcast_to(background(plan, seed), (len(t), h, w, 3)).copy()
    boxes = []
    for ob in plan.objects:
        cls = SOURCE_CLASSES[ob.class_index]
        cx, cy, sc = ob.motion.state(t)
        colour = np.asarray(cls.colour, dtype=np.float64)
        bx = np.full((len(t), 4), -1, dtype=np.int64)
        # one small window per frame around the object (a loop over frames, not pixels)
        for i in range(len(t)):
            r = ob.motion.radius * sc[i]
            x0, x1 = max(int(np.floor(cx[i] - r)) - 1, 0), min(int(np.ceil(cx[i] + r)) + 2, w)
            y0, y1 = max(int(np.floor(cy[i] - r)) - 1, 0), min(int(np.ceil(cy[i] + r)) + 2, h)
            if x1 <= x0 or y1 <= y0:
                continue
            u = (np.arange(x0, x1, dtype=np.float64)[None, :] - cx[i]) / r
            v = (np.arange(y0, y1, dtype=np.float64)[:, None] - cy[i]) / r
            u, v = np.broadcast_arrays(u, v)
            mask = shape_mask(cls.shape, u, v)
            if not mask.any():
                continue
            paint = texture_shade(cls.texture, u, v, ob.texture_phase)[..., None] * colour
            win = img[i, y0:y1, x0:x1]
            win[mask] = paint[mask]
            bx[i] = _mask_boxes(mask[None])[0] + np.array([x0, y0, x0, y0])
        boxes.append(bx)
    rng = np.random.default_rng([plan.extra["bg_seed"], 7])
    img += rng.normal(0, 2.0, size=img.shape)  # sensor noise, per frame
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), boxes


def _mask_boxes(mask: np.ndarray) -> np.ndarray:
    """Tight boxes [T,4] of a boolean [T,H,W] mask (x1, y1 exclusive), -1 where empty."""
    cols, rows = mask.any(axis=1), mask.any(axis=2)  # [T,W], [T,H]
    has = cols.any(axis=1)
    w, h = cols.shape[1], rows.shape[1]
    x0 = np.argmax(cols, axis=1)
    x1 = w - np.argmax(cols[:, ::-1], axis=1)
    y0 = np.argmax(rows, axis=1)
    y1 = h - np.argmax(rows[:, ::-1], axis=1)
    out = np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)
    out[~has] = -1
    return out
