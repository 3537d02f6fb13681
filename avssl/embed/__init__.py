"""Joint embeddings: sharded extraction over collections, exact and approximate retrieval,
audio-visual agreement scores, notebook API."""

from .agreement import agreement, read_agreement
from .api import embed_audio, embed_video, load_model
from .extract import ExtractReport, VideoList, extract
from .retrieval import cross_modal_retrieval, nearest, positive_rank_counts, rank_metrics
from .search import NoIndex, SearchIndex, StaleIndex, build_index, load_index
from .shards import CollectionError, CollectionMismatch, MappedRows, finalize, load_collection, read_meta

__all__ = [
    "extract", "ExtractReport", "VideoList", "embed_video", "embed_audio", "load_model",
    "nearest", "cross_modal_retrieval", "positive_rank_counts", "rank_metrics",
    "load_collection", "read_meta", "finalize", "CollectionError", "CollectionMismatch", "MappedRows",
    "build_index", "load_index", "SearchIndex", "NoIndex", "StaleIndex", "agreement", "read_agreement",
]
