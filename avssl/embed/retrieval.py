"""Exact search and retrieval metrics for embedding collections: they live in
`avssl.metrics.retrieval` (below the trainer, which evaluates with them); re-exported here for
the embedding tools' users."""

from avssl.metrics.retrieval import (  # noqa: F401
    TIES,
    RankCounts,
    cross_modal_retrieval,
    nearest,
    positive_rank_counts,
    rank_metrics,
    retrieval_metrics,
)

__all__ = ["TIES", "RankCounts", "nearest", "positive_rank_counts", "rank_metrics", "cross_modal_retrieval",
           "retrieval_metrics"]
