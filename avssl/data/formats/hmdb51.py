"""HMDB51 splits: `testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt`, lines
"<video>.avi <tag>" with tag 1 = train, 2 = test, 0 = unused in that split."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_FILE = re.compile(r"(?P<cls>.+)_test_split(?P<k>[123])\.txt$")


@dataclass(frozen=True)
class HMDBEntry:
    path: str  # "<class>/<video>"
    label: int
    tag: int  # 0 unused, 1 train, 2 test


def load_hmdb51(split_dir: str | Path, split: int = 1) -> tuple[list[str], list[HMDBEntry]]:
    """(classes sorted by name, entries of split 1..3)."""
    if split not in (1, 2, 3):
        raise ValueError("HMDB51 split must be 1, 2 or 3")
    files = {}
    for p in Path(split_dir).iterdir():
        m = _FILE.match(p.name)
        if m and int(m.group("k")) == split:
            files[m.group("cls")] = p
    if not files:
        raise ValueError(f"{split_dir}: no *_test_split{split}.txt files")
    classes = sorted(files)
    out = []
    for label, cls in enumerate(classes):
        for ln in files[cls].read_text().splitlines():
            parts = ln.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ValueError(f"{files[cls]}: bad line {ln!r}")
            out.append(HMDBEntry(f"{cls}/{parts[0]}", label, int(parts[1])))
    return classes, out
