#!/usr/bin/env python
"""Transcode an indexed collection into a training cache (same ids; short GOP, low resolution).

    python tools/prepare.py SOURCE OUT_DIR [--index-cache idx.json] [--root DIR]
        [--short-side 128] [--fps 16] [--gop 8] [--audio-rate 24000] [--workers 2]

SOURCE is a folder / list of videos (indexed first) or a saved manifest (.npz). Resumable:
re-running skips finished outputs. Writes OUT_DIR/manifest.npz and OUT_DIR/videos.txt.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avssl.data.index import Manifest, build_index  # noqa: E402
from avssl.data.prepare import CacheSpec, build_training_cache  # noqa: E402
from avssl.utils.cli import run_main  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("out_dir")
    ap.add_argument("--index-cache", default=None)
    ap.add_argument("--root", default=None)
    ap.add_argument("--short-side", type=int, default=128)
    ap.add_argument("--fps", type=float, default=16.0)
    ap.add_argument("--gop", type=int, default=8)
    ap.add_argument("--audio-rate", type=int, default=24000)
    ap.add_argument("--crf", type=int, default=23)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    if a.source.endswith(".npz"):
        manifest = Manifest.load(a.source)
    else:
        manifest, report = build_index(a.source, cache=a.index_cache, workers=a.workers, root=a.root)
        print("source index:", report.summary())
    spec = CacheSpec(short_side=a.short_side, fps=a.fps, gop=a.gop, audio_rate=a.audio_rate, crf=a.crf)
    cache, report = build_training_cache(manifest, a.out_dir, spec, workers=a.workers)
    listing = Path(a.out_dir) / "videos.txt"
    listing.write_text("".join(cache.resolve(i) + "\n" for i in range(len(cache))))
    print(f"training cache: {len(cache)} videos in {a.out_dir} (transcoded now {report.probed}, "
          f"already done {report.cached}, failed {len(report.bad)}); fingerprint {cache.fingerprint()}")
    for b in report.bad:
        print(f"  {b.reason:16s} {b.path}  {b.detail}")
    return 0 if not report.bad else 1


if __name__ == "__main__":
    run_main(main)  # a user mistake: one line, exit 2 (--debug: traceback)
