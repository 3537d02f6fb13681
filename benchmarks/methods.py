"""Pretraining methods side by side on the embedded default world: each method's CPU preset
(configs/experiment/<method>_embedded_cpu.yaml: the same data, model, transforms, optimiser and 600
steps), per seed, scored by held-out audio<->video retrieval R@1 / R@5, with chance and the random
initialisation (the same seed's untrained model) as reference rows.

    OMP_NUM_THREADS=1 python benchmarks/methods.py --methods avid clip --seeds 0 1 --json /tmp/methods.json
    python benchmarks/methods.py --methods clip --seeds 0 --set trainer.max_steps=100   # any Hydra override

Results are appended to --json as each run ends; a run already there is skipped (re-run to continue).
The markdown table of benchmarks/methods.md is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from avssl.utils.schema import register_schemas

register_schemas()  # the configs' typed sections (Hydra ConfigStore), before composing configs/

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
KEYS = ("a2v_R@1", "a2v_R@5", "v2a_R@1", "v2a_R@5")


def make_cfg(method: str, seed: int, root: Path, overrides: list[str]) -> dict:
    with initialize_config_dir(CONFIGS, version_base="1.3"):
        cfg = compose("pretrain", overrides=[
            f"experiment={method}_embedded_cpu", f"run_dir={root / f'{method}_seed{seed}'}", f"seed={seed}",
            "resume=never", f"data.world_dir={root / 'world'}", f"data.cache_dir={root / 'cache'}",
            "trainer.progress=false", "trainer.tensorboard=false", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def random_init(cfg: dict) -> dict:
    """Held-out retrieval of the seed's untrained model (the same initial weights every method starts from)."""
    from avssl.engine import pretrain as P

    data = P.build_data(cfg, P.setup_distributed("cpu"))
    torch.manual_seed(cfg["seed"])
    model = P.build_model(cfg)
    r = P.evaluate_retrieval(model, P.build_batch_transforms(cfg, train=False), data.eval_set, cfg, torch.device("cpu"))
    return {k: r[k] for k in (*KEYS, "chance_R@1", "chance_R@5", "num_clips")}


def run(method: str, seed: int, root: Path, overrides: list[str]) -> dict:
    from avssl.engine.pretrain import train

    cfg = make_cfg(method, seed, root, overrides)
    t0 = time.perf_counter()
    out = train(cfg, return_objects=True)
    steps_per_epoch = max(out["global_step"] // max(out["epoch"], 1), 1)
    last = out["loss_history"][-steps_per_epoch:]
    row = {"method": method, "seed": seed, "overrides": overrides, "steps": out["global_step"],
           "held_out": {k: out["retrieval"][k] for k in (*KEYS, "chance_R@1", "chance_R@5", "num_clips")},
           "last_epoch_loss": round(sum(last) / len(last), 4), "train_seconds": round(out["seconds"], 1),
           "wall_seconds": round(time.perf_counter() - t0, 1)}
    scale = getattr(out["criterion"], "logit_scale", None)
    if scale is not None:
        row["learned_temperature"] = round(1.0 / float(scale.detach()), 4)
    return row


def table(rows: list[dict], inits: dict) -> str:
    def fmt(vals):
        return f"{statistics.mean(vals):.3f}" + (f" ({', '.join(f'{v:.3f}' for v in vals)})" if len(vals) > 1 else "")

    lines = ["| model | seeds | a2v R@1 | a2v R@5 | v2a R@1 | v2a R@5 | last-epoch loss | train s |",
             "|---|---|---|---|---|---|---|---|"]
    any_row = next(iter(inits.values()))
    lines.append(f"| chance ({any_row['num_clips']} held-out clips) | - | {any_row['chance_R@1']:.3f} | "
                 f"{any_row['chance_R@5']:.3f} | {any_row['chance_R@1']:.3f} | {any_row['chance_R@5']:.3f} | - | - |")
    seeds = sorted(inits)
    lines.append(f"| random init | {len(seeds)} | " + " | ".join(fmt([inits[s][k] for s in seeds]) for k in KEYS)
                 + " | - | - |")
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["seed"])
        extra = ""
        if "learned_temperature" in mine[0]:
            extra = f" (T learned: {', '.join(str(r['learned_temperature']) for r in mine)})"
        lines.append(f"| {method}{extra} | {len(mine)} | " + " | ".join(fmt([r["held_out"][k] for r in mine]) for k in KEYS)
                     + f" | {fmt([r['last_epoch_loss'] for r in mine])} | {statistics.mean(r['train_seconds'] for r in mine):.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["avid", "clip"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--root", default="runs/bench_methods", help="world, decoded cache and runs go here")
    ap.add_argument("--set", nargs="*", default=[], help="extra Hydra overrides for every run")
    ap.add_argument("--json", default="runs/bench_methods/results.json")
    args = ap.parse_args()
    root, out = Path(args.root).resolve(), Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    res = json.loads(out.read_text()) if out.exists() else {"runs": [], "random_init": {}}
    for seed in args.seeds:
        for method in args.methods:
            if any(r["method"] == method and r["seed"] == seed and r["overrides"] == args.set for r in res["runs"]):
                continue
            res["runs"].append(run(method, seed, root, args.set))
            print(json.dumps(res["runs"][-1]), flush=True)
            out.write_text(json.dumps(res, indent=1))
        if str(seed) not in res["random_init"]:
            res["random_init"][str(seed)] = random_init(make_cfg(args.methods[0], seed, root, args.set))
            out.write_text(json.dumps(res, indent=1))
    rows = [r for r in res["runs"] if r["overrides"] == args.set and r["seed"] in args.seeds]
    print(table(rows, {int(s): r for s, r in res["random_init"].items() if int(s) in args.seeds}))


if __name__ == "__main__":
    main()
