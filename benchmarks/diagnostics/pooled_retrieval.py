"""Held-out retrieval of a pretraining run with 1 and 4 clips per video (embeddings averaged per video),
and the share of audio queries whose top video has the query's source class.
Usage: python benchmarks/diagnostics/pooled_retrieval.py <run_dir> <world_dir>
"""
import sys, torch, csv, numpy as np, torch.nn.functional as F
from avssl.engine import pretrain as P
from avssl.utils.checkpoint import CheckpointManager
from avssl.data.index import build_index
from avssl.data.dataset import AVClipDataset
from avssl.data.decoded import DecodedClipDataset
from avssl.synth import generate as synth
from avssl.embed.retrieval import cross_modal_retrieval
run, world = sys.argv[1], sys.argv[2]
st = CheckpointManager(run).load(); cfg = st["config"]
model = P.build_model(cfg); model.load_state_dict(st["model"]); model.eval()
tf = P.build_batch_transforms(cfg, train=False)
w = synth.load_world(world); m,_ = build_index(w.video_paths("test"), workers=1, progress=False)
gt = {r["path"].split("/")[-1]: r for r in csv.DictReader(open(f"{world}/gt.csv"))}
lab = torch.tensor([int(gt[m.path(i).split("/")[-1]]["source_index"]) for i in range(len(m))])
spec = P._clip_spec(cfg["data"]["spec"])
for n in (1, 4):
    ds = DecodedClipDataset(AVClipDataset(m, spec, mode="eval", clips_per_video=n), progress=False)
    v, a, ids = P.embed_dataset(model, tf, ds, 32, 0, torch.device("cpu"))
    V = F.normalize(torch.stack([v[ids == i].mean(0) for i in range(len(m))]), dim=1)
    A = F.normalize(torch.stack([a[ids == i].mean(0) for i in range(len(m))]), dim=1)
    r = cross_modal_retrieval(V, A, torch.arange(len(m)), ks=(1, 5))
    cls = (lab[(A @ V.T).argmax(1)] == lab).float().mean().item()
    print(f"clips/video {n}: a2v R@1 {r['a2v']['R@1']:.3f} R@5 {r['a2v']['R@5']:.3f} v2a R@1 {r['v2a']['R@1']:.3f} R@5 {r['v2a']['R@5']:.3f} | a2v same-class@1 {cls:.3f}")
