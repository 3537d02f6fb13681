#!/usr/bin/env python
"""Sound-source localization (Hydra): overlays, grid, MP4s for videos; metrics for annotated sets.

    python tools/localize.py input=video.mp4 checkpoint=runs/pretrain        # pictures + MP4
    python tools/localize.py input=videos/ audio_from=guitar.mp4             # mismatched sound
    python tools/localize.py annotations=datasets/world checkpoint=runs/x    # cIoU / AUC / AP
See configs/localize.yaml for every option.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("localize")


def build_model(cfg: DictConfig) -> torch.nn.Module:
    """The AVModel: from the checkpoint's stored config (weights loaded) or from ``cfg.model``."""
    from hydra.utils import instantiate

    state, model_cfg = None, cfg.model
    if cfg.checkpoint:
        from avssl.engine.checkpoint import CheckpointManager, load_checkpoint

        p = Path(cfg.checkpoint)
        state = CheckpointManager(p).load() if p.is_dir() else load_checkpoint(p)
        stored = (state.get("config") or {}).get("model")
        model_cfg = OmegaConf.create(stored) if stored else model_cfg
    if model_cfg is None:
        raise SystemExit("no model: give checkpoint=... or model=... (a Hydra config with _target_)")
    torch.manual_seed(int(cfg.seed))
    model = instantiate(model_cfg)
    if state is not None:
        model.load_state_dict(state["model"])
        log.info("loaded weights from %s", cfg.checkpoint)
    else:
        log.info("random initialisation (seed %d)", cfg.seed)
    return model.to(cfg.device).eval()


def build_transforms(cfg: DictConfig):
    """(video_transform, audio_transform): instantiated from cfg, else the library's eval defaults."""
    from hydra.utils import instantiate

    from avssl.localization.defaults import default_transforms

    video_t, audio_t = default_transforms(cfg.clip, device=cfg.device)
    if cfg.transforms.video is not None:
        video_t = instantiate(cfg.transforms.video)
    if cfg.transforms.audio is not None:
        audio_t = instantiate(cfg.transforms.audio)
    return video_t, audio_t


def main_impl(cfg: DictConfig) -> dict:
    if not cfg.input and not cfg.annotations:
        raise SystemExit("nothing to do: give input=<video or folder> and/or annotations=<set>")
    from avssl.io.types import ClipSpec
    from avssl.localization import evaluate as ev
    from avssl.localization.run import find_videos, localize_files

    torch.set_grad_enabled(False)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clip_spec = ClipSpec(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in OmegaConf.to_container(cfg.clip).items()})
    model = build_model(cfg)
    video_t, audio_t = build_transforms(cfg)
    report: dict = {"config": OmegaConf.to_container(cfg, resolve=True)}

    if cfg.input:
        paths = find_videos(cfg.input)
        products = localize_files(
            model, paths, out / "files", clip_spec, video_t, audio_t, stride=cfg.stride, audio_path=cfg.audio_from,
            overlay_times=int(cfg.overlays), mp4=cfg.mp4, norm=cfg.norm, alpha=cfg.alpha, batch_size=cfg.batch_size,
            device=cfg.device, progress=cfg.progress,
        )
        report["files"] = {p.path: p.outputs for p in products}
        log.info("wrote overlays/MP4s for %d file(s) under %s", len(products), out / "files")

    if cfg.annotations:
        items = ev.load_items(cfg.annotations, cfg.annotation_format, media_root=cfg.media_root, split=cfg.split,
                              frames=cfg.frames if cfg.frames == "mid" else int(cfg.frames), mismatched=cfg.mismatched,
                              seed=cfg.seed)
        if cfg.limit:
            items = items[: int(cfg.limit)]
        res = ev.evaluate(model, items, clip_spec, video_t, audio_t, batch_size=cfg.batch_size, device=cfg.device,
                          progress=cfg.progress, **OmegaConf.to_container(cfg.eval))
        paths = res.write(out / "eval", grid_size=cfg.grid_size)
        report["eval"] = {"summaries": res.summaries, "files": {k: str(v) for k, v in paths.items()}}
        log.info("\n%s", ev.summary_table(res))
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return report


@hydra.main(config_path="../configs", config_name="localize", version_base="1.3")
def main(cfg: DictConfig) -> None:
    main_impl(cfg)


if __name__ == "__main__":
    main()
