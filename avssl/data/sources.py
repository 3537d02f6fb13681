"""One resolver for every place that names a collection of videos (`resolve_source`).

A source is a folder (walked recursively, symlinks followed), a single media file, a text list
(one path per line, '#' comments), a dataset list as published (Kinetics CSV, AudioSet segment
CSV, VGGSound CSV) with the folder holding its media, or a Python list of paths. Indexing,
pretraining, extraction, fine-tuning and the command-line tools all go through here, so a list
means the same thing everywhere.

Contract: every entry the source lists ends up either in `ResolvedSource.paths` (to be probed by
the indexer) or in `ResolvedSource.missing` (a `BadFile` with reason 'missing' naming the file
names tried); `rows == len(paths) + len(missing)`. Nothing is dropped silently. A binary file is
never read as text: a media extension, or bytes that are not UTF-8 text, make it a single media
file (the prober then says whether it is one).

Dataset rows are matched to files by the dataset's naming conventions (`*_stems` in
`avssl.data.formats`) through a `MediaIndex`: the media root is walked once and files are looked
up by stem, so 10^6 rows cost 10^6 dictionary lookups, not 10^7 `stat` calls on a network disk.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from avssl.io.probe import VIDEO_EXTENSIONS

__all__ = ["BadFile", "ResolvedSource", "MediaIndex", "resolve_source", "detect_format", "read_path_list",
           "annotation_stems", "describe", "SOURCE_FORMATS", "TABLE_FORMATS", "same_split"]

SOURCE_FORMATS = ("auto", "folder", "file", "list", "kinetics", "audioset", "vggsound")
TABLE_FORMATS = ("kinetics", "audioset", "vggsound")  # dataset lists whose rows name media by convention
_HEAD_BYTES = 65536
_EXTS = frozenset(VIDEO_EXTENSIONS)
# first lines of a text list that are column titles, not paths (skipped and noted)
_HEADER_WORDS = {"path", "paths", "file", "files", "filename", "filepath", "file_path", "video", "videos",
                 "video_path", "videopath", "name"}
_SPLIT_ALIASES = {"val": "val", "valid": "val", "validate": "val", "validation": "val", "train": "train",
                  "training": "train", "test": "test", "testing": "test", "eval": "eval", "evaluation": "eval"}


@dataclass(slots=True)
class BadFile:
    """One listed entry left out: its path (or the first name tried), a short stable reason, detail."""

    path: str
    reason: str
    detail: str = ""


@dataclass
class ResolvedSource:
    """What a source names. `paths` are relative to `root` when it is set (dataset lists, or a
    folder / file under the given media root), else as found. `labels[i]` is the dataset's label of
    `paths[i]` (None when the format has none; AudioSet: the comma-joined label ids). `missing`:
    listed entries without a file. `notes`: the format's particulars (file, header skipped, rows of
    other splits, folders that could not be read)."""

    paths: list[str]
    format: str
    root: str | None = None
    labels: list[str] | None = None
    missing: list[BadFile] = field(default_factory=list)
    split: str | None = None
    notes: dict = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Entries the source lists (after split selection): found + missing."""
        return len(self.paths) + len(self.missing)


# ------------------------------------------------------------------------------ detection


def _read_head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(_HEAD_BYTES)


def _is_binary(head: bytes) -> bool:
    if b"\0" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start < len(head) - 4  # a character cut at the end of the sample is still text
    return False


def _first_rows(text: str, n: int = 3) -> tuple[list[str], list[list[str]]]:
    """(comment lines before the data, first n data rows parsed as CSV)."""
    comments, rows = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            if not rows:
                comments.append(line.strip())
            continue
        rows.append(next(csv.reader([line], skipinitialspace=True), []))
        if len(rows) >= n:
            break
    return comments, rows


