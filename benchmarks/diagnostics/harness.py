"""Fast learning diagnostics on the default world, clips cut from RAM (DecodedClipDataset, cache in /tmp/dec):
    supvideo | supaudio   supervised source-class accuracy of one tiny encoder (held-out, every --every steps)
    clip                  tiny AV model, symmetric in-batch InfoNCE outside the trainer: held-out R@1/R@5 and
                          the share of audio queries whose top video match has the same source class
Usage (repo root, after the world exists): python benchmarks/diagnostics/harness.py clip --steps 400
"""
import time, csv, torch, torch.nn.functional as F, numpy as np
import argparse
ap=argparse.ArgumentParser(); ap.add_argument("mode"); ap.add_argument("--steps",type=int,default=200)
ap.add_argument("--world",default="data/world/default"); ap.add_argument("--lr",type=float,default=1e-3)
ap.add_argument("--pool",default="avg"); ap.add_argument("--scale",type=float,default=0.4); ap.add_argument("--T",type=float,default=0.1)
ap.add_argument("--bs",type=int,default=32); ap.add_argument("--size",type=int,default=64); ap.add_argument("--crop",type=int,default=56)
ap.add_argument("--width",type=int,default=16); ap.add_argument("--frames",type=int,default=8); ap.add_argument("--fps",type=float,default=16.0)
ap.add_argument("--every",type=int,default=50); ap.add_argument("--jitter",type=float,default=0.2)
a=ap.parse_args()
torch.manual_seed(0)
from avssl.synth import generate as synth
from avssl.data.index import build_index
from avssl.data.dataset import AVClipDataset
from avssl.data.decoded import DecodedClipDataset
from avssl.io.types import ClipSpec
from avssl.models import build_av_model, build_video_encoder, build_audio_encoder
from avssl.transforms.video import VideoAugment
from avssl.transforms.audio import LogSpectrogram
from avssl.embed.retrieval import cross_modal_retrieval
w = synth.load_world(a.world)
gt = {r["path"].split("/")[-1]: r for r in csv.DictReader(open(f"{a.world}/gt.csv"))}
spec = ClipSpec(num_frames=a.frames, fps=a.fps, frame_size=a.size, audio_rate=24000, audio_channels=1, audio_duration=2.0)
def ds(split, mode):
    m,_ = build_index(w.video_paths(split), workers=2, progress=False)
    lab = np.array([int(gt[m.path(i).split("/")[-1]]["source_index"]) for i in range(len(m))])
    return DecodedClipDataset(AVClipDataset(m, spec, mode=mode, labels=lab), cache_dir="/tmp/dec", workers=2, progress=False)
tr, te = ds("train","train"), ds("test","eval")
def batchify(d, idx):
    its=[d[int(i)] for i in idx]
    return torch.stack([x["video"] for x in its]), torch.stack([x["audio"] for x in its]), torch.tensor([x["index"] for x in its]), torch.tensor([x["label"] for x in its])
Vt, At, It, Yt = batchify(te, range(len(te)))
vtf = VideoAugment(crop_size=a.crop, scale=(a.scale, 1.0), jitter=(a.jitter,)*3+(0.0,), train=True); vev = VideoAugment(crop_size=a.crop, train=False)
atf = LogSpectrogram(preset="avid", sample_rate=24000, compute_dtype=torch.float32)
St = atf(At)
if a.mode.startswith("sup"):
    mod = a.mode[3:]
    enc = build_audio_encoder("tiny", pool=a.pool) if mod=="audio" else build_video_encoder("tiny", pool=a.pool)
    head = torch.nn.Linear(enc.out_dim, 10); params=list(enc.parameters())+list(head.parameters())
else:
    model = build_av_model(video="tiny", audio="tiny", proj_dim=[128,128,64], video_args={"pool":a.pool}, audio_args={"pool":a.pool}); params=model.parameters()
opt = torch.optim.Adam(params, lr=a.lr, weight_decay=1e-5)
t0=time.time(); epoch=0; perm=torch.randperm(len(tr)); pos=0
for s in range(a.steps):
    if pos+a.bs>len(perm): epoch+=1; tr.set_epoch(epoch); perm=torch.randperm(len(tr)); pos=0
    idx=perm[pos:pos+a.bs]; pos+=a.bs
    V,A,I,Y=batchify(tr, idx)
    if a.mode.startswith("sup"):
        x = atf(A) if mod=="audio" else vtf(V)
        loss=F.cross_entropy(head(enc(x)),Y)
    else:
        v,aa=model(vtf(V),atf(A)); logits=v@aa.t()/a.T; tgt=torch.arange(len(idx))
        loss=0.5*(F.cross_entropy(logits,tgt)+F.cross_entropy(logits.t(),tgt))
    opt.zero_grad(); loss.backward(); opt.step()
    if (s+1)%a.every==0:
        with torch.no_grad():
            if a.mode.startswith("sup"):
                enc.eval(); acc=(head(enc(St if mod=="audio" else vev(Vt))).argmax(1)==Yt).float().mean().item(); enc.train()
                print(a.mode, s+1, round(loss.item(),3), "test acc", round(acc,3), round(time.time()-t0), flush=True)
            else:
                model.eval(); v,aa=model(vev(Vt),St); model.train()
                r=cross_modal_retrieval(v,aa,It,ks=(1,5))
                # class-level: a2v top1 same class
                sim=aa@v.t(); cls=(Yt[sim.argmax(1)]==Yt).float().mean().item()
                print("clip", s+1, round(loss.item(),3), "a2v R1 %.3f R5 %.3f v2a R1 %.3f | a2v class@1 %.3f"%(r["a2v"]["R@1"],r["a2v"]["R@5"],r["v2a"]["R@1"],cls), round(time.time()-t0), flush=True)
