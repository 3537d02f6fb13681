"""Extraction on ONE core: `avssl.embed.extract` against the naive one-clip-at-a-time loop, and
what decoding each video once (avssl.io.read_clips) buys over reading each clip alone.

Three ways of embedding the same videos (both modalities, projection space, N clips per video):

  naive      for each video, for each clip: read_clip, eval transforms, one forward pass per clip
  per-clip   `extract(..., whole_video_max=0, merge_gap=-inf)`: batched forward passes, every clip
             read alone (extraction before read_clips)
  extract    `extract(...)` with its defaults: clips with no keyframe between them share one decode

All in one process (`num_workers=0`), pinned to one CPU, one torch thread; the embeddings of the
three are compared (max |difference|). `--crossover` also times reading N clips of one video alone,
all in one decode, and as extraction plans it (`read_groups` on the keyframe index), for several
lengths, on a source file (x264 default keyframe interval) and on its training cache (keyframe
every 8 frames): the evidence for the planning rule.

    OMP_NUM_THREADS=1 python benchmarks/extract_speed.py [--videos 6] [--seconds 10] [--clips 10]
        [--backbones tiny avid_r2plus1d_18] [--crossover] [--workdir DIR]
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
from clip_reading import make_video  # noqa: E402  (854x480 30 fps H.264, x264 default GOP, AAC stereo 48 kHz)
from extract import BACKBONES, SPEC, TRANSFORMS  # noqa: E402  (the reference sample, 112 px crop)


def cpu_clock() -> float:
    """CPU seconds of this process and its finished children (user + system): on a machine shared with
    other jobs this counts the work done, not the time spent waiting for a core."""
    import resource

    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # finished subprocesses (ffmpeg-cli), microseconds
    return time.process_time() + kids.ru_utime + kids.ru_stime  # this process, all threads, nanoseconds


def naive_loop(model, paths, durations, clips: int) -> tuple[float, np.ndarray, np.ndarray]:
    from avssl.embed.extract import default_transforms, pool_clips
    from avssl.io import read_clip
    from avssl.io.sampling import eval_clip_starts

    vt, at = default_transforms(SPEC, torch.device("cpu"), TRANSFORMS)
    from avssl.data.spatial import input_policy_of

    spatial = input_policy_of(vt)
    t0 = cpu_clock()
    v_rows, a_rows = [], []
    with torch.no_grad():
        for p, d in zip(paths, durations):
            ve, ae = [], []
            for s in eval_clip_starts(d, SPEC.video_duration, clips):
                clip = read_clip(p, s, SPEC)
                x, _ = spatial.apply(clip.video)
                ve.append(torch.nn.functional.normalize(model.embed_video(vt(x[None])).float(), dim=1)[0])
                ae.append(torch.nn.functional.normalize(model.embed_audio(at(clip.audio[None])).float(), dim=1)[0])
            v_rows.append(pool_clips(torch.stack(ve)[None], "proj")[0])
            a_rows.append(pool_clips(torch.stack(ae)[None], "proj")[0])
    return cpu_clock() - t0, torch.stack(v_rows).numpy(), torch.stack(a_rows).numpy()


def run_extract(model, manifest, clips: int, out: Path, **kw) -> tuple[float, np.ndarray, np.ndarray]:
    from avssl.embed import extract, load_collection

    t0 = cpu_clock()
    rep = extract(manifest, model, out, clips_per_video=clips, spec=SPEC, batch_size=clips, num_workers=0,
                  device="cpu", shard_size=64, dtype="float32", transforms_config=TRANSFORMS, overwrite=True,
                  progress=False, **kw)
    seconds = cpu_clock() - t0
    if rep.failed:
        raise SystemExit(f"{rep.failed} videos failed; see {out}/failed.csv")
    return seconds, load_collection(out, "video", "video")[0], load_collection(out, "video", "audio")[0]


def crossover(work: Path, clips: int, lengths, reps: int = 2) -> None:
    """Seconds to read `clips` eval clips of one video: each alone (read_clip) vs together (read_clips)."""
    from avssl.data.prepare import transcode_video
    from avssl.embed.extract import MERGE_GAP
    from avssl.io import keyframe_times, read_clip, read_clips
    from avssl.io.sampling import eval_clip_starts, read_groups

    print(f"\n| video | {clips} clips read alone (s) | all in one decode (s) | planned (s) | one decode / alone "
          "| planned / alone |")
    print("|---|---:|---:|---:|---:|---:|")
    for d in lengths:
        src = make_video(work / f"src_{d}s.mp4", d)
        cache = work / f"cache_{d}s.mp4"
        if not cache.exists():
            transcode_video(str(src), cache)
        for label, p in ((f"source {d} s (keyframe every 8.3 s)", src), (f"cache {d} s (keyframe every 0.5 s)", cache)):
            starts = eval_clip_starts(float(d), SPEC.video_duration, clips)
            read_clip(p, 0.0, SPEC)  # warm-up

            def planned():
                out = [None] * len(starts)
                for g in read_groups(starts, SPEC.video_duration, float(d), keyframes=keyframe_times(str(p)),
                                     merge_gap=MERGE_GAP):
                    for i, c in zip(g, read_clips(p, starts[g], SPEC) if len(g) > 1 else [read_clip(p, starts[g[0]], SPEC)]):
                        out[i] = c
                return out

            ways = {"alone": lambda: [read_clip(p, s, SPEC) for s in starts], "one": lambda: read_clips(p, starts, SPEC),
                    "planned": planned}
            t = {k: [] for k in ways}
            for _ in range(reps):
                for k, fn in ways.items():
                    t0 = cpu_clock()
                    fn()
                    t[k].append(cpu_clock() - t0)
            a_, o_, p_ = (min(t[k]) for k in ways)
            print(f"| {label} | {a_:.2f} | {o_:.2f} | {p_:.2f} | {o_ / a_:.2f}x | {p_ / a_:.2f}x |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--backbones", nargs="*", default=["tiny"], choices=sorted(BACKBONES),
                    help="none: only --crossover")
    ap.add_argument("--rounds", type=int, default=2, help="each way timed this many times, in turns (min kept)")
    ap.add_argument("--crossover", action="store_true")
    ap.add_argument("--crossover-lengths", type=int, nargs="+", default=[10, 20, 30, 60])
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "avssl_bench_extract_speed"))
    a = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)
    work = Path(a.workdir)
    (work / "videos").mkdir(parents=True, exist_ok=True)
    from avssl.data.index import build_index
    from avssl.models import build_av_model

    # one encoded source, linked under several names (decoding cost is per file read, content alike)
    src = make_video(work / f"src_{a.seconds}s.mp4", a.seconds)
    paths = []
    for i in range(a.videos):
        p = work / "videos" / f"v{i:03d}.mp4"
        if not p.exists():
            os.link(src, p)
        paths.append(str(p))
    manifest, _ = build_index(paths, workers=1, progress=False)
    print(f"# {a.videos} videos of {a.seconds} s (854x480 30 fps H.264 GOP 250 + AAC), {a.clips} clips each, one core")
    print("\n| backbone | naive loop (videos/s) | extract, per-clip reads (videos/s) | extract (videos/s) "
          "| extract / naive | extract / per-clip | max abs diff vs naive |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in a.backbones:
        torch.manual_seed(0)
        model = build_av_model(**BACKBONES[name]).eval()
        run_extract(model, manifest, a.clips, work / "warm")  # warm-up (imports, file cache)
        paths, durs = [manifest.resolve(i) for i in range(len(manifest))], manifest.duration.astype(float)
        times = {"naive": [], "per_clip": [], "extract": []}
        for _ in range(a.rounds):  # the three take turns, so load from other jobs hits all alike; min per way
            tn, vn, an = naive_loop(model, paths, durs, a.clips)
            tp, vp, ap_ = run_extract(model, manifest, a.clips, work / "per_clip", whole_video_max=0.0,
                                      merge_gap=-np.inf)
            te, ve, ae = run_extract(model, manifest, a.clips, work / "extract")
            for k, t in zip(times, (tn, tp, te)):
                times[k].append(t)
        tn, tp, te = (min(times[k]) for k in times)
        diff = max(np.abs(ve - vn).max(), np.abs(ae - an).max(), np.abs(vp - ve).max(), np.abs(ap_ - ae).max())
        n = len(manifest)
        print(f"| {name} | {n / tn:.3f} | {n / tp:.3f} | {n / te:.3f} | {tn / te:.2f}x | {tp / te:.2f}x | {diff:.1e} |",
              flush=True)
    if a.crossover:
        crossover(work, a.clips, a.crossover_lengths)


if __name__ == "__main__":
    main()
