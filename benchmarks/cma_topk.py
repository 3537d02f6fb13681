"""CMA positive-set discovery: exact search by blocks (default) and by row chunks vs the
reference's query-batch-16 loop.

For each N (random unit banks, consensus, k=32, D=128):
  blocks  `find_positives(method="blocks")`: symmetric blocks + threshold pruning of the
          audio cosines. Not row-independent (symmetry, running thresholds), so it is
          always run in full; its stats give the share of time in dense matrix products
          and the share of pairs whose audio cosine was computed.
  rows    `find_positives(method="rows")`: row chunks, two [c, N] products per chunk.
  loop    one [16, N] product + top-k per query batch of 16, as the reference sampler does.
rows and loop are row-independent: the loop is timed on its first --loop-rows rows and
scaled to N (marked 'extrap' below N), once before and once after the blocks run (a shared
machine's speed drifts over minutes; the ratio uses their mean, the table shows both), rows on its first max(chunk, 2048) rows, then run in
full unless that would exceed --budget seconds (else scaled, marked 'extrap'). When rows ran in full, the blocks
table is compared with it (recall, 1.000 = the same positive sets).
Peak memory: process peak RSS so far (includes the banks and the interpreter) on CPU,
torch.cuda.max_memory_allocated of the blocks run on GPU.

    OMP_NUM_THREADS=1 python benchmarks/cma_topk.py --n 10000 20000
    OMP_NUM_THREADS=1 python benchmarks/cma_topk.py --n 240000 --budget 40
    python benchmarks/cma_topk.py --device cuda --n 1800000 --chunk-mb 8192
"""
import argparse
import time

import torch
import torch.nn.functional as F

from avssl.cma import agreement_scores, find_positives, positive_recall
from avssl.cma.positives import auto_block_size, auto_chunk_size

METHODS = ("blocks", "rows", "loop")


