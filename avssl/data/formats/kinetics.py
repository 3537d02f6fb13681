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


def kinetics_stems_of(youtube_id: str, time_start: float, time_end: float) -> list[str]:
    """File names (no extension) a clip may have: `<id>_<start:06d>_<end:06d>`, unpadded, the id alone."""
    s, e = int(time_start), int(time_end)
    return [f"{youtube_id}_{s:06d}_{e:06d}", f"{youtube_id}_{s}_{e}", youtube_id]


def kinetics_stems(entry: KineticsEntry) -> list[str]:
    return kinetics_stems_of(entry.youtube_id, entry.time_start, entry.time_end)


def read_kinetics_columns(path: str | Path) -> dict[str, list]:
    """The CSV as columns `label, youtube_id, time_start, time_end, split` (lists; times as float;
    `label` / `split` are "" when the file has no such column). Repeated label and split strings
    are one object each, so 10^6 rows stay a few lists."""
    shared: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, skipinitialspace=True)
        header = [h.strip() for h in next(reader, [])]
        if not {"youtube_id", "time_start", "time_end"} <= set(header):
            raise ValueError(f"{path}: not a Kinetics CSV (columns {header})")
        col = {h: i for i, h in enumerate(header)}
        il, iy, i0, i1, isp = col.get("label"), col["youtube_id"], col["time_start"], col["time_end"], col.get("split")
        out: dict[str, list] = {"label": [], "youtube_id": [], "time_start": [], "time_end": [], "split": []}
        for lineno, row in enumerate(reader, 2):
            if not row or not "".join(row).strip():
                continue
            try:
                t0, t1 = float(row[i0]), float(row[i1])
            except (ValueError, IndexError):
                raise ValueError(f"{path}:{lineno}: bad row {row!r}") from None
            lab = row[il].strip() if il is not None else ""
            sp = row[isp].strip() if isp is not None else ""
            out["label"].append(shared.setdefault(lab, lab))
            out["youtube_id"].append(row[iy].strip())
            out["time_start"].append(t0)
            out["time_end"].append(t1)
            out["split"].append(shared.setdefault(sp, sp))
    return out


def parse_kinetics_csv(path: str | Path) -> list[KineticsEntry]:
    """Parse a Kinetics annotation CSV (train.csv / validate.csv / test.csv)."""
    c = read_kinetics_columns(path)
    return [KineticsEntry(*r) for r in zip(c["label"], c["youtube_id"], c["time_start"], c["time_end"], c["split"])]


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
