"""VGG-SS annotations: a JSON list of {"file": id, "class": name, "bbox": [[x0,y0,x1,y1], ...]}
with coordinates normalised to [0, 1] (of the annotated middle frame)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BoxAnnotation:
    file: str
    boxes: list[tuple[float, float, float, float]]  # normalised 0-1
    label: str = ""


def parse_vggss(path: str | Path) -> list[BoxAnnotation]:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list")
    out = []
    for item in data:
        boxes = [tuple(float(min(max(c, 0.0), 1.0)) for c in b) for b in item["bbox"]]
        if any(len(b) != 4 for b in boxes):
            raise ValueError(f"{path}: box of {item['file']} is not 4 numbers")
        out.append(BoxAnnotation(str(item["file"]), boxes, item.get("class", "")))
    return out
