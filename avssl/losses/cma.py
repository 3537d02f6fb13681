"""CMA criterion: AVID's cross-modal instance discrimination plus within-modal
discrimination of the cross-modally agreed positive sets (Morgado et al., CVPR 2021).

Terms (q_v, q_a: normalised embeddings of clip i; V, A: memory banks; P(i): the k
agreed positives of i; Neg(i): K ids drawn uniformly from all slots except i and P(i)):
  * xmodal_inst (reference 0.5): v2a with positive A[i] vs A[Neg(i)], a2v likewise.
  * wmodal_pos  (reference 0.5): v2v with positives V[P(i)] (all k, mean over them in
    the NCE positive term) vs the first ``num_negatives_within`` (reference 64) of
    V[Neg(i)]; a2a likewise.
  * wmodal_inst (option, 0): v2v with V[i] vs V[Neg(i)]; a2a likewise.
  * xmodal_pos  (option, 0): v2a with A[P(i)] vs A[Neg(i)]; a2v likewise.
Each term pair is averaged, then weighted by its coefficient. Negatives are never
drawn from the positive set (nor the instance itself).
"""

from __future__ import annotations

from typing import Any

import torch

from avssl.cma.positives import MODES, find_positives
from avssl.losses.avid import AVIDCriterion, bank_scores

__all__ = ["CMACriterion"]