def detect_format(source) -> str:
    """'folder' | 'file' | 'list' | 'kinetics' | 'audioset' | 'vggsound' for a path (or 'list' for
    a Python sequence of paths). Files: a media extension or binary content -> 'file'; text is
    recognised from its first lines (AudioSet's '# Segments csv' comments, Kinetics' header with
    youtube_id and time_start, VGGSound's `id,start,label,train|test` rows), else a path list. A
    `.csv` that is none of the dataset lists is an error (it would read as a list of missing files)."""
    from avssl.data.formats.audioset import is_audioset_header
    from avssl.data.formats.vggsound import looks_like_vggsound_row

    if not isinstance(source, (str, os.PathLike)):
        return "list"
    p = Path(source)
    if p.is_dir():
        return "folder"
    if not p.exists() and not p.is_symlink():
        raise FileNotFoundError(f"source {p}: no such file or folder")
    suffix = p.suffix.lower()
    if suffix in VIDEO_EXTENSIONS or p.is_symlink() and not p.exists():
        return "file"
    if suffix == ".npz":
        raise ValueError(f"source {p}: a saved manifest (.npz) is loaded with avssl.data.Manifest.load, not indexed")
    head = _read_head(p)
    if _is_binary(head):
        return "file"
    comments, rows = _first_rows(head.decode("utf-8", errors="replace").lstrip("\ufeff"))
    if any(is_audioset_header(c) for c in comments) or (rows and rows[0] and rows[0][0].strip() == "YTID"):
        return "audioset"
    if rows:
        cols = {c.strip().lower() for c in rows[0]}
        if {"youtube_id", "time_start", "time_end"} <= cols:
            return "kinetics"
        if looks_like_vggsound_row(rows[0]) or (len(rows) > 1 and len(rows[0]) == 4 and looks_like_vggsound_row(rows[1])):
            return "vggsound"
    if suffix in (".csv", ".tsv"):
        raise ValueError(f"source {p}: not a recognised dataset list (Kinetics: header "
                         "label,youtube_id,time_start,time_end,split; AudioSet: '# Segments csv' / YTID, start_seconds, "
                         "end_seconds, positive_labels; VGGSound: youtube_id,start_seconds,label,split). For a list of "
                         "paths give format=list")
    return "list"


# ------------------------------------------------------------------------------ lists and folders


def read_path_list(path: str | os.PathLike) -> tuple[list[str], dict]:
    """Paths of a text list: one per line, blank lines and '#' comments skipped, surrounding
    whitespace stripped; a first line that is a column title ('path', 'video', ...) is skipped
    and returned in notes['header']. Returns (paths, notes)."""
    p = Path(path)
    head = _read_head(p)
    if _is_binary(head):
        raise ValueError(f"{p}: binary data, not a text list of paths")
    notes: dict = {}
    out: list[str] = []
    with open(p, encoding="utf-8-sig", errors="strict") as f:
        for line in f:
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            if not out and "header" not in notes and s.lower().strip("\"' ") in _HEADER_WORDS:
                notes["header"] = s
                continue
            out.append(s)
    return out, notes


def _walk_media(root: Path, bad: list[BadFile], progress: bool = False) -> list[str]:
    """Media files under `root` (recursive, symlinked folders followed once, dangling symlinks
    kept so the indexer reports them), as paths relative to `root`, sorted. Folders that
    cannot be read are appended to `bad` (reason 'unreadable')."""
    from tqdm import tqdm

    found: list[str] = []
    seen: set[str] = set()

    def onerror(e: OSError) -> None:
        bad.append(BadFile(str(e.filename), "unreadable", f"folder: {e.strerror or e}"))

    bar = tqdm(desc=f"listing {root}", unit="folder", disable=not progress)
    exts = _EXTS
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop or a folder reached twice
            dirnames[:] = []
            continue
        seen.add(real)
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir + os.sep
        found.extend(prefix + name for name in filenames if "." + name.rpartition(".")[2].lower() in exts)
        bar.update(1)
    bar.close()
    found.sort()
    return found


def _relative_to(paths: list[str], root: str | os.PathLike | None, anchored: bool) -> list[str]:
    """Paths under `root` made relative to it (others kept). `anchored`: relative paths are
    relative to the current folder (a walked folder) rather than to `root` (a list)."""
    if root is None:
        return paths
    r_abs, r_real = Path(os.path.abspath(root)), Path(os.path.realpath(root))
    out = []
    for p in paths:
        if not (os.path.isabs(p) or anchored):
            out.append(p)
            continue
        ap = Path(os.path.abspath(p))  # not resolve(): a symlink keeps its own name (and stays reportable)
        if ap.is_relative_to(r_abs):
            out.append(str(ap.relative_to(r_abs)))
            continue
        rp = Path(os.path.realpath(ap.parent)) / ap.name  # the root named through a symlinked folder
        out.append(str(rp.relative_to(r_real)) if rp.is_relative_to(r_real) else p)
    return out


# ------------------------------------------------------------------------------ media lookup by name


