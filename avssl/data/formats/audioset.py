"""AudioSet segment CSVs (balanced_train_segments.csv, eval_segments.csv, unbalanced_train_segments.csv):

    # Segments csv created Sun Mar  5 10:54:31 2017
    # num_ytids=20371, num_segs=20371, num_unique_labels=527, num_positive_labels=51804
    # YTID, start_seconds, end_seconds, positive_labels
    --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"

Comment lines start with '#'; fields are separated by ", " and the label list is quoted. The
split is the file itself (there is no split column). Downloaders name the media of a segment
in several ways; `audioset_stems` lists the ones in common use."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AudioSetSegment", "parse_audioset_csv", "read_audioset_columns", "audioset_stems", "audioset_stems_of",
           "is_audioset_header"]


@dataclass(frozen=True)
class AudioSetSegment:
    ytid: str
    start: str  # as written ("30.000"): the text itself is one of the naming conventions
    end: str
    labels: str  # the positive label ids, comma-separated as in the file ("/m/09x0r,/t/dd00088")

    @property
    def label(self) -> str:
        return self.labels

    @property
    def split(self) -> str:
        return ""


def is_audioset_header(line: str) -> bool:
    """True for the comment lines that open an AudioSet segment CSV."""
    s = line.lstrip("#").strip().lower()
    return line.startswith("#") and (s.startswith("segments csv") or s.startswith("ytid"))


def read_audioset_columns(path: str | Path) -> dict[str, list]:
    """The segments as columns `ytid, start, end` (the CSV's text) and `labels` (comma-joined ids),
    in file order ('#' lines and an un-commented YTID header skipped). Repeated label lists are
    one string object each."""
    shared: dict[str, str] = {}
    out: dict[str, list] = {"ytid": [], "start": [], "end": [], "labels": []}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for lineno, row in enumerate(csv.reader(f, skipinitialspace=True), 1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if row[0].strip() == "YTID":  # an un-commented header
                continue
            if len(row) < 3:
                raise ValueError(f"{path}:{lineno}: expected 'YTID, start_seconds, end_seconds, positive_labels', "
                                 f"got {', '.join(row)!r}")
            ytid, start, end = (c.strip() for c in row[:3])
            try:
                float(start), float(end)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: start/end {start!r}, {end!r} are not seconds") from None
            labels = ",".join(c.strip() for c in row[3:]).strip('"')
            out["ytid"].append(ytid)
            out["start"].append(shared.setdefault(start, start))
            out["end"].append(shared.setdefault(end, end))
            out["labels"].append(shared.setdefault(labels, labels))
    return out


def parse_audioset_csv(path: str | Path) -> list[AudioSetSegment]:
    """Every segment of an AudioSet segment CSV, in file order ('#' lines skipped)."""
    c = read_audioset_columns(path)
    return [AudioSetSegment(*r) for r in zip(c["ytid"], c["start"], c["end"], c["labels"])]


def audioset_stems_of(ytid: str, start: str, end: str) -> list[str]:
    """File names (without extension) that downloaders give a segment's media, most common first:
    milliseconds (`<YTID>_30000_40000`, audiosetdl), the CSV's own seconds text
    (`<YTID>_30.000_40.000`), whole or 6-digit seconds (`<YTID>_30_40`, `<YTID>_000030_000040`),
    the start alone (`<YTID>_30`, `<YTID>_000030`), `[<YTID>]-[30-40]`, and the id alone (`<YTID>`,
    `Y<YTID>` as in PANNs' packs)."""
    s, e = float(start), float(end)
    si, ei = int(round(s)), int(round(e))
    y = ytid
    names = [f"{y}_{int(round(s * 1000))}_{int(round(e * 1000))}", f"{y}_{start}_{end}", f"{y}_{s}_{e}",
             f"{y}_{s:.3f}_{e:.3f}", f"{y}_{si}_{ei}", f"{y}_{si:06d}_{ei:06d}", f"{y}_{si}", f"{y}_{si:06d}",
             f"[{y}]-[{si}-{ei}]", y, f"Y{y}"]
    return list(dict.fromkeys(names))


def audioset_stems(seg: AudioSetSegment) -> list[str]:
    return audioset_stems_of(seg.ytid, seg.start, seg.end)
