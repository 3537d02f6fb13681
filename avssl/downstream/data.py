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

from avssl.data.formats import find_kinetics_video, load_hmdb51, load_ucf101, parse_kinetics_csv

log = logging.getLogger(__name__)

__all__ = ["VideoSplit", "load_split", "load_ucf101_split", "load_hmdb51_split", "load_kinetics_split",
           "carve_validation", "subsample_labels", "make_dataset", "FORMATS"]

FORMATS = ("ucf101", "hmdb51", "kinetics")


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


def load_kinetics_split(root: str | Path, train_csv: str | Path, test_csv: str | Path,
                        train_dir: str = "train", test_dir: str = "val") -> tuple[VideoSplit, VideoSplit]:
    """(train, test) from Kinetics-style CSVs; classes = sorted labels of both CSVs.
    Rows whose video file is absent are left out and counted in `notes['missing']`."""
    root = Path(root)
    train_rows, test_rows = parse_kinetics_csv(train_csv), parse_kinetics_csv(test_csv)
    classes = sorted({e.label for e in train_rows} | {e.label for e in test_rows})
    if any(not c for c in classes):
        raise ValueError(f"{train_csv} / {test_csv}: rows without a label")
    unseen = sorted({e.label for e in test_rows} - {e.label for e in train_rows})
    if unseen:
        log.warning("kinetics: test classes without training videos: %s", unseen)
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for rows, sub, name in ((train_rows, train_dir, "train"), (test_rows, test_dir, "test")):
        paths, labels, missing = [], [], []
        for e in rows:
            p = find_kinetics_video(root, e, sub)
            if p is None:
                missing.append(e.filename_stem)
                continue
            paths.append(str(p.relative_to(root)))
            labels.append(index[e.label])
        if missing:
            log.warning("kinetics %s: %d listed videos not found under %s (left out)", name, len(missing), root)
        out.append(VideoSplit(str(root), paths, labels, classes, None, name=f"kinetics-{name}",
                              notes={"missing": missing}))
    return out[0], out[1]


def load_split(fmt: str, root: str | Path, fold: int = 1, **kw) -> tuple[VideoSplit, VideoSplit]:
    """Dispatch on the format name: 'ucf101' | 'hmdb51' | 'kinetics' (fold ignored for kinetics)."""
    if fmt == "ucf101":
        return load_ucf101_split(root, fold, **kw)
    if fmt == "hmdb51":
        return load_hmdb51_split(root, fold, **kw)
    if fmt == "kinetics":
        root = Path(root)
        return load_kinetics_split(root, kw.get("train_csv") or root / "train.csv",
                                   kw.get("test_csv") or root / "validate.csv",
                                   kw.get("train_dir", "train"), kw.get("test_dir", "val"))
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
                 decoded_cache: str | None = None, spatial=None):
    """Index the split's files and wrap them in an `AVClipDataset` carrying the labels.

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
    manifest, report = build_index(split.paths, root=split.root, workers=workers, progress=progress)
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
