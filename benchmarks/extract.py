"""Embedding extraction throughput (videos/s) on the embedded world, per backbone.

For each backbone (video encoder / audio encoder pair built by `avssl.models.build_av_model`)
two ways of embedding the same videos (both modalities, projection space, N clips each):

  baseline   the notebook path: `avssl.embed.embed_video` + `embed_audio` per file, decoding
             in the main process, one video (N clips) per forward pass, no workers
  extract    `avssl.embed.extract`: DataLoader worker processes decode while the model runs,
             batches of `--batch-size` clips, AMP on CUDA, shards written to disk

Both produce the same numbers (checked here: max |difference| of the per-video embeddings),
so the ratio is the speed-up of the batched, pipelined path. Usage:

    OMP_NUM_THREADS=1 python benchmarks/extract.py                       # CPU, all backbones
    python benchmarks/extract.py --device cuda --videos 96 --clips 10     # on a GPU (AMP)
    python benchmarks/extract.py --backbones tiny --threads 2 --workers 1

The world (preset `--world`, default `default`: 112x112, 3 s clips) is generated once under
`--workdir` (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avssl.io.types import ClipSpec  # noqa: E402

# name -> build_av_model kwargs. AVID R(2+1)D-18 / Conv2D is the paper's model (8 frames, 112 px,
# 2 s of 24 kHz audio); torchvision's r2plus1d_18 with the AVID audio net is the common alternative.
BACKBONES = {
    "tiny": dict(video="tiny", audio="tiny", proj_dim=[32, 32, 16]),
    "avid_r2plus1d_18": dict(video="avid_r2plus1d_18", audio="avid_conv2d", proj_dim=[512, 512, 128]),
    "tv_r2plus1d_18": dict(video="r2plus1d_18", audio="avid_conv2d", proj_dim=[512, 512, 128]),
}
SPEC = ClipSpec(num_frames=8, fps=16.0, frame_size=128, audio_rate=24000, audio_channels=1, audio_duration=2.0)
TRANSFORMS = {"video": {"crop_size": 112}, "audio": {"preset": "avid"}}


def written_videos(workdir: Path, n: int) -> list[str]:
    """`n` 3 s 112x112 16 fps H.264 + 24 kHz AAC files (moving texture + tones) via write_av."""
    from avssl.io.writer import write_av

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        p = workdir / "written" / f"v{i:03d}.mp4"
        if not p.exists():
            tex = rng.integers(0, 255, (1, 112, 224, 3), dtype=np.uint8)
            frames = np.stack([np.roll(tex[0], 3 * t, axis=1)[:, :112] for t in range(48)])
            t = np.arange(3 * 24000) / 24000
            wav = (0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t) + 0.05 * rng.standard_normal(len(t)))[None]
            write_av(p, frames, 16.0, wav.astype(np.float32), 24000)
        out.append(str(p))
    return out


def world_videos(workdir: Path, preset: str, n: int) -> list[str]:
    if preset == "written":
        return written_videos(workdir, n)
    from avssl.synth import generate as synth

    root = workdir / f"world_{preset}"
    synth.generate_world(root, preset=preset, seed=0, workers=2, progress=True)
    paths = [str(p) for p in synth.load_world(root).video_paths(None)]
    if len(paths) < n:
        raise SystemExit(f"world '{preset}' has {len(paths)} videos < --videos {n}")
    return paths[:n]


def run_baseline(model, paths, clips, device, amp):
    from avssl.embed import embed_audio, embed_video
    from avssl.embed.extract import default_transforms

    vt, at = default_transforms(SPEC, device, TRANSFORMS)
    kw = dict(clips_per_video=clips, spec=SPEC, device=device, amp=amp)
    t0 = time.perf_counter()
    v = [embed_video(p, model, transform=vt, **kw) for p in paths]
    a = [embed_audio(p, model=model, transform=at, **kw) for p in paths]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, torch.stack(v).numpy(), torch.stack(a).numpy()


def run_extract(model, manifest, clips, device, amp, batch_size, workers, out):
    from avssl.embed import extract, load_collection

    t0 = time.perf_counter()
    rep = extract(manifest, model, out, clips_per_video=clips, spec=SPEC, batch_size=batch_size,
                  num_workers=workers, device=device, amp=amp, shard_size=64, dtype="float32",
                  transforms_config=TRANSFORMS, overwrite=True, progress=False)
    seconds = time.perf_counter() - t0
    if rep.failed:
        raise SystemExit(f"{rep.failed} videos failed; see {out}/failed.csv")
    v, _ = load_collection(out, "video", "video")
    a, _ = load_collection(out, "video", "audio")
    return seconds, v, a


def bench_retrieval(n: int, queries: int, dim: int, device: torch.device, chunk: int) -> None:
    """Exact top-10 search of `queries` over `n` float16 items: chunked `nearest` against the
    one-shot baseline (full score matrix + topk), which is skipped when its matrix would not fit."""
    from avssl.embed.retrieval import nearest

    g = torch.Generator().manual_seed(0)
    coll = torch.empty(n, dim, dtype=torch.float16)
    for lo in range(0, n, 100_000):
        x = torch.randn(min(100_000, n - lo), dim, generator=g)
        coll[lo:lo + len(x)] = torch.nn.functional.normalize(x, dim=1).half()
    q = coll[torch.randint(0, n, (queries,), generator=g)].float()

    def timed(fn):
        fn()  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, out

    t_chunk, (_, idx) = timed(lambda: nearest(q, coll, k=10, chunk=chunk, query_chunk=1024, device=device))
    matrix_gb = queries * n * 4 / 1e9
    line = f"| {n:,} | {queries} | {dim} | {device.type} | {t_chunk:.2f} s ({queries / t_chunk:,.0f} q/s) |"
    if matrix_gb < 8:
        def one_shot():
            c = coll.to(device).float()
            s, i = torch.topk(q.to(device) @ c.T, 10, dim=1)
            return s.cpu(), i.cpu()
        t_full, (_, idx_full) = timed(one_shot)
        agree = (idx[:, 0] == idx_full[:, 0]).float().mean().item()
        line += f" {t_full:.2f} s | {t_full / t_chunk:.2f}x | top-1 agreement {agree:.3f} |"
    else:
        line += f" (score matrix {matrix_gb:.0f} GB: not run) | | |"
    print(line, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    ap.add_argument("--world", default="default", help="world preset, or 'written' (plain write_av files)")
    ap.add_argument("--media-dir", default=None, help="use the videos of this folder instead (e.g. a copied world)")
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--clips", type=int, default=2, help="clips per video")
    ap.add_argument("--batch-size", type=int, default=16, help="clips per forward pass (extract)")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader decoding processes (extract)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the main process")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--retrieval", type=int, nargs="*", default=None,
                    help="instead: time exact top-10 search over collections of these sizes")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--chunk", type=int, default=65536)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.retrieval is not None:
        print(f"torch threads {args.threads}; float16 collection, float32 blocks of {args.chunk} items\n")
        print("| items | queries | D | device | chunked nearest | one-shot matmul+topk | one-shot / chunked | check |")
        print("|---|---|---|---|---|---|---|---|")
        for n in args.retrieval or [100_000, 1_000_000]:
            bench_retrieval(n, args.queries, args.dim, device, args.chunk)
        return 0
    amp = not args.no_amp and device.type == "cuda"
    from avssl.data.index import build_index
    from avssl.models import build_av_model

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="avssl_bench_extract_"))
    if args.media_dir:
        paths = sorted(str(p) for p in Path(args.media_dir).rglob("*") if p.suffix in (".mp4", ".webm"))[: args.videos]
        args.world = f"{args.world} (from {args.media_dir})"
    else:
        paths = world_videos(workdir, args.world, args.videos)
    manifest, _ = build_index(paths, workers=1)

    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, torch threads "
               f"{args.threads}, {args.workers} decode worker(s)")
    if device.type == "cuda":
        machine += f", {torch.cuda.get_device_name(device)}, AMP {'on' if amp else 'off'}"
    rows = []
    for name in args.backbones:
        torch.manual_seed(0)
        model = build_av_model(**BACKBONES[name]).to(device).eval()
        n_params = sum(p.numel() for p in model.parameters())
        # warm-up (allocator, cudnn autotune, lazy imports) on one video, not timed
        run_baseline(model, paths[:1], args.clips, device, amp)
        tb, vb, ab = run_baseline(model, paths, args.clips, device, amp)
        te, ve, ae = run_extract(model, manifest, args.clips, device, amp, args.batch_size, args.workers,
                                 workdir / f"emb_{name}")
        diff = float(max(np.abs(vb - ve).max(), np.abs(ab - ae).max()))
        row = {"backbone": name, "params_M": n_params / 1e6, "videos": len(paths), "clips_per_video": args.clips,
               "baseline_videos_per_s": len(paths) / tb, "extract_videos_per_s": len(paths) / te,
               "speedup": tb / te, "max_abs_diff": diff}
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\n{machine}; world '{args.world}', {args.videos} videos x {args.clips} clips "
          f"({SPEC.num_frames} frames, 112 px crop, {SPEC.audio_duration:g} s audio), both modalities\n")
    print("| backbone | params (M) | baseline videos/s | extract videos/s | extract / baseline | max abs diff |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backbone']} | {r['params_M']:.1f} | {r['baseline_videos_per_s']:.2f} | "
              f"{r['extract_videos_per_s']:.2f} | {r['speedup']:.2f}x | {r['max_abs_diff']:.1e} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "args": vars(args), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
