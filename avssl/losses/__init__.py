"""Losses as small pure functions (formula in each docstring): memory-bank NCE / InfoNCE, the
in-batch cross-modal logits and the max-over-positions localization term. The objectives that
combine them with memory banks (AVID, CMA, CLIP-style) are methods: `avssl.methods`."""

from avssl.losses.localization import global_batch_max_position_infonce, max_position_infonce, max_position_scores
from avssl.losses.nce import estimate_partition, info_nce_loss, nce_extra_negatives_loss, nce_loss
from avssl.losses.scores import append_weighted_negatives, bank_scores, in_batch_cross_logits

__all__ = ["nce_loss", "estimate_partition", "info_nce_loss", "nce_extra_negatives_loss", "bank_scores",
           "in_batch_cross_logits", "append_weighted_negatives",
           "max_position_scores", "max_position_infonce", "global_batch_max_position_infonce"]
