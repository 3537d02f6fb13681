#!/usr/bin/env python
"""`python tools/index.py ...` is `avssl-index ...` (the code: avssl/cli/index.py), kept for older docs and scripts."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # a checkout, not installed
from avssl.cli.index import main  # noqa: E402
if __name__ == "__main__": main()  # noqa: E701
