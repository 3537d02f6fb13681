"""Clip- and video-level classification metrics, identical in one process and under torchrun.

`predict_clips` runs the classifier on every eval item (each rank its `EvalShardSampler` share,
no padding), gathers (item, logits) from all ranks and sorts them by item, so every rank holds
the same full table whatever the world size. `classification_metrics` turns that table into
clip accuracy, video accuracy (softmax averaged over ALL clips of a video), top-1/top-5 and
per-class accuracy and the confusion matrix (scikit-learn).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from sklearn.metrics import confusion_matrix
from torch.utils.data import DataLoader
from tqdm import tqdm

from avssl.data.collate import collate_skip_bad
from avssl.utils import distributed as du
from avssl.engine.samplers import EvalShardSampler

log = logging.getLogger(__name__)

__all__ = ["predict_clips", "classification_metrics", "evaluate_classifier", "save_confusion_png", "topk_correct"]


@torch.no_grad()
def predict_clips(model, dataset, video_transform, *, batch_size: int = 16, device="cpu", num_workers: int = 0,
                  progress: bool = False) -> dict[str, np.ndarray]:
    """Logits of every item of an eval-mode dataset, gathered over ranks and sorted by item.

    Returns {"item", "video", "clip", "label", "logits" [N, C]} (numpy); items whose file failed
    are absent (their count is in "dropped"; predicted + dropped = len(dataset) is checked). No
    collective runs inside the loop, so a rank whose share holds unreadable files cannot stall the
    others: ranks meet once, in the final gather.
    """
    was_training = model.training
    model.eval()
    sampler = EvalShardSampler(len(dataset), num_replicas=du.world_size(), rank=du.rank())
    # keep the item number: the loader yields items in sampler order, batch by batch
    order = list(iter(sampler))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=order, num_workers=num_workers,
                        collate_fn=_collate_with_item)
    rows = {"item": [], "video": [], "clip": [], "label": [], "logits": []}
    dropped = 0
    pos = 0
    for batch in tqdm(loader, desc="evaluating", unit="batch", disable=not progress, leave=False):
        n_items = batch.pop("_n")
        items = np.asarray(order[pos:pos + n_items])[batch.pop("_ok")]
        pos += n_items
        if batch.get("video") is None:
            dropped += n_items
            continue
        dropped += int(batch["dropped"])
        x = video_transform(batch["video"].to(device))
        logits = model(x).float().cpu()
        rows["item"].append(torch.as_tensor(items))
        rows["video"].append(batch["index"])
        rows["clip"].append(batch["clip_index"])
        rows["label"].append(batch["label"])
        rows["logits"].append(logits)
    local = {k: (torch.cat(v).numpy() if v else None) for k, v in rows.items()}
    if du.is_dist():
        parts = [None] * du.world_size()
        dist.all_gather_object(parts, (local, dropped))
    else:
        parts = [(local, dropped)]
    out = {k: np.concatenate([p[0][k] for p in parts if p[0]["item"] is not None])
           if any(p[0]["item"] is not None for p in parts) else np.zeros((0,)) for k in rows}
    order_idx = np.argsort(out["item"], kind="stable")
    out = {k: v[order_idx] for k, v in out.items()}
    if len(np.unique(out["item"])) != len(out["item"]):
        raise RuntimeError("an eval item was predicted twice (sampler padding?)")
    out["dropped"] = sum(p[1] for p in parts)
    if len(out["item"]) + out["dropped"] != len(dataset):  # each item scored or counted as failed, once
        raise RuntimeError(f"{len(out['item'])} predicted + {out['dropped']} failed != {len(dataset)} eval items")
    if was_training:
        model.train()
    return out


def _collate_with_item(items):
    ok = np.array([x is not None for x in items])
    batch = collate_skip_bad(items) or {"video": None}
    batch["_n"] = len(items)
    batch["_ok"] = ok
    return batch


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Bool [N]: the label is among the k highest scores (k clipped to the number of classes)."""
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return (top == labels[:, None]).any(1)


def classification_metrics(pred: dict, num_classes: int, clips_per_video: int | None = None) -> dict:
    """Clip and video metrics from `predict_clips` output.

    Video score = mean of the softmax over every clip of the video. With `clips_per_video`,
    videos with fewer clips (a decode failure) are counted in `incomplete_videos`; more clips
    than that raises (a duplicate would bias the average).
    """
    logits = np.asarray(pred["logits"], dtype=np.float64)
    labels = np.asarray(pred["label"], dtype=np.int64)
    videos = np.asarray(pred["video"], dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("no predictions to score")
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    vid_ids, inverse, counts = np.unique(videos, return_inverse=True, return_counts=True)
    video_probs = np.zeros((len(vid_ids), num_classes))
    np.add.at(video_probs, inverse, probs)
    video_probs /= counts[:, None]
    video_labels = np.zeros(len(vid_ids), np.int64)
    video_labels[inverse] = labels
    if not np.array_equal(video_labels[inverse], labels):
        raise ValueError("clips of one video carry different labels")
    incomplete = 0
    if clips_per_video is not None:
        if counts.max() > clips_per_video:
            raise ValueError(f"a video has {counts.max()} clips, more than clips_per_video={clips_per_video}")
        incomplete = int((counts < clips_per_video).sum())
    video_pred = video_probs.argmax(1)
    cm = confusion_matrix(video_labels, video_pred, labels=np.arange(num_classes))
    support = cm.sum(1)
    per_class = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    return {
        "clip_top1": float(topk_correct(logits, labels, 1).mean()),
        "clip_top5": float(topk_correct(logits, labels, 5).mean()),
        "video_top1": float(topk_correct(video_probs, video_labels, 1).mean()),
        "video_top5": float(topk_correct(video_probs, video_labels, 5).mean()),
        "mean_class_accuracy": float(np.nanmean(per_class)),
        "per_class_accuracy": per_class.tolist(),
        "confusion": cm.tolist(),
        "num_clips": int(len(labels)),
        "num_videos": int(len(vid_ids)),
        "clips_per_video_seen": counts.tolist(),
        "incomplete_videos": incomplete,
        "dropped": int(pred.get("dropped", 0)),
    }


def evaluate_classifier(model, dataset, video_transform, *, batch_size: int = 16, device="cpu",
                        num_workers: int = 0, progress: bool = False) -> dict:
    pred = predict_clips(model, dataset, video_transform, batch_size=batch_size, device=device,
                         num_workers=num_workers, progress=progress)
    n_classes = len(getattr(dataset, "classes", [])) or int(pred["logits"].shape[1])
    return classification_metrics(pred, n_classes, dataset.clips_per_video)


def save_confusion_png(confusion, classes: list[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix picture (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(classes)
    size = max(4.0, min(0.35 * n + 2, 30))
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=90, fontsize=max(4, 10 - n // 15))
    ax.set_yticks(range(n), classes, fontsize=max(4, 10 - n // 15))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
