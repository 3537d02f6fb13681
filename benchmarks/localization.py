"""Localization table on the generated world: checkpoints vs random init vs the fixed baselines.

For each checkpoint (and a randomly initialised model of the first checkpoint's architecture) on
the world's held-out clips: cIoU@0.5 / AUC / mean cIoU under the field's top-50 % rule and under a
kept share near the objects' size (0.15), for the annotated frame's temporal slot and for the mean
over the clip's slots; the centre-prior, whole-image and oracle-box rows come with each set. Then
the mismatched-audio test: on clips with a visible silent distractor, another clip's sound of the
distractor's class is played, and the distractor's cIoU is compared with the same boxes under the
clip's own sound ("control"): a map that listens moves onto the distractor.

    python benchmarks/localization.py --run outputs/demo/runs/avid --run outputs/demo/runs/cma \
        --world-dir data/world/default --md benchmarks/localization_table.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

FRACTIONS = (0.5, 0.15)
TEMPORAL = ("slot", "mean")
SWEEP = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)  # kept shares of the robustness table
assert set(FRACTIONS) <= set(SWEEP)


def _inputs(run: str | None, like: str):
    """(model, spec, video_t, audio_t) for a checkpoint, or a seeded random model of `like`'s
    architecture and inputs (run=None)."""
    from avssl.embed.api import load_model, spec_from
    from avssl.localization.defaults import localization_inputs

    model, info = load_model(like if run is None else run, None, device="cpu")
    if run is None:
        model, _ = load_model(None, info["model_config"], device="cpu", seed=0)
    spec, video_t, audio_t = localization_inputs(spec_from(info.get("spec")), info.get("transforms"), "cpu")
    return model.eval(), spec, video_t, audio_t


def main() -> None:
    from avssl.localization import evaluate as ev

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, help="checkpoint file or run dir (repeatable)")
    p.add_argument("--world-dir", default="data/world/default")
    p.add_argument("--split", default="test")
    p.add_argument("--json", default=None, help="write every figure here")
    p.add_argument("--md", default=None, help="write the markdown tables here")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    world = Path(args.world_dir)
    items = {
        "sources": [it for it in ev.items_from_world(world, args.split) if it.has_source],
        "mismatched": ev.items_from_world(world, args.split, mismatched=True),
        "control": ev.items_from_world(world, args.split, mismatched="control"),
    }
    models = {Path(r).name: r for r in args.run}
    models["random init"] = None
    t0, results, sweep = time.time(), {}, {}
    for name, run in models.items():
        model, spec, vt, at = _inputs(run, args.run[0])
        for temporal in TEMPORAL:
            for set_name, its in items.items():
                # one inference per (model, temporal, set); both fractions score the same maps
                inferred = ev.infer_heatmaps(model, its, spec, vt, at, batch_size=16, progress=False, temporal=temporal)
                kept = [its[i] for i in inferred.kept]
                first = name == next(iter(models))  # baselines do not depend on the model or the sound: once
                for frac in SWEEP if set_name == "sources" else FRACTIONS:  # FRACTIONS is a subset of SWEEP
                    res = ev.score(kept, inferred.maps, fraction=frac, baselines=first, **inferred.placement,
                                   spatial=inferred.spatial)
                    for method, summ in res.summaries.items():
                        key = name if method == "model" else method
                        if set_name == "sources":
                            sweep.setdefault(temporal, {}).setdefault(key, {})[frac] = summ["mean_ciou"]
                        if frac in FRACTIONS:
                            results.setdefault(set_name, {}).setdefault(f"{temporal}@{frac}", {})[key] = summ
        print(f"{name}: done ({time.time() - t0:.0f} s)", flush=True)

    lines = [f"Held-out split `{args.split}` of `{world}`; {len(items['sources'])} clips with a visible sounding "
             f"object, {len(items['mismatched'])} distractors with a donor sound. {platform.node()}, "
             f"torch {torch.__version__}, {time.time() - t0:.0f} s.", ""]
    lines += ["### Sounding object, own sound", "",
              "| heatmap | kept share | method | cIoU@0.5 | AUC | mean cIoU |", "|---|---|---|---|---|---|"]
    for key, rows in results["sources"].items():
        temporal, frac = key.split("@")
        order = [m for m in models if m in rows] + [m for m in rows if m not in models]  # models, then baselines
        for method, s in ((m, rows[m]) for m in order):
            lines.append(f"| {temporal} | {frac} | {method} | {s['ciou_at']:.3f} | {s['auc']:.3f} | {s['mean_ciou']:.3f} |")
    from avssl.localization.gt import gt_map

    areas = [float(gt_map(it.boxes, it.style, 224).mean()) for it in items["sources"]]
    runs = [m for m in models if m != "random init"]
    lines += ["", "### Mean cIoU at every kept share (sounding object, own sound)", "",
              f"Share of the frame inside the ground-truth box: mean {sum(areas) / len(areas):.3f}, "
              f"range {min(areas):.3f}-{max(areas):.3f} (the oracle box's cIoU falls once the kept share exceeds it).", "",
              "| heatmap | method | " + " | ".join(f"{f:g}" for f in SWEEP) + " |", "|---|---|" + "---|" * len(SWEEP)]
    for temporal, rows in sweep.items():
        names = runs + ["random init", "centre_prior", "whole_image", "oracle_box"]
        for method in names:
            lines.append(f"| {temporal} | {method} | " + " | ".join(f"{rows[method][f]:.3f}" for f in SWEEP) + " |")
        if len(runs) > 1:
            cells = []
            for f in SWEEP:
                vals = [rows[m][f] for m in runs]
                cells.append(f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}")
            lines.append(f"| {temporal} | runs: mean ± sd ({len(runs)}) | " + " | ".join(cells) + " |")
    lines += ["", "### Does the map follow the sound? Distractor boxes, mean cIoU", "",
              "| heatmap | kept share | model | distractor's sound played | clip's own sound | moved by |",
              "|---|---|---|---|---|---|"]
    for key in results["mismatched"]:
        temporal, frac = key.split("@")
        for method in models:
            m, c = results["mismatched"][key][method], results["control"][key][method]
            lines.append(f"| {temporal} | {frac} | {method} | {m['mean_ciou']:.3f} | {c['mean_ciou']:.3f} | "
                         f"{m['mean_ciou'] - c['mean_ciou']:+.3f} |")
        c = results["control"][key]
        lines.append(f"| {temporal} | {frac} | centre prior / oracle box | {c['centre_prior']['mean_ciou']:.3f} / "
                     f"{c['oracle_box']['mean_ciou']:.3f} | (no sound) | |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        Path(args.md).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": args.run, "world": str(world), "results": results,
                                               "sweep": sweep, "gt_area": areas}, indent=1))


if __name__ == "__main__":
    main()
