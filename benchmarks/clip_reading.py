"""Samples/s (1 / median CPU seconds per sample) of the reference training sample (8 frames @ 16 fps, short side 128, + 2 s of 24 kHz
mono audio) on ONE core, per read_clip backend, against three baselines on the same files:

  reference  the per-sample path of the public AVID-CMA loader (datasets/video_db.py +
             utils/ioutils/av_wrappers.py), restated here: one container for video and audio; seek
             (global, backward to the keyframe) to the first wanted frame, decode forward, skip the
             frames before each wanted frame number and convert only the kept ones to PIL images
             (full size, then resized with PIL by its transform); audio: seek, decode, skip frames
             ending before the window, resample each kept frame to mono s16 at 24 kHz (PyAV's
             AudioResampler; PyAV >= 9 returns a list of frames: the one fix needed), trim/pad,
             scale to [-1, 1]
  naive      PyAV decoding from the start of the file up to the clip (no seek)
  ffmpeg-cli the ffmpeg command line (-ss before -i, fps + scale filters, rawvideo pipe) for
             the frames and a second call for the audio: the practical floor of a subprocess

decord and torchcodec are timed twice: with their decoder kept open between calls
(avssl.io.decoder_cache, the default) and re-opened on every call (cache size 0, the old behaviour).

Videos: 854x480 30 fps H.264 (x264 default keyframe interval) + AAC stereo 48 kHz, 10 s and
60 s, generated here (moving textured pattern), and each one's training cache
(`avssl.data.prepare.transcode_video`: 128 px short side, 16 fps, keyframe every 8 frames, 24 kHz
mono). Usage:

    OMP_NUM_THREADS=1 python benchmarks/clip_reading.py [--samples 12] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from avssl.io import ClipSpec, available_backends, read_clip  # noqa: E402


def cpu_clock() -> float:
    """CPU seconds of this process and its finished children (user + system): on a machine shared with
    other jobs this counts the work done, not the time spent waiting for a core."""
    import resource

    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # finished subprocesses (ffmpeg-cli), microseconds
    return time.process_time() + kids.ru_utime + kids.ru_stime  # this process, all threads, nanoseconds

SPEC = ClipSpec(num_frames=8, fps=16.0, frame_size=128, audio_rate=24000, audio_channels=1, audio_duration=2.0)


def make_video(path: Path, seconds: int, w: int = 854, h: int = 480, fps: int = 30) -> Path:
    """Stream-encode a moving textured pattern + a tone/noise track (no whole-video array in memory)."""
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    yy, xx = np.mgrid[0:h, 0:w]
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "23"}  # x264 default keyframe interval (250)
        as_ = out.add_stream("aac", rate=48000)
        as_.layout = "stereo"
        for i in range(seconds * fps):
            dx, dy = (3 * i) % 8, (2 * i) % 8
            img = texture[dy : dy + h, dx : dx + w].copy()
            img[..., 0] = ((xx + 4 * i) % 256).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        t = np.arange(seconds * 48000) / 48000
        wav = (0.3 * np.sin(2 * np.pi * (440 + 40 * np.floor(t)) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
        for s0 in range(0, wav.size, 1024):
            chunk = np.ascontiguousarray(np.stack([wav[s0 : s0 + 1024]] * 2))
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            af.sample_rate, af.pts, af.time_base = 48000, s0, Fraction(1, 48000)
            for p in as_.encode(af):
                out.mux(p)
        for p in as_.encode():
            out.mux(p)
    os.replace(tmp, path)
    return path


def _size(h, w, short=128):
    return (short, round(w * short / h)) if h <= w else (round(h * short / w), short)


def _audio_pyav(container, a0: float) -> torch.Tensor:
    """Baseline audio: seek, decode the window, mean to mono, torchaudio resample (as AVID's loader)."""
    import torchaudio.functional as AF

    ast = container.streams.audio[0]
    container.seek(int(max(a0 - 0.1, 0) / ast.time_base), stream=ast)
    chunks, t_first = [], None
    for f in container.decode(ast):
        if t_first is None:
            t_first = f.time
        chunks.append(f.to_ndarray())
        if f.time > a0 + SPEC.audio_duration:
            break
    x = torch.from_numpy(np.concatenate(chunks, 1)).mean(0, keepdim=True)
    rate = ast.rate
    i0 = int(round((a0 - t_first) * rate))
    x = x[:, max(i0, 0) : max(i0, 0) + int(SPEC.audio_duration * rate)]
    return AF.resample(x, rate, SPEC.audio_rate)


def naive_reader(path: Path, start: float):
    """Decode from the first frame, no seek; convert only the needed frames."""
    times = start + np.arange(SPEC.num_frames) / SPEC.fps
    out, k = [], 0
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        vs.codec_context.thread_count = 1
        h, w = _size(vs.codec_context.height, vs.codec_context.width)
        prev = None
        for f in c.decode(vs):
            while k < len(times) and f.time > times[k] + 1e-4:
                out.append(prev.to_ndarray(format="rgb24", width=w, height=h))
                k += 1
            if k == len(times):
                break
            prev = f
        wav = _audio_pyav(c, start + SPEC.video_duration / 2 - SPEC.audio_duration / 2)
    return np.stack(out), wav


def reference_reader(path: Path, start: float):
    """The reference loader's per-sample path (see the module doc), restated for the same sample."""
    from PIL import Image

    with av.open(str(path)) as c:  # one container, shared by video and audio as in the reference
        vs = c.streams.video[0]
        vs.codec_context.thread_count = 1
        s0 = float(vs.start_time * vs.time_base) if vs.start_time is not None else 0.0
        rate = float(vs.average_rate)
        out_times = start + np.arange(SPEC.num_frames) / SPEC.fps
        wanted = [int((t - s0) * rate) for t in out_times]  # frame numbers at the source rate
        c.seek(int(wanted[0] / rate * av.time_base))  # global seek: back to the keyframe before
        frames = []
        for f in c.decode(video=0):
            if len(frames) == len(wanted):
                break
            number = f.pts * f.time_base * rate
            if number < wanted[len(frames)]:
                continue  # before the next wanted frame: not converted
            img = f.to_image()
            while len(frames) < len(wanted) and number >= wanted[len(frames)]:
                frames.append(img)
        while len(frames) < len(wanted):  # clip past the end: the last frame (the reference pads likewise)
            frames.append(frames[-1])
        h, w = _size(frames[0].height, frames[0].width)
        video = np.stack([np.asarray(im.resize((w, h), Image.BILINEAR)) for im in frames])  # its Resize transform

        a0 = start + SPEC.video_duration / 2 - SPEC.audio_duration / 2
        end = a0 + SPEC.audio_duration
        resampler = av.audio.resampler.AudioResampler(format="s16p", layout="mono", rate=SPEC.audio_rate)
        c.seek(int(max(a0, 0.0) * av.time_base))
        chunks, first = [], None
        for f in c.decode(audio=0):
            t = f.pts * f.time_base
            if t + Fraction(f.samples, f.rate) < a0:
                continue
            if t > end:
                break
            first = t if first is None else first
            f.pts = None
            chunks += [r.to_ndarray() for r in resampler.resample(f)]  # PyAV >= 9: a list of frames
        data = np.concatenate(chunks, 1)
        ss = int((a0 - float(first)) * SPEC.audio_rate)
        n = int(SPEC.audio_duration * SPEC.audio_rate)
        if ss < 0:
            data, ss = np.pad(data, ((0, 0), (-ss, 0))), 0
        if n > data.shape[1] - ss:
            data = np.pad(data, ((0, 0), (0, n - data.shape[1] + ss)))
        wav = (data[:, ss : ss + n] / np.iinfo(np.int16).max).mean(0, keepdims=True).astype(np.float32)
    return video, wav


def ffmpeg_cli_reader(path: Path, start: float):
    h, w = _size(480, 854)
    vcmd = ["ffmpeg", "-v", "error", "-threads", "1", "-ss", f"{start:.4f}", "-i", str(path), "-frames:v", str(SPEC.num_frames),
            "-vf", f"fps={SPEC.fps},scale={w}:{h}", "-f", "rawvideo", "-pix_fmt", "rgb24", "-threads", "1", "-"]
    raw = subprocess.run(vcmd, capture_output=True, check=True).stdout
    a0 = max(start + SPEC.video_duration / 2 - SPEC.audio_duration / 2, 0)
    acmd = ["ffmpeg", "-v", "error", "-ss", f"{a0:.4f}", "-i", str(path), "-t", str(SPEC.audio_duration), "-vn",
            "-ac", "1", "-ar", str(SPEC.audio_rate), "-f", "f32le", "-"]
    wav = np.frombuffer(subprocess.run(acmd, capture_output=True, check=True).stdout, np.float32)
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3), wav


