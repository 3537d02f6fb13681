"""``avssl-score-heatmaps``: score saved heatmaps of any method on VGG-SS / Flickr-SoundNet (and
their extended sets) under the public evaluators' exact rules, next to the baselines (Hydra:
``key=value``).

    avssl-score-heatmaps maps_dir=maps/ annotations=metadata/vggss.json protocol=lvs

Config: configs/score_heatmaps.yaml; work: `avssl.localization.external.score_external`.
"""

import logging

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from avssl.utils.cli import run_main, user_errors
from avssl.utils.configs import CONFIG_PATH, VERSION_BASE

log = logging.getLogger("avssl.score_heatmaps")


def score_from_config(cfg: DictConfig):
    """Score ``cfg.maps_dir`` against ``cfg.annotations`` under each of ``cfg.protocol``; writes
    the tables under ``cfg.out_dir`` and returns the `ExternalResult`."""
    from avssl.localization.external import score_external

    protocols = list(cfg.protocol) if isinstance(cfg.protocol, ListConfig) else [str(cfg.protocol)]
    protocols = [f"free:{float(cfg.kept_share)}" if p == "free" else p for p in protocols]
    overrides = {}
    if cfg.value_range is not None:
        overrides["value_range"] = tuple(float(v) for v in cfg.value_range)
    res = score_external(cfg.maps_dir, cfg.annotations, protocols, fmt=cfg.format, test_list=cfg.test_list,
                         extended=cfg.extended, baselines=bool(cfg.baselines), method=str(cfg.method),
                         progress=bool(cfg.progress), **overrides)
    res.settings["config"] = OmegaConf.to_container(cfg, resolve=True)
    paths = res.write(cfg.out_dir)
    print(res.coverage_line())
    print(res.table())
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return res


@hydra.main(config_path=CONFIG_PATH, config_name="score_heatmaps", version_base=VERSION_BASE)
@user_errors
def app(cfg: DictConfig) -> None:
    from avssl.utils.errors import UserError

    try:
        score_from_config(cfg)
    except ValueError as e:  # score_external's refusals name the input (no map in ..., unknown protocol)
        raise UserError(str(e)) from e


def main() -> None:
    run_main(app)  # a user mistake: one line, exit 2 (--debug: traceback)


if __name__ == "__main__":
    main()
