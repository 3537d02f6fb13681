"""Approximate search over embedding collections: faiss (IVF and HNSW, through avssl.embed.search)
and hnswlib, against the exact baseline (avssl.embed.retrieval.nearest), side by side.

For each collection (written in the real shard layout, float16 rows) and each backend, in its own
process (so peak RSS is the backend's): build time, index size, peak RSS, recall@10 against exact
search on held-out queries, and query latency (p50 / p95 of single queries; batched: one call for
all queries, per query). Everything runs on ONE thread (OMP_NUM_THREADS=1, faiss / hnswlib /
torch set to 1).

Data:
* ``synthetic``: a clustered Gaussian mixture on the sphere -- ``--clusters`` unit centres, rows
  ``normalize(c + spread * z / sqrt(D))``, z ~ N(0, I); queries are fresh rows of the same mixture
  with extra noise (``--query-noise``, like an audio embedding of a video's clip). Not isotropic
  noise, which is the hardest (and unrealistic) case; ``--spread`` sets how clustered.
* ``model``: rows of an extracted collection (``--collection``, e.g. the CPU preset's clip
  embeddings of the generated world), tiled up to N with Gaussian jitter whose norm is the
  median nearest-neighbour distance of the real rows (copies are no closer to each other than
  real neighbours are); queries are the other modality's rows, jittered the same way.

    OMP_NUM_THREADS=1 python benchmarks/search.py --sizes 10000 100000 1000000 --dims 128 64
    OMP_NUM_THREADS=1 python benchmarks/search.py --data model --collection /tmp/emb --level clip --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BACKENDS = ("exact", "faiss-ivf", "faiss-hnsw", "hnswlib")
K = 10
SHARD_ROWS = 50_000


def rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    """This process's peak RSS (VmHWM: counted from exec; getrusage's ru_maxrss would carry over the
    peak of the parent that forked it, i.e. the driver holding the generated data)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------------------------ data


def write_collection(out: Path, video: np.ndarray, audio: np.ndarray) -> None:
    """Rows as a one-level collection (video level, both modalities), shards of SHARD_ROWS."""
    from avssl.embed import shards as sh

    n = len(video)
    shards = -(-n // SHARD_ROWS)
    out.mkdir(parents=True, exist_ok=True)
    sh.write_json_atomic(out / "meta.json", {"format": sh.FORMAT, "version": sh.VERSION, "num_shards": shards,
                                            "dtype": "float16", "modalities": ["video", "audio"],
                                            "layers": {"video": ["proj"], "audio": ["proj"]}})
    for s in range(shards):
        lo, hi = s * SHARD_ROWS, min(n, (s + 1) * SHARD_ROWS)
        ids = np.arange(lo, hi)
        m = hi - lo
        videos = {"video_id": ids, "path": np.array([f"v{i}" for i in ids], dtype=object),
                  "num_clips": np.ones(m, int), "has_audio": np.ones(m, int), "shard": np.full(m, s),
                  "row": np.arange(m)}
        clips = {**{k: videos[k] for k in ("video_id", "path", "has_audio", "shard", "row")},
                 "clip_index": np.zeros(m, int), "clip_start": np.zeros(m), "clip_end": np.ones(m)}
        sh.write_shard(out, s, {"video-video-proj": video[lo:hi], "video-audio-proj": audio[lo:hi]}, clips, videos,
                       sh.empty_table("failed"), dtype="float16")
    sh.finalize(out, shards)


def synthetic(n, d, queries, *, clusters, spread, query_noise, seed=0):
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((clusters, d)))

    def draw(m):
        return _unit(centres[rng.integers(0, clusters, m)] + spread * rng.standard_normal((m, d)) / np.sqrt(d))

    def noisy(x):
        return _unit(x + query_noise * rng.standard_normal(x.shape) / np.sqrt(d))

    video = np.concatenate([draw(min(200_000, n - i)) for i in range(0, n, 200_000)])
    audio = np.concatenate([noisy(video[i:i + 200_000]) for i in range(0, n, 200_000)])
    return video, audio, noisy(draw(queries))


