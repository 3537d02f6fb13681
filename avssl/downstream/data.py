"""Labelled video splits for action recognition: official split files -> train / val / test.

A `VideoSplit` is a plain list of (relative path, label, group) under a videos root, read
with the format parsers of `avssl.data.formats`. Validation is carved from the TRAIN list
(never from the test list), whole groups at a time when the format has groups (UCF101's
``gXX``: clips of one group come from one long video, so splitting a group would leak).
`subsample_labels` keeps a stratified, seeded fraction of the training labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from avssl.data.formats import load_hmdb51, load_ucf101

log = logging.getLogger(__name__)

__all__ = ["VideoSplit", "load_split", "load_ucf101_split", "load_hmdb51_split", "load_kinetics_split",
           "load_vggsound_split",
           "carve_validation", "subsample_labels", "make_dataset", "FORMATS"]

FORMATS = ("ucf101", "hmdb51", "kinetics", "vggsound")


@dataclass
class VideoSplit:
    """Videos of one split: `paths[i]` (relative to `root`) has class `labels[i]` (0-based)."""

    root: str
    paths: list[str]
    labels: np.ndarray
    classes: list[str]
    groups: np.ndarray | None = None  # int per video (UCF101 gXX), or None
    name: str = ""
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} paths but {len(self.labels)} labels")
        if self.groups is not None:
            self.groups = np.asarray(self.groups, dtype=np.int64)
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ValueError(f"labels outside 0..{len(self.classes) - 1}")

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, rows, name: str | None = None) -> "VideoSplit":
        rows = np.asarray(rows, dtype=np.int64)
        return replace(self, paths=[self.paths[int(i)] for i in rows], labels=self.labels[rows],
                       groups=None if self.groups is None else self.groups[rows], name=name or self.name,
                       notes=dict(self.notes))

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.classes))


def load_ucf101_split(root: str | Path, fold: int = 1, split_dir: str | Path | None = None,
                      videos_dir: str | Path | None = None) -> tuple[VideoSplit, VideoSplit]:
    """(train, test) of UCF101 fold 1..3: `<root>/ucfTrainTestlist/`, videos in `<root>/UCF-101/`."""
    root = Path(root)
    split_dir = Path(split_dir) if split_dir else root / "ucfTrainTestlist"
    videos = str(Path(videos_dir) if videos_dir else root / "UCF-101")
    classes, train, test = load_ucf101(split_dir, fold)
    mk = lambda entries, name: VideoSplit(videos, [e.path for e in entries], [e.label for e in entries], classes,
                                          np.array([e.group if e.group is not None else -1 for e in entries]),
                                          name=name)
    return mk(train, f"ucf101-train{fold}"), mk(test, f"ucf101-test{fold}")


def load_hmdb51_split(root: str | Path, fold: int = 1, split_dir: str | Path | None = None,
                      videos_dir: str | Path | None = None) -> tuple[VideoSplit, VideoSplit]:
    """(train, test) of HMDB51 split 1..3 (tag 1 train, 2 test, 0 unused and left out)."""
    root = Path(root)
    split_dir = Path(split_dir) if split_dir else root / "testTrainMulti_7030_splits"
    videos = str(Path(videos_dir) if videos_dir else root / "videos")
    classes, entries = load_hmdb51(split_dir, fold)
    out = []
    for tag, name in ((1, "train"), (2, "test")):
        sel = [e for e in entries if e.tag == tag]
        out.append(VideoSplit(videos, [e.path for e in sel], [e.label for e in sel], classes, None,
                              name=f"hmdb51-{name}{fold}"))
    return out[0], out[1]


def _labelled_split(source: str | Path, root: Path, fmt: str, split: str | None, name: str) -> tuple[list, list, list]:
    """(paths relative to the media root, label names, missing BadFiles) of a dataset list's rows,
    matched to files under `root` by the dataset's naming rules (`avssl.data.sources`)."""
    from avssl.data.sources import resolve_source

    res = resolve_source(source, media_root=root, split=split, fmt=fmt)
    if res.missing:
        log.warning("%s: %d of %d listed videos not found under %s (left out; first: %s)", name, len(res.missing),
                    res.rows, root, res.missing[0].detail)
    return res.paths, res.labels, res.missing


