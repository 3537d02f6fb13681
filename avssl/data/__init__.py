"""Data layer: sources (resolve_source), index (Manifest, IndexReport), AVClipDataset, skip-bad collate,
training cache."""

from .collate import collate_skip_bad, dropped_in_process
from .dataset import AVClipDataset
from .index import BadFile, IndexReport, Manifest, build_index, list_videos
from .sources import MediaIndex, ResolvedSource, resolve_source

__all__ = ["Manifest", "IndexReport", "BadFile", "build_index", "list_videos", "resolve_source", "ResolvedSource",
           "MediaIndex", "AVClipDataset",
           "collate_skip_bad", "dropped_in_process", "build_training_cache"]


def __getattr__(name):
    if name == "build_training_cache":  # imported lazily: pulls in the encoder
        from .prepare import build_training_cache

        return build_training_cache
    raise AttributeError(name)
