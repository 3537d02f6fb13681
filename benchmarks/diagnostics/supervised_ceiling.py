"""Diagnostic: how fast can the tiny encoders learn the 10 source classes WITH labels (video or audio alone)?
Usage: python supervised_ceiling.py video|audio"""
import torch, torch.nn.functional as F, csv, time, sys
from avssl.models import build_video_encoder, build_audio_encoder
from avssl.transforms.video import VideoAugment
from avssl.transforms.audio import LogSpectrogram
from avssl.data.index import build_index
from avssl.synth import generate as synth
torch.manual_seed(0)
rows = {r["path"].split("/")[-1]: r for r in csv.DictReader(open("data/world/default/gt.csv"))}
w = synth.load_world("data/world/default")
def labels(split, n):
    m, _ = build_index(w.video_paths(split), workers=1, progress=False)
    lab = torch.tensor([int(rows[m.path(i).split("/")[-1]]["source_index"]) for i in range(len(m))])
    return lab.repeat_interleave(n)  # dataset item order: video-major, clip-minor (eval mode)
d = torch.load("/tmp/diag/clips.pt")
V, A, I = d["train"]; Vt, At, It = d["test"]
Y = labels("train", 3); Yt = labels("test", 1)
mod = sys.argv[1]
atf = LogSpectrogram(preset="avid", sample_rate=24000, compute_dtype=torch.float32)
if mod == "audio":
    with torch.no_grad(): X = atf(A); Xt = atf(At)
    enc = build_audio_encoder("tiny", pool="avg")
else:
    vtf = VideoAugment(crop_size=56, scale=(0.4, 1.0), jitter=(0.2, 0.2, 0.2, 0.0), train=True); vev = VideoAugment(crop_size=56, train=False)
    enc = build_video_encoder("tiny", pool="avg")
head = torch.nn.Linear(enc.out_dim, 10)
opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=1e-3)
t0 = time.time()
for s in range(150):
    idx = torch.randint(0, len(Y), (32,))
    x = X[idx] if mod == "audio" else vtf(V[idx])
    loss = F.cross_entropy(head(enc(x)), Y[idx]); opt.zero_grad(); loss.backward(); opt.step()
    if (s + 1) % 50 == 0:
        enc.eval()
        with torch.no_grad():
            xt = Xt if mod == "audio" else vev(Vt)
            acc = (head(enc(xt)).argmax(1) == Yt).float().mean().item()
        enc.train(); print(mod, s + 1, round(loss.item(), 3), "test acc", round(acc, 3), round(time.time() - t0), flush=True)