def _classes_and_splits(parts, root: Path, fmt: str) -> tuple[VideoSplit, VideoSplit]:
    classes = sorted({lab for _, labels, _, _ in parts for lab in labels})
    if any(not c for c in classes):
        raise ValueError(f"{fmt}: rows without a label")
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for paths, labels, missing, name in parts:
        out.append(VideoSplit(str(root), paths, [index[lab] for lab in labels], classes, None, name=name,
                              notes={"missing": [b.path for b in missing], "missing_detail": [b.detail for b in missing]}))
    return out[0], out[1]


def load_kinetics_split(root: str | Path, train_csv: str | Path, test_csv: str | Path,
                        train_dir: str = "train", test_dir: str = "val") -> tuple[VideoSplit, VideoSplit]:
    """(train, test) from Kinetics-style CSVs; classes = sorted labels of both CSVs. Videos are
    looked up anywhere under `root` by the downloaders' names (`avssl.data.formats.kinetics_stems`;
    `<root>/<split>/<label>/`, `<root>/<label>/` and flat layouts all work; when a name exists twice
    the copy under the row's split / label folders wins). `train_dir` / `test_dir` are kept for
    older configs and no longer needed. Rows whose video is absent are left out and counted in
    `notes['missing']` (with the names tried in `notes['missing_detail']`)."""
    root = Path(root)
    parts = []
    for csv_path, name in ((train_csv, "train"), (test_csv, "test")):
        paths, labels, missing = _labelled_split(csv_path, root, "kinetics", None, f"kinetics {name}")
        parts.append((paths, labels, missing, f"kinetics-{name}"))
    unseen = sorted(set(parts[1][1]) - set(parts[0][1]))
    if unseen:
        log.warning("kinetics: test classes without training videos: %s", unseen)
    return _classes_and_splits(parts, root, "kinetics")


def load_vggsound_split(root: str | Path, csv_path: str | Path | None = None,
                        test_csv: str | Path | None = None) -> tuple[VideoSplit, VideoSplit]:
    """(train, test) of VGGSound: the rows of `csv_path` (default `<root>/vggsound.csv`) with split
    train / test (or `test_csv`'s rows for test), videos `<id>_<start:06d>[_<end:06d>].mp4` under `root`."""
    root = Path(root)
    csv_path = Path(csv_path) if csv_path else root / "vggsound.csv"
    parts = []
    for src, split, name in ((csv_path, "train", "train"), (Path(test_csv) if test_csv else csv_path, "test", "test")):
        paths, labels, missing = _labelled_split(src, root, "vggsound", split, f"vggsound {name}")
        parts.append((paths, labels, missing, f"vggsound-{name}"))
    return _classes_and_splits(parts, root, "vggsound")


def load_split(fmt: str, root: str | Path, fold: int = 1, **kw) -> tuple[VideoSplit, VideoSplit]:
    """Dispatch on the format name: 'ucf101' | 'hmdb51' | 'kinetics' | 'vggsound' (fold ignored for
    the last two)."""
    if fmt == "ucf101":
        return load_ucf101_split(root, fold, **kw)
    if fmt == "hmdb51":
        return load_hmdb51_split(root, fold, **kw)
    if fmt == "kinetics":
        root = Path(root)
        return load_kinetics_split(root, kw.get("train_csv") or root / "train.csv",
                                   kw.get("test_csv") or root / "validate.csv",
                                   kw.get("train_dir", "train"), kw.get("test_dir", "val"))
    if fmt == "vggsound":
        return load_vggsound_split(root, kw.get("train_csv"), kw.get("test_csv"))
    raise ValueError(f"unknown dataset format {fmt!r}; choose from {FORMATS}")


