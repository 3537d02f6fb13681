"""Downstream table on the generated world: scratch vs AVID vs AVID+CMA initialisation.

For each starting point: fine-tuning on the world's UCF101-style export with 10 % and 100 % of
the training labels (every requested fold and seed; video top-1 mean ± sample std), a linear
probe and a k-NN probe of the frozen video encoder (pooled `--layer` features, official train
list -> test list, same folds), and the ESC-50-style 5-fold audio probe of the frozen audio
encoder. Writes a JSON of every number and a markdown table.

    # checkpoints from avssl-pretrain experiment=avid_embedded_cpu / cma_embedded_cpu
    python benchmarks/downstream.py --avid runs/avid_embedded_cpu --cma runs/cma_embedded_cpu \
        --world-dir data/world/default --folds 1 2 3 --seeds 0 --md benchmarks/downstream_table.md
    # smoke run on the tiny world (a tiny pretraining run as the "pretrained" init)
    python benchmarks/downstream.py --preset tiny --world-dir /tmp/world_tiny --avid runs/tiny --folds 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")


def compose_cfg(preset: str, overrides: list[str]) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from avssl.utils.schema import register_schemas

    register_schemas()  # the configs' typed sections (Hydra ConfigStore)

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("finetune", overrides=[f"finetune={preset}", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def mean_std(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": int(len(v)),
            "values": v.tolist()}


def fmt_ms(ms: dict | None) -> str:
    if ms is None:
        return "—"
    return f"{100 * ms['mean']:.1f} ± {100 * ms['std']:.1f}" if ms["n"] > 1 else f"{100 * ms['mean']:.1f}"


def folds_of(args, fmt: str) -> list[int]:
    return [1] if fmt == "kinetics" else args.folds


def run_finetune(args, fmt: str, init: dict, fraction: float) -> dict:
    from avssl.downstream.finetune import finetune

    per_run = []
    for seed in args.seeds:
        tag = f"{fmt}_{init['name']}_frac{fraction:g}_seed{seed}"
        cfg = compose_cfg(args.preset, [f"dataset.format={fmt}",
            f"run_dir={args.out_dir / 'finetune' / tag}", f"seed={seed}", f"dataset.label_fraction={fraction}",
            f"dataset.label_seed={seed}", f"dataset.embedded.world_dir={args.world_dir}",
            f"init.kind={init['kind']}", f"init.checkpoint={init['checkpoint'] or 'null'}",
            "folds=[" + ",".join(map(str, folds_of(args, fmt))) + "]", "trainer.progress=false", *args.override])
        cfg["model"].update(args.model_patch)  # scratch: the pretrained checkpoints' architecture
        out = finetune(cfg)
        per_run.extend({"seed": seed, "fold": r["fold"], "video_top1": r["video_top1"], "clip_top1": r["clip_top1"],
                        "video_top5": r["video_top5"], "best_epoch": r["best_epoch"],
                        "num_train_videos": r["num_train_videos"]} for r in out["per_fold"])
    return {"runs": per_run, "video_top1": mean_std([r["video_top1"] for r in per_run]),
            "clip_top1": mean_std([r["clip_top1"] for r in per_run]),
            "num_train_videos": [r["num_train_videos"] for r in per_run]}


def run_probes(args, fmt: str, init: dict) -> dict:
    from avssl.data.spatial import policy_from_config
    from avssl.downstream.audio_probe import audio_probe
    from avssl.downstream.data import load_split, make_dataset
    from avssl.downstream.finetune import _clip_spec, load_pretrained_av_model
    from avssl.downstream.linear_probe import probe_monitor
    from avssl.transforms.video import VideoAugment

    base = compose_cfg(args.preset, [f"dataset.embedded.world_dir={args.world_dir}", *args.override])
    spec = _clip_spec(base["dataset"]["spec"])
    crop = base["transforms"]["video"]["crop_size"]
    lin, knn, audio = [], [], []
    for seed in args.seeds:
        torch.manual_seed(seed)
        if init["kind"] == "scratch":
            model = load_pretrained_av_model("scratch", model_cfg=args.scratch_model)
        else:
            model = load_pretrained_av_model(init["kind"], init["checkpoint"])
        for fold in folds_of(args, fmt):
            train, test = load_split(fmt, Path(args.world_dir) / fmt, fold)
            clips = args.probe_clips
            eval_crop = policy_from_config(base["transforms"]["video"], train=False)  # per item, before batching
            tr = make_dataset(train, spec, "eval", clips, seed, spatial=eval_crop)
            te = make_dataset(test, spec, "eval", clips, seed, spatial=eval_crop)
            out = probe_monitor(model, tr, te, VideoAugment(crop, train=False, geometry=False), layer=args.layer,
                                batch_size=32)
            lin.append(out["linear_top1"])
            knn.append(out["knn_top1"])
        key = (init["name"], seed)  # same files whatever the video format: probe once
        if key not in args.audio_cache:
            args.audio_cache[key] = audio_probe(
                model.audio_model, Path(args.world_dir) / "esc50", duration=args.audio_duration,
                clips_per_file=args.audio_clips, layer=args.audio_layer, seed=seed, progress=False)
        a = args.audio_cache[key]
        audio.append(a)
    return {"linear_top1": mean_std(lin), "knn_top1": mean_std(knn),
            "audio_top1": mean_std([a["mean"] for a in audio]),
            "audio_per_fold": [a["per_fold"] for a in audio]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--avid", help="AVID checkpoint: avssl run dir / checkpoint, or a released .pth.tar with --released")
    ap.add_argument("--cma", help="AVID+CMA checkpoint (same forms)")
    ap.add_argument("--released", action="store_true", help="--avid/--cma are released AVID-CMA .pth.tar files")
    ap.add_argument("--preset", default="embedded_cpu", help="configs/finetune/<preset>.yaml")
    ap.add_argument("--world-dir", default="data/world/default")
    ap.add_argument("--formats", nargs="+", default=["ucf101", "kinetics"],
                    help="world exports to evaluate: ucf101/hmdb51 (action labels, 3 folds), kinetics (source labels)")
    ap.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0])
    ap.add_argument("--layer", default="pool", help="video feature map for the linear / k-NN probes")
    ap.add_argument("--probe-clips", type=int, default=3, help="eval clips per video whose features are averaged")
    ap.add_argument("--audio-layer", default="pool")
    ap.add_argument("--audio-duration", type=float, default=2.0)
    ap.add_argument("--audio-clips", type=int, default=1)
    ap.add_argument("--out-dir", type=Path, default=Path("runs/downstream_bench"))
    ap.add_argument("--json", type=Path, default=None, help="default: <out-dir>/downstream.json")
    ap.add_argument("--md", type=Path, default=None, help="write the markdown table here")
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--skip-probes", action="store_true", help="fine-tuning only (e.g. more seeds of one row)")
    ap.add_argument("override", nargs="*", help="extra Hydra overrides for the fine-tuning config")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    # the scratch model must match the pretrained architecture: take it from the first checkpoint's config
    args.scratch_model = {"video": "tiny", "audio": "tiny", "proj_dim": [128, 128, 64]}
    kind = "avid" if args.released else "avssl"
    inits = [{"name": "scratch", "kind": "scratch", "checkpoint": None}]
    for name, path in (("AVID", args.avid), ("AVID+CMA", args.cma)):
        if path:
            inits.append({"name": name, "kind": kind, "checkpoint": str(path)})
    args.audio_cache = {}
    args.model_patch = {}
    if not args.released and len(inits) > 1:
        from avssl.downstream.finetune import load_pretrained_config

        mcfg = load_pretrained_config(inits[1]["checkpoint"])["model"]
        args.scratch_model = mcfg
        args.model_patch = {"video": mcfg["video"], "video_args": dict(mcfg.get("video_args") or {})}
    if args.released:
        args.scratch_model = {"cfg": "avid"}
        args.model_patch = {"video": "avid_r2plus1d_18", "video_args": {}}

    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}",
               "command": " ".join(sys.argv), "folds": args.folds, "seeds": args.seeds, "formats": {}}
    t_all = time.perf_counter()
    for fmt in args.formats:
        per_init = results["formats"].setdefault(fmt, {"folds": folds_of(args, fmt), "inits": {}})["inits"]
        for init in inits:
            r = {"checkpoint": init["checkpoint"]}
            t0 = time.perf_counter()
            if not args.skip_finetune:
                for frac in args.fractions:
                    r[f"finetune_{frac:g}"] = run_finetune(args, fmt, init, frac)
            r["probes"] = {} if args.skip_probes else run_probes(args, fmt, init)
            r["seconds"] = time.perf_counter() - t0
            per_init[init["name"]] = r
            print(f"{fmt} {init['name']}: " + ", ".join(
                f"FT {f:g}: {fmt_ms(r.get(f'finetune_{f:g}', {}).get('video_top1'))}" for f in args.fractions)
                + f", linear {fmt_ms(r['probes'].get('linear_top1'))}, kNN {fmt_ms(r['probes'].get('knn_top1'))}, "
                  f"audio {fmt_ms(r['probes'].get('audio_top1'))} ({r['seconds']:.0f}s)", flush=True)
    results["seconds"] = time.perf_counter() - t_all
    out_json = args.json or args.out_dir / "downstream.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=1))
    table = "\n\n".join(markdown_table(results, fmt, args.fractions) for fmt in args.formats)
    print(table)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(table + "\n")
    return results


LABELS = {"ucf101": "actions (UCF101-style split files)", "hmdb51": "actions (HMDB51-style split files)",
          "kinetics": "sound-source classes (Kinetics-style CSV)"}


def markdown_table(results: dict, fmt: str, fractions) -> str:
    block = results["formats"][fmt]
    head = ["init"] + [f"fine-tune {100 * f:g}% labels" for f in fractions] + \
           ["linear probe", "k-NN", "audio probe (ESC-50-style, 5-fold)"]
    lines = [f"**{fmt}: {LABELS.get(fmt, fmt)}**, folds {block['folds']} x seeds {results['seeds']}, video top-1 %",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    scratch = block["inits"].get("scratch", {})
    for name, r in block["inits"].items():
        cells = [name]
        for f in fractions:
            ms = r.get(f"finetune_{f:g}", {}).get("video_top1")
            cell = fmt_ms(ms)
            base = scratch.get(f"finetune_{f:g}", {}).get("video_top1")
            if ms and base and name != "scratch":
                cell += f" ({100 * (ms['mean'] - base['mean']):+.1f})"
            cells.append(cell)
        cells += [fmt_ms(r["probes"].get(k)) for k in ("linear_top1", "knn_top1", "audio_top1")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Mean ± sample std over runs (in brackets: points above scratch). {results['machine']}; "
                 f"all formats {results['seconds']:.0f} s.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
