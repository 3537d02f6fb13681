#!/usr/bin/env python
"""`python tools/pretrain.py ...` is `avssl-pretrain ...` (the code: avssl/cli/pretrain.py), kept for older docs and scripts."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # a checkout, not installed
from avssl.cli.pretrain import main  # noqa: E402
if __name__ == "__main__": main()  # noqa: E701
