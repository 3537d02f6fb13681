"""AVID (Morgado et al., CVPR 2021): audio-visual instance discrimination against two memory banks.

``method: avid``. Config (``loss`` section): dim, loss (nce | infonce), variant (cross | self |
joint), joint_weights (cross, self: the joint variant's weights), num_negatives, temperature,
momentum, in_batch; plus the added terms of `avssl.methods.terms` (localization_weight) and its
temporal negatives (``loss.temporal_negatives``: each clip's own audio shifted in time as one more
negative of its video in the v2a term, bank or in-batch).

Terms (q: the normalised embedding of one modality of clip i, banks V and A):
  * cross-modal (reference): v2a = q_video vs A[i] (positive) and A[negatives];
    a2v = q_audio vs V[i] and V[negatives].
  * self-modal: v2v = q_video vs V[i], V[negatives]; a2a likewise.
  * joint: weighted sum of both (reference weights 1:1, normalised to 0.5/0.5).
Each pair of terms is averaged ((v2a + a2v) / 2). One set of negative ids per row is
drawn uniformly over all slots except the row's own id and shared by all terms, as in
the reference. The banks are updated after the loss is computed, with detached
embeddings, so no gradient flows through the bank.

``in_batch=True`` (InfoNCE only) makes the cross-modal terms in-batch: the positive of
q_video(i) is the *current* audio embedding a(i) of the same clip (gradient into both
encoders), not the bank row A[i] written one epoch ago, and the negatives are the other clips
of the batch (every rank's, gathered with gradient):

    v2a_i = -log exp(v_i.a_i/T) / sum_{j: j = i or id_j != id_i} exp(v_i.a_j/T)

(a2v symmetric). The banks are still updated every step and still serve the self-modal
terms, CMA's within-modal terms and its positive-set discovery. Why the CPU preset uses it: a bank
slot is rewritten once per epoch, so on a small collection (the embedded world: 342 slots, 10 steps
an epoch) bank positives are stale targets, and bank negatives next to live positives drove every
embedding together (cosines 0.98 within 50 steps, benchmarks/pretrain_learning.md, world v2). That
mix is what collapsed, not the paper's recipe: NCE with bank positives and negatives (nce,
in_batch=False, momentum 0.5, T 0.07) does not collapse on the current preset and learns
(held-out a2v R@1 0.094 / 0.043 on seeds 0 / 1, issue #18; ``experiment=avid_reference_cpu``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avssl.losses.nce import estimate_partition, info_nce_loss, nce_extra_negatives_loss, nce_loss
from avssl.losses.scores import append_weighted_negatives, bank_scores, in_batch_cross_logits
from avssl.memory.bank import MemoryBank, update_banks
from avssl.methods.base import Method, ModelOutputs
from avssl.methods.terms import TemporalNegatives, terms_from_config
from avssl.utils.distributed import all_reduce_mean

__all__ = ["AVIDCriterion", "AVIDMethod", "VARIANTS", "LOSSES", "bank_scores"]

VARIANTS = ("cross", "self", "joint")
LOSSES = ("nce", "infonce")


class AVIDCriterion(nn.Module):
    """Memory-bank NCE (or InfoNCE) objective of AVID.

    Args:
        num_items: number of training videos (bank slots, ids 0..N-1).
        dim: embedding dimension (reference 128).
        num_negatives: negatives per query (reference 1024).
        temperature: T in s = cos / T (reference 0.07).
        momentum: memory momentum (reference 0.5).
        variant: 'cross' (reference) | 'self' | 'joint'.
        loss: 'nce' (reference, binary NCE with frozen partition constant) | 'infonce'.
        index_fingerprint: fingerprint of the dataset index; stored in both banks.
        joint_weights: (cross, self) weights for variant='joint' (default 0.5, 0.5).

    State: ``video_bank.bank``, ``audio_bank.bank``, ``log_partition`` (NaN until the
    first NCE batch), fingerprints.
    """

    def __init__(self, num_items: int, dim: int = 128, num_negatives: int = 1024,
                 temperature: float = 0.07, momentum: float = 0.5, variant: str = "cross",
                 loss: str = "nce", index_fingerprint: str | None = None,
                 joint_weights: tuple[float, float] = (0.5, 0.5), in_batch: bool = False) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if in_batch and loss != "infonce":
            # NCE's noise model is K uniform bank draws with a frozen Z; batch rows are neither
            raise ValueError("in_batch=True needs loss='infonce'")
        self.in_batch = bool(in_batch)
        if num_negatives < 1 or num_negatives > num_items - 1:
            raise ValueError(f"num_negatives must be in [1, {num_items - 1}], got {num_negatives}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.num_items = int(num_items)
        self.dim = int(dim)
        self.num_negatives = int(num_negatives)
        self.temperature = float(temperature)
        self.variant = variant
        self.loss_type = loss
        if variant == "cross":
            self.weights = {"cross": 1.0, "self": 0.0}
        elif variant == "self":
            self.weights = {"cross": 0.0, "self": 1.0}
        else:
            self.weights = {"cross": float(joint_weights[0]), "self": float(joint_weights[1])}
        # Different seeds: the two banks must not start identical (v2a would be v2v).
        self.video_bank = MemoryBank(num_items, dim, momentum, index_fingerprint, seed=0)
        self.audio_bank = MemoryBank(num_items, dim, momentum, index_fingerprint, seed=1)
        self.register_buffer("log_partition", torch.tensor(float("nan"), dtype=torch.float64))

    # ------------------------------------------------------------------ helpers
    @property
    def partition(self) -> float | None:
        """Z (linear) once estimated, else None."""
        v = float(self.log_partition)
        return None if math.isnan(v) else math.exp(v)

    @property
    def index_fingerprint(self) -> str | None:
        return self.video_bank.index_fingerprint

    def _prepare(self, video_emb: torch.Tensor, audio_emb: torch.Tensor,
                 indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if video_emb.ndim != 2 or video_emb.shape != audio_emb.shape or video_emb.shape[1] != self.dim:
            raise ValueError(f"expected video and audio embeddings [B, {self.dim}], got "
                             f"{tuple(video_emb.shape)} and {tuple(audio_emb.shape)}")
        if indices.ndim != 1 or indices.shape[0] != video_emb.shape[0]:
            raise ValueError(f"indices must be [B={video_emb.shape[0]}], got {tuple(indices.shape)}")
        dev = self.video_bank.bank.device
        return (F.normalize(video_emb, dim=1), F.normalize(audio_emb, dim=1),
                indices.long().to(dev))

    def _draw_negatives(self, indices: torch.Tensor, negatives: torch.Tensor | None,
                        generator: torch.Generator | None, exclude: torch.Tensor | None = None,
                        ) -> torch.Tensor:
        if negatives is None:
            return self.video_bank.sample_negatives(indices, self.num_negatives, generator, exclude)
        if negatives.shape != (indices.shape[0], self.num_negatives):
            raise ValueError(f"negatives must be [B, {self.num_negatives}], got {tuple(negatives.shape)}")
        return negatives.long().to(indices.device)

    def _partition_frozen(self) -> bool:
        """Whether log Z is already set, asked of the buffer only when it changed (a new
        tensor after ``.to()``, or an in-place write such as ``load_state_dict``), so the
        training step does not sync with the device every step to read it."""
        buf = self.log_partition
        key = (id(buf), buf._version, buf.device)
        if getattr(self, "_partition_cache", (None, None))[0] != key:
            self._partition_cache = (key, not bool(torch.isnan(buf)))
        return self._partition_cache[1]

    @torch.no_grad()
    def _ensure_partition(self, neg_logits: list[torch.Tensor]) -> None:
        """Estimate Z on the first batch from all negative logits of the active terms,
        averaged over ranks in linear space (as the reference), then keep it frozen."""
        if self.loss_type != "nce" or self._partition_frozen():
            return
        local = estimate_partition(torch.cat([n.reshape(-1) for n in neg_logits]), self.num_items)
        z = all_reduce_mean(local.exp())
        self.log_partition.copy_(z.log().to(self.log_partition.device))

    def pair_loss(self, pos_cos: torch.Tensor, neg_cos: torch.Tensor) -> torch.Tensor:
        """Loss of one term from cosines (positives [B] or [B, P], negatives [B, K])."""
        if self.loss_type == "nce":
            return nce_loss(pos_cos / self.temperature, neg_cos / self.temperature,
                            self.log_partition.to(pos_cos.device), self.num_items)
        return info_nce_loss(pos_cos, neg_cos, self.temperature)

    def _compute_terms(self, terms: dict[str, tuple[torch.Tensor, torch.Tensor]],
                       hard: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                       ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """terms: name -> (pos logits, neg logits), logits = cos / T. ``hard``: name -> (extra negative
        logits [B], their weights [B]) added to that term (temporal negatives: `append_weighted_negatives`
        for InfoNCE, `nce_extra_negatives_loss` for NCE). Returns per-term losses and stats
        (similarities reported as cosines)."""
        hard = hard or {}
        if self.loss_type == "nce" and not self._partition_frozen():
            self._ensure_partition([neg for _, neg in terms.values()])
        losses, stats = {}, {}
        for name, (pos, neg) in terms.items():
            extra = hard.get(name)
            if self.loss_type == "nce":
                losses[name] = nce_loss(pos, neg, self.log_partition, self.num_items)
                if extra is not None:
                    losses[name] = losses[name] + nce_extra_negatives_loss(
                        extra[0], extra[1], self.log_partition, self.num_items, neg.shape[1])
            else:
                losses[name] = info_nce_loss(pos, neg if extra is None else append_weighted_negatives(neg, *extra))
            stats[f"loss/{name}"] = losses[name].detach()
            stats[f"sim/{name}_pos"] = pos.detach().mean() * self.temperature
            # masked in-batch entries are -inf: left out of the mean (nanmean: no host sync)
            stats[f"sim/{name}_neg"] = torch.where(torch.isfinite(neg), neg, torch.nan).detach().nanmean() * self.temperature
            if extra is not None:  # the temporal negatives' cosines (rows that have one) and their weight
                used = extra[1] > 0
                stats[f"hard/{name}_cos"] = torch.where(used, extra[0], torch.nan).detach().nanmean() * self.temperature
                stats[f"hard/{name}_weight"] = extra[1].detach().max()
        if self.loss_type == "nce":
            stats["partition"] = self.log_partition.detach().exp()
        return losses, stats

    def hard_terms(self, name: str, vq: torch.Tensor, hard_audio: torch.Tensor | None,
                   hard_weights: torch.Tensor | None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{name: (<vq_i, a'_i> [B], weights [B])}`` for `_compute_terms`: each video query's own
        shifted audio ``a'`` as an extra negative (``vq`` = v / T); {} when there is none this step."""
        if hard_audio is None or hard_weights is None:
            return {}
        h = F.normalize(hard_audio, dim=1)
        return {name: ((vq * h).sum(1), hard_weights.to(vq.dtype))}

    def _gather_rows(self, *id_blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """One gather per bank for all the id blocks ([B, n_i] each, concatenated along dim 1):
        video rows, audio rows [B, sum n_i, D] and the blocks' start columns."""
        ids = torch.cat(id_blocks, 1)
        starts = [0]
        for block in id_blocks:
            starts.append(starts[-1] + block.shape[1])
        with torch.no_grad():
            return self.video_bank(ids), self.audio_bank(ids), starts

    @torch.no_grad()
    def update_banks(self, video_emb: torch.Tensor, audio_emb: torch.Tensor,
                     indices: torch.Tensor) -> None:
        """Momentum update of both banks (collective when distributed)."""
        update_banks([self.video_bank, self.audio_bank], indices, [video_emb.detach(), audio_emb.detach()])

    @staticmethod
    def in_batch_cross_terms(vq: torch.Tensor, a: torch.Tensor, idx: torch.Tensor
                             ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """v2a / a2v of the in-batch variant: `avssl.losses.in_batch_cross_logits` (``vq`` is v / T)."""
        return in_batch_cross_logits(vq, a, idx)

    # ------------------------------------------------------------------ forward
    def forward(self, video_emb: torch.Tensor, audio_emb: torch.Tensor, indices: torch.Tensor,
                negatives: torch.Tensor | None = None, generator: torch.Generator | None = None,
                hard_audio: torch.Tensor | None = None, hard_weights: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Loss for a batch and a dict of detached statistics.

        Args:
            video_emb, audio_emb: [B, D] projection outputs (normalised here).
            indices: [B] manifest ids of the clips' videos.
            negatives: optional [B, K] negative ids (else drawn uniformly, excluding self).
            generator: RNG for the negative draw.
            hard_audio, hard_weights: [B, D] embeddings of each clip's audio shifted in time and [B]
                weights: one more negative of the v2a term, counted w_i times (temporal negatives).
        """
        v, a, idx = self._prepare(video_emb, audio_emb, indices)
        neg_ids = self._draw_negatives(idx, negatives, generator)
        # positive row first, then the negatives: one gather and one product per direction
        v_rows, a_rows, _ = self._gather_rows(idx.unsqueeze(1), neg_ids)
        vq, aq = v / self.temperature, a / self.temperature  # products are logits cos / T
        terms = {}
        if self.weights["cross"] > 0 and self.in_batch:
            terms.update(self.in_batch_cross_terms(vq, a, idx))
        elif self.weights["cross"] > 0:
            v2a, a2v = bank_scores(vq, a_rows), bank_scores(aq, v_rows)
            terms["v2a"] = (v2a[:, 0], v2a[:, 1:])
            terms["a2v"] = (a2v[:, 0], a2v[:, 1:])
        if self.weights["self"] > 0:
            v2v, a2a = bank_scores(vq, v_rows), bank_scores(aq, a_rows)
            terms["v2v"] = (v2v[:, 0], v2v[:, 1:])
            terms["a2a"] = (a2a[:, 0], a2a[:, 1:])
        hard = self.hard_terms("v2a", vq, hard_audio, hard_weights) if self.weights["cross"] > 0 else {}
        losses, stats = self._compute_terms(terms, hard)
        total = v.new_zeros(())
        if self.weights["cross"] > 0:
            stats["loss/cross"] = ((losses["v2a"] + losses["a2v"]) / 2).detach()
            total = total + self.weights["cross"] * (losses["v2a"] + losses["a2v"]) / 2
        if self.weights["self"] > 0:
            stats["loss/self"] = ((losses["v2v"] + losses["a2a"]) / 2).detach()
            total = total + self.weights["self"] * (losses["v2v"] + losses["a2a"]) / 2
        stats["loss/total"] = total.detach()
        self.update_banks(v, a, idx)
        return total, stats


class AVIDMethod(Method):
    """AVID: `AVIDCriterion` (banks, NCE constant) from the ``loss`` section, plus the added terms."""

    name = "avid"

    @staticmethod
    def criterion_kwargs(cfg, num_items: int, fingerprint: str | None) -> dict[str, Any]:
        """The bank criterion's arguments shared by AVID and CMA (``loss`` section)."""
        lcfg = cfg["loss"]
        return dict(num_items=num_items, dim=lcfg["dim"], num_negatives=min(lcfg["num_negatives"], num_items - 1),
                    temperature=lcfg["temperature"], momentum=lcfg["momentum"], loss=lcfg["loss"],
                    index_fingerprint=fingerprint, in_batch=bool(lcfg["in_batch"]))

    @classmethod
    def from_config(cls, cfg, num_items: int, fingerprint: str | None) -> "AVIDMethod":
        lcfg = cfg["loss"]
        weights = tuple(float(w) for w in lcfg["joint_weights"])
        if len(weights) != 2:
            raise ValueError(f"loss.joint_weights must be [cross, self], got {list(weights)}")
        criterion = AVIDCriterion(variant=lcfg["variant"], joint_weights=weights,
                                  **cls.criterion_kwargs(cfg, num_items, fingerprint))
        return cls(criterion, terms_from_config(cfg), TemporalNegatives.from_config(cfg))

    def objective(self, out: ModelOutputs, ids: torch.Tensor, generator: torch.Generator | None = None):
        return self.criterion(out.video, out.audio, ids, generator=generator, hard_audio=out.audio_shifted,
                              hard_weights=self.hard_weights(out))