def peak_rss_mb():
    """Process peak resident memory so far (includes the banks and the interpreter)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def loop16(v, a, k, rows):
    """Reference-style: one query batch of 16 at a time over the first `rows` rows."""
    out = []
    for s in range(0, rows, 16):
        sc = agreement_scores(v[s:s + 16], a[s:s + 16], v, a, "consensus")
        out.append(sc.topk(k + 1, dim=1).indices[:, 1:])
    return torch.cat(out)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_blocks(v, a, k, chunk_bytes, dev):
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    st = {}
    sync(dev)
    t0 = time.perf_counter()
    pos = find_positives(v, a, k=k, max_chunk_bytes=chunk_bytes, method="blocks", stats=st)
    sync(dev)
    t = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else peak_rss_mb()
    return t, st, pos, peak


def time_rows(v, a, k, chunk_bytes, budget, dev):
    """(seconds, tag, table or None): probe on the first rows, full run if it fits the budget."""
    n = v.shape[0]
    cs = auto_chunk_size(n, "consensus", chunk_bytes)
    probe_rows = min(n, max(cs, 2048))
    sync(dev)
    t0 = time.perf_counter()
    for s in range(0, probe_rows, cs):
        e = min(probe_rows, s + cs)
        sc = agreement_scores(v[s:e], a[s:e], v, a, "consensus")
        sc.topk(k, dim=1)
        del sc
    sync(dev)
    est = (time.perf_counter() - t0) / probe_rows * n
    if est > budget:
        return est, f" (extrap from {probe_rows} rows)", None
    t0 = time.perf_counter()
    pos = find_positives(v, a, k=k, max_chunk_bytes=chunk_bytes, method="rows")
    sync(dev)
    return time.perf_counter() - t0, "", pos


def time_loop(v, a, k, rows, dev):
    n = v.shape[0]
    rows16 = min(n, 16 * max(1, int(rows / 16)))
    sync(dev)
    t0 = time.perf_counter()
    loop16(v, a, k, rows16)
    sync(dev)
    return (time.perf_counter() - t0) / rows16 * n, "" if rows16 >= n else " (extrap)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000, 240_000])
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--budget", type=float, default=120.0,
                    help="seconds per full rows / loop measurement (beyond: extrapolated)")
    ap.add_argument("--loop-rows", type=int, default=2048, help="rows the loop is timed on (scaled to N)")
    ap.add_argument("--chunk-mb", type=int, default=256)
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--approx", action="store_true", help="also measure the approximate search + recall")
    args = ap.parse_args()
    dev = torch.device(args.device)
    chunk_bytes = args.chunk_mb * 2**20
    print(f"device={dev} threads={torch.get_num_threads()} k={args.k} dim={args.dim} "
          f"chunk budget={args.chunk_mb} MiB methods={' '.join(args.methods)}")
    print("| N | blocks (s) | block | in matmul | audio pairs | peak mem (MiB) | rows (s) | "
          "batch-16 loop (s, before / after blocks) | blocks vs loop | blocks vs rows | rows vs loop |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    nan = float("nan")
    for n in args.n:
        g = torch.Generator().manual_seed(0)
        v = F.normalize(torch.randn(n, args.dim, generator=g), dim=1).to(dev)
        a = F.normalize(torch.randn(n, args.dim, generator=g), dim=1).to(dev)
        t_b = t_r = t_l = nan
        cells = {"b": "-", "bs": "-", "mm": "-", "audio": "-", "peak": "-", "r": "-", "l": "-"}
        pos_b = pos_r = None
        loops = []
        if "loop" in args.methods:
            time_loop(v, a, args.k, min(n, 64), dev)  # warm-up (first-call allocations)
            loops.append(time_loop(v, a, args.k, min(n, args.loop_rows), dev))
        if "blocks" in args.methods:
            t_b, st, pos_b, peak = time_blocks(v, a, args.k, chunk_bytes, dev)
            cells.update(b=f"{t_b:.2f}", bs=str(auto_block_size(n, chunk_bytes, dev)),
                         mm=f"{st['seconds']['matmul'] / st['seconds']['total']:.0%}",
                         audio=f"{st['audio_pairs'] / st['pairs']:.1%}", peak=f"{peak:.0f}")
        if "rows" in args.methods:
            t_r, tag, pos_r = time_rows(v, a, args.k, chunk_bytes, args.budget, dev)
            cells["r"] = f"{t_r:.2f}{tag}"
            if cells["peak"] == "-" and dev.type == "cpu":
                cells["peak"] = f"{peak_rss_mb():.0f}"
        if "loop" in args.methods:
            if "blocks" in args.methods:
                loops.append(time_loop(v, a, args.k, min(n, args.loop_rows), dev))
            t_l, tag = sum(t for t, _ in loops) / len(loops), loops[0][1]
            cells["l"] = " / ".join(f"{t:.2f}" for t, _ in loops) + tag

        def ratio(x, y):
            return "-" if x != x or y != y else f"{x / y:.2f}x"

        print(f"| {n} | {cells['b']} | {cells['bs']} | {cells['mm']} | {cells['audio']} | {cells['peak']} | "
              f"{cells['r']} | {cells['l']} | {ratio(t_l, t_b)} | {ratio(t_r, t_b)} | {ratio(t_l, t_r)} |",
              flush=True)
        if pos_b is not None and pos_r is not None:
            print(f"  blocks vs rows (full): recall {positive_recall(pos_b, pos_r):.4f}, identical rows "
                  f"{(pos_b == pos_r).all(1).float().mean().item():.4f}", flush=True)
        if args.approx and n <= 100_000:
            t0 = time.perf_counter()
            ap_ = find_positives(v, a, k=args.k, approximate=True, projection_dim=32, oversample=8)
            t_ap = time.perf_counter() - t0
            ex = pos_b if pos_b is not None else find_positives(v, a, k=args.k)
            print(f"  approximate (proj 32, oversample 8): {t_ap:.2f} s, recall@{args.k} vs exact "
                  f"{positive_recall(ap_, ex):.3f}")
        del v, a


if __name__ == "__main__":
    main()
