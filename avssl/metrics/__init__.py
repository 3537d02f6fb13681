"""Evaluation metrics as pure functions on tensors (no other avssl import): exact chunked
nearest-neighbour search and cross-modal retrieval (R@k, ranks with stated tie handling).

The trainer's held-out evaluation (`avssl.engine`) and the embedding tools (`avssl.embed`, which
re-exports these names) both use them, so they live below both."""

from avssl.metrics.retrieval import (
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
