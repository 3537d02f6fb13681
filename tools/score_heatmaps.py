#!/usr/bin/env python
"""`python tools/score_heatmaps.py ...` is `avssl-score-heatmaps ...` (the code: avssl/cli/score_heatmaps.py), kept for older docs and scripts."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # a checkout, not installed
from avssl.cli.score_heatmaps import main  # noqa: E402
if __name__ == "__main__": main()  # noqa: E701
