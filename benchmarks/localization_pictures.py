"""The localization pictures committed under docs/images, remade from a checkpoint.

  localization_follows_sound.png  one held-out clip: its own sound, then another clip's sound
                                  of its silent distractor's class, over the same frame
  localization_grid_best.png      best / worst held-out clips by cIoU (`--fraction`, `--temporal`)
  localization_grid_worst.png

    python benchmarks/localization_pictures.py --run outputs/demo/runs/cma --world-dir data/world/default \
        --clip clip_000420 --donor clip_000132 --out docs/images
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _video(world: Path, clip: str) -> Path:
    hits = sorted(world.rglob(f"{clip}.*"))
    hits = [h for h in hits if h.suffix in (".mp4", ".webm")]
    if not hits:
        raise SystemExit(f"no video named {clip} under {world}")
    return hits[0]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from avssl.embed.api import load_model, spec_from
    from avssl.localization import evaluate as ev
    from avssl.localization.defaults import localization_inputs
    from avssl.localization.overlay import overlay_array
    from avssl.localization.run import localize_file

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="checkpoint file or run dir")
    p.add_argument("--world-dir", default="data/world/default")
    p.add_argument("--clip", default="clip_000420", help="held-out clip with a silent distractor")
    p.add_argument("--donor", default="clip_000132", help="clip whose sound is of the distractor's class")
    p.add_argument("--time", type=float, default=1.5)
    p.add_argument("--fraction", type=float, default=0.15, help="kept share of the grids' cIoU")
    p.add_argument("--temporal", default="mean", choices=("slot", "mean"))
    p.add_argument("--out", default="docs/images")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    world, out = Path(args.world_dir), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, info = load_model(args.run, None, device="cpu")
    spec, vt, at = localization_inputs(spec_from(info.get("spec")), info.get("transforms"), "cpu")
    model.eval()

    # 1. the same frame under its own sound and under the donor's sound
    clip, donor = _video(world, args.clip), _video(world, args.donor)
    tmp = out / ".pictures_tmp"
    rows = []
    for audio, title in ((None, "its own sound"), (donor, f"the sound of {args.donor} (the distractor's class)")):
        prod = localize_file(model, clip, tmp, spec, vt, at, overlay_times=[args.time], mp4=False, audio_path=audio,
                             norm="minmax", progress=False)
        rows.append((overlay_array(prod.frames[0], prod.maps[0], title=f"{clip.name} @ {args.time:.2f}s"), title))
    fig, axes = plt.subplots(len(rows), 1, figsize=(8.5, 3.2 * len(rows)), dpi=100)
    for ax, (img, title) in zip(axes, rows):
        ax.imshow(img)
        ax.set_title(title, loc="left", fontsize=12)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "localization_follows_sound.png")
    plt.close(fig)
    for f in tmp.glob("*"):
        f.unlink()
    tmp.rmdir()

    # 2. best / worst held-out clips
    items = [it for it in ev.items_from_world(world, "test") if it.has_source]
    res = ev.evaluate(model, items, spec, vt, at, progress=False, temporal=args.temporal, fraction=args.fraction)
    written = res.write_grids(out, 8)
    for name, path in written.items():
        path.rename(out / f"localization_{name}.png")
    ciou = np.array([r["ciou"] for r in res.rows if r["ciou"] is not None])
    print(f"wrote {out}/localization_follows_sound.png and grids; mean cIoU {ciou.mean():.3f} "
          f"(kept share {args.fraction}, {args.temporal}, {len(ciou)} clips)")


if __name__ == "__main__":
    main()
