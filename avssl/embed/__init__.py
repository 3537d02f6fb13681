"""Joint embeddings: sharded extraction over collections, exact retrieval, notebook API."""

from .api import embed_audio, embed_video, load_model
from .extract import ExtractReport, VideoList, extract
from .retrieval import cross_modal_retrieval, nearest, positive_rank_counts, rank_metrics
from .shards import CollectionError, CollectionMismatch, finalize, load_collection, read_meta

__all__ = [
    "extract", "ExtractReport", "VideoList", "embed_video", "embed_audio", "load_model",
    "nearest", "cross_modal_retrieval", "positive_rank_counts", "rank_metrics",
    "load_collection", "read_meta", "finalize", "CollectionError", "CollectionMismatch",
]
