"""Frozen copies of the objective and video-jitter code as they were before the GPU
performance pass (commit 5d6bd2a), the baseline that benchmarks/gpu.py measures side by
side with the current code. Benchmark-only: nothing in the library imports this.
"""
from typing import Any

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from avssl.utils.distributed import all_gather_varlen, all_reduce_mean
from avssl.methods.avid import AVIDCriterion
from avssl.losses.nce import estimate_partition, info_nce_loss, nce_loss
from avssl.memory.bank import MemoryBank, average_duplicates
from avssl.transforms.video import VideoAugment


def baseline_bank_scores(query: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return torch.bmm(rows, query.unsqueeze(2)).squeeze(2)


class BaselineBank(MemoryBank):
    """MemoryBank with the pre-change index checks (host syncs), sort+searchsorted negative
    draw and unique-id bank update."""

    def _check_indices(self, indices: torch.Tensor) -> torch.Tensor:
        if indices.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {tuple(indices.shape)}")
        if indices.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"indices must be an integer tensor, got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_items):
            raise IndexError(f"indices out of range [0, {self.num_items}): "
                             f"min {int(indices.min())}, max {int(indices.max())}")
        return indices.long().to(self.bank.device)

    @torch.no_grad()
    def update(self, indices: torch.Tensor, embeddings: torch.Tensor) -> None:
        """Momentum update of the slots ``indices`` [B] with ``embeddings`` [B, D].

        The new embeddings are L2-normalised first. With torch.distributed initialised
        the (index, embedding) pairs of all ranks are gathered (batch sizes may differ)
        so every rank applies the identical update. Several rows with the same id (many
        clips of one video, padded samplers) are averaged before the momentum step:
        ``slot <- normalize(m * slot + (1 - m) * mean(new rows of that id))``.
        """
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"embeddings must be [B, {self.dim}], got {tuple(embeddings.shape)}")
        if embeddings.shape[0] != indices.shape[0]:
            raise ValueError(f"{indices.shape[0]} indices for {embeddings.shape[0]} embeddings")
        indices = self._check_indices(indices)
        new = F.normalize(embeddings.detach().to(self.bank.device, self.bank.dtype), dim=1)
        all_ids = all_gather_varlen(indices)
        all_new = all_gather_varlen(new)
        if all_ids.numel() == 0:
            return
        uniq, mean_new = average_duplicates(all_ids, all_new)
        old = self.bank.index_select(0, uniq)
        updated = F.normalize(self.momentum * old + (1.0 - self.momentum) * mean_new, dim=1)
        self.bank.index_copy_(0, uniq, updated)  # ids are unique here: deterministic

    # ------------------------------------------------------------------ negatives

    def sample_negatives(self, indices: torch.Tensor, k: int, generator: torch.Generator | None = None,
                         exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Draw ``k`` slot ids per row, uniformly (with replacement) over all slots except
        ``indices[b]`` and any id in ``exclude[b]`` ([B, P], duplicates allowed).

        Exact and vectorised: with F_b the sorted distinct forbidden ids of row b, draw
        r uniform in [0, N - |F_b|) and map it to the r-th allowed id,
        ``r + #{j : F_b[j] - j <= r}`` (a searchsorted over ``F_b[j] - j``).
        Returns LongTensor [B, k] on the bank's device.
        """
        indices = self._check_indices(indices)
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        dev = self.bank.device
        forbidden = indices.unsqueeze(1)
        if exclude is not None:
            if exclude.ndim != 2 or exclude.shape[0] != indices.shape[0]:
                raise ValueError(f"exclude must be [B, P] with B={indices.shape[0]}, "
                                 f"got {tuple(exclude.shape)}")
            exclude = exclude.long().to(dev)
            if exclude.numel() and (int(exclude.min()) < 0 or int(exclude.max()) >= self.num_items):
                raise IndexError(f"exclude ids out of range [0, {self.num_items})")
            forbidden = torch.cat([forbidden, exclude], 1)
        big = 2 * self.num_items + forbidden.shape[1]  # sentinel beyond any draw
        srt = torch.sort(forbidden, dim=1).values
        dup = torch.zeros_like(srt, dtype=torch.bool)
        dup[:, 1:] = srt[:, 1:] == srt[:, :-1]
        srt = torch.sort(srt.masked_fill(dup, big), dim=1).values
        num_forbidden = (~dup).sum(1)
        allowed = self.num_items - num_forbidden  # [B]
        if int(allowed.min()) < 1:
            raise ValueError("a row forbids every slot: nothing left to sample")
        u = torch.rand((indices.shape[0], k), generator=generator, dtype=torch.float64,
                       device=generator.device if generator is not None else dev).to(dev)
        r = (u * allowed.unsqueeze(1)).floor().long()
        r = torch.minimum(r, (allowed - 1).unsqueeze(1))  # guard u*allowed rounding to allowed
        ref = srt - torch.arange(srt.shape[1], device=dev).unsqueeze(0)
        ref = ref.masked_fill(srt >= big, big)
        shift = torch.searchsorted(ref.contiguous(), r.contiguous(), right=True)
        return r + shift


class BaselineAVIDCriterion(AVIDCriterion):
    """AVIDCriterion on BaselineBank, reading log Z from the device every step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("video_bank", "audio_bank"):
            old = getattr(self, name)
            new = BaselineBank(old.num_items, old.dim, old.momentum, old.index_fingerprint)
            new.bank.copy_(old.bank)
            setattr(self, name, new)

    @torch.no_grad()
    def _ensure_partition(self, neg_logits):
        if self.loss_type != "nce" or not torch.isnan(self.log_partition):
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

    def _compute_terms(self, terms: dict[str, tuple[torch.Tensor, torch.Tensor]]
                       ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """terms: name -> (pos cosines, neg cosines). Returns per-term losses and stats."""
        self._ensure_partition([neg / self.temperature for _, neg in terms.values()])
        losses, stats = {}, {}
        for name, (pos, neg) in terms.items():
            losses[name] = self.pair_loss(pos, neg)
            stats[f"loss/{name}"] = losses[name].detach()
            stats[f"sim/{name}_pos"] = pos.detach().mean()
            stats[f"sim/{name}_neg"] = neg.detach().mean()
        if self.loss_type == "nce":
            stats["partition"] = self.log_partition.detach().exp()
        return losses, stats

    @torch.no_grad()
    def update_banks(self, video_emb: torch.Tensor, audio_emb: torch.Tensor,
                     indices: torch.Tensor) -> None:
        """Momentum update of both banks (collective when distributed)."""
        self.video_bank.update(indices, video_emb.detach())
        self.audio_bank.update(indices, audio_emb.detach())


    def forward(self, video_emb: torch.Tensor, audio_emb: torch.Tensor, indices: torch.Tensor,
                negatives: torch.Tensor | None = None, generator: torch.Generator | None = None,
                ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Loss for a batch and a dict of detached statistics.

        Args:
            video_emb, audio_emb: [B, D] projection outputs (normalised here).
            indices: [B] manifest ids of the clips' videos.
            negatives: optional [B, K] negative ids (else drawn uniformly, excluding self).
            generator: RNG for the negative draw.
        """
        v, a, idx = self._prepare(video_emb, audio_emb, indices)
        neg_ids = self._draw_negatives(idx, negatives, generator)
        with torch.no_grad():
            v_pos, a_pos = self.video_bank(idx), self.audio_bank(idx)
            v_neg, a_neg = self.video_bank(neg_ids), self.audio_bank(neg_ids)
        terms = {}
        if self.weights["cross"] > 0:
            terms["v2a"] = ((v * a_pos).sum(1), baseline_bank_scores(v, a_neg))
            terms["a2v"] = ((a * v_pos).sum(1), baseline_bank_scores(a, v_neg))
        if self.weights["self"] > 0:
            terms["v2v"] = ((v * v_pos).sum(1), baseline_bank_scores(v, v_neg))
            terms["a2a"] = ((a * a_pos).sum(1), baseline_bank_scores(a, a_neg))
        losses, stats = self._compute_terms(terms)
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


class BaselineVideoAugment(VideoAugment):
    """VideoAugment with the per-clip loop over torchvision's colour ops."""

    def _color_jitter(self, x: torch.Tensor, generator) -> torch.Tensor:
        bri, con, sat, hue = self.jitter
        b = x.shape[0]
        u = torch.rand(b, 4, generator=generator)
        factors = [1 + bri * (2 * u[:, 0] - 1), 1 + con * (2 * u[:, 1] - 1), 1 + sat * (2 * u[:, 2] - 1),
                   hue * (2 * u[:, 3] - 1)]
        orders = torch.argsort(torch.rand(b, 4, generator=generator), 1)
        ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
        active = (bri > 0, con > 0, sat > 0, hue > 0)
        clips = []
        for i in range(b):  # per-clip factors; each op runs on the clip's [T, 3, h, w] stack at once
            clip = x[i]
            for k in orders[i].tolist():
                if active[k]:
                    clip = ops[k](clip, float(factors[k][i]))
            clips.append(clip)
        return torch.stack(clips).clamp_(0, 1)
