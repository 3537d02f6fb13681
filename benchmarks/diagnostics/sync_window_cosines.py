"""Is a run's video embedding time-invariant? (benchmarks/instance_sync.md)

Per held-out video, the cosine between the embeddings of the sync test's two windows (``--shift`` s apart,
centred in the file, `avssl.data.sync.SyncTrialDataset`) for the video and for the audio encoder, next to
the mean cosine between different videos. A video cosine near 1 makes the mirrored sync trials come out
complementary (accuracy exactly 0.5) whatever the audio does.

    python benchmarks/diagnostics/sync_window_cosines.py runs/x [--random-init] [--shift 1.0]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--random-init", action="store_true")
    ap.add_argument("--shift", type=float, default=1.0)
    args = ap.parse_args()

    from avssl.data.collate import collate_skip_bad
    from avssl.data.sync import SyncTrialDataset
    from avssl.downstream.finetune import load_pretrained_config
    from avssl.engine import pretrain as P
    from avssl.utils.checkpoint import CheckpointManager

    cfg = load_pretrained_config(args.run)
    cfg["data"]["progress"] = False
    data = P.build_data(cfg, P.setup_distributed("cpu"))
    torch.manual_seed(0)
    model = P.build_model(cfg)
    if not args.random_init:
        model.load_state_dict(CheckpointManager(args.run).load()["model"])
    model.eval()
    tf = P.build_batch_transforms(cfg, train=False)
    trials = SyncTrialDataset(data.eval_set, [args.shift])
    video, audio, ids = [], [], []
    with torch.no_grad():
        for b in torch.utils.data.DataLoader(trials, batch_size=32, collate_fn=collate_skip_bad):
            if b is None:
                continue
            n = b["video"].shape[0]
            v, s = tf(b["video"], b["audio"].flatten(0, 1))
            ve, ae = model(v, s)
            video.append(F.normalize(ve, dim=1))
            audio.append(F.normalize(ae, dim=1).view(n, 2, -1)[:, 0])  # each trial's own window
            ids.append(b["index"])
    video, audio, ids = torch.cat(video), torch.cat(audio), torch.cat(ids)
    vc, ac = [], []
    for vid in ids.unique():
        k = (ids == vid).nonzero().flatten()
        if len(k) == 2:  # the video's two windows
            vc.append(float(video[k[0]] @ video[k[1]]))
            ac.append(float(audio[k[0]] @ audio[k[1]]))
    if not vc:
        raise SystemExit("no held-out video is long enough for two windows at this shift")
    print(f"{args.run} ({'random init' if args.random_init else 'trained'}): {len(vc)} videos; "
          f"cos(video window 1, 2) mean {sum(vc) / len(vc):.4f} min {min(vc):.4f}; "
          f"cos(audio window 1, 2) mean {sum(ac) / len(ac):.4f} min {min(ac):.4f}; "
          f"mean cos between different videos: video {float((video @ video.T).mean()):.4f}, "
          f"audio {float((audio @ audio.T).mean()):.4f}")


if __name__ == "__main__":
    main()
