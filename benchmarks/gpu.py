"""Objective and batch-transform cost, current code side by side with the pre-change code
(benchmarks/baseline_v1.py), on CPU or CUDA.

1. AVID criterion (cross, NCE): forward + backward + both bank updates, batch 32, 10^5-slot
   banks, 1024 negatives, dim 128; and the CMA criterion (current code only).
2. VideoAugment (train preset: crop, flip, colour jitter 0.4/0.4/0.4/0.2) on uint8 clips,
   baseline = per-clip loop over torchvision's colour ops; the two outputs must agree.
3. LogSpectrogram ('avid' preset) in float64 (the default, librosa-exact) vs float32 (training presets).

Each figure is the median of --reps timed calls after 3 warm-ups (CUDA synchronised).

    OMP_NUM_THREADS=1 python benchmarks/gpu.py --device cpu --reps 5
    python benchmarks/gpu.py --device cuda --reps 50
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avssl.methods import AVIDCriterion, CMACriterion  # noqa: E402
from avssl.transforms.audio import LogSpectrogram  # noqa: E402
from avssl.transforms.video import VideoAugment  # noqa: E402
from benchmarks.baseline_v1 import BaselineAVIDCriterion, BaselineVideoAugment  # noqa: E402


def timed(fn, reps: int, dev: torch.device) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def count_ops(cls, dev, n=1000, k=16, d=16, b=32) -> int:
    """Top-level aten ops of one criterion step (draw, forward, backward, update): on a GPU
    each is at least one launch plus dispatcher time, which bounds the step there."""
    from torch.profiler import profile

    c = cls(n, d, num_negatives=k).to(dev)
    v = torch.randn(b, d, device=dev, requires_grad=True)
    a = torch.randn(b, d, device=dev, requires_grad=True)
    g = torch.Generator(device=dev).manual_seed(0)

    def step():
        loss, _ = c(v, a, torch.randint(0, n, (b,), device=dev, generator=g), generator=g)
        loss.backward()

    for _ in range(3):
        step()
    with profile() as prof:
        step()
    return sum(1 for e in prof.events() if e.name.startswith("aten::")
               and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")))


def objective(dev, reps, batch=32, slots=100_000, negatives=1024, dim=128) -> dict:
    out = {}
    v = torch.randn(batch, dim, device=dev, requires_grad=True)
    a = torch.randn(batch, dim, device=dev, requires_grad=True)
    for name, cls in (("baseline", BaselineAVIDCriterion), ("current", AVIDCriterion)):
        crit = cls(slots, dim, num_negatives=negatives).to(dev)
        gen = torch.Generator(device=dev).manual_seed(0)

        def step(c=crit, g=gen):
            idx = torch.randint(0, slots, (batch,), device=dev, generator=g)
            loss, _ = c(v, a, idx, generator=g)
            loss.backward()

        out[f"avid_{name}_ms"] = timed(step, reps, dev) * 1e3
    # same negatives, same banks: both codes must give the same loss and bank
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, slots, (batch,), generator=g).to(dev)
    negs = torch.randint(0, slots - 1, (batch, negatives), generator=g).to(dev)
    negs = negs + (negs >= idx[:, None]).long()
    pair = [cls(slots, dim, num_negatives=negatives).to(dev) for cls in (BaselineAVIDCriterion, AVIDCriterion)]
    losses = [float(c(v.detach(), a.detach(), idx, negatives=negs)[0]) for c in pair]
    out["avid_loss_abs_diff"] = abs(losses[0] - losses[1])
    out["avid_bank_max_abs_diff"] = float((pair[0].video_bank.bank - pair[1].video_bank.bank).abs().max())
    out["ops_per_step"] = {name: count_ops(cls, dev) for name, cls in
                           (("baseline", BaselineAVIDCriterion), ("current", AVIDCriterion))}
    cma = CMACriterion.from_avid(crit)
    cma.set_positives(((torch.arange(slots).unsqueeze(1) + 1 + torch.arange(32)) % slots).to(dev))
    out["cma_current_ms"] = timed(lambda: step(cma), reps, dev) * 1e3
    out["avid_speedup"] = out["avid_baseline_ms"] / out["avid_current_ms"]
    return out


def transforms(dev, reps, batch, frames, size, crop) -> dict:
    gen_data = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (batch, frames, size, size, 3), dtype=torch.uint8, generator=gen_data).to(dev)
    wave = (torch.rand(batch, 1, 48000, generator=gen_data) * 2 - 1).to(dev)
    out = {"video_input": [batch, frames, size, size, 3], "crop": crop}
    aug = {"baseline": BaselineVideoAugment(crop).to(dev), "current": VideoAugment(crop).to(dev)}
    for name, m in aug.items():
        out[f"video_{name}_ms"] = timed(lambda m=m: m(video, generator=torch.Generator().manual_seed(1)), reps, dev) * 1e3
    ref = aug["baseline"](video, generator=torch.Generator().manual_seed(7))
    new = aug["current"](video, generator=torch.Generator().manual_seed(7))
    out["video_max_abs_diff"] = float((ref - new).abs().max())  # normalised units (x / std)
    out["video_speedup"] = out["video_baseline_ms"] / out["video_current_ms"]
    for dt in ("float64", "float32"):
        spec = LogSpectrogram("avid", compute_dtype=dt).to(dev)
        out[f"spectrogram_{dt}_ms"] = timed(lambda s=spec: s(wave), reps, dev) * 1e3
    out["spectrogram_speedup_f32"] = out["spectrogram_float64_ms"] / out["spectrogram_float32_ms"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--skip-objective", action="store_true")
    args = ap.parse_args()
    dev = torch.device(args.device)
    res = {"device": torch.cuda.get_device_name() if dev.type == "cuda" else f"cpu x{torch.get_num_threads()}",
           "torch": torch.__version__}
    if not args.skip_objective:
        res["objective"] = objective(dev, args.reps)
    # GPU synthetic preset (8 x 128 px -> 112) and the CPU preset's clips (8 x 64 px -> 56)
    res["transforms_ref"] = transforms(dev, args.reps, 32, 8, 128, 112)
    res["transforms_cpu_preset"] = transforms(dev, args.reps, 32, 8, 64, 56)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
