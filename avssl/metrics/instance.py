"""Is retrieval finding the instance, or only its class? And does it hear synchronization?

Pure functions on embeddings (dot products: pass unit rows, or ``normalize=True``), with the chance
level of each figure computed from the same labels, so a figure is always read beside its own chance.

Class level (``class_level_metrics``): the share of queries whose top-1 item has the query's class;
chance = the expected share for a uniformly random top-1, ``mean_i n_c(i) / N`` (``n_c``: items of
the query's class in the collection, its own positive included).

Within class (``within_class_retrieval``): each query ranked against the items of ITS OWN CLASS
only, so class matching earns nothing. R@1 within class has chance ``mean_i 1 / n_c(i)``; the
median rank has chance ``median_i (n_c(i) + 1) / 2`` (the expected rank under a random order).
Ties as in `avssl.metrics.retrieval` (pessimistic by default).

Synchronization (``sync_metrics``): per trial, the score of a video with its own audio against the
score with the same video's audio shifted in time. Accuracy = share of trials where the own audio
scores higher (ties count one half); AUC = ROC AUC of own scores (positives) against shifted scores
(negatives), pooled over trials (`sklearn.metrics.roc_auc_score`). Chance 0.5 for both.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from avssl.metrics.retrieval import RankCounts, nearest, positive_rank_counts

__all__ = ["class_level_metrics", "within_class_retrieval", "pair_scores", "sync_metrics", "instance_report",
           "shifted_clip_pairs"]


def _t(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _labels(labels, n: int, what: str) -> torch.Tensor:
    lab = _t(labels).long().reshape(-1)
    if lab.shape[0] != n:
        raise ValueError(f"{what}: {lab.shape[0]} labels for {n} rows")
    return lab


def class_level_metrics(query_emb, collection_emb, query_labels, collection_labels, *, normalize: bool = False,
                        device=None) -> dict[str, float]:
    """``{"class_top1", "chance_class_top1", "num_queries"}``: share of queries whose nearest collection
    item has the query's label, and the chance of that for a random top-1 (``mean_i n_c(i) / N``)."""
    q, c = _t(query_emb), _t(collection_emb)
    ql, cl = _labels(query_labels, q.shape[0], "query_labels"), _labels(collection_labels, c.shape[0], "collection_labels")
    if q.shape[0] == 0:
        raise ValueError("no queries")
    _, idx = nearest(q, c, k=1, normalize=normalize, device=device)
    hit = (cl[idx[:, 0]] == ql).double()
    n_c = (ql[:, None] == cl[None, :]).sum(1).double()
    return {"class_top1": hit.mean().item(), "chance_class_top1": (n_c / c.shape[0]).mean().item(),
            "num_queries": int(q.shape[0])}


def within_class_retrieval(query_emb, collection_emb, labels, positives=None, *, collection_labels=None,
                           ties: str = "pessimistic", normalize: bool = False, device=None) -> dict[str, float]:
    """Rank of each query's positive among the collection items of the query's own class.

    ``positives``: int [Q], the collection row of query i's own item (default ``arange(Q)``: row i of
    both is the same clip); ``labels``: the queries' classes, ``collection_labels`` the items' (default:
    ``labels``, i.e. paired rows). A positive of another class than its query is an error.

    Returns ``within_R@1``, ``within_median_rank``, ``within_mean_rank``, their chance levels
    ``within_chance_R@1`` (``mean 1 / n_c``), ``within_chance_median_rank`` (``median (n_c + 1) / 2``),
    ``mean_class_size`` (mean ``n_c`` over queries) and ``num_queries``."""
    q, c = _t(query_emb), _t(collection_emb)
    ql = _labels(labels, q.shape[0], "labels")
    cl = ql if collection_labels is None else _labels(collection_labels, c.shape[0], "collection_labels")
    if collection_labels is None and c.shape[0] != q.shape[0]:
        raise ValueError("give collection_labels when the collection is not paired row for row with the queries")
    pos = torch.arange(q.shape[0]) if positives is None else _t(positives).long().reshape(-1)
    if pos.shape[0] != q.shape[0]:
        raise ValueError(f"positives must be [Q]={q.shape[0]}, got {tuple(pos.shape)}")
    if q.shape[0] == 0:
        raise ValueError("no queries")
    if (cl[pos] != ql).any():
        bad = int((cl[pos] != ql).nonzero()[0, 0])
        raise ValueError(f"query {bad}'s positive (row {int(pos[bad])}) has class {int(cl[pos[bad]])}, "
                         f"the query {int(ql[bad])}")
    greater = torch.zeros(q.shape[0], dtype=torch.long)
    tied = torch.zeros(q.shape[0], dtype=torch.long)
    sizes = torch.empty(q.shape[0], dtype=torch.float64)
    for cls in torch.unique(ql).tolist():
        qi = (ql == cls).nonzero().squeeze(1)
        ci = (cl == cls).nonzero().squeeze(1)
        where = torch.full((c.shape[0],), -1, dtype=torch.long)
        where[ci] = torch.arange(len(ci))
        counts = positive_rank_counts(q[qi], c[ci], where[pos[qi]], normalize=normalize, device=device)
        greater[qi], tied[qi] = counts.greater, counts.tied
        sizes[qi] = float(len(ci))
    counts = RankCounts(greater, tied)
    ranks = counts.ranks(ties)
    return {
        "within_R@1": counts.recall_at(1, ties),
        "within_median_rank": float(ranks.median().item()),
        "within_mean_rank": float(ranks.mean().item()),
        "within_chance_R@1": (1.0 / sizes).mean().item(),
        "within_chance_median_rank": float(((sizes + 1) / 2).median().item()),
        "mean_class_size": sizes.mean().item(),
        "num_queries": int(q.shape[0]),
    }


