"""Catalogue of recorded sound sources: Tux Paint's stamps (a recorded sound + a cut-out picture each).

Debian's `tuxpaint-stamps-default` installs, under /usr/share/tuxpaint/stamps/<topic>/.../NAME.*,
a sound effect `NAME.ogg|.wav` and a picture `NAME.png` (RGBA cut-out) or `NAME.svg`
(spoken descriptions are `NAME_desc*.ogg` and are ignored). The class of a stamp comes from
its folder (CLASS_FOLDERS); a class is kept only with >= MIN_INSTANCES PNG+sound stamps so
that whole instances (recording and picture) can be held out for testing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

DEFAULT_STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")
STAMPS_ENV = "AVSSL_STAMPS_DIR"  # overrides the default location
MIN_INSTANCES = 3

# class -> stamp folders (relative to the stamps root) whose sounding stamps belong to it
CLASS_FOLDERS: dict[str, tuple[str, ...]] = {
    "bird": ("animals/birds",),
    "cattle": ("animals/mammals/bovines",),  # cow, bull, bison, goat, sheep, ram, ...
    "hoofed": ("animals/mammals/equines", "animals/mammals/deer", "animals/mammals/camel"),
    "pig": ("animals/mammals/pig",),  # pig.ogg, pig_golden*.ogg live directly in mammals/
    "rodent": ("animals/mammals/rodents",),
    "sea_mammal": ("animals/mammals/aquatic",),
    "insect": ("animals/insects",),
    "instrument": ("hobbies/music",),
    "tool": ("household/tools", "household/arttools"),
}
SOUND_SUFFIXES = (".ogg", ".wav")


class StampsNotFoundError(FileNotFoundError):
    """The recorded-sound stamps are not installed (Debian package `tuxpaint-stamps-default`)."""


@dataclass(frozen=True)
class StampInstance:
    """One source instance: its recording and its picture (never split between train and test)."""

    name: str  # unique instance name (file stem, folder-qualified if needed)
    label: str  # class name (a key of CLASS_FOLDERS)
    sound: Path
    picture: Path
    duration: float  # seconds of the recording


def stamps_dir(root: str | os.PathLike | None = None) -> Path:
    """The stamps root: `root`, else $AVSSL_STAMPS_DIR, else /usr/share/tuxpaint/stamps."""
    p = Path(root or os.environ.get(STAMPS_ENV) or DEFAULT_STAMPS_DIR)
    if not p.is_dir():
        raise StampsNotFoundError(
            f"recorded-sound stamps not found at {p}: install Debian's `tuxpaint-stamps-default` "
            f"(tools/install_system_deps.sh) or set ${STAMPS_ENV}")
    return p


def _label_of(rel: str) -> str | None:
    for label, folders in CLASS_FOLDERS.items():
        if any(rel == f or rel.startswith(f + "/") or rel.startswith(f + "_") for f in folders):
            return label
    return None


def scan_stamps(root: str | os.PathLike | None = None) -> list[dict]:
    """Every sounding stamp under the root (labelled or not): dicts with
    rel, label (None if not in a chosen class), sound, picture (PNG path or None), svg, duration."""
    import soundfile as sf

    base = stamps_dir(root)
    out = []
    for snd in sorted(p for p in base.rglob("*") if p.suffix.lower() in SOUND_SUFFIXES and "_desc" not in p.stem):
        rel = str(snd.relative_to(base).with_suffix(""))
        png, svg = snd.with_suffix(".png"), snd.with_suffix(".svg")
        try:
            duration = float(sf.info(str(snd)).duration)
        except RuntimeError as e:  # unreadable recording: listed, never used
            duration, png = 0.0, None
            rel += f" (unreadable: {e})"
        out.append({"rel": rel, "label": _label_of(rel), "sound": snd, "picture": png if png and png.is_file() else None,
                    "svg": svg if svg.is_file() else None, "duration": duration})
    return out


def build_catalogue(root: str | os.PathLike | None = None) -> dict[str, list[StampInstance]]:
    """Chosen classes -> instances (PNG picture + readable recording), classes with < MIN_INSTANCES dropped.
    SVG-only stamps are skipped (no rasteriser dependency for a handful of pictures)."""
    by_label: dict[str, list[StampInstance]] = {}
    for s in scan_stamps(root):
        if s["label"] is None or s["picture"] is None or s["duration"] <= 0.05:
            continue
        by_label.setdefault(s["label"], []).append(
            StampInstance(Path(s["rel"]).name, s["label"], s["sound"], s["picture"], s["duration"]))
    cat = {k: sorted(v, key=lambda i: i.name) for k, v in sorted(by_label.items()) if len(v) >= MIN_INSTANCES}
    if not cat:
        raise StampsNotFoundError(f"no usable stamps (PNG picture + recording) under {stamps_dir(root)}")
    return cat


def held_out_instances(catalogue: dict[str, list[StampInstance]], seed: int, share: float = 0.25) -> set[str]:
    """Instance names kept for the test split only: round(share * n) >= 1 per class, drawn from the seed."""
    rng = np.random.default_rng([seed, 0x4E1D])
    held = set()
    for label, insts in catalogue.items():
        k = max(1, int(round(share * len(insts))))
        held.update(insts[i].name for i in rng.permutation(len(insts))[:k])
    return held


def load_recording(path: str | os.PathLike, rate: int) -> np.ndarray:
    """Mono float64 recording at `rate` Hz, peak-normalised to 1."""
    import soundfile as sf
    from scipy.signal import resample_poly

    x, sr = sf.read(str(path), dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    if sr != rate:
        g = gcd(int(sr), int(rate))
        x = resample_poly(x, rate // g, int(sr) // g)
    x = x - x.mean()
    return x / (np.abs(x).max() + 1e-9)


def load_picture(path: str | os.PathLike, max_side: int = 160):
    """RGBA PIL image cropped to its alpha bounding box, longest side <= max_side."""
    from PIL import Image

    im = Image.open(path).convert("RGBA")
    bbox = im.getchannel("A").point(lambda a: 255 if a >= 128 else 0).getbbox()
    if bbox is None:
        raise ValueError(f"{path}: picture has no opaque pixel")
    im = im.crop(bbox)
    s = max_side / max(im.size)
    if s < 1:
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS)
    return im
