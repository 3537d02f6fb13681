"""The held-out evaluation beyond R@K: is retrieval finding the instance or only its class, and does
the model hear synchronization?

    instance_metrics(v, a, ids, labels)        class-level top-1, within-class R@1 / median rank, each
                                               with its chance level (`avssl.metrics.instance`)
    evaluate_sync(model, transforms, dataset, shifts, ...)
                                               own audio vs the same video's audio shifted by each shift
                                               (`avssl.data.sync.SyncTrialDataset`: two windows centred in
                                               the file, each clip's video scored with both), accuracy, AUC
    heldout_labels(manifest, world_rows)       class labels and "has a visible sounding object" flags of
                                               held-out videos (the generated world's ground truth, or the
                                               manifest's label column)

Keys added to the trainer's held-out metrics (``summary["retrieval"]``):
``a2v_class_top1``, ``v2a_class_top1``, ``chance_class_top1``, ``a2v_within_R@1``, ``v2a_within_R@1``,
``within_chance_R@1``, ``a2v_within_median_rank``, ``v2a_within_median_rank``,
``within_chance_median_rank``, ``mean_class_size``; per shift s (seconds, ``f"{s:g}"``):
``sync@{s}s_acc``, ``sync@{s}s_auc``, ``sync@{s}s_trials`` (2 per video), ``sync@{s}s_untested_videos``
(too short for the shift) over every testable trial and the same with
``_sounding`` over the clips with a visible sounding object (when the source says which: the world's
silent and off-screen clips have no synchronization to find; chance 0.5).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from avssl.engine.samplers import EvalShardSampler
from avssl.metrics.instance import instance_report, sync_metrics
from avssl.utils import distributed as du

__all__ = ["instance_metrics", "evaluate_sync", "heldout_labels", "sync_keys"]


def heldout_labels(manifest, world_rows: list[dict] | None = None) -> tuple[dict[int, int] | None, dict[int, bool] | None]:
    """``(labels {video id: class}, sounding {video id: has a visible sounding object})`` of a manifest's
    videos: from the generated world's gt.csv rows (matched by file name; class = the sound source's
    class) or else the manifest's own ``label`` column (sounding then unknown: None). (None, None)
    when neither says."""
    ids = [int(i) for i in manifest.id]
    if world_rows is not None:
        by_name = {Path(r["path"]).name: r for r in world_rows}
        labels, sounding = {}, {}
        for i, vid in enumerate(ids):
            r = by_name.get(os.path.basename(manifest.path(i)))
            if r is None:
                continue
            labels[vid] = int(r["source_index"])
            sounding[vid] = int(r["sounding_object"]) >= 0
        return (labels or None), (sounding or None)
    lab = getattr(manifest, "label", None)
    if lab is None:
        return None, None
    return {vid: int(lab[i]) for i, vid in enumerate(ids) if int(lab[i]) >= 0} or None, None


def instance_metrics(video: torch.Tensor, audio: torch.Tensor, ids: torch.Tensor, labels: dict[int, int] | None
                     ) -> dict[str, float]:
    """`avssl.metrics.instance_report` over the held-out clips whose video has a label ({} without labels)."""
    if not labels:
        return {}
    keep = torch.tensor([int(i) in labels for i in ids.tolist()], dtype=torch.bool)
    if keep.sum() < 2:
        return {}
    lab = torch.tensor([labels[int(i)] for i in ids[keep].tolist()])
    out = instance_report(video[keep], audio[keep], lab)
    out["num_labelled"] = int(keep.sum())
    return out


def sync_keys(shifts) -> list[str]:
    return [f"sync@{float(s):g}s_{k}" for s in shifts for k in ("acc", "auc", "trials")]


@torch.no_grad()
def embed_sync_trials(model, transforms, trials, batch_size: int, num_workers: int, device, amp_dtype=None):
    """``(own [N], shifted [N], shift_index [N], ids [N])`` over every rank's share of ``trials`` (a
    `SyncTrialDataset`): scores <v, a> of each trial's video with its own and its shifted audio."""
    from avssl.data.collate import collate_skip_bad

    sampler = EvalShardSampler(len(trials), num_replicas=du.world_size(), rank=du.rank())
    loader = DataLoader(trials, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        collate_fn=collate_skip_bad)
    model.eval()
    own, shifted, which, ids = [], [], [], []
    for batch in loader:
        if batch is None:
            continue
        b = batch["video"].shape[0]
        audio = batch["audio"].flatten(0, 1).to(device)  # [2B, C, S]: own, shifted per trial
        video, spec = transforms(batch["video"].to(device), audio)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            v, a = model(video, spec)
        v = F.normalize(v.float(), dim=1)
        a = F.normalize(a.float(), dim=1).view(b, 2, -1)
        s = torch.einsum("bd,bkd->bk", v, a).cpu()
        own.append(s[:, 0])
        shifted.append(s[:, 1])
        which.append(batch["shift_index"].long())
        ids.append(batch["index"].long())
    cat = (lambda xs, dtype: torch.cat(xs) if xs else torch.zeros(0, dtype=dtype))
    out = (cat(own, torch.float32), cat(shifted, torch.float32), cat(which, torch.long), cat(ids, torch.long))
    return tuple(du.all_gather_varlen(x) for x in out)


def evaluate_sync(model, transforms, dataset, shifts, *, batch_size: int = 32, num_workers: int = 0,
                  device=torch.device("cpu"), amp_dtype=None, sounding: dict[int, bool] | None = None
                  ) -> dict[str, float]:
    """The synchronization test of the module doc on an eval-mode dataset (one figure set per shift)."""
    from avssl.data.sync import SyncTrialDataset

    if not shifts:
        return {}
    trials = SyncTrialDataset(dataset, shifts)
    own, shifted, which, ids = embed_sync_trials(model, transforms, trials, batch_size, num_workers, device,
                                                 amp_dtype)
    out: dict[str, float] = {}
    src = None
    if sounding:
        src = torch.tensor([bool(sounding.get(int(i), False)) for i in ids.tolist()], dtype=torch.bool)
    for j, s in enumerate(trials.shifts):
        key = f"sync@{s:g}s"
        m = which == j
        r = sync_metrics(own[m], shifted[m])
        out.update({f"{key}_acc": r["acc"], f"{key}_auc": r["auc"], f"{key}_trials": r["num_trials"],
                    f"{key}_untested_videos": len(trials.untested[s])})
        if src is not None:
            r = sync_metrics(own[m & src], shifted[m & src])
            out.update({f"{key}_acc_sounding": r["acc"], f"{key}_auc_sounding": r["auc"],
                        f"{key}_trials_sounding": r["num_trials"]})
    return out
