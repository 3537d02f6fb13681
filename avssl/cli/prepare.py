"""``avssl-prepare``: transcode an indexed collection into a training cache (same ids; short GOP, low resolution).

    avssl-prepare SOURCE OUT_DIR [--index-cache idx.npz] [--media-root DIR] [--split train]
        [--format auto] [--short-side 128] [--fps 16] [--gop 8] [--audio-rate 24000] [--workers 2]

SOURCE is anything avssl-index takes (folder, media file, text list, Kinetics / AudioSet /
VGGSound CSV with --media-root) or a saved manifest (.npz). Resumable: re-running skips finished
outputs. Writes OUT_DIR/manifest.npz (with the dataset's labels when the source has them) and
OUT_DIR/videos.txt.
"""

import argparse
from pathlib import Path

from avssl.cli.index import print_left_out
from avssl.data.index import Manifest, build_index
from avssl.data.prepare import CacheSpec, build_training_cache
from avssl.data.sources import SOURCE_FORMATS
from avssl.utils.cli import run_main


def run(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("out_dir")
    ap.add_argument("--index-cache", default=None)
    ap.add_argument("--media-root", "--root", dest="root", default=None,
                    help="where a dataset list's media live; other sources: paths stored relative to it")
    ap.add_argument("--split", default=None, help="rows of this split (Kinetics / VGGSound split column)")
    ap.add_argument("--format", dest="fmt", choices=SOURCE_FORMATS, default="auto")
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
        manifest, report = build_index(a.source, cache=a.index_cache, workers=a.workers, root=a.root,
                                       split=a.split, fmt=a.fmt)
        print("source index:", report.summary())
        print_left_out(report.bad, 20)
    spec = CacheSpec(short_side=a.short_side, fps=a.fps, gop=a.gop, audio_rate=a.audio_rate, crf=a.crf)
    cache, report = build_training_cache(manifest, a.out_dir, spec, workers=a.workers)
    if manifest.label is not None:  # the dataset's labels travel to the cache's rows (same ids)
        rows = manifest.position_of(cache.id)
        cache = cache.with_labels([manifest.label_of(int(r)) for r in rows])
        cache.save(Path(a.out_dir) / "manifest.npz")
    listing = Path(a.out_dir) / "videos.txt"
    listing.write_text("".join(cache.resolve(i) + "\n" for i in range(len(cache))))
    print(f"training cache: {len(cache)} videos in {a.out_dir} (transcoded now {report.probed}, "
          f"already done {report.cached}, failed {len(report.bad)}); fingerprint {cache.fingerprint()}")
    for b in report.bad:
        print(f"  {b.reason:16s} {b.path}  {b.detail}")
    return 0 if not report.bad else 1


def main() -> None:
    run_main(run)  # a user mistake: one line, exit 2 (--debug: traceback)


if __name__ == "__main__":
    main()
