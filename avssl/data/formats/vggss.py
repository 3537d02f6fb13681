"""VGG-Sound Source (VGG-SS) annotations and its heard / unheard class splits.

Published layout (``metadata/vggss.json``, hche11/Localizing-Visual-Sounds-the-Hard-Way):
one JSON list of ``{"file": "<youtube id>_<start, 6 digits>", "class": "<VGGSound class
name>", "bbox": [[x0, y0, x1, y1], ...]}``, coordinates as fractions of the annotated
frame (floats, sometimes the integers ``0`` / ``1``; a few boxes are degenerate, zero width
or height). Every evaluator clips them to [0, 1] before scaling.

Heard / unheard splits (stoneMo/EZ-VSL ``metadata/vggss_heard_test.csv`` /
``vggss_unheard_test.csv``): id lists (``avssl.data.formats.lists``); the split is by class
(110 classes trained on, 110 held out), and a clip's class comes from ``vggss.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from avssl.data.formats.lists import read_id_list


@dataclass(frozen=True)
class BoxAnnotation:
    file: str
    boxes: list[tuple[float, float, float, float]]  # normalised 0-1
    label: str = ""
    # the generated world's exports only: boxes of a silent object of the same class ("twin_bbox")
    twin_boxes: tuple[tuple[float, float, float, float], ...] = ()


def parse_vggss(path: str | Path) -> list[BoxAnnotation]:
    """Every entry of a VGG-SS JSON, boxes clipped to [0, 1]. A malformed entry is an error
    naming the file and the entry; a repeated ``file`` is an error too."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise json.JSONDecodeError(f"{p}: {e.msg}", e.doc, e.pos) from None  # still a ValueError, names the file
    if not isinstance(data, list):
        raise ValueError(f"{p}: expected a JSON list of {{file, class, bbox}}")
    out, seen = [], set()
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "file" not in item or "bbox" not in item:
            raise ValueError(f"{p}: entry {i} lacks 'file' / 'bbox': {str(item)[:80]}")
        boxes, twins = [], []
        for key, into in (("bbox", boxes), ("twin_bbox", twins)):
            for b in item.get(key) or []:
                if not isinstance(b, (list, tuple)) or len(b) != 4:
                    raise ValueError(f"{p}: {key} of {item['file']} is not 4 numbers: {b}")
                into.append(tuple(float(min(max(float(c), 0.0), 1.0)) for c in b))
        name = str(item["file"])
        if name in seen:
            raise ValueError(f"{p}: {name} annotated twice")
        seen.add(name)
        out.append(BoxAnnotation(name, boxes, str(item.get("class", "")), tuple(twins)))
    return out


def vggss_classes(entries: list[BoxAnnotation]) -> list[str]:
    """The distinct class names, sorted."""
    return sorted({e.label for e in entries if e.label})


@dataclass(frozen=True)
class ClassSplit:
    """Heard / unheard test ids and the classes they cover. ``overlap``: classes in both
    lists (a class split has none); ``unannotated``: listed ids absent from the JSON."""

    heard_ids: list[str]
    unheard_ids: list[str]
    heard_classes: list[str]
    unheard_classes: list[str]
    overlap: list[str]
    unannotated: list[str]


def load_class_split(heard_list: str | Path, unheard_list: str | Path, annotations: str | Path | list[BoxAnnotation]
                     ) -> ClassSplit:
    """Read the heard / unheard id lists and recover their classes from the VGG-SS JSON."""
    entries = parse_vggss(annotations) if isinstance(annotations, (str, Path)) else annotations
    label = {e.file: e.label for e in entries}
    heard, unheard = read_id_list(heard_list), read_id_list(unheard_list)
    both = sorted(set(heard) & set(unheard))
    if both:
        raise ValueError(f"{len(both)} id(s) in both {heard_list} and {unheard_list}, e.g. {both[0]}")
    missing = [i for i in heard + unheard if i not in label]
    hc = sorted({label[i] for i in heard if i in label})
    uc = sorted({label[i] for i in unheard if i in label})
    return ClassSplit(heard, unheard, hc, uc, sorted(set(hc) & set(uc)), missing)
