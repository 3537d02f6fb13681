"""``python -m avssl <command> [options]``: the same as ``avssl <command>`` (see avssl.cli)."""

import sys

from avssl.cli import main

if __name__ == "__main__":
    sys.exit(main())
