"""Extended (open-set) localization test sets: the ``*_test_plus_silent.csv`` lists.

Mo & Morgado (SLAVC, NeurIPS 2022) add clips without a visible sounding source to VGG-SS
and Flickr-SoundNet. Published layout (``metadata/vggss_test_plus_silent.csv`` and
``metadata/flickr_test_plus_silent.csv``, copies in kaistmm/SSLalignment; read by
stoneMo/SLAVC ``datasets.py``): a header ``video,audio,label`` then one row per negative,
``<image id>,<audio id>,non-sounding``. SLAVC keeps a row only when ``label ==
'non-sounding'``, shows the frame of ``<image id>`` with the sound of ``<audio id>`` and
gives it no boxes. When the two ids are equal the clip's own sound plays (a silent or
off-screen source); otherwise another clip's sound plays over this frame (off-screen by
construction). The positives are the base test list (``vggss_test.csv`` /
``flickr_test.csv``), unchanged.

A negative's sample id here is ``<image id>@<audio id>``: the same image id can also be a
positive (with its own sound) or appear in several rows, so the image id alone is ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avssl.data.formats.lists import read_id_rows, sample_id

NEGATIVE_LABEL = "non-sounding"


@dataclass(frozen=True)
class ExtendedEntry:
    """One row: the frame of ``video`` with the sound of ``audio``; ``label`` as written."""

    video: str
    audio: str
    label: str

    @property
    def is_negative(self) -> bool:
        return self.label == NEGATIVE_LABEL

    @property
    def own_audio(self) -> bool:
        """True when the clip's own sound plays (silent / off-screen source in the clip itself)."""
        return self.video == self.audio

    @property
    def sample_id(self) -> str:
        return f"{self.video}@{self.audio}"


def parse_plus_silent(path: str | Path) -> list[ExtendedEntry]:
    """All rows of a ``*_test_plus_silent.csv`` (header ``video,audio,label`` optional).

    Rows with another label are returned too (``is_negative`` False); SLAVC ignores them.
    A row that is not three fields is an error naming the line."""
    rows = read_id_rows(path)
    if rows and [c.lower() for c in rows[0]] == ["video", "audio", "label"]:
        rows = rows[1:]
    out = []
    for i, row in enumerate(rows, start=2):
        if len(row) != 3 or not row[0] or not row[1]:
            raise ValueError(f"{path}: row {i} is not 'video,audio,label': {','.join(row)!r}")
        out.append(ExtendedEntry(sample_id(row[0]), sample_id(row[1]), row[2]))
    if not out:
        raise ValueError(f"{path}: no rows")
    dup = len(out) - len({e.sample_id for e in out})
    if dup:
        raise ValueError(f"{path}: {dup} duplicated video/audio pair(s)")
    return out


def negatives(entries: list[ExtendedEntry]) -> list[ExtendedEntry]:
    """The rows SLAVC adds as negatives (``label == 'non-sounding'``)."""
    return [e for e in entries if e.is_negative]
