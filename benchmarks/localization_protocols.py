"""Localization on the generated world's benchmark package under each public protocol, with the baselines.

The world's held-out clips are written as a VGG-SS test package in the public layout
(``avssl.synth.export.export_localization_package``: frames/<id>.jpg at the annotated frame,
audio/<id>.wav, vggss.json, vggss_test_plus_silent.csv with the silent / off-screen clips as
negatives) and read back as the public evaluators read theirs (``avssl.localization.package``:
the frame stretched to the input size and repeated to the clip length, the middle of the wav).
For a short pretraining run and the same architecture at random init, the raw maps are scored
under ``lvs``, ``ezvsl``, ``slavc`` and ``free`` (kept share 0.5) with the centre-prior,
whole-image and oracle-box baselines on the same samples, at two input sizes (224, what the
public code feeds; and the training crop). Cost per item: heatmaps (read + model) and scoring.

    OMP_NUM_THREADS=2 python benchmarks/localization_protocols.py --md outputs/localization_protocols_table.md
    python benchmarks/localization_protocols.py --run runs/avid_default   # an existing checkpoint instead
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from copy import deepcopy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

PROTOCOLS = ("lvs", "ezvsl", "slavc", "free:0.5")
METRICS = ("ciou_at", "auc", "mean_ciou", "ap", "max_f1")


def _train(world: Path, preset: str, run: Path, experiment: str, steps: int, overrides: list[str]) -> Path:
    from avssl.engine.pretrain import train
    from avssl.utils.configs import compose_config

    if (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("*.pt")):
        return run
    train(compose_config("pretrain", [f"experiment={experiment}", f"run_dir={run}", f"data.world_dir={world}",
                                      f"data.world_preset={preset}", f"trainer.max_steps={steps}", "trainer.epochs=1000",
                                      "trainer.progress=false", "trainer.tensorboard=false", "seed=0", *overrides]))
    return run


def _model(run: Path, random_init: bool):
    from avssl.models.loading import load_model

    model, info = load_model(run, None, device="cpu")
    if random_init:
        model, _ = load_model(None, info["model_config"], device="cpu", seed=0)
    return model.eval(), info


def evaluate(model, info, items, input_size: int, name: str) -> dict:
    """Heatmaps of every package item at ``input_size`` (stretched), scored under each protocol
    with the baselines; the time per item of each step."""
    from avssl.localization import evaluate as ev
    from avssl.localization.defaults import localization_inputs
    from avssl.localization.external import protocol_columns, score_protocols
    from avssl.localization.protocols import get_protocol, score_maps
    from avssl.models.loading import spec_from

    tcfg = deepcopy(info.get("transforms") or {})
    tcfg.setdefault("video", {})["crop_size"] = int(input_size)
    spec, video_t, audio_t = localization_inputs(spec_from(info.get("spec")), tcfg, "cpu", mode="stretch")
    ev.infer_heatmaps(model, items[:2], spec, video_t, audio_t, batch_size=16, progress=False)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    inferred = ev.infer_heatmaps(model, items, spec, video_t, audio_t, batch_size=16, progress=False)
    heat_ms = 1e3 * (time.perf_counter() - t0) / len(items)
    heat_cpu_ms = 1e3 * (time.process_time() - c0) / len(items)
    kept = [items[i] for i in inferred.kept]
    anns = [items.annotations[it.item_id] for it in kept]
    score_ms = {}
    for p in PROTOCOLS:  # the model's maps alone, as a table of one method costs (process CPU time: the host is shared)
        proto = get_protocol(p, value_range=(-1.0, 1.0))
        c0 = time.process_time()
        score_maps(inferred.maps, anns, proto)
        score_ms[proto.name] = 1e3 * (time.process_time() - c0) / len(kept)
    _, scores = score_protocols(inferred.maps, anns, PROTOCOLS, method=name, value_range=(-1.0, 1.0))
    rows = [{"id": it.item_id, "silent": not it.has_source} for it in kept]
    summaries = protocol_columns(rows, scores, name)
    return {"summaries": summaries, "heatmap_ms_per_item": heat_ms, "heatmap_cpu_ms_per_item": heat_cpu_ms,
            "score_ms_per_item": score_ms,
            "map_shape": list(inferred.maps.shape[1:]), "items": len(items), "scored": len(kept),
            "unreadable": inferred.skipped, "spec": spec.__dict__, "rows": rows}


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def tables(results: dict, coverage: str) -> str:
    out = [coverage, ""]
    for size, by_model in results.items():
        trained, rand = by_model["trained"], by_model["random init"]
        out += [f"### Input {size}x{size} (stretched), maps {'x'.join(map(str, trained['map_shape']))}", "",
                "| protocol | method | cIoU@0.5 | AUC | mean cIoU | AP | max-F1 |", "|---|---|---|---|---|---|---|"]
        for p, by in trained["summaries"].items():
            rows = [("trained", by["trained"]), ("random init", rand["summaries"][p]["random init"])]
            rows += [(b.replace("_", " "), by[b]) for b in ("centre_prior", "whole_image", "oracle_box")]
            for m, s in rows:
                out.append(f"| {p} | {m} | " + " | ".join(_f(s[k]) for k in METRICS) + " |")
        out += ["", "| cost (ms / item) | heatmap: read + model (CPU) | heatmap (wall) | " +
                " | ".join(f"score {p} (CPU)" for p in trained["score_ms_per_item"]) + " |",
                "|---|---|---|" + "---|" * len(trained["score_ms_per_item"])]
        for m in ("trained", "random init"):
            r = by_model[m]
            out.append(f"| {m} | {r['heatmap_cpu_ms_per_item']:.1f} | {r['heatmap_ms_per_item']:.1f} | " +
                       " | ".join(f"{v:.2f}" for v in r["score_ms_per_item"].values()) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    from avssl.localization.package import load_package
    from avssl.synth.export import export_localization_package
    from avssl.synth.generate import generate_world

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default", help="world preset (tiny: 7 held-out clips; default: ~100)")
    p.add_argument("--world-dir", default=None, help="default: data/world/<preset>")
    p.add_argument("--out", default="outputs/bench_localization_protocols")
    p.add_argument("--run", default=None, help="an existing checkpoint / run dir (default: train one)")
    p.add_argument("--experiment", default="avid_embedded_cpu")
    p.add_argument("--steps", type=int, default=150, help="pretraining steps when training here")
    p.add_argument("--override", action="append", default=[], help="more pretraining overrides (repeatable)")
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 56], help="model input sides (stretched)")
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

    out = Path(args.out)
    world = Path(args.world_dir or f"data/world/{args.preset}")
    t0 = time.perf_counter()
    generate_world(world, args.preset, seed=0, progress=False)
    pkg = export_localization_package(world, out / "package")
    items = load_package(pkg)
    cov = items.coverage()
    coverage = (f"Package: {cov['annotated']} annotated samples ({len(items.annotations)} with a frame and a sound, "
                f"{cov['missing']} missing; {sum(not a.has_source for a in items.annotations.values())} negatives "
                f"from vggss_test_plus_silent.csv).")
    t_train = time.perf_counter()
    run = Path(args.run) if args.run else _train(world, args.preset, out / "run", args.experiment, args.steps,
                                                      args.override)
    t_train = time.perf_counter() - t_train
    results: dict = {}
    for size in args.sizes:
        results[size] = {}
        for name, rand in (("trained", False), ("random init", True)):
            model, info = _model(run, rand)
            results[size][name] = evaluate(model, info, items, size, name)
            print(f"input {size} {name}: heatmaps {results[size][name]['heatmap_ms_per_item']:.1f} ms/item", flush=True)
    md = tables(results, coverage)
    print(md)
    meta = {"preset": args.preset, "run": str(run), "experiment": None if args.run else args.experiment,
            "overrides": args.override, "steps": args.steps if not args.run else None,
            "train_s": round(t_train, 1), "total_s": round(time.perf_counter() - t0, 1), "host": platform.node(),
            "threads": torch.get_num_threads(), "protocols": list(PROTOCOLS)}
    print(json.dumps(meta))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": {str(k): v for k, v in results.items()}},
                                              indent=1, default=str))
    if args.md:
        Path(args.md).write_text(f"<!-- written by benchmarks/localization_protocols.py: {json.dumps(meta)} -->\n\n{md}\n")


if __name__ == "__main__":
    main()
