"""Kinetics-style CSV: `label,youtube_id,time_start,time_end,split[,is_cc]` (header row; test lists
may lack `label`). Downloaders name a clip `<youtube_id>_<start:06d>_<end:06d>.mp4`, under
`<root>/<label>/`, `<root>/<split>/<label>/` or flat; `kinetics_stems` lists the names tried."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KineticsEntry:
    label: str
    youtube_id: str
    time_start: float
    time_end: float
    split: str

    @property
    def filename_stem(self) -> str:
        """The usual downloader name `<id>_<start:06d>_<end:06d>`."""
        return f"{self.youtube_id}_{int(self.time_start):06d}_{int(self.time_end):06d}"


def kinetics_stems(entry: KineticsEntry) -> list[str]:
    """File names (no extension) a clip may have: `<id>_<start:06d>_<end:06d>`, unpadded, the id alone."""
    s, e = int(entry.time_start), int(entry.time_end)
    return list(dict.fromkeys([entry.filename_stem, f"{entry.youtube_id}_{s}_{e}", entry.youtube_id]))


def parse_kinetics_csv(path: str | Path) -> list[KineticsEntry]:
    """Parse a Kinetics annotation CSV (train.csv / validate.csv / test.csv)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        need = {"youtube_id", "time_start", "time_end"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise ValueError(f"{path}: not a Kinetics CSV (columns {reader.fieldnames})")
        return [KineticsEntry(r.get("label", ""), r["youtube_id"], float(r["time_start"]), float(r["time_end"]),
                              r.get("split", "")) for r in reader]


def find_kinetics_video(root: str | Path, entry: KineticsEntry, split_dir: str | None = None) -> Path | None:
    """Locate `<root>/[<split>/][<label>/]<id>_<start>_<end>.<ext>` (mp4/webm/mkv)."""
    root = Path(root)
    dirs = [root / (split_dir or entry.split) / entry.label, root / entry.label, root]
    for d in dirs:
        for ext in (".mp4", ".webm", ".mkv"):
            p = d / (entry.filename_stem + ext)
            if p.exists():
                return p
    return None
