"""How many loader cores one training process needs: clips/s one CPU core decodes for the reference
training sample (8 frames @ 16 fps at short side 128 + 2 s of 24 kHz mono, random start and A/V jitter,
as AVClipDataset asks) from a source file and from its training cache, beside the clips/s one
training step of the reference model consumes (AVID R(2+1)D-18 + AVID Conv2D, 112 px crop,
forward + backward + SGD step, measured here on one CPU core; a GPU's figure is read from
benchmarks/train_step.md). Loader cores per trainer = consumed / decoded-per-core.

    OMP_NUM_THREADS=1 python benchmarks/loader_throughput.py [--samples 16] [--batch 4] [--steps 3]
        [--gpu-clips-per-s 420] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from clip_reading import make_video  # noqa: E402

from avssl.io import ClipSpec, available_backends, read_clip  # noqa: E402
from avssl.io.sampling import train_clip_start  # noqa: E402


def cpu_clock() -> float:
    """CPU seconds of this process and its finished children (user + system): on a machine shared with
    other jobs this counts the work done, not the time spent waiting for a core."""
    import resource

    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # finished subprocesses (ffmpeg-cli), microseconds
    return time.process_time() + kids.ru_utime + kids.ru_stime  # this process, all threads, nanoseconds

SPEC = ClipSpec(num_frames=8, fps=16.0, frame_size=128, audio_rate=24000, audio_channels=1, audio_duration=2.0)


def clips_per_s(path: str, duration: float, n: int, backend: str) -> float:
    rng = np.random.default_rng(0)
    plans = [(train_clip_start(duration, SPEC.video_duration, rng), float(rng.uniform(-0.5, 0.5))) for _ in range(n)]
    read_clip(path, plans[0][0], SPEC, backend=backend, av_offset=plans[0][1])  # warm-up
    t = []
    for s, off in plans:
        t0 = cpu_clock()
        read_clip(path, s, SPEC, backend=backend, av_offset=off)
        t.append(cpu_clock() - t0)
    return 1.0 / float(np.median(t))


def step_clips_per_s(batch: int, steps: int) -> float:
    """Clips/s of forward + backward + SGD step of the reference encoders (random weights, random input)."""
    from avssl.models import build_av_model

    torch.manual_seed(0)
    model = build_av_model(video="avid_r2plus1d_18", audio="avid_conv2d", proj_dim=[512, 512, 128]).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    v = torch.randn(batch, 3, 8, 112, 112)
    a = torch.randn(batch, 1, 257, 200)  # log-spectrogram of 2 s of 24 kHz audio (AVID's audio input)

    def step():
        ev, ea = model.embed_video(v), model.embed_audio(a)
        loss = -(torch.nn.functional.normalize(ev, dim=1) * torch.nn.functional.normalize(ea, dim=1)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t = []
    for _ in range(steps):
        t0 = cpu_clock()
        step()
        t.append(cpu_clock() - t0)
    return batch / float(np.median(t))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--gpu-clips-per-s", type=float, default=420.0,
                    help="clips/s of one GPU training step (benchmarks/train_step.md: H100, reference encoders)")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "avssl_bench_clip_reading"))
    a = ap.parse_args()
    from avssl.data.prepare import transcode_video
    from avssl.io.decoder_cache import decoder_cache

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)
    wd = Path(a.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    src = make_video(wd / "h264_480p_10s.mp4", 10)
    cache = wd / "cache_128p_10s.mp4"
    if not cache.exists():
        transcode_video(str(src), cache)
    decoder_cache().resize(8)
    rates = {}
    for be in available_backends():
        for label, p in (("source", src), ("cache", cache)):
            rates[(be, label)] = clips_per_s(str(p), 10.0, a.samples, be)
            print(f"{be:10s} {label:6s} {rates[(be, label)]:6.1f} clips/s per core", flush=True)
    cpu = step_clips_per_s(a.batch, a.steps)
    print(f"reference model step on one CPU core: {cpu:.2f} clips/s (batch {a.batch})", flush=True)
    print("\n| reader | source 10 s 480p (clips/s per core) | training cache (clips/s per core) "
          f"| cores per CPU trainer core ({cpu:.2f} clips/s) | cores per GPU ({a.gpu_clips_per_s:.0f} clips/s): source / cache |")
    print("|---|---:|---:|---:|---:|")
    for be in available_backends():
        s, c = rates[(be, "source")], rates[(be, "cache")]
        print(f"| read_clip[{be}] | {s:.1f} | {c:.1f} | {cpu / s:.2f} / {cpu / c:.2f} "
              f"| {a.gpu_clips_per_s / s:.0f} / {a.gpu_clips_per_s / c:.0f} |")


if __name__ == "__main__":
    main()
