#!/usr/bin/env python
"""`python tools/make_real_world.py ...` is `avssl-make-real-world ...` (the code: avssl/cli/make_real_world.py), kept for older docs and scripts."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # a checkout, not installed
from avssl.cli.make_real_world import main  # noqa: E402
if __name__ == "__main__": main()  # noqa: E701
