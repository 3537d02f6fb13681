"""Where a training step's time goes, and whether the data loader keeps up.

Part 1 (trainer): a few AVID steps of `experiment=avid_embedded_cpu` on the embedded default
world, per-phase mean time (data wait, batch transforms, forward, loss + memory bank, backward)
and clips/s, three ways side by side: decoding each clip in the main process (num_workers=0, the
baseline), decoding in 2 DataLoader workers, and cutting clips from videos decoded once into RAM
(data.decoded_cache, the preset since 2026-12-01), so the data-wait column shows whether any step waits.

Part 2 (objective at scale): the AVID criterion (NCE, 1024 negatives, 128-d) with a 10^5-slot
memory bank at batch 32 - its forward + bank update time next to the forward + backward time
of the CPU-preset encoders at batch 32, i.e. its share of a step.

    OMP_NUM_THREADS=2 python benchmarks/train_step.py [--steps 30] [--skip-trainer]

Part 3 (--gpu-synthetic, on a CUDA machine): the reference AVID encoders (experiment=avid_kinetics,
112 crop from 128 px) through `train()` on decoded-clip tensors made in the DataLoader (no video
decoding: the lent GPU machine has no PyAV), batch 32, a 10^5-slot bank, AMP off / bf16, channels-last
on / off, 25 steps of which the first 5 are left out of the timing.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import sys

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .`


def trainer_split(steps: int, num_workers: int, world_dir: str, run_dir: str, decoded: bool = False) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from avssl.engine.pretrain import train

    from avssl.utils.schema import register_schemas

    register_schemas()  # the configs' typed sections (Hydra ConfigStore)

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("pretrain", overrides=[
            "experiment=avid_embedded_cpu", f"run_dir={run_dir}", f"data.world_dir={world_dir}",
            f"data.num_workers={num_workers}", f"trainer.max_steps={steps}", "trainer.epochs=1000",
            f"data.decoded_cache={world_dir + '_decoded' if decoded else 'null'}",
            "trainer.checkpoint_every=0", "trainer.progress=false", "trainer.tensorboard=false",
            "eval.enabled=false", "resume=never"])
    out = train(OmegaConf.to_container(cfg, resolve=True))
    t = out["timing"]
    bs = cfg.data.batch_size
    return {"num_workers": num_workers, "clips_from": "RAM (decoded once)" if decoded else "decoding each clip",
            "batch": bs, "steps": out["global_step"],
            "clips_per_s": bs / t["step"], **{k: t[k] for k in ("data", "transform", "forward", "loss_memory", "backward", "step")},
            "data_share": t["share_data"]}


class _DecodedClips(torch.utils.data.Dataset):
    """Random uint8 clips + waveforms shaped like decoded ones (stands in for decoding only)."""

    def __init__(self, n: int, spec: dict):
        self.n, self.spec = n, spec

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g, sp = torch.Generator().manual_seed(i), self.spec
        video = torch.randint(0, 255, (sp["num_frames"], sp["frame_size"], sp["frame_size"], 3), dtype=torch.uint8, generator=g)
        audio = torch.rand(sp["audio_channels"], int(sp["audio_rate"] * sp["audio_duration"]), generator=g) * 2 - 1
        return {"video": video, "audio": audio, "index": i}


def gpu_synthetic(steps: int = 25, slots: int = 100_000) -> dict:
    import copy

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from torch.utils.data import default_collate

    import avssl.engine.pretrain as P

    from avssl.utils.schema import register_schemas

    register_schemas()  # the configs' typed sections (Hydra ConfigStore)

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        base = OmegaConf.to_container(compose("pretrain", overrides=["experiment=avid_kinetics"]), resolve=True)
    P._collate = lambda: default_collate
    res = {}
    for amp, cl in [("off", False), ("bf16", True), ("bf16", False)]:
        cfg = copy.deepcopy(base)
        with tempfile.TemporaryDirectory() as run_dir:
            cfg.update(run_dir=run_dir, resume="never")
            cfg["data"]["spec"]["frame_size"] = 128
            cfg["data"]["num_workers"] = 6
            cfg["transforms"]["video"] = {"crop_size": 112}
            cfg["trainer"].update(amp=amp, channels_last=cl, timing_warmup=5, max_steps=steps, epochs=100,
                                  checkpoint_every=0, progress=False, sync_timing=True)
            cfg["eval"]["enabled"] = False
            spec = cfg["data"]["spec"]
            P.build_data = lambda c, d: P.DataBundle(_DecodedClips(32 * 30, spec), None, "synthetic", slots)
            t = P.train(cfg)["timing"]
        res[f"amp={amp} channels_last={cl}"] = {"clips_per_s": 32 / t["step"], **{f"{k}_ms": t[k] * 1e3 for k in (
            "data", "transform", "forward", "loss_memory", "backward", "step")}, "share_loss_memory": t["share_loss_memory"]}
    return res


def _time(fn, reps: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def objective_share(batch: int = 32, slots: int = 100_000, negatives: int = 1024, dim: int = 128, reps: int = 10) -> dict:
    from avssl.methods import AVIDCriterion

    crit = AVIDCriterion(slots, dim=dim, num_negatives=negatives)
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(batch, dim, requires_grad=True)
    a = torch.randn(batch, dim, requires_grad=True)

    def loss_memory():
        idx = torch.randint(0, slots, (batch,), generator=gen)
        loss, _ = crit(v, a, idx, generator=gen)
        loss.backward()  # the loss's own backward is part of its cost

    t_obj = _time(loss_memory, reps)
    out = {"batch": batch, "slots": slots, "negatives": negatives, "dim": dim, "loss_memory_s": t_obj}
    try:  # the encoders of the CPU preset, forward + backward at the same batch
        from hydra import compose, initialize_config_dir
        from omegaconf import OmegaConf

        from avssl.engine.pretrain import build_batch_transforms, build_model

        from avssl.utils.schema import register_schemas

        register_schemas()  # the configs' typed sections (Hydra ConfigStore)

        with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
            cfg = OmegaConf.to_container(compose("pretrain", overrides=["experiment=avid_embedded_cpu"]), resolve=True)
        model = build_model(cfg)
        tf = build_batch_transforms(cfg, train=True)
        spec = cfg["data"]["spec"]
        video = torch.randint(0, 255, (batch, spec["num_frames"], spec["frame_size"], spec["frame_size"], 3), dtype=torch.uint8)
        audio = torch.rand(batch, spec["audio_channels"], int(spec["audio_rate"] * spec["audio_duration"])) * 2 - 1
        x_v, x_a = tf(video, audio)

        def fwd_bwd():
            ve, ae = model(x_v, x_a)
            (ve.sum() + ae.sum()).backward()

        t_model = _time(fwd_bwd, max(reps // 3, 2))
        out.update({"model_fwd_bwd_s": t_model, "loss_memory_share": t_obj / (t_obj + t_model)})
    except ImportError as exc:
        out["model_fwd_bwd_s"] = f"unavailable ({exc})"
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--world-dir", default=str(ROOT / "data" / "world" / "default"))
    ap.add_argument("--skip-trainer", action="store_true")
    ap.add_argument("--gpu-synthetic", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    results = {"threads": torch.get_num_threads()}
    if args.gpu_synthetic:
        results["gpu_synthetic"] = gpu_synthetic()
        print(json.dumps(results, indent=1))
        return
    if not args.skip_trainer:
        rows = []
        for workers, decoded in ((0, False), (2, False), (0, True)):  # baseline first
            with tempfile.TemporaryDirectory() as run_dir:
                rows.append(trainer_split(args.steps, workers, args.world_dir, run_dir, decoded))
        results["trainer"] = rows
        base, workers2, ram = rows
        results["speedup_workers_vs_main_process"] = workers2["clips_per_s"] / base["clips_per_s"]
        results["speedup_ram_vs_main_process"] = ram["clips_per_s"] / base["clips_per_s"]
        results["speedup_ram_vs_workers"] = ram["clips_per_s"] / workers2["clips_per_s"]
    results["objective"] = objective_share()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
