"""``avssl-index``: index videos and print the report of every entry left out (with its reason).

    avssl-index SOURCE [--media-root DIR] [--split train] [--format auto]
        [--cache idx.npz] [--workers 4] [--missing-audio zeros|skip|error] [--out manifest.npz]
        [--report report.csv|.json]

SOURCE: a folder (recursive), a media file, a text list (one path per line), or a dataset list as
published: Kinetics CSV (label,youtube_id,time_start,time_end,split), AudioSet segment CSV,
VGGSound CSV, whose files are looked up under --media-root (default: the CSV's folder) by the
dataset's naming conventions. Rows without a file are reported as 'missing' with the names tried.
"""

import argparse

from avssl.data.index import MISSING_AUDIO_POLICIES, build_index
from avssl.data.sources import SOURCE_FORMATS
from avssl.utils.cli import run_main


def print_left_out(bad, limit: int) -> None:
    """The first ``limit`` entries left out of an index, one line each (reason, path, detail)."""
    for b in bad[:limit]:
        print(f"  {b.reason:16s} {b.path}  {b.detail}")
    if len(bad) > limit:
        print(f"  ... and {len(bad) - limit} more")


def run(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="folder, media file, text list, or Kinetics / AudioSet / VGGSound CSV")
    ap.add_argument("--media-root", "--root", dest="root", default=None,
                    help="where a dataset list's media live; other sources: store paths relative to this folder")
    ap.add_argument("--split", default=None, help="rows of this split (Kinetics / VGGSound split column)")
    ap.add_argument("--format", dest="fmt", choices=SOURCE_FORMATS, default="auto")
    ap.add_argument("--cache", default=None, help="probe cache (.npz; re-runs probe only new/changed files)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--missing-audio", choices=MISSING_AUDIO_POLICIES, default="zeros")
    ap.add_argument("--out", default=None, help="save the manifest (.npz)")
    ap.add_argument("--report", default=None, help="write left-out entries as .csv or .json")
    ap.add_argument("--show", type=int, default=20, help="print at most this many left-out entries (all: --report)")
    a = ap.parse_args(argv)
    manifest, report = build_index(a.source, cache=a.cache, workers=a.workers, root=a.root,
                                   missing_audio=a.missing_audio, split=a.split, fmt=a.fmt)
    print(report.summary())
    print_left_out(report.bad, a.show)
    if a.out:
        labels = f", {len(manifest.label_names)} labels" if manifest.label is not None else ""
        print(f"manifest: {manifest.save(a.out)} ({len(manifest)} videos{labels}, fingerprint {manifest.fingerprint()})")
    if a.report:
        path = report.write_json(a.report) if a.report.endswith(".json") else report.write_csv(a.report)
        print(f"report: {path}")
    return 0


def main() -> None:
    run_main(run)  # a user mistake: one line, exit 2 (--debug: traceback)


if __name__ == "__main__":
    main()
