"""CMA (Morgado et al., CVPR 2021): AVID's cross-modal instance discrimination plus within-modal
discrimination of the cross-modally agreed positive sets.

``method: cma``. Config: the ``loss`` section as AVID (its variant and joint_weights aside) and the
``cma`` section (`CMAMethod.OPTIONS`). A fresh run starts from an AVID checkpoint of the same
index (``cma.init_from``: weights, banks, NCE constant); the positive sets are found in the banks
(`avssl.cma.find_positives`) at the first epoch and every ``cma.refresh_every_epochs`` epochs.

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

import time
from pathlib import Path
from typing import Any

import torch

from avssl.cma.positives import MODES, find_positives
from avssl.losses.scores import bank_scores
from avssl.methods.avid import AVIDCriterion, AVIDMethod
from avssl.methods.base import method_options
from avssl.methods.terms import TemporalNegatives, terms_from_config
from avssl.utils.checkpoint import CheckpointManager, load_checkpoint
from avssl.utils.errors import UserError

__all__ = ["CMACriterion", "CMAMethod"]


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
                hard_audio: torch.Tensor | None = None, hard_weights: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Loss and detached stats; ``negatives`` [B, K] optional (must avoid i and P(i)); ``hard_audio`` /
        ``hard_weights``: temporal negatives of the xmodal_inst v2a term (see `AVIDCriterion.forward`)."""
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
        hard = self.hard_terms("xmodal_inst/v2a", vq, hard_audio, hard_weights) if c["xmodal_inst"] > 0 else {}
        losses, stats = self._compute_terms(terms, hard)
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


class CMAMethod(AVIDMethod):
    """CMA: `CMACriterion` from the ``loss`` and ``cma`` sections; starts from an AVID checkpoint and
    recomputes the positive sets at epoch starts."""

    name = "cma"
    OPTIONS = {"init_from": None, "num_positives": 32, "num_negatives_within": 64, "mode": "consensus",
               "xmodal_inst": 0.5, "wmodal_pos": 0.5, "wmodal_inst": 0.0, "xmodal_pos": 0.0,
               "refresh_every_epochs": 5}

    def __init__(self, criterion: CMACriterion, terms=(), *, init_from=None, refresh_every_epochs: int = 5,
                 temporal=None) -> None:
        super().__init__(criterion, terms, temporal)
        self.init_from = init_from
        self.refresh_every_epochs = int(refresh_every_epochs or 0)

    @classmethod
    def from_config(cls, cfg, num_items: int, fingerprint: str | None) -> "CMAMethod":
        c = method_options(cfg, "cma", cls.OPTIONS)
        # within-modal negatives must leave room for the positive set and self
        within = min(c["num_negatives_within"], num_items - 1 - c["num_positives"])
        criterion = CMACriterion(
            num_negatives_within=within, xmodal_inst=c["xmodal_inst"], wmodal_pos=c["wmodal_pos"],
            wmodal_inst=c["wmodal_inst"], xmodal_pos=c["xmodal_pos"], num_positives=c["num_positives"],
            mode=c["mode"], **cls.criterion_kwargs(cfg, num_items, fingerprint))
        return cls(criterion, terms_from_config(cfg), init_from=c["init_from"],
                   refresh_every_epochs=c["refresh_every_epochs"], temporal=TemporalNegatives.from_config(cfg))

    def start(self, model, *, fingerprint, logger) -> None:
        """Model + banks + NCE constant from the AVID checkpoint ``cma.init_from`` of the SAME index."""
        if not self.init_from:
            raise UserError("method=cma needs cma.init_from: an AVID checkpoint (file or run directory)")
        p = Path(self.init_from)
        if p.is_dir():  # the newest checkpoint of that run that reads
            p, state = CheckpointManager(p).load_latest(expected_fingerprint=fingerprint, logger=logger)
        else:
            state = load_checkpoint(p, expected_fingerprint=fingerprint)
        try:
            self.criterion.load_avid_state(state["criterion"])
        except KeyError as exc:
            raise UserError(f"cma.init_from={p}: not an AVID checkpoint ({exc.args[0]})") from None
        model.load_state_dict(state["model"])
        logger.info("CMA stage initialised from AVID checkpoint %s (partition Z=%s)", p, self.criterion.partition)

    def on_epoch_start(self, epoch: int, *, device, logger) -> None:
        """Positive sets: found at the first epoch (none yet) and every ``refresh_every_epochs`` epochs
        (collective under torch.distributed: every rank reaches it at the same epoch)."""
        crit, every = self.criterion, self.refresh_every_epochs
        if crit.positives is None or (every and epoch % every == 0 and epoch > 0):
            t0 = time.perf_counter()
            crit.refresh_positives(device=device)
            logger.info("CMA positive sets recomputed (k=%d, %s) in %.2fs", crit.num_positives, crit.mode,
                        time.perf_counter() - t0)