def time_readers(readers: dict, path: Path, starts, naive_every: int) -> dict:
    """Median samples/s per reader (CPU seconds: see cpu_clock). The readers take turns on each start (round robin), so load
    from other processes on this shared machine hits all of them alike; the median drops spikes."""
    for fn in readers.values():
        fn(path, float(starts[0]))  # warm-up (imports, file cache)
    times = {name: [] for name in readers}
    for i, s in enumerate(starts):
        for name, fn in readers.items():
            if name.startswith("naive") and i % naive_every:
                continue  # decoding from the start of a 60 s file is slow: time it on fewer clips
            t0 = cpu_clock()
            fn(path, float(s))
            times[name].append(cpu_clock() - t0)
    return {name: 1.0 / float(np.median(t)) for name, t in times.items()}


def cached_reader(backend: str, keep_open: bool):
    """read_clip with the decoder kept open between calls (the process's cache), or re-opened on every
    call (a cache of size 0 swapped in for the call, so the kept-open reader's decoders stay open)."""
    import avssl.io.decoder_cache as dcache

    def read(p, s):
        if keep_open:
            dcache.decoder_cache().resize(16)
            return read_clip(p, s, SPEC, backend=backend)
        saved = dcache.decoder_cache()
        dcache._CACHE = dcache.DecoderCache(0)
        try:
            return read_clip(p, s, SPEC, backend=backend)
        finally:
            dcache._CACHE = saved

    return read


