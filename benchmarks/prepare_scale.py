"""Cost of `avssl-prepare` from 10^2 to 10^4 files: is it linear in the number of videos?

Writes one short H.264 + AAC clip, copies it N times under distinct names (each copy is indexed, probed
and transcoded as its own video: the per-file cost is what grows with a collection), runs the real
command (`python -m avssl prepare SRC OUT --workers W`) and reads its `prepare_report.json` (wall time,
videos per hour per core). Wall time on a shared machine carries the other jobs' load: compare sizes
within one run.

    OMP_NUM_THREADS=1 python benchmarks/prepare_scale.py --sizes 100 1000 10000 --workers 2 [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_clip(path: Path, seconds: float, fps: float = 16.0, rate: int = 24000) -> None:
    from avssl.io.writer import write_av

    rng = np.random.default_rng(0)
    n = int(seconds * fps)
    frames = rng.integers(0, 255, size=(n, 120, 160, 3), dtype=np.uint8)
    t = np.arange(int(seconds * rate)) / rate
    write_av(path, frames, fps, (0.3 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32), rate)


def run(size: int, clip: Path, work: Path, workers: int) -> dict:
    src, out = work / f"src_{size}", work / f"out_{size}"
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    src.mkdir(parents=True)
    for i in range(size):  # 1000 per sub-folder, as collections are usually laid out
        d = src / f"part{i // 1000:03d}"
        d.mkdir(exist_ok=True)
        shutil.copyfile(clip, d / f"video_{i:06d}.mp4")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "avssl", "prepare", str(src), str(out), "--workers", str(workers)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"prepare failed on {size} files:\n{done.stderr[-2000:]}")
    rep = json.loads((out / "prepare_report.json").read_text())
    row = {"files": size, "wall_s": round(wall, 1), "ms_per_file": round(1000 * wall / size, 1),
           "transcoded": rep.get("transcoded_now"), "failed": len(rep.get("failed", [])) if isinstance(rep.get("failed"), list) else rep.get("failed"),
           "videos_per_hour_per_core": rep.get("videos_per_hour_per_core"), "output_bytes": rep.get("output_bytes"),
           "source_bytes": size * clip.stat().st_size}
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each clip")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "avssl_prepare_scale"))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    clip = work / "clip.mp4"
    write_clip(clip, a.seconds)
    rows = []
    print("| files | wall s | wall ms / file | transcoded | failed | videos/hour/core (report) | cache MiB | source MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in a.sizes:
        r = run(n, clip, work, a.workers)
        rows.append(r)
        print(f"| {r['files']} | {r['wall_s']} | {r['ms_per_file']} | {r['transcoded']} | {r['failed']} | "
              f"{r['videos_per_hour_per_core']:.0f} | {(r['output_bytes'] or 0) / 2**20:.1f} | {r['source_bytes'] / 2**20:.1f} |",
              flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
