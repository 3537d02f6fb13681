"""Memory growth per reader: RSS after many read_clip calls on one file, per backend, next to a
deliberately leaky reader (PyAV containers opened and never closed) as the baseline a leak shows.

    OMP_NUM_THREADS=1 python benchmarks/clip_reading_memory.py --calls 300

A 4 s 426x240 H.264 (keyframe every 30) + stereo AAC file, random starts; each reader runs
in its own fresh process; RSS is read from /proc/self/statm after a warm-up of
`--warmup` calls and again after `--calls` more (random starts, seeded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import gc, json, os, sys
import numpy as np
path, readers, warmup, calls = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4])
from avssl.io import ClipSpec, read_clip
spec = ClipSpec(num_frames=8, fps=16.0, frame_size=64, audio_rate=24000)
kept = []

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

def leaky(start):
    import av  # the leak under test: a container per call that is never closed (kept alive)
    c = av.open(path)
    vs = c.streams.video[0]
    c.seek(int(start / vs.time_base), stream=vs)
    for i, f in enumerate(c.decode(vs)):
        if i == 8:
            break
    kept.append(c)

def one(reader, s):
    if reader == "leaky-pyav":
        leaky(s)
    else:
        read_clip(path, s, spec, backend=reader)

for reader in readers:  # one after another in this process (the leaky one last, when asked)
    rng = np.random.default_rng(0)
    for _ in range(warmup):
        one(reader, float(rng.uniform(0, 3.5)))
    gc.collect()
    a = rss_mb()
    for _ in range(calls):
        one(reader, float(rng.uniform(0, 3.5)))
    gc.collect()
    b = rss_mb()
    print(json.dumps({"reader": reader, "rss_after_warmup_mb": a, "rss_after_mb": b, "growth_mb": b - a,
                      "calls": calls}), flush=True)
"""


def measure(path: str, readers: list[str], warmup: int, calls: int) -> list[dict]:
    """Run the readers one after another in one fresh process; one result dict per reader."""
    out = subprocess.run([sys.executable, "-c", _CHILD, path, ",".join(readers), str(warmup), str(calls)],
                         capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def make_file(d: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import media

    return media.write_coded(d / "mem.mp4", seconds=4.0, fps=30.0, size=(240, 426), audio_rate=48000,
                             channel_gains=(1.0, 0.7), gop=30).path


def main():
    from avssl.io import available_backends

    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = str(make_file(Path(d)))
        print("| reader | RSS after warm-up (MiB) | growth over %d more calls (MiB) | per call (KiB) |" % a.calls)
        print("|---|---:|---:|---:|")
        for reader in [*available_backends(), "leaky-pyav"]:
            (r,) = measure(path, [reader], a.warmup, a.calls)  # a fresh process per reader here
            print(f"| {reader} | {r['rss_after_warmup_mb']:.0f} | {r['growth_mb']:.1f} | {r['growth_mb'] * 1024 / a.calls:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
