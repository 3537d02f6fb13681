"""Flickr-SoundNet localization annotations: one ``<id>.xml`` per test image (Senocak et al.,
CVPR 2018; 250 test images, 3 annotators, boxes in pixels of the 256x256 image).

Layout the public evaluators rely on (hche11/Localizing-Visual-Sounds-the-Hard-Way
``testset_gt``, stoneMo/EZ-VSL ``load_all_bboxes``): every grandchild of the root is a
``<bbox>`` (one per annotator box, e.g. ``<annotation><object><bbox>...``); a ``<bbox>``'s
first child is not a coordinate and is skipped, the next four are xmin, ymin, xmax, ymax
as integer text. They always scale by ``224 / 256``. Here named ``<xmin>``... children are
read when present, otherwise the four children after the first, by position (the
evaluators' rule). ``<size>`` sets the frame when present; the evaluators' loop would fail
on any grandchild that is not a ``<bbox>``, so the files they read carry none.
The test list is ``flickr_test.csv`` / ``test_list.txt`` (``avssl.data.formats.lists``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

_COORDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class FlickrAnnotation:
    file: str
    width: int
    height: int
    boxes: list[tuple[int, int, int, int]]  # pixels of a width x height image

    def normalised(self) -> list[tuple[float, float, float, float]]:
        return [(x0 / self.width, y0 / self.height, x1 / self.width, y1 / self.height) for x0, y0, x1, y1 in self.boxes]


def _box(bb: ET.Element, path) -> tuple[int, int, int, int]:
    named = [bb.findtext(k) for k in _COORDS]
    if None not in named:
        vals = named
    else:
        kids = list(bb)
        if len(kids) < 5:
            raise ValueError(f"{path}: <bbox> needs xmin/ymin/xmax/ymax (named, or 4 children after the first)")
        vals = [k.text for k in kids[1:5]]
    try:
        return tuple(int(round(float(v))) for v in vals)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: <bbox> coordinates are not numbers: {vals}") from None


def parse_flickr_xml(path: str | Path, default_size: int = 256) -> FlickrAnnotation:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{path}: not XML ({e})") from None
    size = root.find("size")
    w = int(size.findtext("width")) if size is not None else default_size
    h = int(size.findtext("height")) if size is not None else default_size
    boxes = [_box(bb, path) for bb in root.iter("bbox")]
    if not boxes:
        raise ValueError(f"{path}: no <bbox>")
    return FlickrAnnotation(Path(path).stem, w, h, boxes)


def load_flickr_annotations(folder: str | Path) -> dict[str, FlickrAnnotation]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Flickr annotation folder {folder} does not exist")
    out = {p.stem: parse_flickr_xml(p) for p in sorted(folder.glob("*.xml"))}
    if not out:
        raise ValueError(f"{folder}: no .xml annotations")
    return out