def from_model(collection, level, n, queries, seed=0):
    """Real rows tiled to n with jitter of the median nearest-neighbour distance (see module doc)."""
    import torch

    from avssl.embed import load_collection
    from avssl.embed.retrieval import nearest

    v, _ = load_collection(collection, level, "video")
    a, _ = load_collection(collection, level, "audio")
    v, a = np.asarray(v, np.float32), np.asarray(a, np.float32)
    s, _ = nearest(torch.from_numpy(v), torch.from_numpy(v), 2, device="cpu")
    nn_dist = float(np.median(np.sqrt(np.maximum(2 - 2 * s[:, 1].numpy(), 0))))
    rng = np.random.default_rng(seed)
    d = v.shape[1]

    def tile(x, m):
        base = x[np.arange(m) % len(x)]
        return _unit(base + nn_dist * rng.standard_normal(base.shape).astype(np.float32) / np.sqrt(d))

    video = np.concatenate([v, tile(v, n - len(v))]) if n > len(v) else v[:n]
    audio = np.concatenate([a, tile(a, n - len(a))]) if n > len(a) else a[:n]
    q = tile(a[rng.permutation(len(a))], queries)
    return video, audio, q, {"real_rows": len(v), "jitter": round(nn_dist, 4)}


# ------------------------------------------------------------------------------ one backend (child process)


def _latencies(search_one, q, singles):
    times = []
    for i in range(min(singles, len(q))):
        t = time.perf_counter()
        search_one(q[i:i + 1])
        times.append(time.perf_counter() - t)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 95) * 1e3)


