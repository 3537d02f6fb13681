#!/usr/bin/env python
"""Index a folder / list of videos and print the report of bad files.

    python tools/index.py VIDEOS_DIR_OR_LIST [--cache idx.json] [--root DIR] [--workers 4]
        [--missing-audio zeros|skip|error] [--out manifest.npz] [--report report.csv]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avssl.data.index import MISSING_AUDIO_POLICIES, build_index  # noqa: E402
from avssl.utils.cli import run_main  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="folder (recursive), text file with one path per line")
    ap.add_argument("--cache", default=None, help="JSON probe cache (re-runs probe only new/changed files)")
    ap.add_argument("--root", default=None, help="store paths relative to this folder")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--missing-audio", choices=MISSING_AUDIO_POLICIES, default="zeros")
    ap.add_argument("--out", default=None, help="save the manifest (.npz)")
    ap.add_argument("--report", default=None, help="write bad files as .csv or .json")
    a = ap.parse_args(argv)
    manifest, report = build_index(a.source, cache=a.cache, workers=a.workers, root=a.root,
                                   missing_audio=a.missing_audio)
    print(report.summary())
    for b in report.bad:
        print(f"  {b.reason:16s} {b.path}  {b.detail}")
    if a.out:
        print(f"manifest: {manifest.save(a.out)} ({len(manifest)} videos, fingerprint {manifest.fingerprint()})")
    if a.report:
        path = report.write_json(a.report) if a.report.endswith(".json") else report.write_csv(a.report)
        print(f"report: {path}")
    return 0


if __name__ == "__main__":
    run_main(main)  # a user mistake: one line, exit 2 (--debug: traceback)