class MediaIndex:
    """Every media file under `root`, looked up by file stem (name without extension).

    Built by one walk of the folder. `find(stems, prefer)` returns the relative path of the first
    stem that exists; when a stem names several files, the one whose folders include most of
    `prefer` (e.g. the row's split and label) wins, then the extension order of
    `avssl.io.probe.VIDEO_EXTENSIONS` (.mp4 first), then the path. `find_prefix(stem)` returns
    the files whose stem starts with `stem + '_'` (annotations that name a clip by its start
    only)."""

    def __init__(self, root: str | os.PathLike, progress: bool = False):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"media root {self.root} is not a folder")
        self.unreadable: list[BadFile] = []
        self.by_stem: dict[str, str | list[str]] = {}  # one path (most stems) or several
        self.count = 0
        by_stem = self.by_stem
        for rel in _walk_media(self.root, self.unreadable, progress):
            stem = rel.rpartition(os.sep)[2].rpartition(".")[0]
            have = by_stem.get(stem)
            if have is None:
                by_stem[stem] = rel
            elif isinstance(have, str):
                by_stem[stem] = [have, rel]
            else:
                have.append(rel)
            self.count += 1
        self._sorted: list[str] | None = None

    def __len__(self) -> int:
        return self.count

    @staticmethod
    def _rank(rel: str, prefer: Sequence[str]) -> tuple:
        parts = set(Path(rel).parts[:-1])
        ext = os.path.splitext(rel)[1].lower()
        order = VIDEO_EXTENSIONS.index(ext) if ext in VIDEO_EXTENSIONS else len(VIDEO_EXTENSIONS)
        return (-sum(1 for d in prefer if d and d in parts), order, rel)

    def find(self, stems: Iterable[str], prefer: Sequence[str] = ()) -> str | None:
        get = self.by_stem.get
        for s in stems:
            hits = get(s)
            if hits is not None:
                return hits if isinstance(hits, str) else min(hits, key=lambda r: self._rank(r, prefer))
        return None

    def find_prefix(self, stem: str) -> list[str]:
        import bisect

        if self._sorted is None:
            self._sorted = sorted(self.by_stem)
        key = stem + "_"
        out: list[str] = []
        for s in self._sorted[bisect.bisect_left(self._sorted, key):]:
            if not s.startswith(key):
                break
            hits = self.by_stem[s]
            out.extend([hits] if isinstance(hits, str) else hits)
        return sorted(out, key=lambda r: self._rank(r, ()))


_IMAGE_OR_MEDIA = {*VIDEO_EXTENSIONS, ".jpg", ".jpeg", ".png", ".wav", ".flac", ".mp3", ".m4a", ".ogg", ".xml"}
_START6 = re.compile(r"^(?P<id>.+)_(?P<start>\d{6})$")


def annotation_stems(name: str) -> list[str]:
    """File stems an annotation name may have on disk (VGG-SS `<id>_000000`, Flickr-SoundNet
    `<id>`): the name itself (a known extension dropped), the 10 s clip `<id>_<s:06d>_<s+10:06d>`
    as Kinetics-style downloaders name it, then the YouTube id alone."""
    stem = name
    if os.path.splitext(name)[1].lower() in _IMAGE_OR_MEDIA:
        stem = os.path.splitext(name)[0]
    stem = os.path.basename(stem)
    out = [stem]
    m = _START6.match(stem)
    if m:
        s = int(m.group("start"))
        out += [f"{stem}_{s + 10:06d}", f"{m.group('id')}_{s}", m.group("id")]
    return list(dict.fromkeys(out))


# ------------------------------------------------------------------------------ dataset lists


def _canon_split(s: str | None) -> str:
    s = (s or "").strip().lower()
    return _SPLIT_ALIASES.get(s, s)


def same_split(a: str | None, b: str | None) -> bool:
    """Split names compared with their usual aliases (val = validate = validation, ...)."""
    return _canon_split(a) == _canon_split(b)


@dataclass(frozen=True)
class _Table:
    """How one dataset list is read (columns) and how its row i names files."""

    read: Callable[[Path], dict[str, list]]
    stems: Callable[[dict, int], list[str]]
    prefer: Callable[[dict, int], tuple]
    label: str  # column holding the label
    split: str | None  # column holding the split (None: the file is the split)


def _tables() -> dict[str, _Table]:
    from avssl.data.formats import audioset as A
    from avssl.data.formats import kinetics as K
    from avssl.data.formats import vggsound as V

    return {
        "kinetics": _Table(K.read_kinetics_columns,
                           lambda c, i: K.kinetics_stems_of(c["youtube_id"][i], c["time_start"][i], c["time_end"][i]),
                           lambda c, i: (c["split"][i], c["label"][i], c["label"][i].replace(" ", "_")), "label", "split"),
        "audioset": _Table(A.read_audioset_columns,
                           lambda c, i: A.audioset_stems_of(c["ytid"][i], c["start"][i], c["end"][i]),
                           lambda c, i: (), "labels", None),
        "vggsound": _Table(V.read_vggsound_columns, lambda c, i: V.vggsound_stems_of(c["youtube_id"][i], c["start"][i]),
                           lambda c, i: (c["split"][i], c["label"][i]), "label", "split"),
    }


