"""``avssl-retrieve``: cross-modal retrieval over collections written by avssl-extract.

Retrieval table (audio->video, video->audio), e.g. pretrained vs random weights:
    avssl-retrieve table emb/pretrained emb/random --names pretrained random [--level clip]
Instance-level reading (class-level top-1, within-class rank, each with its chance; sync test from the
clips: own audio vs the same video's audio >= 1 s / 0.5 s away):
    avssl-retrieve table emb/pretrained emb/random --labels data/world/default --sync-shifts 1 0.5
Query by file (embedded with the collection's own model) or by a saved embedding:
    avssl-retrieve query emb/pretrained --file dog.wav --modality audio -k 5
    avssl-retrieve query emb/pretrained --embedding q.npy --modality video --target video
Approximate search index (faiss, the `search` extra; `query` then uses it, `--exact` bypasses it):
    avssl-retrieve index emb/pretrained --level clip --modality video [--kind hnsw]
Videos whose sound does not belong to the picture (off-screen, dubbed, music bed) or is silent,
worst first (avssl.embed.agreement; also written to <collection>/agreement.csv):
    avssl-retrieve agreement emb/pretrained [--flagged-only] [--top 50]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from avssl.utils.cli import run_main


def format_table(results: dict[str, dict], ks=(1, 5, 10)) -> str:
    """Markdown table: one row per (collection, direction)."""
    head = ["collection", "direction"] + [f"R@{k}" for k in ks] + ["median rank", "mean rank", "queries", "chance R@1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, res in results.items():
        for d in ("a2v", "v2a"):
            m = res[d]
            cells = [name, {"a2v": "audio→video", "v2a": "video→audio"}[d]]
            cells += [f"{100 * m[f'R@{k}']:.1f}" for k in ks]
            cells += [f"{m['median_rank']:g}", f"{m['mean_rank']:.1f}", str(m["num_queries"]),
                      f"{100 * res['chance']['R@1']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table", help="R@1/5/10, median/mean rank of one or more collections")
    t.add_argument("collections", nargs="+")
    t.add_argument("--names", nargs="*", help="row labels (default: folder names)")
    t.add_argument("--level", choices=["video", "clip"], default="video")
    t.add_argument("--layer", default="proj")
    t.add_argument("--ties", choices=["pessimistic", "optimistic", "mean"], default="pessimistic")
    t.add_argument("--json", help="also write the numbers here")
    t.add_argument("--device", default=None)
    t.add_argument("--labels", help="class of each file: a generated world's root or a CSV (path,label)")
    t.add_argument("--sync-shifts", nargs="*", type=float, default=[], help="sync test shifts (s), from clip rows")
    q = sub.add_parser("query", help="nearest items to a file or an embedding")
    q.add_argument("collection")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="video/audio file, embedded with the collection's model")
    src.add_argument("--embedding", help=".npy file holding one [D] (or [Q, D]) query embedding")
    q.add_argument("--modality", choices=["audio", "video"], default="audio", help="the query's modality")
    q.add_argument("--target", choices=["audio", "video"], default=None, help="searched modality (default: the other)")
    q.add_argument("--level", choices=["video", "clip"], default="video")
    q.add_argument("--layer", default="proj")
    q.add_argument("-k", type=int, default=10)
    q.add_argument("--device", default=None)
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q.add_argument("--exact", action="store_true", help="exact search even when an index was built")
    x = sub.add_parser("index", help="build the approximate search index of one array (avssl.embed.search)")
    x.add_argument("collection")
    x.add_argument("--level", choices=["video", "clip"], default="video")
    x.add_argument("--modality", nargs="+", choices=["audio", "video"], default=["video", "audio"],
                   help="the searched modalities (one index each)")
    x.add_argument("--layer", default="proj")
    x.add_argument("--kind", choices=["ivf", "hnsw"], default="ivf")
    x.add_argument("--codec", choices=["sq8", "flat"], default="sq8")
    x.add_argument("--nlist", type=int, default=None, help="ivf cells (default ~4 sqrt(rows))")
    x.add_argument("--target-recall", type=float, default=0.95, help="recall@10 vs exact the depth is tuned to")
    x.add_argument("--threads", type=int, default=None)
    g = sub.add_parser("agreement", help="rank videos by audio-visual agreement; flag silent / unrelated sound")
    g.add_argument("collection")
    g.add_argument("--top", type=int, default=20, help="rows to print (0: all)")
    g.add_argument("--flagged-only", action="store_true")
    g.add_argument("--threshold", type=float, default=None, help="flag 'unrelated' below this calibrated score "
                   "(0-1; default 0.5)")
    g.add_argument("--silence-db", type=float, default=None, help="flag 'silent' below this RMS (dBFS; default -45)")
    g.add_argument("--negatives", type=int, default=256, help="mismatched pairs per row for the calibration")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--layer", default="proj")
    g.add_argument("--json", action="store_true", help="print the ranked rows as JSON")
    args = ap.parse_args(argv)

    if args.cmd == "agreement":
        from avssl.embed.agreement import SILENCE_DB, THRESHOLD, agreement, ranked

        videos, _, info = agreement(args.collection, layer=args.layer, negatives=args.negatives, seed=args.seed,
                                    threshold=THRESHOLD if args.threshold is None else args.threshold,
                                    silence_db=SILENCE_DB if args.silence_db is None else args.silence_db)
        order = ranked(videos, flagged_only=args.flagged_only)
        order = order[: args.top] if args.top else order
        cols = ("flag", "agreement", "similarity", "rms_db", "video_id", "path")
        rows = [{c: (videos[c][i].item() if hasattr(videos[c][i], "item") else videos[c][i]) for c in cols}
                for i in order]
        if args.json:
            print(json.dumps(rows, indent=1))
            return 0
        c = info["counts"]
        print(f"{info['videos']} videos: {c['unrelated']} unrelated sound (agreement < {info['threshold']}), "
              f"{c['silent']} silent (< {info['silence_db']} dBFS), {c['no-audio']} without audio, {c['ok']} ok; "
              f"scores in {Path(args.collection) / 'agreement.csv'}")
        for r in rows:
            print(f"{r['flag']:>9}  {r['agreement']:.3f}  {r['similarity']:+.3f}  {r['rms_db']:7.1f} dB  {r['path']}")
        return 0
    if args.cmd == "index":
        from avssl.embed.search import build_index

        for m in args.modality:
            si = build_index(args.collection, args.level, m, args.layer, kind=args.kind, codec=args.codec,
                             nlist=args.nlist, target_recall=args.target_recall, threads=args.threads)
            i = si.info
            print(f"{i['array']}: {i['kind']}/{i['codec']} over {i['rows']} rows of {i['dim']}, depth {i['depth']}, "
                  f"recall@{i['k']} {i['recall']:.3f} vs exact ({i['calibration_queries']} queries), "
                  f"built in {i['build_seconds']:.1f} s, {i['index_bytes'] / 2**20:.1f} MiB")
        return 0

    from avssl.embed.api import collection_retrieval, instance_table, load_labels, query_collection

    if args.cmd == "table":
        names = args.names or [Path(c).name for c in args.collections]
        if len(names) != len(args.collections):
            ap.error("--names needs one name per collection")
        labels = load_labels(args.labels) if args.labels else None
        results = {n: collection_retrieval(c, level=args.level, layer=args.layer, ties=args.ties, device=args.device,
                                           labels=labels, sync_shifts=args.sync_shifts)
                   for n, c in zip(names, args.collections)}
        print(f"{args.level}-level retrieval, layer {args.layer}, ties {args.ties}; "
              f"{results[names[0]]['num_videos']} videos")
        print(format_table(results))
        if labels or args.sync_shifts:
            print("\ninstance level (pooled videos; sync from clip rows):")
            print(instance_table(results))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        return 0

    emb = np.load(args.embedding) if args.embedding else None
    rows = query_collection(args.collection, file=args.file, embedding=emb, query_modality=args.modality,
                            target_modality=args.target, level=args.level, layer=args.layer, k=args.k,
                            device=args.device, exact=args.exact)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            extra = f"  clip {r['clip_index']} @ {r['clip_start']:.2f}s" if "clip_index" in r else ""
            print(f"{r['query']:>3} {r['rank']:>3}  {r['score']:+.4f}  {r['path']}{extra}")
        if rows:
            print(f"(searched: {rows[0]['method']})")
    return 0


def main() -> None:
    run_main(run)  # a user mistake: one line, exit 2 (--debug: traceback)


if __name__ == "__main__":
    main()
