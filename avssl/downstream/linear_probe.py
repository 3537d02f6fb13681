"""Frozen-encoder probes: features from any named layer, pooled, then a linear classifier
(scikit-learn logistic regression on standardised features) and a k-NN vote.

`probe_monitor(model, train_ds, test_ds)` is cheap enough to call after every pretraining epoch:
one eval pass over each (labelled, eval-mode) dataset, then a solver that runs in well under a
second on a few thousand videos. Per-video features average the pooled features of its clips.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from .knn import knn_accuracy
from .video_eval import predict_clips

__all__ = ["FeatureExtractor", "extract_features", "linear_probe_accuracy", "probe_monitor", "probe_datasets",
           "probe_policy"]


class FeatureExtractor(nn.Module):
    """``forward(x) -> [B, C]``: the encoder's `forward_features()[layer]`, globally pooled
    (``avg`` or ``max``) over every axis after the channel one; a 2-D feature is returned as is."""

    def __init__(self, encoder: nn.Module, layer: str = "pool", pool: str = "avg"):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.encoder, self.layer, self.pool = encoder, layer, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder.forward_features(x)
        if self.layer not in feats:
            raise KeyError(f"layer {self.layer!r} not among the encoder's feature maps {list(feats)}")
        f = feats[self.layer]
        if f.ndim == 2:
            return f
        f = f.flatten(2)
        return f.mean(2) if self.pool == "avg" else f.amax(2)


def probe_policy(spec):
    """The probes' default per-item geometry: the central square of the decoded frames at the
    short side of ``spec.frame_size`` (112 when unset), whatever the file's aspect ratio."""
    from avssl.data.spatial import SpatialPolicy

    fs = getattr(spec, "frame_size", None)
    side = int(fs if isinstance(fs, int) else min(fs)) if fs else 112
    return SpatialPolicy("resize_crop", side, resize_ratio=1.0)


def _default_transform(dataset, crop_size: int | None):
    """Normalisation only when the dataset's items already have one square shape (its spatial
    policy); else the batch's central square (``probe_policy``'s geometry on the batch)."""
    from avssl.transforms.video import VideoAugment

    policy = getattr(dataset, "spatial", None)
    if policy is not None and policy.mode != "none" and policy.size[0] == policy.size[1]:
        return VideoAugment(crop_size=policy.size[0], train=False, geometry=False)
    if crop_size is None:
        crop_size = probe_policy(dataset.spec).size[0]
    return VideoAugment(crop_size=crop_size, train=False, eval_resize_ratio=1.0)


@torch.no_grad()
def extract_features(encoder: nn.Module, dataset, video_transform=None, *, layer: str = "pool", pool: str = "avg",
                     batch_size: int = 16, device="cpu", num_workers: int = 0, progress: bool = False):
    """(features [V, C] float32, labels [V], video ids [V]): clip features averaged per video.
    Works under torch.distributed (each rank its share, all ranks get every video)."""
    video_transform = video_transform or _default_transform(dataset, None)
    video_transform = video_transform.to(device)
    fx = FeatureExtractor(encoder, layer, pool).to(device)
    pred = predict_clips(fx, dataset, video_transform, batch_size=batch_size, device=device,
                         num_workers=num_workers, progress=progress)
    ids, inverse, counts = np.unique(pred["video"], return_inverse=True, return_counts=True)
    feats = np.zeros((len(ids), pred["logits"].shape[1]), np.float64)
    np.add.at(feats, inverse, pred["logits"])
    feats /= counts[:, None]
    labels = np.zeros(len(ids), np.int64)
    labels[inverse] = pred["label"]
    return feats.astype(np.float32), labels, ids


def linear_probe_accuracy(train_x, train_y, test_x, test_y, C: float = 1.0, max_iter: int = 1000,
                          seed: int = 0) -> float:
    """Top-1 of a multinomial logistic regression on standardised features."""
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))
    clf.fit(train_x, train_y)
    return float((clf.predict(test_x) == np.asarray(test_y)).mean())


def probe_monitor(model: nn.Module, train_ds, test_ds, video_transform=None, *, layer: str = "pool",
                  pool: str = "avg", k: int = 20, temperature: float = 0.07, C: float = 1.0,
                  batch_size: int = 16, device="cpu", num_workers: int = 0) -> dict:
    """Linear-probe and k-NN top-1 of `model`'s (an AVModel or a video encoder) frozen features.

    `train_ds` / `test_ds`: labelled eval-mode `AVClipDataset`s (e.g. `avssl.downstream.data.make_dataset`).
    Returns {'linear_top1', 'knn_top1', 'num_train', 'num_test', 'feature_dim', 'seconds'}.
    The model's train/eval mode is restored afterwards.
    """
    t0 = time.perf_counter()
    encoder = getattr(model, "video_model", model)
    was_training = encoder.training
    video_transform = video_transform or _default_transform(train_ds, None)
    kw = dict(layer=layer, pool=pool, batch_size=batch_size, device=device, num_workers=num_workers)
    try:
        tr_x, tr_y, _ = extract_features(encoder, train_ds, video_transform, **kw)
        te_x, te_y, _ = extract_features(encoder, test_ds, video_transform, **kw)
    finally:
        encoder.train(was_training)
    n_classes = int(max(tr_y.max(), te_y.max())) + 1
    return {
        "linear_top1": linear_probe_accuracy(tr_x, tr_y, te_x, te_y, C=C),
        "knn_top1": knn_accuracy(tr_x, tr_y, te_x, te_y, k=k, temperature=temperature, num_classes=n_classes),
        "num_train": int(len(tr_y)), "num_test": int(len(te_y)), "feature_dim": int(tr_x.shape[1]),
        "seconds": time.perf_counter() - t0,
    }


def probe_datasets(fmt: str, root, spec, fold: int = 1, clips_per_video: int = 1, max_videos: int | None = None,
                   seed: int = 0, spatial=None):
    """(train_ds, test_ds) for `probe_monitor` from a benchmark layout (`load_split` formats), e.g.
    ``probe_datasets("kinetics", "data/world/default/kinetics", spec)``. `max_videos` keeps a stratified,
    seeded share of each split (a cheaper per-epoch monitor). `spatial`: the items' geometry
    (default `probe_policy(spec)`), so videos of mixed sizes batch."""
    from .data import load_split, make_dataset, subsample_labels

    train, test = load_split(fmt, root, fold)
    if max_videos is not None:
        train = subsample_labels(train, min(1.0, max_videos / max(len(train), 1)), seed)
        test = subsample_labels(test, min(1.0, max_videos / max(len(test), 1)), seed)
    spatial = spatial if spatial is not None else probe_policy(spec)
    return (make_dataset(train, spec, "eval", clips_per_video, seed, spatial=spatial),
            make_dataset(test, spec, "eval", clips_per_video, seed, spatial=spatial))
