"""Plain id lists of the localization benchmarks: one sample per line.

Published layouts (facts from the public repositories' ``metadata/`` folders):

- VGG-SS test list ``vggss_test.csv`` (hche11/Localizing-Visual-Sounds-the-Hard-Way) and the
  heard / unheard splits ``vggss_heard_test.csv`` / ``vggss_unheard_test.csv`` /
  ``vggss_heard.txt`` (stoneMo/EZ-VSL): one ``<youtube id>_<start, 6 digits>`` per line, no
  header (the 11-character YouTube id may itself contain ``_`` and ``-``).
- Flickr-SoundNet ``flickr_test.csv``: ``<flickr id>,<integer>`` (the evaluators read the
  first column only; the second is kept as given), no header.
- Flickr-SoundNet test list ``test_list.txt`` (ardasnck/learning_to_localize_sound_source)
  and ``test_flickr_250.txt`` (kaistmm/SSLalignment): one image file name per line
  (``10000130166.png`` / ``.jpg``); the sample id is the stem.
"""

from __future__ import annotations

import csv
from pathlib import Path

MEDIA_SUFFIXES = (".jpg", ".jpeg", ".png", ".wav", ".mp4", ".mkv", ".avi", ".webm", ".flac", ".mp3", ".npy")


def sample_id(name: str) -> str:
    """``name`` without a media suffix (``10000130166.jpg`` -> ``10000130166``); other dots stay."""
    name = name.strip()
    low = name.lower()
    for suf in MEDIA_SUFFIXES:
        if low.endswith(suf):
            return name[: -len(suf)]
    return name


def read_id_rows(path: str | Path) -> list[list[str]]:
    """The non-empty CSV rows of ``path`` (whitespace around fields stripped)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"id list {p} does not exist")
    with open(p, newline="", encoding="utf-8-sig") as f:
        return [[c.strip() for c in row] for row in csv.reader(f) if row and any(c.strip() for c in row)]


def read_id_list(path: str | Path) -> list[str]:
    """Sample ids of a one-per-line list (first CSV column, media suffix dropped), in file order.

    Raises on a duplicated id (a list that names a sample twice would count it twice)."""
    ids = [sample_id(row[0]) for row in read_id_rows(path)]
    seen: set[str] = set()
    dup = [i for i in ids if i in seen or seen.add(i)]
    if dup:
        raise ValueError(f"{path}: {len(dup)} duplicated id(s), e.g. {dup[0]!r}")
    if not ids:
        raise ValueError(f"{path}: no ids")
    return ids