def pair_scores(a, b, normalize: bool = False) -> torch.Tensor:
    """Row-wise dot products ``<a_i, b_i>`` (float64 [N])."""
    a, b = _t(a).double(), _t(b).double()
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired [N, D] rows needed, got {tuple(a.shape)} and {tuple(b.shape)}")
    if normalize:
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    return (a * b).sum(1)


def sync_metrics(own_scores, shifted_scores) -> dict[str, float]:
    """``{"acc", "auc", "num_trials"}`` of paired trials: own-audio score vs shifted-audio score of the
    same video (see the module doc). NaN figures for zero trials."""
    from sklearn.metrics import roc_auc_score

    own = _t(own_scores).double().reshape(-1)
    sh = _t(shifted_scores).double().reshape(-1)
    if own.shape != sh.shape:
        raise ValueError(f"paired trials needed: {own.shape[0]} own vs {sh.shape[0]} shifted scores")
    n = int(own.shape[0])
    if n == 0:
        return {"acc": float("nan"), "auc": float("nan"), "num_trials": 0}
    acc = ((own > sh).double() + 0.5 * (own == sh).double()).mean().item()
    y = np.r_[np.ones(n), np.zeros(n)]
    auc = float(roc_auc_score(y, np.r_[own.numpy(), sh.numpy()]))
    return {"acc": acc, "auc": auc, "num_trials": n}


def instance_report(video_emb, audio_emb, labels, *, ties: str = "pessimistic", normalize: bool = False,
                    device=None) -> dict[str, float]:
    """Class- and within-class audio->video figures of paired clips (row i of both = clip i), flat keys:
    ``a2v_class_top1``, ``chance_class_top1``, ``a2v_within_R@1``, ``within_chance_R@1``,
    ``a2v_within_median_rank``, ``within_chance_median_rank``, ``mean_class_size`` (and v2a the same)."""
    out: dict[str, float] = {}
    for d, (q, c) in (("a2v", (audio_emb, video_emb)), ("v2a", (video_emb, audio_emb))):
        cls = class_level_metrics(q, c, labels, labels, normalize=normalize, device=device)
        wc = within_class_retrieval(q, c, labels, ties=ties, normalize=normalize, device=device)
        out[f"{d}_class_top1"] = cls["class_top1"]
        out[f"{d}_within_R@1"] = wc["within_R@1"]
        out[f"{d}_within_median_rank"] = wc["within_median_rank"]
        out["chance_class_top1"] = cls["chance_class_top1"]
        out["within_chance_R@1"] = wc["within_chance_R@1"]
        out["within_chance_median_rank"] = wc["within_chance_median_rank"]
        out["mean_class_size"] = wc["mean_class_size"]
    return out


def shifted_clip_pairs(video_ids, starts, shift: float, valid=None) -> tuple[np.ndarray, np.ndarray]:
    """Trials of a synchronization test from clip-level rows of a collection: ``(i, j)`` index arrays of
    every ordered pair of clips of the SAME video whose starts differ by at least ``shift`` s (both
    ``valid``: e.g. their audio windows inside the file). Trial (i, j) scores clip i's video with its own
    audio against clip j's audio, the same video's sound shifted by ``start_j - start_i``."""
    vid = np.asarray(video_ids).reshape(-1)
    st = np.asarray(starts, dtype=np.float64).reshape(-1)
    ok = np.ones(len(vid), bool) if valid is None else np.asarray(valid, bool).reshape(-1)
    if not len(vid) == len(st) == len(ok):
        raise ValueError(f"video_ids, starts and valid differ in length: {len(vid)}, {len(st)}, {len(ok)}")
    ii, jj = [], []
    order = np.argsort(vid, kind="stable")
    bounds = np.flatnonzero(np.diff(vid[order])) + 1
    for group in np.split(order, bounds):
        g = group[ok[group]]
        if len(g) < 2:
            continue
        d = np.abs(st[g][:, None] - st[g][None, :]) >= shift - 1e-6
        a, b = np.nonzero(d)
        ii.append(g[a])
        jj.append(g[b])
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ii).astype(np.int64), np.concatenate(jj).astype(np.int64)
