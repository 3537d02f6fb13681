"""Loss terms any method can add to its objective, configured in one place: the ``loss`` section.

    loss.localization_weight: w > 0 adds w x the max-over-positions audio-video InfoNCE
        (`avssl.losses.localization`, EZ-VSL's multiple-instance term) over the global batch;
    loss.localization_temperature: its temperature (null: loss.temperature).

The trainer then asks the model for the dense video map of the same forward pass
(``Method.needs_dense``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from avssl.losses.localization import global_batch_max_position_infonce
from avssl.methods.base import ModelOutputs, Term

__all__ = ["LocalizationTerm", "terms_from_config"]


class LocalizationTerm(Term):
    """``global_batch_max_position_infonce(video_dense, normalize(audio), ids, T)``: audio against
    the best-matching video position, every rank's rows as negatives."""

    name = "localization"
    needs_dense = True

    def __init__(self, weight: float, temperature: float) -> None:
        if weight <= 0 or temperature <= 0:
            raise ValueError(f"localization term: weight and temperature must be > 0, got {weight}, {temperature}")
        self.weight = float(weight)
        self.temperature = float(temperature)

    def __call__(self, out: ModelOutputs, ids: torch.Tensor) -> torch.Tensor:
        if out.video_dense is None:
            raise ValueError("the localization term needs the dense video map (model(..., dense=True))")
        return global_batch_max_position_infonce(out.video_dense, F.normalize(out.audio, dim=1), ids,
                                                 temperature=self.temperature)


def terms_from_config(cfg: Mapping) -> list[Term]:
    """The added terms the config's ``loss`` section switches on (see the module doc)."""
    loss = cfg.get("loss") or {}
    terms: list[Term] = []
    weight = float(loss.get("localization_weight") or 0.0)
    if weight > 0:
        terms.append(LocalizationTerm(weight, float(loss.get("localization_temperature") or loss["temperature"])))
    return terms
