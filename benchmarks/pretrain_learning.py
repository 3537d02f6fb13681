"""Does AVID pretraining learn on the embedded default world? Held-out audio->video retrieval of
the CPU preset after training vs a randomly initialised model (the baseline), per seed.

    OMP_NUM_THREADS=2 python benchmarks/pretrain_learning.py --seeds 0 1 2
    python benchmarks/pretrain_learning.py --seeds 0 --set trainer.epochs=5   # any Hydra override

Per seed it prints/records: held-out a2v/v2a R@1, R@5 (and chance), the same for the random
init, retrieval on the TRAIN clips from the memory banks (audio bank vs video bank), the
per-epoch mean training loss, and the throughput (clips/s over the whole run).
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


def make_cfg(experiment: str, run_dir: str, seed: int, overrides: list[str]) -> dict:
    with initialize_config_dir(CONFIGS, version_base="1.3"):
        cfg = compose("pretrain", overrides=[f"experiment={experiment}", f"run_dir={run_dir}", f"seed={seed}",
                                             "resume=never", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def bank_retrieval(criterion) -> dict:
    """Train-clip retrieval from the memory banks: audio slot -> nearest video slot (and back)."""
    from avssl.engine.pretrain import retrieval_metrics

    v, a = criterion.video_bank.bank.float().cpu(), criterion.audio_bank.bank.float().cpu()
    m = retrieval_metrics(v, a, torch.arange(v.shape[0]))
    return {k: m[k] for k in ("a2v_R@1", "a2v_R@5", "chance_R@1", "chance_R@5")}


def random_init_retrieval(cfg: dict) -> dict:
    """Held-out retrieval of the untrained model (same seed's initial weights)."""
    from avssl.engine import pretrain as P

    dist_info = P.setup_distributed("cpu")
    data = P.build_data(cfg, dist_info)
    torch.manual_seed(cfg["seed"])
    model = P.build_model(cfg)
    return P.evaluate_retrieval(model, P.build_batch_transforms(cfg, train=False), data.eval_set, cfg,
                                torch.device("cpu"))


def mean_pairwise_cosine(x: torch.Tensor) -> float:
    """Collapse check: 1.0 means every clip has the same embedding."""
    x = torch.nn.functional.normalize(x.float(), dim=1)
    n = x.shape[0]
    return float(((x @ x.T).sum() - n) / (n * n - n))


def embedding_spread(model, cfg: dict) -> dict:
    """Mean pairwise cosine of the held-out video and audio embeddings."""
    from avssl.engine import pretrain as P

    data = P.build_data(cfg, P.setup_distributed("cpu"))
    v, a, _ = P.embed_dataset(model, P.build_batch_transforms(cfg, train=False), data.eval_set,
                              cfg["eval"]["batch_size"], 0, torch.device("cpu"))
    return {"video": round(mean_pairwise_cosine(v), 4), "audio": round(mean_pairwise_cosine(a), 4)}


def epoch_means(losses: list[float], steps_per_epoch: int) -> list[float]:
    return [round(sum(losses[i:i + steps_per_epoch]) / len(losses[i:i + steps_per_epoch]), 3)
            for i in range(0, len(losses), steps_per_epoch)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", default="avid_embedded_cpu")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--run-root", default="runs/bench_pretrain_learning")
    ap.add_argument("--set", nargs="*", default=[], help="extra Hydra overrides")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--no-random-init", action="store_true")
    args = ap.parse_args()
    from avssl.engine.pretrain import train

    results = []
    for seed in args.seeds:
        run_dir = f"{args.run_root}/seed{seed}"
        cfg = make_cfg(args.experiment, run_dir, seed, list(args.set))
        row = {"seed": seed, "overrides": args.set}
        if not args.no_random_init:
            r0 = random_init_retrieval(cfg)
            from avssl.engine import pretrain as P

            torch.manual_seed(cfg["seed"])
            row["random_init_mean_cosine"] = embedding_spread(P.build_model(cfg), cfg)
            row["random_init"] = {k: r0[k] for k in ("a2v_R@1", "a2v_R@5", "v2a_R@1", "v2a_R@5")}
        t0 = time.perf_counter()
        out = train(cfg, return_objects=True)
        wall = time.perf_counter() - t0
        steps_per_epoch = max(out["global_step"] // max(out["epoch"], 1), 1)
        row.update({
            "held_out": {k: out["retrieval"][k] for k in ("a2v_R@1", "a2v_R@5", "v2a_R@1", "v2a_R@5",
                                                          "chance_R@1", "chance_R@5", "num_clips")},
            "train_banks": bank_retrieval(out["criterion"]),
            "held_out_mean_cosine": embedding_spread(out["model"], cfg),
            "epoch_loss": epoch_means(out["loss_history"], steps_per_epoch),
            "steps": out["global_step"], "train_seconds": round(out["seconds"], 1), "wall_seconds": round(wall, 1),
            "clips_per_s": round(out["global_step"] * cfg["data"]["batch_size"] / out["seconds"], 1),
        })
        print(json.dumps(row), flush=True)
        results.append(row)
    if len(results) > 1:
        for key in ("a2v_R@1", "a2v_R@5"):
            vals = [r["held_out"][key] for r in results]
            print(f"held-out {key}: mean {statistics.mean(vals):.3f} +- {statistics.stdev(vals):.3f} "
                  f"(min {min(vals):.3f}, max {max(vals):.3f}) over seeds {args.seeds}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