def open_cost(path: Path, duration: float, n: int = 16) -> None:
    """Median CPU ms per call of the video part alone (no audio), decoder kept open vs re-opened."""
    from avssl.io.decoder_cache import decoder_cache

    starts = np.random.default_rng(0).uniform(0, duration - 2, n)
    for b in available_backends():
        for size in ((16,) if b == "pyav" else (16, 0)):
            decoder_cache().resize(size)
            read_clip(path, 0.3, SPEC, backend=b, audio=False)
            t = []
            for s in starts:
                t0 = cpu_clock()
                read_clip(path, float(s), SPEC, backend=b, audio=False)
                t.append(cpu_clock() - t0)
            how = "" if b == "pyav" else (" kept open" if size else " re-open")
            print(f"| {path.name} | read_clip[{b}]{how} | {1000 * float(np.median(t)):.1f} |", flush=True)


def readers() -> dict:
    out = {}
    for b in available_backends():
        if b == "pyav":
            out["read_clip[pyav]"] = lambda p, s: read_clip(p, s, SPEC, backend="pyav")
        else:
            out[f"read_clip[{b}] kept open"] = cached_reader(b, True)
            out[f"read_clip[{b}] re-open"] = cached_reader(b, False)
    out.update({"reference (AVID-CMA per-sample path)": reference_reader, "naive (decode from start)": naive_reader,
                "ffmpeg-cli (subprocess)": ffmpeg_cli_reader})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=12, help="clips timed per reader and file")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "avssl_bench_clip_reading"))
    ap.add_argument("--open-cost", action="store_true", help="only the video part per call, kept open vs re-opened")
    args = ap.parse_args()
    from avssl.data.prepare import transcode_video

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)
    wd = Path(args.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    t_make = cpu_clock()
    files = {}
    for d in (10, 60):
        src = make_video(wd / f"h264_480p_{d}s.mp4", d)
        cache = wd / f"cache_128p_{d}s.mp4"
        if not cache.exists():
            transcode_video(str(src), cache)
        files[f"source {d} s"], files[f"cache {d} s"] = (src, d), (cache, d)
    print(f"# test videos ready in {cpu_clock() - t_make:.1f} s ({wd})", flush=True)
    if args.open_cost:
        print("| file | reader | video part per call (CPU ms) |\n|---|---|---:|")
        for path, d in files.values():
            open_cost(path, d)
        return

    rd = readers()
    rows = {}
    for label, (path, d) in files.items():
        rng = np.random.default_rng(d)
        starts = rng.uniform(0, d - 2.0, args.samples)
        sub = {k: v for k, v in rd.items() if not (k.startswith("naive") and label.startswith("cache"))}
        for name, rate in time_readers(sub, path, starts, naive_every=max(1, d // 10)).items():
            rows[(name, label)] = rate
            print(f"{name:40s} {label:12s}: {rate:7.1f} samples/s", flush=True)

    cols = list(files)
    print("\n| reader | " + " | ".join(f"{c} (samples/s)" for c in cols) + " | vs reference, per file |")
    print("|---|" + "---:|" * len(cols) + "---|")
    ref = "reference (AVID-CMA per-sample path)"
    for name in rd:
        vals = [rows.get((name, c)) for c in cols]
        cells = " | ".join("-" if v is None else f"{v:.1f}" for v in vals)
        ratio = " / ".join("-" if v is None else f"{v / rows[(ref, c)]:.2f}x" for v, c in zip(vals, cols))
        print(f"| {name} | {cells} | {ratio} |")


if __name__ == "__main__":
    main()
