"""Cross-Modal Agreement: positive-set discovery from the memory banks."""

from avssl.cma.positives import (METHODS, MODES, agreement_scores, auto_block_size, auto_chunk_size,
                                 find_positives, positive_recall)

__all__ = ["find_positives", "agreement_scores", "auto_chunk_size", "auto_block_size", "positive_recall", "MODES",
           "METHODS"]
