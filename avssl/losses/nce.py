"""Contrastive losses against memory-bank samples, as pure functions.

Notation: a query q (unit vector) is scored against bank rows x by the logit
``s = q . x / T``. Each query has P positives (usually 1) and K negatives.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["nce_loss", "estimate_partition", "info_nce_loss", "nce_extra_negatives_loss"]


def _as_2d(pos: torch.Tensor) -> torch.Tensor:
    return pos.unsqueeze(1) if pos.ndim == 1 else pos


def _check(pos: torch.Tensor, neg: torch.Tensor) -> None:
    if pos.ndim != 2 or neg.ndim != 2 or pos.shape[0] != neg.shape[0]:
        raise ValueError(f"expected pos [B] or [B, P] and neg [B, K], got {tuple(pos.shape)} "
                         f"and {tuple(neg.shape)}")
    if neg.shape[1] < 1:
        raise ValueError("need at least one negative")


def nce_loss(pos_logits: torch.Tensor, neg_logits: torch.Tensor,
             log_partition: torch.Tensor | float, num_items: int) -> torch.Tensor:
    r"""Binary noise-contrastive estimation loss of the AVID reference.

    The model density of a bank sample is ``p(x|q) = exp(s) / Z`` (Z: partition
    constant, frozen after the first batch) and the noise density is uniform,
    ``Pn = 1 / N`` (N = ``num_items``). With K noise samples per data sample the
    posterior that a sample came from the data is

        h(s) = p / (p + K * Pn) = sigmoid(a),   a = s - log Z - log(K / N).

    The loss, averaged over the batch, is

        L = mean_b [ mean_{p in P} -log h(s_bp) + sum_{k in K} -log(1 - h(s_bk)) ]
          = mean_b [ mean_p softplus(-a_bp) + sum_k softplus(a_bk) ]

    (softplus form for numerical stability; identical to the ratio form).

    Args:
        pos_logits: [B] or [B, P] positive logits s = cos / T.
        neg_logits: [B, K] negative logits.
        log_partition: log Z (scalar tensor or float).
        num_items: N, the number of bank slots (support of the noise distribution).
    """
    pos = _as_2d(pos_logits)
    _check(pos, neg_logits)
    k = neg_logits.shape[1]
    offset = torch.as_tensor(log_partition, dtype=pos.dtype, device=pos.device) + math.log(k / num_items)
    pos_term = F.softplus(offset - pos).mean(1)
    neg_term = F.softplus(neg_logits - offset).sum(1)
    return (pos_term + neg_term).mean()


def nce_extra_negatives_loss(extra_logits: torch.Tensor, weights: torch.Tensor,
                             log_partition: torch.Tensor | float, num_items: int, num_negatives: int) -> torch.Tensor:
    r"""The negative term of `nce_loss` for extra negatives (e.g. temporal hard negatives), each counted
    ``weights`` times, on the noise model of the ``num_negatives`` (K) bank draws:

        L_extra = mean_b sum_h w_bh softplus(e_bh - log Z - log(K / N))

    Added to `nce_loss` of the same queries. (An extra negative is not a uniform bank draw, so this
    departs from the noise model; with w = 0 nothing changes.)"""
    extra = extra_logits.unsqueeze(1) if extra_logits.ndim == 1 else extra_logits
    w = weights.unsqueeze(1) if weights.ndim == 1 else weights
    if w.shape != extra.shape:
        raise ValueError(f"weights {tuple(weights.shape)} do not match extra negatives {tuple(extra_logits.shape)}")
    offset = torch.as_tensor(log_partition, dtype=extra.dtype, device=extra.device) + math.log(num_negatives / num_items)
    return (w.to(extra.dtype) * F.softplus(extra - offset)).sum(1).mean()


def estimate_partition(neg_logits: torch.Tensor, num_items: int) -> torch.Tensor:
    r"""Monte-Carlo estimate of log Z from uniformly drawn negatives:

        Z = N * mean_{b,k} exp(s_bk),   returned as
        log Z = logsumexp(s) - log(B * K) + log N      (float64 scalar, no grad).

    The reference estimates Z once on the first batch (averaged over ranks in linear
    space by the caller) and keeps it frozen afterwards.
    """
    s = neg_logits.detach().to(torch.float64).reshape(-1)
    if s.numel() == 0:
        raise ValueError("cannot estimate the partition constant from zero negatives")
    return torch.logsumexp(s, 0) - math.log(s.numel()) + math.log(num_items)


def info_nce_loss(pos_logits: torch.Tensor, neg_logits: torch.Tensor,
                  temperature: float = 1.0) -> torch.Tensor:
    r"""Softmax InfoNCE: each positive is classified against all negatives.

        L = mean_b mean_{p in P} -log( exp(s_bp / T) / (exp(s_bp / T) + sum_k exp(s_bk / T)) )

    Args:
        pos_logits: [B] or [B, P] scores (cosines when ``temperature`` is the softmax
            temperature; already-scaled logits with the default ``temperature=1``).
        neg_logits: [B, K] scores on the same scale.
        temperature: T dividing both.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    pos = _as_2d(pos_logits) / temperature
    neg = neg_logits / temperature
    _check(pos, neg)
    neg_lse = torch.logsumexp(neg, 1, keepdim=True)  # [B, 1]
    log_denominator = torch.logaddexp(pos, neg_lse)  # [B, P]
    return (log_denominator - pos).mean()
