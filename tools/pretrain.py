"""AVID / CMA pretraining entry point.

    python tools/pretrain.py experiment=avid_embedded_cpu
    torchrun --nproc_per_node=2 tools/pretrain.py experiment=avid_embedded_cpu
    python tools/pretrain.py experiment=cma_embedded_cpu            # CMA stage after AVID
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without `pip install -e .`

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from avssl.engine.pretrain import train  # noqa: E402
from avssl.utils.cli import run_main, user_errors  # noqa: E402


@hydra.main(config_path="../configs", config_name="pretrain", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> None:
    summary = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        keep = {k: summary[k] for k in ("run_dir", "global_step", "epoch", "retrieval", "timing", "dropped_samples", "data")}
        print(json.dumps(keep, indent=1, default=float))


if __name__ == "__main__":
    run_main(main)  # a user mistake: one line, exit 2 (--debug: traceback)
