"""Evaluation metrics as pure functions on tensors (no other avssl import): exact chunked
nearest-neighbour search and cross-modal retrieval (R@k, ranks with stated tie handling), and the
instance-level reading of retrieval (class-level top-1, within-class rank, synchronization test),
each with its own chance level (`avssl.metrics.instance`).

The trainer's held-out evaluation (`avssl.engine`) and the embedding tools (`avssl.embed`, which
re-exports these names) both use them, so they live below both."""

from avssl.metrics.instance import (
    class_level_metrics,
    instance_report,
    pair_scores,
    shifted_clip_pairs,
    sync_metrics,
    within_class_retrieval,
)
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
           "retrieval_metrics", "class_level_metrics", "within_class_retrieval", "pair_scores", "sync_metrics",
           "instance_report", "shifted_clip_pairs"]