class CMACriterion(AVIDCriterion):
    """Cross-Modal Agreement objective.

    Args (beyond AVIDCriterion's):
        num_negatives_within: negatives of the within-modal positive term (reference 64).
        xmodal_inst, wmodal_pos, wmodal_inst, xmodal_pos: term coefficients
            (reference 0.5, 0.5, 0, 0).
        num_positives: k of the positive sets (reference 32), used by
            ``refresh_positives``; ``set_positives`` accepts any k.
        mode: agreement mode used by ``refresh_positives`` (reference 'consensus').

    State: AVID's (banks, log_partition) plus the positive sets (extra state).
    """

    def __init__(self, num_items: int, dim: int = 128, num_negatives: int = 1024,
                 num_negatives_within: int = 64, temperature: float = 0.07, momentum: float = 0.5,
                 loss: str = "nce", index_fingerprint: str | None = None,
                 xmodal_inst: float = 0.5, wmodal_pos: float = 0.5, wmodal_inst: float = 0.0,
                 xmodal_pos: float = 0.0, num_positives: int = 32, mode: str = "consensus",
                 in_batch: bool = False) -> None:
        super().__init__(num_items, dim, num_negatives, temperature, momentum, variant="cross",
                         loss=loss, index_fingerprint=index_fingerprint, in_batch=in_batch)
        if not 1 <= num_negatives_within <= num_negatives:
            raise ValueError(f"num_negatives_within must be in [1, {num_negatives}], "
                             f"got {num_negatives_within}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        coeffs = {"xmodal_inst": xmodal_inst, "wmodal_pos": wmodal_pos,
                  "wmodal_inst": wmodal_inst, "xmodal_pos": xmodal_pos}
        if any(c < 0 for c in coeffs.values()) or sum(coeffs.values()) <= 0:
            raise ValueError(f"coefficients must be >= 0 with a positive sum, got {coeffs}")
        self.coeffs = {name: float(c) for name, c in coeffs.items()}
        self.num_negatives_within = int(num_negatives_within)
        self.num_positives = int(num_positives)
        self.mode = mode
        self.positives: torch.Tensor | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_avid(cls, avid: AVIDCriterion, **kwargs: Any) -> "CMACriterion":
        """A CMA criterion starting from an AVID criterion's banks and partition constant
        (same num_items, dim, temperature, momentum, fingerprint unless overridden)."""
        kw = dict(num_items=avid.num_items, dim=avid.dim, num_negatives=avid.num_negatives,
                  temperature=avid.temperature, momentum=avid.video_bank.momentum,
                  loss=avid.loss_type, index_fingerprint=avid.index_fingerprint, in_batch=avid.in_batch)
        kw.update(kwargs)
        cma = cls(**kw).to(avid.video_bank.bank.device)
        cma.load_avid_state(avid.state_dict())
        return cma

    def load_avid_state(self, avid_state: dict[str, torch.Tensor]) -> None:
        """Load banks + partition constant from an ``AVIDCriterion.state_dict()``.
        Raises MemoryBankMismatchError if the banks were made on another dataset index
        (fingerprint) or have another size."""
        needed = ["video_bank.bank", "audio_bank.bank", "log_partition"]
        missing = [key for key in needed if key not in avid_state]
        if missing:
            raise KeyError(f"not an AVID criterion state: missing {missing}; "
                           f"keys present: {sorted(avid_state)[:10]}")
        result = self.load_state_dict(avid_state, strict=False)
        unexpected = list(result.unexpected_keys)
        if unexpected:
            raise KeyError(f"unexpected keys in AVID criterion state: {unexpected}")

    def get_extra_state(self) -> dict[str, Any]:
        return {"positives": None if self.positives is None else self.positives.cpu()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("positives") is not None:
            self.set_positives(state["positives"])

    # ------------------------------------------------------------------ positives
    def set_positives(self, positives: torch.Tensor) -> None:
        """Install positive sets [N, k] (row i: ids agreeing with instance i, not i)."""
        if positives.ndim != 2 or positives.shape[0] != self.num_items:
            raise ValueError(f"positives must be [{self.num_items}, k], got {tuple(positives.shape)}")
        k = positives.shape[1]
        if k < 1 or self.num_items - 1 - k < 1:
            raise ValueError(f"k={k} leaves no slot to draw negatives from ({self.num_items} items)")
        positives = positives.long()
        if int(positives.min()) < 0 or int(positives.max()) >= self.num_items:
            raise IndexError(f"positive ids out of range [0, {self.num_items})")
        rows = torch.arange(self.num_items, device=positives.device).unsqueeze(1)
        if bool((positives == rows).any()):
            raise ValueError("a positive set contains its own instance")
        self.positives = positives.to(self.video_bank.bank.device)

    @torch.no_grad()
    def refresh_positives(self, chunk_size: int | None = None, device=None, progress: bool = False,
                          **kwargs: Any) -> torch.Tensor:
        """Recompute positive sets from the current banks (collective when distributed)."""
        pos = find_positives(self.video_bank, self.audio_bank, k=self.num_positives, mode=self.mode,
                             chunk_size=chunk_size, device=device, progress=progress, **kwargs)
        self.set_positives(pos)
        return pos

    # ------------------------------------------------------------------ forward
    def forward(self, video_emb: torch.Tensor, audio_emb: torch.Tensor, indices: torch.Tensor,
                negatives: torch.Tensor | None = None, generator: torch.Generator | None = None,
                ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Loss and detached stats; ``negatives`` [B, K] optional (must avoid i and P(i))."""
        if self.positives is None:
            raise RuntimeError("CMACriterion needs positive sets: call set_positives() or "
                               "refresh_positives() first")
        v, a, idx = self._prepare(video_emb, audio_emb, indices)
        pos_ids = self.positives[idx]  # [B, k]
        neg_ids = self._draw_negatives(idx, negatives, generator, exclude=pos_ids)
        c = self.coeffs
        # self, positives, negatives: one gather per bank, one product per (query, bank) pair
        v_rows, a_rows, (_, p0, n0, _) = self._gather_rows(idx.unsqueeze(1), pos_ids, neg_ids)
        vq, aq = v / self.temperature, a / self.temperature  # products are logits cos / T
        within = n0 + self.num_negatives_within
        terms = {}
        if (c["xmodal_inst"] > 0 and not self.in_batch) or c["xmodal_pos"] > 0:
            v2a, a2v = bank_scores(vq, a_rows), bank_scores(aq, v_rows)
        if c["wmodal_pos"] > 0 or c["wmodal_inst"] > 0:
            v2v, a2a = bank_scores(vq, v_rows), bank_scores(aq, a_rows)
        if c["xmodal_inst"] > 0 and self.in_batch:  # live positives + batch negatives (see AVIDCriterion)
            live = self.in_batch_cross_terms(vq, a, idx)
            terms["xmodal_inst/v2a"], terms["xmodal_inst/a2v"] = live["v2a"], live["a2v"]
        elif c["xmodal_inst"] > 0:
            terms["xmodal_inst/v2a"] = (v2a[:, 0], v2a[:, n0:])
            terms["xmodal_inst/a2v"] = (a2v[:, 0], a2v[:, n0:])
        if c["wmodal_pos"] > 0:
            terms["wmodal_pos/v2v"] = (v2v[:, p0:n0], v2v[:, n0:within])
            terms["wmodal_pos/a2a"] = (a2a[:, p0:n0], a2a[:, n0:within])
        if c["wmodal_inst"] > 0:
            terms["wmodal_inst/v2v"] = (v2v[:, 0], v2v[:, n0:])
            terms["wmodal_inst/a2a"] = (a2a[:, 0], a2a[:, n0:])
        if c["xmodal_pos"] > 0:
            terms["xmodal_pos/v2a"] = (v2a[:, p0:n0], v2a[:, n0:])
            terms["xmodal_pos/a2v"] = (a2v[:, p0:n0], a2v[:, n0:])
        losses, stats = self._compute_terms(terms)
        total = v.new_zeros(())
        for group, weight in c.items():
            if weight <= 0:
                continue
            pair = [loss for name, loss in losses.items() if name.startswith(group + "/")]
            group_loss = (pair[0] + pair[1]) / 2
            stats[f"loss/{group}"] = group_loss.detach()
            total = total + weight * group_loss
        stats["loss/total"] = total.detach()
        self.update_banks(v, a, idx)
        return total, stats
