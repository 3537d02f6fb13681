"""Index cache and manifest at 10^6 videos: cache load time (columnar .npz vs the former JSON
cache, same rows) and the manifest's memory in each DataLoader worker.

Rows are synthetic and written directly (no probing): the point is the cost of the bookkeeping.

    OMP_NUM_THREADS=1 python benchmarks/index_scale.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from avssl.data.index import _INFO_COLUMNS, Manifest, _ProbeCache


def synthetic(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    paths = [f"kinetics/train/class_{i % 400:03d}/{i:08d}_{rng.integers(1 << 30):09d}.mp4" for i in range(n)]
    cols = {"size": rng.integers(10**5, 10**8, n), "mtime_ns": rng.integers(10**18, 2 * 10**18, n),
            "id": np.arange(n, dtype=np.int64)}
    for k, dt in _INFO_COLUMNS.items():
        cols[k] = (rng.random(n) * 30).astype(dt) if dt != np.bool_ else rng.random(n) > 0.1
    return paths, cols


def write_json_cache(path: Path, paths, cols) -> None:
    """The former (version-1) cache layout: {"files": {path: {"id", "size", "mtime_ns", "info"}}}."""
    info_keys = list(_INFO_COLUMNS)
    lists = {k: cols[k].tolist() for k in ["size", "mtime_ns", "id", *info_keys]}
    files = {p: {"id": lists["id"][i], "size": lists["size"][i], "mtime_ns": lists["mtime_ns"][i], "error": None,
                 "info": {k: lists[k][i] for k in info_keys}} for i, p in enumerate(paths)}
    path.write_text(json.dumps({"version": 1, "next_id": len(paths), "files": files}))


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def worker_rss(manifest_file: str) -> str:
    """RSS growth (MB) of a fresh process that unpickles the manifest, like a DataLoader worker."""
    code = ("import pickle,os,sys,gc;import avssl.data.index;gc.collect();"
            "rss=lambda: int(open('/proc/self/statm').read().split()[1])*os.sysconf('SC_PAGE_SIZE')/1e6;"
            "a=rss();m=pickle.load(open(sys.argv[1],'rb'));gc.collect();print(f'{rss()-a:.1f}')")
    return subprocess.run([sys.executable, "-c", code, manifest_file], capture_output=True, text=True,
                          check=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args()
    n = a.rows
    paths, cols = synthetic(n)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        npz, js = d / "cache.npz", d / "cache.json"
        cache = _ProbeCache(paths, cols, [""] * n, [""] * n, n)
        t_save = timed(lambda: cache.save(npz), 1)
        write_json_cache(js, paths, cols)
        t_npz = timed(lambda: _ProbeCache.load(npz))
        t_json_parse = timed(lambda: json.loads(js.read_text()), 1)
        t_json = timed(lambda: _ProbeCache.load(js), 1)  # parse + convert, what a v1 cache costs
        m = Manifest({**{k: cols[k] for k in _INFO_COLUMNS}, "id": cols["id"]},
                     *__import__("avssl.data.index", fromlist=["_pack"])._pack(paths))
        nbytes = sum(getattr(m, k).nbytes for k in list(_INFO_COLUMNS) + ["id"]) + m._path_bytes.nbytes + m._path_offsets.nbytes
        blob = pickle.dumps(m)
        mf = d / "m.pkl"
        mf.write_bytes(blob)
        t_unpickle = timed(lambda: pickle.loads(blob))
        rss = worker_rss(str(mf))
        print(f"rows: {n}")
        print(f"cache file: npz {npz.stat().st_size / 1e6:.1f} MB, json {js.stat().st_size / 1e6:.1f} MB")
        print(f"cache save (npz): {t_save:.2f} s")
        print(f"cache load: npz {t_npz:.2f} s | json.loads only {t_json_parse:.2f} s | json -> table {t_json:.2f} s "
              f"| ratio {t_json / t_npz:.1f}x")
        print(f"manifest arrays: {nbytes / 1e6:.1f} MB; pickled {len(blob) / 1e6:.1f} MB; unpickle {t_unpickle * 1e3:.0f} ms; "
              f"worker RSS growth after unpickling: {rss} MB")


if __name__ == "__main__":
    main()
