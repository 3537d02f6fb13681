"""``avssl-finetune``: action-recognition fine-tuning (UCF101 / HMDB51 split files, Kinetics-style
CSV, the generated world) from a pretrained checkpoint or from scratch (Hydra: ``key=value``).

    avssl-finetune                                                 # embedded world, CPU preset
    avssl-finetune finetune=ucf101 init.kind=avid init.checkpoint=AVID-CMA_Audioset.pth.tar folds=all
    avssl-finetune finetune=embedded_cpu init.kind=avssl init.checkpoint=runs/avid_embedded_cpu --folds all
    torchrun --nproc_per_node=2 --no-python avssl-finetune finetune=hmdb51 ...

``--folds X`` is accepted as a synonym of the Hydra override ``folds=X``.
Config: configs/finetune.yaml (+ configs/finetune/*.yaml); work: `avssl.downstream.finetune.finetune`.
"""

import sys

import hydra
from omegaconf import DictConfig

from avssl.utils.cli import run_main, user_errors
from avssl.utils.configs import CONFIG_PATH, VERSION_BASE


def argparse_style_folds(argv: list[str]) -> list[str]:
    """Rewrite ``--folds X`` / ``--folds=X`` into Hydra's ``folds=X``."""
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


@hydra.main(config_path=CONFIG_PATH, config_name="finetune", version_base=VERSION_BASE)
@user_errors
def app(cfg: DictConfig) -> None:
    import json
    import logging
    import os

    from omegaconf import OmegaConf

    from avssl.downstream.finetune import finetune

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = finetune(OmegaConf.to_container(cfg, resolve=True))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(out.get("summary", out.get("stopped")), indent=1, default=float))


def main() -> None:
    sys.argv[1:] = argparse_style_folds(sys.argv[1:])
    run_main(app)  # a user mistake: one line, exit 2 (--debug: traceback)


if __name__ == "__main__":
    main()
