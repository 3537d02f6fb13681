#!/usr/bin/env python
"""Generate the recorded-sound world (Tux Paint stamps) or, with --world procedural, the procedural one.

    python tools/make_real_world.py --preset real_default --out data/real_world_default --workers 2
    python tools/make_real_world.py --world procedural --preset default

Where the stamps are not installed, `--world real` falls back to the procedural world
(preset `default`, or `tiny` for `real_tiny`) and says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avssl.synth import generate_world  # noqa: E402
from avssl.synth.real_world import REAL_PRESETS, StampsNotFoundError, generate_real_world  # noqa: E402

log = logging.getLogger("make_real_world")


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", choices=("real", "procedural"), default="real")
    ap.add_argument("--preset", default="real_default", help=f"real: {sorted(REAL_PRESETS)} or a yaml file")
    ap.add_argument("--out", default=None, help="output folder (default: data/<world>_<preset>)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    args = ap.parse_args(argv)
    world, preset = args.world, args.preset
    if world == "real":
        out = Path(args.out or f"data/real_world_{Path(preset).stem.removeprefix('real_')}")
        try:
            info = generate_real_world(out, preset, seed=args.seed, workers=args.workers)
        except StampsNotFoundError as e:
            preset = "tiny" if preset == "real_tiny" else "default"
            log.warning("%s -- falling back to the PROCEDURAL world (preset %s)", e, preset)
            world, out = "procedural", Path(args.out or f"data/world_{preset}")
    if world == "procedural":
        out = Path(args.out or f"data/world_{Path(preset).stem}")
        info = generate_world(out, preset, seed=args.seed, workers=args.workers)
    print(json.dumps({"world": world, "root": str(info.root), "clips": info.num_clips, "reused": info.reused,
                      "seconds": round(info.seconds, 1), "exports": {k: str(v) for k, v in info.exports.items()}},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