def run_one(backend: str, coll: Path, singles: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from avssl.embed import search as se
    from avssl.embed import shards as sh

    q = np.load(coll / "queries.npy")
    base_rss = rss_mb()
    res = {"backend": backend}
    rows = sh.MappedRows(coll, "video", "video")
    if backend == "exact":
        from avssl.embed.retrieval import nearest

        t = time.perf_counter()
        data = torch.from_numpy(np.concatenate([b for _, b in rows.blocks()]))
        res["build_s"] = time.perf_counter() - t

        def search(x):
            return nearest(torch.from_numpy(x), data, K, device="cpu")

        t = time.perf_counter()
        _, gt = search(q)
        res["batch_ms"] = (time.perf_counter() - t) / len(q) * 1e3
        np.save(coll / "gt.npy", gt.numpy())
        found = gt.numpy()
        res["index_mb"] = data.numel() * 4 / 2**20
    elif backend.startswith("faiss"):
        import faiss

        faiss.omp_set_num_threads(1)
        t = time.perf_counter()
        si = se.build_index(coll, kind=backend.split("-")[1], threads=1, progress=False)
        res["build_s"] = si.info["build_seconds"]
        res["calibrate_s"] = si.info["calibrate_seconds"]
        res["depth"] = si.info["depth"]
        res["calibrated_recall"] = si.info["recall"]
        res["index_mb"] = si.info["index_bytes"] / 2**20

        def search(x):
            return si.search(x, K)

        t = time.perf_counter()
        _, found = search(q)
        res["batch_ms"] = (time.perf_counter() - t) / len(q) * 1e3
    elif backend == "hnswlib":
        import hnswlib

        t = time.perf_counter()
        p = hnswlib.Index(space="ip", dim=rows.dim)
        p.init_index(max_elements=len(rows), M=32, ef_construction=80, random_seed=0)
        p.set_num_threads(1)
        for off, block in rows.blocks():
            p.add_items(block, np.arange(off, off + len(block)))
        res["build_s"] = time.perf_counter() - t
        # the same calibration as avssl.embed.search: smallest ef reaching recall 0.95 on the collection's rows
        t = time.perf_counter()
        cq, selves, kinds = se._calibration_queries(coll, "video", "video", "proj", len(rows), 256, 0)
        cq = se.held_out_queries(rows, cq, selves, 0)
        _, ex = se.exact_search(rows, cq, K + 1, device="cpu")
        ex = se._drop_self(ex, selves, K)
        ef = K
        while True:
            p.set_ef(ef)
            got, _ = p.knn_query(cq, K + 1)
            got = se._drop_self(got.astype(np.int64), selves, K)
            r = min(se.recall_at_k(got[kinds == m], ex[kinds == m], K) for m in np.unique(kinds))
            if r >= 0.95 or ef >= 4096:
                break
            ef *= 2
        res.update(calibrate_s=time.perf_counter() - t, depth=ef, calibrated_recall=r)
        tmp = coll / "hnswlib.bin"
        p.save_index(str(tmp))
        res["index_mb"] = tmp.stat().st_size / 2**20
        tmp.unlink()

        def search(x):
            return p.knn_query(x, K)

        t = time.perf_counter()
        found, _ = search(q)
        res["batch_ms"] = (time.perf_counter() - t) / len(q) * 1e3
    else:
        raise ValueError(backend)
    gt = np.load(coll / "gt.npy")
    res["recall@10"] = se.recall_at_k(np.asarray(found, np.int64), gt, K)
    res["p50_ms"], res["p95_ms"] = _latencies(search, q, singles)
    res["peak_rss_mb"] = peak_mb()
    res["base_rss_mb"] = base_rss
    return res


# ------------------------------------------------------------------------------ driver


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=["synthetic", "model"], default="synthetic")
    ap.add_argument("--collection", help="--data model: an extracted collection")
    ap.add_argument("--level", default="clip", help="--data model: its level")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dims", type=int, nargs="+", default=[128])
    ap.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    ap.add_argument("--skip", nargs="*", default=[], help="backend@size pairs not to run, e.g. faiss-hnsw@1000000")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--singles", type=int, default=200, help="single-query latency over this many queries")
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--spread", type=float, default=1.0)
    ap.add_argument("--query-noise", type=float, default=0.5)
    ap.add_argument("--workdir", default="/tmp/search_bench")
    ap.add_argument("--json", help="append results (one JSON object per line) here")
    ap.add_argument("--table", help="only print the table of results saved with --json")
    ap.add_argument("--run-one", nargs=2, metavar=("BACKEND", "COLLECTION"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.table:
        print(table([json.loads(x) for x in open(args.table) if x.strip()]))
        return
    if args.run_one:
        print("RESULT " + json.dumps(run_one(args.run_one[0], Path(args.run_one[1]), args.singles)))
        return

    import shutil

    results = []
    for d in args.dims:
        for n in args.sizes:
            tag = (f"synthetic-c{args.clusters}-s{args.spread}" if args.data == "synthetic" else "model") + f"-{n}-{d}"
            coll = Path(args.workdir) / tag
            shutil.rmtree(coll, ignore_errors=True)
            t = time.perf_counter()
            extra = {}
            if args.data == "synthetic":
                video, audio, q = synthetic(n, d, args.queries, clusters=args.clusters, spread=args.spread,
                                            query_noise=args.query_noise)
            else:
                video, audio, q, extra = from_model(args.collection, args.level, n, args.queries)
                if video.shape[1] != d:
                    print(f"skip dim {d}: the collection's rows are {video.shape[1]}-d")
                    continue
            write_collection(coll, video, audio)
            np.save(coll / "queries.npy", q)
            del video, audio
            print(f"== {tag}: written in {time.perf_counter() - t:.0f} s", flush=True)
            backends = ["exact"] + [b for b in args.backends if b != "exact"]  # exact first: the ground truth
            for b in backends:
                if f"{b}@{n}" in args.skip:
                    continue
                t = time.perf_counter()
                proc = subprocess.run([sys.executable, __file__, "--run-one", b, str(coll), "--singles",
                                       str(args.singles)], capture_output=True, text=True)
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if proc.returncode or not line:
                    print(f"{b} failed:\n{proc.stderr[-3000:]}", flush=True)
                    continue
                r = {**json.loads(line[0][7:]), "data": args.data, "n": n, "dim": d, "wall_s": time.perf_counter() - t,
                     **({"clusters": args.clusters, "spread": args.spread, "query_noise": args.query_noise}
                        if args.data == "synthetic" else extra)}
                results.append(r)
                print(json.dumps(r), flush=True)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps(r) + "\n")
            shutil.rmtree(coll, ignore_errors=True)
    print(table(results))


def table(results: list[dict]) -> str:
    """Markdown table; RSS growth = the backend process's peak RSS minus its RSS after imports
    (python + torch + avssl: ~0.7 GiB)."""
    lines = ["| data | N | D | backend | recall@10 | build s | depth | single p50 / p95 ms | batched ms/query | "
             "index MiB | RSS growth MiB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        build = f"{r['build_s']:.1f}" + (f" (+{r['calibrate_s']:.1f})" if r.get("calibrate_s") is not None else "")
        lines.append(f"| {r['data']} | {r['n']:,} | {r['dim']} | {r['backend']} | {r['recall@10']:.3f} | {build} | "
                     f"{r.get('depth', '')} | {r['p50_ms']:.2f} / {r['p95_ms']:.2f} | {r['batch_ms']:.3f} | "
                     f"{r['index_mb']:.0f} | {r['peak_rss_mb'] - r['base_rss_mb']:.0f} |")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
