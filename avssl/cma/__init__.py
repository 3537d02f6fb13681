"""Cross-Modal Agreement: positive-set discovery from the memory banks."""

from avssl.cma.positives import MODES, agreement_scores, auto_chunk_size, find_positives, positive_recall

__all__ = ["find_positives", "agreement_scores", "auto_chunk_size", "positive_recall", "MODES"]
