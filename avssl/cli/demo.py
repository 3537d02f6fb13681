"""``avssl-demo``: the main job (``make demo``): generated world -> AVID -> CMA -> fine-tuning ->
localization -> embeddings + retrieval, ending with a results table (random-init baseline beside
each figure) and the paths of the pictures it wrote. Each stage prints the command that re-runs it
alone. Hydra: ``key=value``.

    avssl-demo                                  # default preset, outputs/demo/
    avssl-demo demo=tiny                        # about a minute; outputs/demo_tiny/
    avssl-demo stages=[world,avid] force=true

Config: configs/demo.yaml (+ configs/demo/*.yaml); work: `avssl.pipeline.run_main_job`.
"""

import hydra
from omegaconf import DictConfig

from avssl.utils.cli import run_main, user_errors
from avssl.utils.configs import CONFIG_PATH, VERSION_BASE


@hydra.main(config_path=CONFIG_PATH, config_name="demo", version_base=VERSION_BASE)
@user_errors
def app(cfg: DictConfig) -> None:
    from avssl.pipeline import run_main_job

    run_main_job(cfg)


def main() -> None:
    run_main(app)  # a user mistake: one line, exit 2 (--debug: traceback)


if __name__ == "__main__":
    main()
