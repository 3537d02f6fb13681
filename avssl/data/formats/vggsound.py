"""VGGSound: `vggsound.csv` without a header, one 10 s clip per line:

    ---g-f_I2yQ,1,people marching,test

(youtube_id, start_seconds, label, split train|test). Labels may hold commas, quoted. The
published clips are named `<id>_<start:06d>.mp4`; re-downloads often `<id>_<start:06d>_<end:06d>`."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VGGSoundEntry", "parse_vggsound_csv", "read_vggsound_columns", "vggsound_stems", "vggsound_stems_of",
           "looks_like_vggsound_row", "CLIP_SECONDS"]

CLIP_SECONDS = 10
SPLITS = ("train", "test")


@dataclass(frozen=True)
class VGGSoundEntry:
    youtube_id: str
    start: int  # seconds
    label: str
    split: str


def looks_like_vggsound_row(row: list[str]) -> bool:
    """`id,start,label,split` with an integer start and split train/test."""
    return (len(row) == 4 and row[1].strip().isdigit() and row[3].strip().lower() in SPLITS
            and bool(row[0].strip()))


def read_vggsound_columns(path: str | Path) -> dict[str, list]:
    """The clips as columns `youtube_id, start` (int s), `label, split` in file order (blank and
    '#' lines skipped, a header line some copies add skipped). Repeated strings are shared."""
    shared: dict[str, str] = {}
    out: dict[str, list] = {"youtube_id": [], "start": [], "label": [], "split": []}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip() or row[0].startswith("#"):
                continue
            if not out["youtube_id"] and len(row) == 4 and not row[1].strip().isdigit():
                continue  # a header some copies add ("youtube_id,start_seconds,label,split")
            if not looks_like_vggsound_row(row):
                raise ValueError(f"{path}:{lineno}: expected 'youtube_id,start_seconds,label,train|test', got {row!r}")
            lab, sp = row[2].strip(), row[3].strip().lower()
            out["youtube_id"].append(row[0].strip())
            out["start"].append(int(row[1]))
            out["label"].append(shared.setdefault(lab, lab))
            out["split"].append(shared.setdefault(sp, sp))
    return out


def parse_vggsound_csv(path: str | Path) -> list[VGGSoundEntry]:
    """Every clip of a VGGSound CSV in file order (blank and '#' lines skipped)."""
    c = read_vggsound_columns(path)
    return [VGGSoundEntry(*r) for r in zip(c["youtube_id"], c["start"], c["label"], c["split"])]


def vggsound_stems_of(youtube_id: str, start: int) -> list[str]:
    """`<id>_<start:06d>` (published), `<id>_<start:06d>_<end:06d>`, unpadded variants, then `<id>`."""
    s, t = int(start), int(start) + CLIP_SECONDS
    return [f"{youtube_id}_{s:06d}", f"{youtube_id}_{s:06d}_{t:06d}", f"{youtube_id}_{s}", f"{youtube_id}_{s}_{t}",
            youtube_id]


def vggsound_stems(e: VGGSoundEntry) -> list[str]:
    return vggsound_stems_of(e.youtube_id, e.start)