def carve_validation(train: VideoSplit, fraction: float, seed: int = 0) -> tuple[VideoSplit, VideoSplit]:
    """Split the TRAIN list into (train', val) with about `fraction` of its videos in val.

    With groups, whole groups go to val (drawn in a seeded order until the share is reached),
    so no group is on both sides; without, a stratified per-class draw (at least one video per
    class stays in train). `fraction` 0 gives an empty val split.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    n = len(train)
    rng = np.random.default_rng([seed, 7])
    if fraction == 0 or n < 2:
        return train.take(np.arange(n), train.name), train.take([], train.name + "-val")
    if train.groups is not None and (train.groups >= 0).all() and len(np.unique(train.groups)) > 1:
        groups = np.unique(train.groups)
        order = rng.permutation(groups)
        val_groups, count = [], 0
        for g in order[:-1]:  # leave at least one group for training
            if count >= fraction * n:
                break
            val_groups.append(g)
            count += int((train.groups == g).sum())
        is_val = np.isin(train.groups, val_groups)
    else:
        is_val = np.zeros(n, bool)
        for c in np.unique(train.labels):
            rows = np.flatnonzero(train.labels == c)
            k = min(int(round(fraction * len(rows))), len(rows) - 1)
            is_val[rng.permutation(rows)[:k]] = True
    return train.take(np.flatnonzero(~is_val), train.name), train.take(np.flatnonzero(is_val), train.name + "-val")


def subsample_labels(train: VideoSplit, fraction: float, seed: int = 0) -> VideoSplit:
    """A stratified, seeded `fraction` of the training videos (at least one per class present)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return train
    rng = np.random.default_rng([seed, 11])
    keep = []
    for c in np.unique(train.labels):
        rows = np.flatnonzero(train.labels == c)
        k = max(1, int(round(fraction * len(rows))))
        keep.extend(rng.permutation(rows)[:k].tolist())
    return train.take(sorted(keep), f"{train.name}-{fraction:g}")


def make_dataset(split: VideoSplit, spec, mode: str, clips_per_video: int, seed: int = 0,
                 backend: str | None = None, workers: int = 1, progress: bool = False,
                 decoded_cache: str | None = None, spatial=None, index_cache: str | None = None):
    """Index the split's files and wrap them in an `AVClipDataset` carrying the labels.

    `index_cache`: this split's probe cache file (`build_index(cache=...)`; one file per split,
    e.g. `avssl.data.index.split_cache_path(cfg, "train")`): a re-run probes only new or changed
    files; None probes every file.

    `spatial`: the per-item resize/crop (`avssl.data.spatial.SpatialPolicy`, e.g.
    `policy_from_config(cfg["transforms"]["video"], train=mode == "train")`), so videos of any
    size and aspect ratio batch; None keeps the decoded frames.
    Unreadable files are left out by the indexer and listed in `dataset.index_report`.
    `decoded_cache`: "memory" or a folder: serve the clips from videos decoded once
    (`avssl.data.decoded.DecodedClipDataset`; starts on the frame grid), None: decode every clip.
    """
    from avssl.data.dataset import AVClipDataset
    from avssl.data.index import build_index

    if len(split) == 0:
        raise ValueError(f"split {split.name!r} is empty")
    manifest, report = build_index(split.paths, root=split.root, workers=workers, progress=progress,
                                   cache=index_cache)
    if report.bad:
        log.warning("%s: %s", split.name, report.summary())
    label_of = dict(zip(split.paths, split.labels.tolist()))
    labels = np.array([label_of[manifest.path(i)] for i in range(len(manifest))], dtype=np.int64)
    ds = AVClipDataset(manifest, spec, mode=mode, clips_per_video=clips_per_video, seed=seed, labels=labels,
                       backend=backend, spatial=spatial)
    if decoded_cache:
        from avssl.data.decoded import DecodedClipDataset

        ds = DecodedClipDataset(ds, None if decoded_cache == "memory" else decoded_cache, workers=workers,
                                progress=progress)
    ds.index_report = report
    ds.classes = split.classes
    return ds
