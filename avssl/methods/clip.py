"""CLIP-style audio-visual pretraining (Radford et al., ICML 2021, with audio for text): symmetric
in-batch cross-modal InfoNCE over the global batch, no memory banks, a learnable temperature.

``method: clip``. For the global batch (every rank's clips, gathered with gradient), unit embeddings
v_i, a_i and the logit scale s = exp(t):

    L = 1/2 [ mean_i -log softmax_j(s <v_i, a_j>)[i]  +  mean_i -log softmax_j(s <a_i, v_j>)[i] ]

where the rows j != i of the same video id as i (several clips of one video) are left out of the
softmax (`avssl.losses.in_batch_cross_logits` + `info_nce_loss`). Temperature: learnable as in CLIP,
t starts at log(1 / loss.temperature) and s = exp(t) is clamped to [1, clip.max_logit_scale] (CLIP:
100) in the forward pass; ``clip.learn_temperature: false`` keeps s = 1 / loss.temperature fixed.
The scale is trained with the model (its own optimiser group, no weight decay; its gradient is
averaged over ranks like the model's) and saved in the checkpoint's ``criterion`` entry.

Config: ``loss.dim``, ``loss.temperature`` (the initial T), the added terms (``loss.localization_*``,
`avssl.methods.terms`); section ``clip`` (optional): ``learn_temperature``, ``max_logit_scale``.
The ``loss`` keys of the bank methods (num_negatives, momentum, variant, in_batch) are not used.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avssl.losses.nce import info_nce_loss
from avssl.losses.scores import append_weighted_negatives, in_batch_cross_logits
from avssl.methods.base import Method, ModelOutputs, method_options
from avssl.methods.terms import TemporalNegatives, terms_from_config

__all__ = ["CLIPObjective", "CLIPMethod"]


class CLIPObjective(nn.Module):
    """The symmetric in-batch InfoNCE above, with its logit scale (``log_scale``: a parameter when
    learned, else a buffer). ``forward(video_emb, audio_emb, ids) -> (loss, stats)``."""

    def __init__(self, dim: int, temperature: float = 0.07, learn_temperature: bool = True,
                 max_logit_scale: float = 100.0) -> None:
        super().__init__()
        if temperature <= 0 or max_logit_scale < 1:
            raise ValueError(f"need temperature > 0 and max_logit_scale >= 1, got {temperature}, {max_logit_scale}")
        self.dim = int(dim)
        self.max_log_scale = math.log(float(max_logit_scale))
        self.learn_temperature = bool(learn_temperature)
        self.temperature = float(temperature)
        start = torch.tensor(math.log(1.0 / temperature))
        if learn_temperature:
            self.log_scale = nn.Parameter(start)
        else:
            self.register_buffer("log_scale", start)

    @property
    def logit_scale(self) -> torch.Tensor:
        """s = exp(t), t clamped to [0, log max_logit_scale] (gradient-free outside it, as CLIP's clamp)."""
        return self.log_scale.clamp(0.0, self.max_log_scale).exp()

    def forward(self, video_emb: torch.Tensor, audio_emb: torch.Tensor, ids: torch.Tensor,
                hard_audio: torch.Tensor | None = None, hard_weights: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, dict[str, Any]]:
        """``hard_audio`` [B, D] / ``hard_weights`` [B]: each clip's audio shifted in time, one more
        negative of its video in the v2a softmax, counted w_i times (temporal negatives)."""
        if video_emb.ndim != 2 or video_emb.shape != audio_emb.shape or video_emb.shape[1] != self.dim:
            raise ValueError(f"expected video and audio embeddings [B, {self.dim}], got "
                             f"{tuple(video_emb.shape)} and {tuple(audio_emb.shape)}")
        v, a = F.normalize(video_emb, dim=1), F.normalize(audio_emb, dim=1)
        if self.learn_temperature:
            scale = self.logit_scale
            vq = v * scale
        else:  # v / T, as the bank methods scale their logits (same numbers as AVID's in-batch term)
            scale = torch.tensor(1.0 / self.temperature, device=v.device)
            vq = v / self.temperature
        terms = in_batch_cross_logits(vq, a, ids.long())
        stats: dict[str, Any] = {}
        losses = {}
        for name, (pos, neg) in terms.items():
            if name == "v2a" and hard_audio is not None and hard_weights is not None:
                h = (vq * F.normalize(hard_audio, dim=1)).sum(1)  # <v_i, a'_i> x scale
                losses[name] = info_nce_loss(pos, append_weighted_negatives(neg, h, hard_weights.to(h.dtype)))
                stats["hard/v2a_cos"] = torch.where(hard_weights > 0, h, torch.nan).detach().nanmean() / scale
                stats["hard/v2a_weight"] = hard_weights.detach().max()
            else:
                losses[name] = info_nce_loss(pos, neg)
            stats[f"loss/{name}"] = losses[name].detach()
            stats[f"sim/{name}_pos"] = (pos / scale).detach().mean()
            # masked (same-video) entries are -inf: left out of the mean
            stats[f"sim/{name}_neg"] = (torch.where(torch.isfinite(neg), neg, torch.nan) / scale).detach().nanmean()
        total = (losses["v2a"] + losses["a2v"]) / 2
        stats["loss/total"] = total.detach()
        stats["temperature"] = (1.0 / scale).detach()
        return total, stats


class CLIPMethod(Method):
    """CLIP-style: `CLIPObjective` from ``loss.dim`` / ``loss.temperature`` and the ``clip`` section."""

    name = "clip"
    OPTIONS = {"learn_temperature": True, "max_logit_scale": 100.0}

    @classmethod
    def from_config(cls, cfg, num_items: int, fingerprint: str | None) -> "CLIPMethod":
        o = method_options(cfg, "clip", cls.OPTIONS)
        objective = CLIPObjective(cfg["loss"]["dim"], temperature=float(cfg["loss"]["temperature"]),
                                  learn_temperature=bool(o["learn_temperature"]),
                                  max_logit_scale=float(o["max_logit_scale"]))
        return cls(objective, terms_from_config(cfg), TemporalNegatives.from_config(cfg))

    def objective(self, out: ModelOutputs, ids: torch.Tensor, generator: torch.Generator | None = None):
        return self.criterion(out.video, out.audio, ids, hard_audio=out.audio_shifted,
                              hard_weights=self.hard_weights(out))
