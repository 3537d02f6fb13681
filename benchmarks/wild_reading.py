"""Reading the wild collection (tests/wild.py): per backend, clips/s on one core and the share of
clips returned frame-accurately, for this checkout and for a baseline git ref (default: main), run
side by side from one script on the same files and the same clip plan; plus probe time per file.

    OMP_NUM_THREADS=1 python benchmarks/wild_reading.py [--baseline-ref main] [--clips-per-file 6] [--rounds 2]

Each code version runs in its own child process (its `avssl` first on sys.path, pinned to one CPU
when `taskset` exists); the baseline's `avssl` is `git archive <ref> avssl` into a temporary folder.
A clip is frame-accurate when every frame is the one ffmpeg shows at its time (files with valid pts)
or the frame at k / fps in output order (AVI without pts), see tests/wild.py `allowed_codes`;
a clip that raises counts as not accurate. Throughput: clips of the plan / time spent inside
read_clip in the best round (video + audio, the reference training sample: 8 frames @ 16 fps, short side 128, 2 s audio).
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

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SPEC = dict(num_frames=8, fps=16.0, frame_size=128, audio_rate=24000, audio_channels=1, audio_duration=2.0)

# Runs inside the child: argv = [code root, tests dir, job json]; prints one JSON line.
CHILD = r"""
import json, statistics, sys, time, warnings
sys.path[:0] = [sys.argv[1], sys.argv[2]]
warnings.simplefilter("ignore")
import media as M
from avssl.io import ClipSpec, available_backends, probe, read_clip
from avssl.io.errors import MediaError
job = json.load(open(sys.argv[3]))
spec = ClipSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in job["spec"].items()})
out = {"backends": {}, "probe_s": {}}
for b in available_backends():
    best, results = None, None
    for _ in range(job["rounds"]):
        res = []
        dt = 0.0
        for path, start, audio in job["plan"]:
            t0 = time.perf_counter()
            try:
                c = read_clip(path, start, spec, backend=b, audio=audio)
                dt += time.perf_counter() - t0
                res.append({"codes": [M.decode_frame(f) for f in c.video], "times": c.frame_times.tolist(),
                            "errors": int(getattr(c, "decode_errors", 0))})
            except MediaError as e:
                dt += time.perf_counter() - t0
                res.append({"error": e.reason})
            except Exception as e:
                dt += time.perf_counter() - t0
                res.append({"error": "untyped " + type(e).__name__})
        if best is None or dt < best:
            best, results = dt, res
    out["backends"][b] = {"seconds": best, "results": results}
for path in job["probe"]:
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        try:
            probe(path)
        except MediaError:
            pass
        ts.append(time.perf_counter() - t0)
    out["probe_s"][path] = statistics.median(ts)
print(json.dumps(out))
"""


def run_child(code_root: Path, job_file: Path) -> dict:
    cmd = [sys.executable, "-c", CHILD, str(code_root), str(TESTS), str(job_file)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(code_root))
    if p.returncode:
        raise RuntimeError(f"child for {code_root} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-ref", default="main", help="git ref whose avssl/ is the 'before' code ('' to skip)")
    ap.add_argument("--clips-per-file", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None, help="write the raw figures here")
    args = ap.parse_args()
    sys.path[:0] = [str(ROOT), str(TESTS)]
    import numpy as np
    import wild as W

    work = Path(args.workdir or tempfile.mkdtemp(prefix="wild_reading_"))
    t0 = time.perf_counter()
    entries = W.write_wild_collection(work / "wild", seed=0)
    t_write = time.perf_counter() - t0
    print(f"wrote {len(entries)} files in {t_write:.1f}s ({work / 'wild'})", flush=True)
    plan = W.clip_plan(entries, clips_per_file=args.clips_per_file, num_frames=SPEC["num_frames"], fps=SPEC["fps"])
    shown = {e.name: W.ffmpeg_shown(e.path) for e in {id(e): e for e, _ in plan}.values()}
    job = {"spec": SPEC, "rounds": args.rounds, "plan": [(str(e.path), s, e.has_audio) for e, s in plan],
           "probe": [str(e.path) for e in entries]}
    job_file = work / "job.json"
    job_file.write_text(json.dumps(job))

    versions = {"this checkout": ROOT}
    if args.baseline_ref:
        base = work / "baseline"
        base.mkdir(exist_ok=True)
        arc = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline_ref, "avssl"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(base)], input=arc.stdout, check=True)
        versions = {f"before ({args.baseline_ref})": base, **versions}

    figures = {}
    for label, root in versions.items():
        print(f"reading with {label} ...", flush=True)
        out = run_child(root, job_file)
        rows = {}
        for b, r in out["backends"].items():
            ok = err = 0
            wrong_files = set()
            for (e, start), res in zip(plan, r["results"]):
                if "error" in res:
                    err += 1
                    wrong_files.add(e.name)
                    continue
                bad = W.frame_errors(e, res["times"], res["codes"], shown[e.name])
                ok += not bad
                if bad:
                    wrong_files.add(e.name)
            rows[b] = {"clips_per_s": len(plan) / r["seconds"], "accurate": ok / len(plan), "errors": err,
                       "wrong_files": sorted(wrong_files)}
        probe_ms = 1000 * np.array(list(out["probe_s"].values()))
        figures[label] = {"backends": rows, "probe_ms_mean": float(probe_ms.mean()),
                          "probe_ms_median": float(np.median(probe_ms))}

    print(f"\n{len(plan)} clips over {len({e.name for e, _ in plan})} readable files; spec {SPEC}\n")
    print("| code | backend | clips/s (1 core) | frame-accurate clips | clips raising | files with a wrong/failed clip |")
    print("|---|---|---:|---:|---:|---|")
    for label, f in figures.items():
        for b, r in f["backends"].items():
            print(f"| {label} | {b} | {r['clips_per_s']:.1f} | {100 * r['accurate']:.1f}% | {r['errors']} | "
                  f"{', '.join(r['wrong_files']) or '-'} |")
    print("\n| code | probe ms/file (mean) | median |\n|---|---:|---:|")
    for label, f in figures.items():
        print(f"| {label} | {f['probe_ms_mean']:.1f} | {f['probe_ms_median']:.1f} |")
    print(f"\ncollection written in {t_write:.1f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({"write_s": t_write, "clips": len(plan), "figures": figures}, indent=1))


if __name__ == "__main__":
    main()
