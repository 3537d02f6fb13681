"""Flickr-SoundNet localization annotations: one `<id>.xml` per image,
<annotation>[<size><width/><height/></size>]<object><bbox>[first child: not a coordinate]
<xmin/><ymin/><xmax/><ymax/></bbox></object>... (one <object> per annotator box).
Public evaluation code reads coordinates of a 256x256 image when <size> is absent."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FlickrAnnotation:
    file: str
    width: int
    height: int
    boxes: list[tuple[int, int, int, int]]  # pixels of a width x height image

    def normalised(self) -> list[tuple[float, float, float, float]]:
        return [(x0 / self.width, y0 / self.height, x1 / self.width, y1 / self.height) for x0, y0, x1, y1 in self.boxes]


def parse_flickr_xml(path: str | Path, default_size: int = 256) -> FlickrAnnotation:
    root = ET.parse(path).getroot()
    size = root.find("size")
    w = int(size.findtext("width")) if size is not None else default_size
    h = int(size.findtext("height")) if size is not None else default_size
    boxes = []
    for bb in root.iter("bbox"):
        vals = [bb.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
        if None in vals:
            raise ValueError(f"{path}: bbox without xmin/ymin/xmax/ymax")
        boxes.append(tuple(int(round(float(v))) for v in vals))
    return FlickrAnnotation(Path(path).stem, w, h, boxes)


def load_flickr_annotations(folder: str | Path) -> dict[str, FlickrAnnotation]:
    return {p.stem: parse_flickr_xml(p) for p in sorted(Path(folder).glob("*.xml"))}
