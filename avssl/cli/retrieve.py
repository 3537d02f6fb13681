"""``avssl-retrieve``: cross-modal retrieval over collections written by avssl-extract.

Retrieval table (audio->video, video->audio), e.g. pretrained vs random weights:
    avssl-retrieve table emb/pretrained emb/random --names pretrained random [--level clip]
Instance-level reading (class-level top-1, within-class rank, each with its chance; sync test from the
clips: own audio vs the same video's audio >= 1 s / 0.5 s away):
    avssl-retrieve table emb/pretrained emb/random --labels data/world/default --sync-shifts 1 0.5
Query by file (embedded with the collection's own model) or by a saved embedding:
    avssl-retrieve query emb/pretrained --file dog.wav --modality audio -k 5
    avssl-retrieve query emb/pretrained --embedding q.npy --modality video --target video
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
    args = ap.parse_args(argv)

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
                            device=args.device)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            extra = f"  clip {r['clip_index']} @ {r['clip_start']:.2f}s" if "clip_index" in r else ""
            print(f"{r['query']:>3} {r['rank']:>3}  {r['score']:+.4f}  {r['path']}{extra}")
    return 0


def main() -> None:
    run_main(run)  # a user mistake: one line, exit 2 (--debug: traceback)


if __name__ == "__main__":
    main()
