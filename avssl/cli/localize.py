"""``avssl-localize``: sound-source localization (Hydra: ``key=value``): overlays, a grid and
heatmap MP4s for videos; cIoU / AUC / AP and grids for an annotated set.

    avssl-localize input=video.mp4 checkpoint=runs/pretrain             # pictures + MP4
    avssl-localize input=videos/ audio_from=guitar.mp4                  # another file's sound
    avssl-localize annotations=datasets/world checkpoint=runs/x         # metrics

Config: configs/localize.yaml; work: `avssl.localization.job.run_localization`.
"""

import hydra
from omegaconf import DictConfig

from avssl.utils.cli import run_main, user_errors
from avssl.utils.configs import CONFIG_PATH, VERSION_BASE


@hydra.main(config_path=CONFIG_PATH, config_name="localize", version_base=VERSION_BASE)
@user_errors
def app(cfg: DictConfig) -> None:
    from avssl.localization.job import run_localization

    run_localization(cfg)


def main() -> None:
    run_main(app)  # a user mistake: one line, exit 2 (--debug: traceback)


if __name__ == "__main__":
    main()
