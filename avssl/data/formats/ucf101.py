"""UCF101 split lists: `classInd.txt` ("1 ApplyEyeMakeup"), `trainlist0N.txt`
("Class/v_Class_gXX_cYY.avi 1", 1-based label), `testlist0N.txt` ("Class/v_Class_gXX_cYY.avi")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"v_(?P<cls>.+)_g(?P<g>\d+)_c(?P<c>\d+)\.\w+$")


@dataclass(frozen=True)
class SplitEntry:
    path: str  # relative to the videos root, e.g. "ZigZag/v_ZigZag_g08_c01.mp4"
    label: int  # 0-based
    group: int | None = None


def _lines(path):
    return [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]  # real files use CRLF


def parse_class_ind(path: str | Path) -> list[str]:
    """classInd.txt -> class names ordered by their 1-based index."""
    pairs = []
    for ln in _lines(path):
        idx, name = ln.split(maxsplit=1)
        pairs.append((int(idx), name.strip()))
    pairs.sort()
    if [i for i, _ in pairs] != list(range(1, len(pairs) + 1)):
        raise ValueError(f"{path}: class indices are not 1..N")
    return [n for _, n in pairs]


def group_of(path: str) -> int | None:
    m = _NAME.search(path)
    return int(m.group("g")) if m else None


def parse_ucf_split(list_path: str | Path, classes: list[str]) -> list[SplitEntry]:
    """A train/test list; test lists carry no label, so it is taken from the folder name."""
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for ln in _lines(list_path):
        parts = ln.split()
        rel = parts[0]
        if len(parts) > 1:
            label = int(parts[1]) - 1
        else:
            folder = rel.split("/")[0]
            if folder not in index:
                raise ValueError(f"{list_path}: unknown class folder {folder!r}")
            label = index[folder]
        out.append(SplitEntry(rel, label, group_of(rel)))
    return out


def load_ucf101(split_dir: str | Path, fold: int = 1) -> tuple[list[str], list[SplitEntry], list[SplitEntry]]:
    """(classes, train, test) of fold 1..3 from a `ucfTrainTestlist` folder."""
    if fold not in (1, 2, 3):
        raise ValueError("UCF101 fold must be 1, 2 or 3")
    d = Path(split_dir)
    classes = parse_class_ind(d / "classInd.txt")
    return classes, parse_ucf_split(d / f"trainlist0{fold}.txt", classes), parse_ucf_split(d / f"testlist0{fold}.txt", classes)
