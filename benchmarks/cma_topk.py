"""CMA positive-set discovery: exact chunked top-k vs the reference's query-batch-16 loop.

For each N: time and peak memory of `find_positives` (chunked, consensus, k=32, D=128)
and of a loop over query batches of 16 (one [16, N] product per batch, as the
reference sampler does). Sizes that would exceed --budget seconds are extrapolated
from the measured N^2 scaling (marked 'extrap'). Peak memory: tracemalloc-free RSS
delta (psutil) on CPU, torch.cuda.max_memory_allocated on GPU.

    OMP_NUM_THREADS=1 python benchmarks/cma_topk.py --n 10000 100000 240000
    python benchmarks/cma_topk.py --device cuda --n 1800000
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F

from avssl.cma import agreement_scores, find_positives, positive_recall


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000, 240_000])
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds per full measurement")
    ap.add_argument("--chunk-mb", type=int, default=256)
    ap.add_argument("--approx", action="store_true", help="also measure the approximate search + recall")
    args = ap.parse_args()
    dev = torch.device(args.device)
    print(f"device={dev} threads={torch.get_num_threads()} k={args.k} dim={args.dim} chunk budget={args.chunk_mb} MiB")
    print("| N | chunked exact (s) | peak mem (MiB, process) | batch-16 loop (s) | speed-up |")
    print("|---|---|---|---|---|")
    for n in args.n:
        g = torch.Generator().manual_seed(0)
        v = F.normalize(torch.randn(n, args.dim, generator=g), dim=1).to(dev)
        a = F.normalize(torch.randn(n, args.dim, generator=g), dim=1).to(dev)
        # probe: time the chunked search on the first rows (rows are independent), and run
        # the full search only when the extrapolated time fits the budget
        from avssl.cma.positives import auto_chunk_size
        cs = auto_chunk_size(n, "consensus", args.chunk_mb * 2**20)
        probe_rows = min(n, max(cs, 2048))
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync(dev)
        t0 = time.perf_counter()
        for s in range(0, probe_rows, cs):
            e = min(probe_rows, s + cs)
            sc = agreement_scores(v[s:e], a[s:e], v, a, "consensus")
            sc.topk(args.k, dim=1)
            del sc
        sync(dev)
        est = (time.perf_counter() - t0) / probe_rows * n
        if est <= args.budget:
            t0 = time.perf_counter()
            find_positives(v, a, k=args.k, max_chunk_bytes=args.chunk_mb * 2**20)
            sync(dev)
            t_exact, exact_tag = time.perf_counter() - t0, ""
        else:
            t_exact, exact_tag = est, " (extrap from %d rows)" % probe_rows
        peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else peak_rss_mb())
        rows16 = min(n, 16 * max(1, int(probe_rows / 16)))
        sync(dev)
        t0 = time.perf_counter()
        loop16(v, a, args.k, rows16)
        sync(dev)
        t_loop = (time.perf_counter() - t0) / rows16 * n
        loop_tag = "" if rows16 >= n else " (extrap)"
        print(f"| {n} | {t_exact:.2f}{exact_tag} | {peak:.0f} | {t_loop:.2f}{loop_tag} | {t_loop / t_exact:.2f}x |")
        if args.approx and n <= 100_000:
            t0 = time.perf_counter()
            ap_ = find_positives(v, a, k=args.k, approximate=True, projection_dim=32, oversample=8)
            t_ap = time.perf_counter() - t0
            ex = find_positives(v, a, k=args.k)
            print(f"  approximate (proj 32, oversample 8): {t_ap:.2f} s, recall@{args.k} vs exact "
                  f"{positive_recall(ap_, ex):.3f}")
        del v, a


if __name__ == "__main__":
    main()
