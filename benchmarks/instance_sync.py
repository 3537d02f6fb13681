"""Instance- and synchronization-level figures of pretraining runs on the embedded world (issue 18):
held-out retrieval read at three levels (overall R@K, class-level top-1, within-class R@1 / median
rank, each with its chance), the synchronization test (own vs the same video's audio shifted by 1 s,
0.5 s, 0.25 s), and localization on the world's VGG-SS-style export (the main job's protocol: top-50 %
and top-15 % kept shares, heatmap = mean over the clip's slots) with the same-class-twin preference.

    # train with any preset / overrides (avssl-pretrain), then score the run and its random init:
    python benchmarks/instance_sync.py eval --run runs/x --label baseline --seed 0 --json /tmp/is.json
    python benchmarks/instance_sync.py eval --run runs/x --label random_init --seed 0 --random-init --json /tmp/is.json
    python benchmarks/instance_sync.py table --json /tmp/is.json          # mean +- sd per label (markdown)

The run's own config (stored in its checkpoint) says the data, model and clip spec; the held-out
set is the world's test split, one centre clip per video, and ``eval.sync_shifts`` is set to
[1.0, 0.5, 0.25]. A row already in --json for (label, seed) is replaced.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHIFTS = [1.0, 0.5, 0.25]
RET_KEYS = ["a2v_R@1", "a2v_R@5", "v2a_R@1", "a2v_class_top1", "a2v_within_R@1", "a2v_within_median_rank",
            "v2a_within_R@1"] + [f"sync@{s:g}s_acc" for s in SHIFTS] + [f"sync@{s:g}s_acc_sounding" for s in SHIFTS] \
    + ["sync@1s_auc"]
CHANCE_KEYS = ["chance_R@1", "chance_R@5", "chance_class_top1", "within_chance_R@1", "within_chance_median_rank",
               "mean_class_size", "num_clips"]


def evaluate_run(run: Path, random_init: bool, seed: int, loc_dir: Path) -> dict:
    from avssl.downstream.finetune import load_pretrained_config
    from avssl.engine import pretrain as P
    from avssl.localization.job import run_localization
    from avssl.pipeline import compose
    from avssl.utils.checkpoint import CheckpointManager

    cfg = load_pretrained_config(run)
    cfg["eval"]["sync_shifts"] = SHIFTS
    cfg["data"]["progress"] = False
    cfg["run_dir"] = str(loc_dir / "scratch_run")
    data = P.build_data(cfg, P.setup_distributed("cpu"))
    torch.manual_seed(seed)
    model = P.build_model(cfg)
    if not random_init:
        state = CheckpointManager(run).load()
        model.load_state_dict(state["model"])
    eval_tf = P.build_batch_transforms(cfg, train=False)
    ret = P.evaluate_retrieval(model, eval_tf, data.eval_set, cfg, torch.device("cpu"), labels=data.eval_labels,
                               sounding=data.eval_sounding)
    world = Path(cfg["data"]["world_dir"])
    over = {"annotations": str(world / "vggss" / "vggss.json"), "annotation_format": "vggss",
            "media_root": str(world / "videos"), "progress": False, "mp4": False, "eval.fraction": 0.5,
            "eval.temporal": "mean", "eval.also_fractions": [0.15], "out_dir": str(loc_dir)}
    if random_init:
        over.update(checkpoint=None, model=cfg["model"], clip=cfg["data"]["spec"], transforms=cfg["transforms"],
                    seed=seed)
    else:
        over.update(checkpoint=str(run))
    from avssl.pipeline import minimal_overrides

    # dicts key by key (Hydra merges a dict override into the default one)
    report = run_localization(compose("localize", minimal_overrides("localize", [], over)))
    sums = report["eval"]["summaries"]
    by = report["eval"].get("by_fraction", {}).get("0.15", {})
    loc = {"model": sums["model"], "centre_prior": sums["centre_prior"], "model@0.15": by.get("model"),
           "centre_prior@0.15": by.get("centre_prior")}
    steps = None if random_init else CheckpointManager(run).load()["progress"]["global_step"]
    return {"retrieval": ret, "localization": loc, "steps": steps}


def _fmt(vals, digits=3):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def table(rows: list[dict], labels: list[str] | None = None) -> str:
    labels = labels or list(dict.fromkeys(r["label"] for r in rows))
    head = ["run", "seeds", "a2v R@1", "a2v R@5", "class top-1", "within-class a2v R@1", "within median rank",
            "sync 1 s (sounding)", "sync 0.5 s (sounding)", "sync 0.25 s (sounding)", "sync 1 s AUC",
            "twin pref.", "loc AUC@50%", "mean cIoU@15%"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    any_r = rows[0]["retrieval"]
    out.append(f"| chance | – | {any_r['chance_R@1']:.3f} | {any_r['chance_R@5']:.3f} | {any_r['chance_class_top1']:.3f} | "
               f"{any_r['within_chance_R@1']:.3f} | {any_r['within_chance_median_rank']:g} | 0.5 | 0.5 | 0.5 | 0.5 | 0.5 | "
               f"centre prior {rows[0]['localization']['centre_prior']['auc']:.3f} | centre prior "
               f"{(rows[0]['localization']['centre_prior@0.15'] or {}).get('mean_ciou', float('nan')):.3f} |")
    for label in labels:
        mine = sorted((r for r in rows if r["label"] == label), key=lambda r: r["seed"])
        if not mine:
            continue
        g = lambda k: [r["retrieval"].get(k) for r in mine]  # noqa: E731
        loc = lambda k, key="model": [(r["localization"].get(key) or {}).get(k) for r in mine]  # noqa: E731
        cells = [label, ",".join(str(r["seed"]) for r in mine), _fmt(g("a2v_R@1")), _fmt(g("a2v_R@5")),
                 _fmt(g("a2v_class_top1")), _fmt(g("a2v_within_R@1")), _fmt(g("a2v_within_median_rank"), 1)]
        for s in SHIFTS:
            cells.append(f"{_fmt(g(f'sync@{s:g}s_acc'))} ({_fmt(g(f'sync@{s:g}s_acc_sounding'))})")
        cells += [_fmt(g("sync@1s_auc")), _fmt(loc("twin_preference")), _fmt(loc("auc")), _fmt(loc("mean_ciou", "model@0.15"))]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval")
    e.add_argument("--run", required=True, help="a pretraining run directory (its latest checkpoint)")
    e.add_argument("--label", required=True)
    e.add_argument("--seed", type=int, required=True)
    e.add_argument("--random-init", action="store_true", help="score the run's model with untrained weights")
    e.add_argument("--json", required=True)
    e.add_argument("--note", default="")
    t = sub.add_parser("table")
    t.add_argument("--json", required=True)
    t.add_argument("--labels", nargs="*")
    args = ap.parse_args(argv)
    out = Path(args.json)
    rows = json.loads(out.read_text()) if out.exists() else []
    if args.cmd == "table":
        print(table(rows, args.labels))
        return 0
    run = Path(args.run).resolve()
    loc_dir = out.parent / f"loc_{args.label}_s{args.seed}"
    res = evaluate_run(run, args.random_init, args.seed, loc_dir)
    row = {"label": args.label, "seed": args.seed, "run": str(run), "random_init": args.random_init,
           "note": args.note, **res}
    rows = [r for r in rows if not (r["label"] == args.label and r["seed"] == args.seed)] + [row]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1, default=str))
    r = res["retrieval"]
    print(json.dumps({k: r.get(k) for k in RET_KEYS + CHANCE_KEYS}, indent=1))
    print(json.dumps({k: {m: v.get(m) for m in ("auc", "mean_ciou", "twin_preference", "twin_items")}
                      for k, v in res["localization"].items() if v}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