def _resolve_table(path: Path, fmt: str, media_root, split: str | None, progress: bool) -> ResolvedSource:
    table = _tables()[fmt]
    cols = table.read(path)
    n_file = len(cols[table.label])
    notes: dict = {"file": str(path), "rows_in_file": n_file}
    rows = range(n_file)
    if split is not None:
        if table.split is None:
            raise ValueError(f"{path}: {fmt} lists have no split column (the file is the split); drop split={split!r}")
        want = _canon_split(split)
        keep = {v for v in set(cols[table.split]) if _canon_split(v) == want}  # distinct values: a handful
        rows = [i for i, v in enumerate(cols[table.split]) if v in keep]
        notes["other_split_rows"] = n_file - len(rows)
        if not rows:
            present = sorted(set(cols[table.split]))
            raise ValueError(f"{path}: no row has split {split!r} (splits present: {', '.join(present) or 'none'})")
    root = Path(media_root) if media_root is not None else path.parent
    index = MediaIndex(root, progress=progress)
    notes["media_files_under_root"] = len(index)
    if index.unreadable:
        notes["unreadable_folders"] = [b.path for b in index.unreadable]
    notes["names_tried"] = f"{' | '.join(table.stems(cols, 0))} ... with any of {' '.join(VIDEO_EXTENSIONS)}" \
        if n_file else ""
    paths, labels, missing = [], [], []
    find, stems_of, prefer_of, label_col = index.find, table.stems, table.prefer, cols[table.label]
    for i in rows:
        stems = stems_of(cols, i)
        hit = find(stems, prefer_of(cols, i))
        if hit is None:
            missing.append(BadFile(stems[0], "missing", f"{path.name} row {i + 1}: tried {' | '.join(stems)}"))
            continue
        paths.append(hit)
        labels.append(label_col[i])
    return ResolvedSource(paths, fmt, str(root), labels, missing, split, notes)


# ------------------------------------------------------------------------------ the resolver


def resolve_source(source, media_root: str | os.PathLike | None = None, split: str | None = None,
                   fmt: str = "auto", progress: bool = False) -> ResolvedSource:
    """What `source` names, as a `ResolvedSource` (see the module docstring).

    source: a folder, a media file, a text list (.txt or any text file: one path per line),
    a Kinetics / AudioSet / VGGSound CSV, or a sequence of paths. `fmt`: one of
    `SOURCE_FORMATS`; 'auto' detects it (`detect_format`).
    media_root: where a dataset list's media live (default: the list's folder); for folders,
    files and path lists, paths under it are stored relative to it (relative list entries are
    joined with it by the indexer).
    split: keep the rows of this split (Kinetics / VGGSound split column; 'val' matches
    'validate'/'validation'). Other formats have no split column and refuse a split.
    """
    if fmt not in SOURCE_FORMATS:
        raise ValueError(f"source format must be one of {SOURCE_FORMATS}, got {fmt!r}")
    if isinstance(source, ResolvedSource):
        return source
    if source is None or (isinstance(source, str) and not source.strip()):
        raise ValueError("no source given (a folder, a media file, a list, or a dataset CSV)")
    if isinstance(source, (list, tuple)):
        if fmt not in ("auto", "list"):
            raise ValueError(f"a sequence of paths is format 'list', not {fmt!r}")
        if split is not None:
            raise ValueError("split selection needs a dataset list with a split column (Kinetics, VGGSound)")
        paths = [str(p) for p in source]
        return ResolvedSource(_relative_to(paths, media_root, anchored=False), "list",
                              None if media_root is None else str(media_root))
    p = Path(source)
    kind = detect_format(p) if fmt == "auto" else fmt
    if kind in TABLE_FORMATS:
        return _resolve_table(p, kind, media_root, split, progress)
    if split is not None:
        raise ValueError(f"split={split!r} selects rows of a dataset list with a split column (Kinetics, VGGSound); "
                         f"{p} is a {kind}")
    root = None if media_root is None else str(media_root)
    if kind == "folder":
        if not p.is_dir():
            raise FileNotFoundError(f"source {p} is not a folder")
        bad: list[BadFile] = []
        paths = [os.path.join(str(p), r) for r in _walk_media(p, bad, progress)]
        res = ResolvedSource(_relative_to(paths, root, anchored=True), "folder", root)
        if bad:
            res.notes["unreadable_folders"] = [b.path for b in bad]
            res.missing.extend(bad)
        return res
    if kind == "file":
        return ResolvedSource(_relative_to([str(p)], root, anchored=True), "file", root)
    if kind == "list":
        paths, notes = read_path_list(p)
        notes["file"] = str(p)
        return ResolvedSource(_relative_to(paths, root, anchored=False), "list", root, notes=notes)
    raise ValueError(f"unknown source format {kind!r}")


def describe(res: ResolvedSource) -> str:
    """One line: format, file, rows found / missing, split."""
    where = res.notes.get("file", "")
    split = f", split {res.split}" if res.split else ""
    other = f" ({res.notes['other_split_rows']} rows of other splits)" if res.notes.get("other_split_rows") else ""
    return (f"{res.format} source{' ' + where if where else ''}{split}: {res.rows} entries{other}, "
            f"{len(res.paths)} files found, {len(res.missing)} missing")

