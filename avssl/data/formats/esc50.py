"""ESC-50: `audio/{fold}-{clip_id}-{take}-{target}.wav` and `meta/esc50.csv` with
columns filename,fold,target,category,esc10,src_file,take (5 folds)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

ESC50_COLUMNS = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]


@dataclass(frozen=True)
class ESC50Entry:
    filename: str
    fold: int
    target: int
    category: str
    esc10: bool
    src_file: str
    take: str


def parse_esc50(root: str | Path, check_files: bool = True) -> list[ESC50Entry]:
    root = Path(root)
    with open(root / "meta" / "esc50.csv", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not set(ESC50_COLUMNS) <= set(reader.fieldnames):
            raise ValueError(f"{root}: meta/esc50.csv lacks columns {ESC50_COLUMNS}")
        out = [ESC50Entry(r["filename"], int(r["fold"]), int(r["target"]), r["category"],
                          r["esc10"].strip().lower() == "true", r["src_file"], r["take"]) for r in reader]
    for e in out:
        if not 1 <= e.fold <= 5:
            raise ValueError(f"{e.filename}: fold {e.fold} not in 1..5")
        if not e.filename.startswith(f"{e.fold}-") or not e.filename.endswith(f"-{e.target}.wav"):
            raise ValueError(f"{e.filename}: name disagrees with fold/target")
        if check_files and not (root / "audio" / e.filename).exists():
            raise FileNotFoundError(root / "audio" / e.filename)
    return out
