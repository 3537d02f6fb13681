"""Diagnostic: tiny encoders + symmetric in-batch InfoNCE (no memory bank) on pre-decoded clips;
prints loss and held-out a2v R@1/R@5, v2a R@1 every 100 steps. Usage: python inbatch_clip_loss.py clip STEPS avg"""
import torch, torch.nn.functional as F, sys, time
from avssl.models import build_av_model
from avssl.transforms.video import VideoAugment
from avssl.transforms.audio import LogSpectrogram
from avssl.embed.retrieval import cross_modal_retrieval
torch.manual_seed(0)
d = torch.load("/tmp/diag/clips.pt")
V, A, I = d["train"]; Vt, At, It = d["test"]
mode = sys.argv[1]; steps = int(sys.argv[2]); pool = sys.argv[3] if len(sys.argv) > 3 else "avg"
model = build_av_model(video="tiny", audio="tiny", proj_dim=[128, 128, 64], video_args={"pool": pool}, audio_args={"pool": pool})
vtf = VideoAugment(crop_size=56, scale=(0.4, 1.0), jitter=(0.2, 0.2, 0.2, 0.0), train=True)
vev = VideoAugment(crop_size=56, train=False)
atf = LogSpectrogram(preset="avid", sample_rate=24000, compute_dtype=torch.float32)
with torch.no_grad():
    S = atf(A); St = atf(At)
opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
T = 0.1
def ev():
    model.eval()
    with torch.no_grad():
        v, a = model(vev(Vt), St)
    model.train()
    r = cross_modal_retrieval(F.normalize(v, dim=1), F.normalize(a, dim=1), It, ks=(1, 5))
    return r["a2v"]["R@1"], r["a2v"]["R@5"], r["v2a"]["R@1"]
t0 = time.time()
for s in range(steps):
    idx = torch.randint(0, len(V), (32,))
    # one clip per video id in the batch
    v, a = model(vtf(V[idx]), S[idx])
    v, a = F.normalize(v, dim=1), F.normalize(a, dim=1)
    logits = v @ a.t() / T
    same = (I[idx][:, None] == I[idx][None, :]) & ~torch.eye(32, dtype=torch.bool)
    logits = logits.masked_fill(same, -1e4)
    tgt = torch.arange(32)
    loss = 0.5 * (F.cross_entropy(logits, tgt) + F.cross_entropy(logits.t(), tgt))
    opt.zero_grad(); loss.backward(); opt.step()
    if (s + 1) % 100 == 0:
        print(s + 1, round(loss.item(), 3), ev(), round(time.time() - t0), flush=True)
