"""Decode the default world once (train: 3 eval clips/video, test: 1) into /tmp/diag/clips.pt, so the
learning diagnostics below train without decoding. Run from the repo root after `make demo` made data/world/default."""
import torch, numpy as np, sys
from avssl.synth import generate as synth
from avssl.data.index import build_index
from avssl.data.dataset import AVClipDataset
from avssl.io.types import ClipSpec
w = synth.load_world("data/world/default")
spec = ClipSpec(num_frames=8, fps=16.0, frame_size=64, audio_rate=24000, audio_channels=1, audio_duration=2.0)
out = {}
for split, mode, n in [("train", "eval", 3), ("test", "eval", 1)]:
    m, _ = build_index(w.video_paths(split), workers=1, progress=False)
    ds = AVClipDataset(m, spec, mode=mode, clips_per_video=n)
    V, A, I = [], [], []
    for k in range(len(ds)):
        it = ds[k]
        V.append(it["video"]); A.append(it["audio"]); I.append(it["index"])
    out[split] = (torch.stack(V), torch.stack(A), torch.tensor(I))
    print(split, out[split][0].shape, out[split][1].shape)
torch.save(out, "/tmp/diag/clips.pt")
