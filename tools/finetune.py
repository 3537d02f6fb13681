"""Action-recognition fine-tuning (UCF101 / HMDB51 split files, Kinetics-style CSV).

    python tools/finetune.py                                          # embedded world, CPU preset
    python tools/finetune.py finetune=ucf101 init.kind=avid init.checkpoint=AVID-CMA_Audioset.pth.tar folds=all
    python tools/finetune.py finetune=embedded_cpu init.kind=avssl init.checkpoint=runs/avid_embedded_cpu \
        dataset.label_fraction=0.1 --folds all
    torchrun --nproc_per_node=2 tools/finetune.py finetune=hmdb51 ...

`--folds all` is accepted as a synonym of the Hydra override `folds=all`.
"""

import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without `pip install -e .`


def _argparse_style_folds(argv: list[str]) -> list[str]:
    """Rewrite `--folds X` / `--folds=X` into Hydra's `folds=X`."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--folds" and i + 1 < len(argv):
            out.append(f"folds={argv[i + 1]}")
            i += 2
            continue
        out.append("folds=" + a.split("=", 1)[1] if a.startswith("--folds=") else a)
        i += 1
    return out


sys.argv = [sys.argv[0]] + _argparse_style_folds(sys.argv[1:])

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from avssl.downstream.finetune import finetune  # noqa: E402
from avssl.utils.cli import run_main, user_errors  # noqa: E402


@hydra.main(config_path="../configs", config_name="finetune", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = finetune(OmegaConf.to_container(cfg, resolve=True))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(out.get("summary", out.get("stopped")), indent=1, default=float))


if __name__ == "__main__":
    run_main(main)  # a user mistake: one line, exit 2 (--debug: traceback)
