#!/usr/bin/env python
"""Score saved heatmaps of any method on VGG-SS / Flickr-SoundNet (and their extended sets)
under the public evaluators' exact rules, next to the baselines (Hydra).

    python tools/score_heatmaps.py maps_dir=maps/ annotations=metadata/vggss.json protocol=lvs
See configs/score_heatmaps.yaml for every option.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

log = logging.getLogger("score_heatmaps")


def main_impl(cfg: DictConfig):
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


@hydra.main(config_path="../configs", config_name="score_heatmaps", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        main_impl(cfg)
    except (ValueError, FileNotFoundError) as e:  # a user mistake: one line, no traceback
        print(f"score_heatmaps: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
