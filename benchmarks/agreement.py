"""Audio-visual agreement scores (avssl.embed.agreement) on sound that does not belong to the picture.

A generated world the model never saw (``--world-seed``, default preset) is written with dubbed and
muted variants (avssl.synth.variants) beside its own off-screen and silent clips, extracted with a
pretrained checkpoint and with the same architecture at random init (the floor), and scored. For
each kind of clip, ROC AUC of "this clip's sound is not its picture's" against the normal clips:

* ``agreement``: the calibrated score (both directions; what the command flags on);
* ``pct_video``: one direction only (the clip's picture against other videos' sound);
* ``similarity``: the raw cosine, uncalibrated;
* ``rms``: the audio level alone (no model).

    OMP_NUM_THREADS=1 python benchmarks/agreement.py --checkpoint runs/avid_default --workdir /tmp/agreement
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

KINDS = ("offscreen", "dubbed", "silent", "muted")
SCORES = ("agreement", "pct_video", "similarity", "rms_db")


def auc_table(videos: dict, kind_of: dict) -> dict:
    """{kind: {score: ROC AUC of kind vs normal, lower score = more suspicious}}; NaN scores excluded."""
    from sklearn.metrics import roc_auc_score

    kinds = np.array([kind_of[p] for p in videos["path"]])
    out = {}
    for k in KINDS:
        sel = (kinds == k) | (kinds == "normal")
        y = (kinds[sel] == k).astype(int)
        if y.sum() == 0 or y.sum() == len(y):
            continue
        out[k] = {"n": int(y.sum())}
        for s in SCORES:
            x = np.asarray(videos[s], float)[sel]
            ok = np.isfinite(x)
            out[k][s] = float(roc_auc_score(y[ok], -x[ok])) if len(set(y[ok])) == 2 else float("nan")
    return out


def flag_table(videos: dict, kind_of: dict) -> dict:
    """{kind: {flag: share of that kind's videos}} at the thresholds used."""
    from avssl.embed.agreement import FLAGS

    kinds = np.array([kind_of[p] for p in videos["path"]])
    return {k: {f: float(np.mean(videos["flag"][kinds == k] == f)) for f in FLAGS}
            for k in ("normal",) + KINDS if (kinds == k).any()}


THRESHOLDS = (0.3, 0.5, 0.7, 0.9)


def sweep(videos: dict, kind_of: dict) -> dict:
    """{kind: [share of its videos with agreement < t for t in THRESHOLDS]} (what --threshold would flag)."""
    kinds = np.array([kind_of[p] for p in videos["path"]])
    score = np.asarray(videos["agreement"], float)
    return {k: [float(np.mean(score[kinds == k] < t)) for t in THRESHOLDS] for k in ("normal",) + KINDS
            if (kinds == k).any()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="pretraining run dir or checkpoint (e.g. avid_embedded_cpu)")
    ap.add_argument("--workdir", default="/tmp/agreement_bench")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--world-seed", type=int, default=1, help="another seed than training's: clips never seen")
    ap.add_argument("--clips", type=int, default=3, help="clips per video")
    ap.add_argument("--dubbed", type=float, default=0.15)
    ap.add_argument("--muted", type=float, default=0.1)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    import torch

    from avssl.embed import extract
    from avssl.embed.agreement import agreement
    from avssl.embed.api import load_model, spec_from
    from avssl.synth.generate import generate_world
    from avssl.synth.variants import read_variants, write_av_variants

    torch.set_num_threads(1)
    work = Path(args.workdir)
    t0 = time.perf_counter()
    world = generate_world(work / "world", preset=args.preset, seed=args.world_seed, workers=args.workers,
                           progress=True)
    if not (work / "media" / "variants.csv").exists():
        write_av_variants(world.root, work / "media", dubbed_share=args.dubbed, muted_share=args.muted, seed=0)
    rows = read_variants(work / "media")
    kind_of = {r["path"]: r["kind"] for r in rows}
    print(f"world + variants: {time.perf_counter() - t0:.0f} s; kinds "
          f"{ {k: sum(r['kind'] == k for r in rows) for k in ('normal',) + KINDS} }")
    pre, info = load_model(args.checkpoint)
    results = {}
    for name in ("pretrained", "random"):
        model, minfo = (pre, info) if name == "pretrained" else load_model(model_config=info["model_config"], seed=0)
        out = work / f"emb_{name}"
        t = time.perf_counter()
        rep = extract([r["path"] for r in rows], model, out, clips_per_video=args.clips, spec=spec_from(info["spec"]),
                      transforms_config=info["transforms"], model_info=minfo, num_workers=args.workers,
                      device="cpu", batch_size=16, progress=True)
        ext_s = time.perf_counter() - t
        t = time.perf_counter()
        videos, clips, ainfo = agreement(out, progress=False)
        results[name] = {"auc": auc_table(videos, kind_of), "flags": flag_table(videos, kind_of),
                         "below_threshold": sweep(videos, kind_of),
                         "counts": ainfo["counts"], "extract_s": round(ext_s, 1),
                         "agreement_s": round(time.perf_counter() - t, 2), "videos": rep.videos,
                         "mean_agreement": {k: float(np.nanmean(videos["agreement"][[kind_of[p] == k for p in
                                                                                     videos["path"]]]))
                                            for k in ("normal",) + KINDS}}
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    print("\n| weights | kind (n) | " + " | ".join(f"AUC {s}" for s in SCORES) + " |")
    print("|---|---|" + "---|" * len(SCORES))
    for name, r in results.items():
        for k, a in r["auc"].items():
            print(f"| {name} | {k} ({a['n']}) | " + " | ".join(f"{a[s]:.3f}" for s in SCORES) + " |")
    print("\n| weights | kind | " + " | ".join(f"agreement < {t}" for t in THRESHOLDS) + " |")
    print("|---|---|" + "---|" * len(THRESHOLDS))
    for name, r in results.items():
        for k, shares in r["below_threshold"].items():
            print(f"| {name} | {k} | " + " | ".join(f"{x:.2f}" for x in shares) + " |")
    print("\n| weights | kind | mean agreement | " + " | ".join(f"flagged {f}" for f in ("ok", "unrelated", "silent"))
          + " |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        for k, f in r["flags"].items():
            print(f"| {name} | {k} | {r['mean_agreement'][k]:.3f} | {f['ok']:.2f} | {f['unrelated']:.2f} | "
                  f"{f['silent']:.2f} |")


if __name__ == "__main__":
    main()
