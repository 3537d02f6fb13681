"""Loss terms any method can add to its objective, configured in one place: the ``loss`` section.

    loss.localization_weight: w > 0 adds w x the max-over-positions audio-video InfoNCE
        (`avssl.losses.localization`, EZ-VSL's multiple-instance term) over the global batch;
    loss.localization_temperature: its temperature (null: loss.temperature).

The trainer then asks the model for the dense video map of the same forward pass
(``Method.needs_dense``).

    loss.temporal_negatives: {weight, min_shift, max_shift, start_step, ramp_steps} -- temporal hard
        negatives (AVTS, GDT): the clip's OWN video's audio, shifted in time by min_shift..max_shift s
        (inside the file: `avssl.data.AVClipDataset` ``shifted_audio``), is one more negative of the
        video query in the cross-modal v2a term, in the bank objectives (AVID, CMA; NCE or InfoNCE) and
        the in-batch ones (AVID ``in_batch``, CLIP). It counts ``w(step)`` times in the denominator:
        0 before ``start_step``, then rising linearly to ``weight`` over ``ramp_steps`` (the easy
        negatives first, as AVTS's curriculum). Only the audio is shifted (one more audio forward per
        clip; a shifted video would cost a second video forward), so the a2v term is unchanged."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from avssl.losses.localization import global_batch_max_position_infonce
from avssl.methods.base import ModelOutputs, Term
from avssl.utils.errors import UserError

__all__ = ["LocalizationTerm", "TemporalNegatives", "terms_from_config"]


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
    loss = cfg["loss"]  # every key is in the typed `loss` section (avssl.utils.schema.LossConfig)
    terms: list[Term] = []
    weight = float(loss["localization_weight"])
    if weight > 0:
        temperature = loss["localization_temperature"]
        terms.append(LocalizationTerm(weight, float(loss["temperature"] if temperature is None else temperature)))
    return terms


@dataclass(frozen=True)
class TemporalNegatives:
    """``loss.temporal_negatives`` (see the module doc): the shift range the data must provide and the
    weight schedule ``weight_at(step)``."""

    weight: float = 0.0
    min_shift: float = 0.5
    max_shift: float = 1.0
    start_step: int = 0
    ramp_steps: int = 0

    def __post_init__(self):
        if self.weight < 0 or self.start_step < 0 or self.ramp_steps < 0:
            raise UserError(f"loss.temporal_negatives: weight, start_step and ramp_steps must be >= 0, got {self}")
        if not 0 < self.min_shift <= self.max_shift:
            raise UserError(f"loss.temporal_negatives: need 0 < min_shift <= max_shift, got {self.min_shift}, "
                            f"{self.max_shift}")

    @property
    def shifts(self) -> tuple[float, float]:
        return (self.min_shift, self.max_shift)

    def weight_at(self, step: int) -> float:
        """w(step): 0 for step < start_step; ``weight * min(1, (step - start_step + 1) / ramp_steps)`` after
        (``weight`` at once without a ramp). ``step``: the trainer's global step of the batch (1 = first)."""
        if step < self.start_step:
            return 0.0
        if self.ramp_steps <= 0:
            return self.weight
        return self.weight * min(1.0, (step - self.start_step + 1) / self.ramp_steps)

    @classmethod
    def from_config(cls, cfg: Mapping) -> "TemporalNegatives | None":
        """From the config's ``loss.temporal_negatives`` (absent, null or weight 0: None). Unknown keys
        are a user mistake."""
        given = (cfg.get("loss") or {}).get("temporal_negatives")
        if not given:
            return None
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - names)
        if unknown:
            raise UserError(f"loss.temporal_negatives.{unknown[0]}: not an option; it takes {', '.join(sorted(names))}")
        tn = cls(**{k: (int(v) if k in ("start_step", "ramp_steps") else float(v)) for k, v in given.items()})
        return tn if tn.weight > 0 else None

    def row_weights(self, out: ModelOutputs, step: int) -> torch.Tensor | None:
        """Per-clip weights ``[B]`` of the shifted audio as a negative at ``step``: w(step) where the clip has
        a shifted window (``out.shift != 0``), else 0; None when w(step) = 0 or no shifted audio came."""
        w = self.weight_at(step)
        if w <= 0 or out.audio_shifted is None:
            return None
        if out.shift is None:
            return torch.full((out.audio.shape[0],), w, device=out.audio.device)
        return (out.shift.to(out.audio.device) != 0).to(out.audio.dtype) * w
