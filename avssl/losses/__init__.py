"""Objectives: pure contrastive losses and the AVID / CMA criteria built on memory banks."""

from avssl.losses.avid import AVIDCriterion
from avssl.losses.cma import CMACriterion
from avssl.losses.localization import global_batch_max_position_infonce, max_position_infonce, max_position_scores
from avssl.losses.nce import estimate_partition, info_nce_loss, nce_loss

__all__ = ["nce_loss", "estimate_partition", "info_nce_loss", "AVIDCriterion", "CMACriterion",
           "max_position_scores", "max_position_infonce", "global_batch_max_position_infonce"]
