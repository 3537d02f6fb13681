"""The numbers of the tiny preset, recorded: a guard that a refactor changes no result.

What is recorded (CPU, one thread, seed 0, the tiny generated world):
- AVID pretraining (``experiment=tiny``): every step's loss and the held-out retrieval figures;
- the CMA stage started from that run: every step's loss and its held-out retrieval;
- held-out embeddings of the CMA model (``avssl.embed.embed_video`` / ``embed_audio``, 2 clips per
  video, not pooled): every value (7 test videos x 2 clips x 16 dims per modality);
- a tiny fine-tuning run from the CMA checkpoint (``finetune=tiny``, one epoch, fold 1): its
  epoch loss and test accuracies.

``tests/test_golden_tiny.py`` recomputes them through the public entries (Hydra compose of the
packaged configs, ``avssl.engine.pretrain.train``, ``avssl.downstream.finetune.finetune``) and
compares with ``tests/data/golden_tiny.json``.

Regenerate the record ONLY when a change is meant to change the numbers (a new default, a fixed
bug in a formula), and say so in the commit message:

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python tests/golden_tiny.py --write
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

RECORD = Path(__file__).resolve().parent / "data" / "golden_tiny.json"
FORMAT = 1
CLIPS_PER_VIDEO = 2


def _compose(config_name: str, overrides: list[str]) -> dict:
    """The config the command ``avssl-<config_name> <overrides>`` would see (the packaged configs)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    root = Path(__file__).resolve().parents[1] / "configs"
    with initialize_config_dir(str(root), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def _pretrain_record(summary: dict) -> dict:
    keep = ("a2v_R@1", "a2v_R@5", "v2a_R@1", "v2a_R@5", "num_clips")
    r = summary["retrieval"] or {}
    return {"global_step": int(summary["global_step"]), "losses": [float(x) for x in summary["loss_history"]],
            "retrieval": {k: r.get(k) for k in keep}}


def compute(work: Path) -> dict:
    """Run the tiny chain under ``work`` and return the record (plain JSON types)."""
    import torch

    from avssl.downstream.finetune import finetune
    from avssl.embed import embed_audio, embed_video
    from avssl.engine.pretrain import train
    from avssl.synth.generate import generate_world, load_world

    torch.set_num_threads(1)
    world = work / "world"
    generate_world(world, preset="tiny", seed=0, workers=1, progress=False)
    common = [f"data.world_dir={world}", "seed=0", "trainer.device=cpu", "trainer.progress=false",
              "trainer.tensorboard=false"]
    avid = train(_compose("pretrain", ["experiment=tiny", f"run_dir={work / 'avid'}", *common]))
    cma = train(_compose("pretrain", ["experiment=tiny", "method=cma", f"cma.init_from={work / 'avid'}",
                                      f"run_dir={work / 'cma'}", *common]))

    videos = [str(p) for p in load_world(world).video_paths("test")]
    emb = {}
    for modality, fn in (("video", embed_video), ("audio", embed_audio)):
        rows = [fn(p, model=str(work / "cma"), clips_per_video=CLIPS_PER_VIDEO, pool=False, device="cpu", amp=False)
                for p in videos]
        emb[modality] = torch.stack(rows).tolist()  # [videos, clips, dim]

    ft = finetune(_compose("finetune", ["finetune=tiny", f"run_dir={work / 'ft'}", "folds=1", "init.kind=avssl",
                                        f"init.checkpoint={work / 'cma'}", f"dataset.embedded.world_dir={world}",
                                        "optim.epochs=1", "optim.warmup_epochs=0"]))
    fold = ft["per_fold"][0]
    return {
        "format": FORMAT,
        "torch": torch.__version__,
        "avid": _pretrain_record(avid),
        "cma": _pretrain_record(cma),
        "embeddings": {"videos": [Path(p).name for p in videos], "clips_per_video": CLIPS_PER_VIDEO, **emb},
        "finetune": {"train_losses": [float(h["loss"]) for h in fold["history"]],
                     **{k: float(ft["summary"][k]["mean"]) for k in ("video_top1", "clip_top1")}},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help=f"overwrite {RECORD.name} (only when numbers are MEANT to change)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="avssl_golden_") as tmp:
        rec = compute(Path(tmp))
    text = json.dumps(rec, indent=1)
    if args.write:
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        RECORD.write_text(text + "\n")
        print(f"wrote {RECORD}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
