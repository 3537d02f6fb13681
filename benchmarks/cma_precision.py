"""Precision of CMA's discovered positive sets on the embedded world: the share of each clip's
k positives (found from the AVID memory banks) that have the clip's sound-source class
(gt.csv), for the four agreement modes, against the expected share of k random other clips.

    python benchmarks/cma_precision.py --checkpoint runs/avid_default --ks 8 32
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from avssl.cma.positives import find_positives
from avssl.engine import pretrain as P
from avssl.utils.checkpoint import CheckpointManager, load_checkpoint

MODES = ("consensus", "union", "video", "audio")


def slot_classes(cfg: dict) -> np.ndarray:
    """Sound-source class of every memory slot (slot = train manifest id)."""
    data = P.build_data({**cfg, "eval": {**cfg["eval"], "enabled": False}}, P.setup_distributed("cpu"))
    m = data.train_set.manifest
    world = Path(cfg["data"]["world_dir"])
    by_name = {Path(r["path"]).name: r["source_class"] for r in csv.DictReader(open(world / "gt.csv"))}
    labels = np.full(data.num_train_videos, "", dtype=object)
    for row in range(len(m.id)):
        labels[int(m.id[row])] = by_name[Path(m.path(row)).name]
    return labels


def precision(pos: torch.Tensor, labels: np.ndarray) -> float:
    lab = labels[pos.numpy()]
    return float((lab == labels[:, None]).mean())


def random_precision(labels: np.ndarray) -> float:
    """Expected precision of positives drawn uniformly from the other clips."""
    _, counts = np.unique(labels, return_counts=True)
    n = len(labels)
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


def handcrafted_banks(cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive control: 'banks' of hand-crafted features of every training clip (eval transforms):
    video = per-channel colour mean/std + 4x4 colour grid, audio = 32 spectral bands; each
    standardised and reduced to 16-d by PCA (sklearn), so both carry class information."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    data = P.build_data({**cfg, "eval": {**cfg["eval"], "enabled": False}}, P.setup_distributed("cpu"))
    tf = P.build_batch_transforms(cfg, train=False)
    loader = torch.utils.data.DataLoader(data.train_set, batch_size=32, collate_fn=P._collate())
    feats_v = torch.zeros(data.num_train_videos, 3 + 3 + 48)
    feats_a = torch.zeros(data.num_train_videos, 32)
    with torch.no_grad():
        for b in loader:
            v, a = tf(b["video"], b["audio"])
            grid = torch.nn.functional.adaptive_avg_pool3d(v, (1, 4, 4)).flatten(1)
            feats_v[b["index"].long()] = torch.cat([v.mean((2, 3, 4)), v.std((2, 3, 4)), grid], 1)
            feats_a[b["index"].long()] = torch.nn.functional.adaptive_avg_pool2d(a, (32, 1)).flatten(1)

    def reduce(x):
        return torch.from_numpy(PCA(16, random_state=0).fit_transform(StandardScaler().fit_transform(x.numpy()))).float()

    return reduce(feats_v), reduce(feats_a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="runs/avid_default", help="checkpoint file or run directory")
    ap.add_argument("--ks", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--handcrafted", action="store_true", help="also the hand-crafted-feature positive control")
    args = ap.parse_args()
    path = Path(args.checkpoint)
    if path.is_dir():
        path = CheckpointManager(path).latest_path()
    state = load_checkpoint(path)
    labels = slot_classes(state["config"])
    vb, ab = state["criterion"]["video_bank.bank"], state["criterion"]["audio_bank.bank"]
    rows = {"checkpoint": str(path), "random": round(random_precision(labels), 3)}
    for k in args.ks:
        for mode in MODES:
            rows[f"k={k} {mode}"] = round(precision(find_positives(vb, ab, k=k, mode=mode), labels), 3)
    if args.handcrafted:
        hv, ha = handcrafted_banks(state["config"])
        for k in args.ks:
            for mode in MODES:
                rows[f"handcrafted k={k} {mode}"] = round(precision(find_positives(hv, ha, k=k, mode=mode), labels), 3)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
