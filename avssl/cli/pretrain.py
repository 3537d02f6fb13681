"""``avssl-pretrain``: AVID / CMA audio-visual pretraining (Hydra: options are ``key=value``).

    avssl-pretrain experiment=avid_embedded_cpu
    avssl-pretrain experiment=cma_embedded_cpu                       # CMA stage after AVID
    torchrun --nproc_per_node=2 --no-python avssl-pretrain experiment=avid_kinetics data.media_root=/data/k400

Config: configs/pretrain.yaml (+ configs/experiment/*.yaml); work: `avssl.engine.pretrain.train`.
"""

import hydra
from omegaconf import DictConfig

from avssl.utils.cli import run_main, user_errors
from avssl.utils.configs import CONFIG_PATH, VERSION_BASE


@hydra.main(config_path=CONFIG_PATH, config_name="pretrain", version_base=VERSION_BASE)
@user_errors
def app(cfg: DictConfig) -> None:
    import json
    import os

    from avssl.engine.pretrain import train

    summary = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        keep = {k: summary[k] for k in ("run_dir", "global_step", "epoch", "retrieval", "timing", "dropped_samples", "data")}
        print(json.dumps(keep, indent=1, default=float))


def main() -> None:
    run_main(app)  # a user mistake: one line, exit 2 (--debug: traceback)


if __name__ == "__main__":
    main()
