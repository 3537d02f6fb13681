"""The localize command's work, from its config (configs/localize.yaml): ``run_localization(cfg)``.

``avssl-localize`` (avssl.cli.localize) and the main job (avssl.pipeline) both call it:

    >>> from avssl.utils.configs import compose_config
    >>> report = run_localization(compose_config("localize", ["input=clip.mp4", "checkpoint=runs/x"]))
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from avssl.utils.cli import describe
from avssl.utils.errors import UserError

log = logging.getLogger("avssl.localize")


def build_inputs(cfg: DictConfig):
    """``(model, spec, video_transform, audio_transform, info)``.

    The model comes from the checkpoint (its stored model config, weights, clip spec and
    transforms win) or, without one, from ``cfg.model`` with random weights (seeded).
    ``cfg.clip`` / ``cfg.transforms`` override what the checkpoint stored.
    """
    from avssl.models.loading import load_model, spec_from
    from avssl.io.types import ClipSpec
    from avssl.localization.defaults import localization_inputs

    model_cfg = OmegaConf.to_container(cfg.model, resolve=True) if cfg.model is not None else None
    model, info = load_model(cfg.checkpoint, model_cfg, device=cfg.device, seed=int(cfg.seed))
    log.info("model: %s weights (%s)", info["weights"], cfg.checkpoint or f"seed {cfg.seed}")
    spec_cfg = OmegaConf.to_container(cfg.clip, resolve=True) if cfg.clip is not None else info.get("spec")
    spec = spec_from(spec_cfg) or ClipSpec()
    tcfg = OmegaConf.to_container(cfg.transforms, resolve=True) if cfg.transforms is not None else info.get("transforms")
    spec, video_t, audio_t = localization_inputs(spec, tcfg, cfg.device, mode=cfg.get("spatial_mode") or "letterbox")
    return model, spec, video_t, audio_t, info


def load_annotations(cfg: DictConfig) -> list:
    """The annotated items; any failure to read them is a mistake in ``annotations`` /
    ``annotation_format`` / ``media_root`` and becomes one `UserError` naming them."""
    import xml.etree.ElementTree as ET

    from avssl.localization import evaluate as ev

    try:
        items = ev.load_items(cfg.annotations, cfg.annotation_format, media_root=cfg.media_root, split=cfg.split,
                              frames=cfg.frames if cfg.frames == "mid" else int(cfg.frames), mismatched=cfg.mismatched,
                              seed=cfg.seed)
    except (OSError, ValueError, KeyError, TypeError, IndexError, ET.ParseError) as exc:  # JSONDecodeError is a ValueError
        raise UserError(f"annotations={cfg.annotations} (annotation_format={cfg.annotation_format}): "
                        f"{describe(exc) if not isinstance(exc, KeyError) else f'no field {exc}'}; check the path, "
                        f"annotation_format (world | vggss | flickr) and media_root") from exc
    if not items:
        raise UserError(f"annotations={cfg.annotations} (annotation_format={cfg.annotation_format}"
                        f"{', split=' + str(cfg.split) if cfg.annotation_format == 'world' else ''}): no annotated item "
                        f"found; check annotation_format (world | vggss | flickr)")
    return items


@torch.no_grad()  # scoped, so callers (tests, notebooks) keep autograd afterwards
def run_localization(cfg: DictConfig) -> dict:
    """What ``avssl-localize`` does with its config (configs/localize.yaml): pictures + MP4s for
    ``input`` (videos or a folder; unreadable files skipped, counted, listed), metrics + grids for
    ``annotations``; writes ``<out_dir>/report.json`` and returns the same dict."""
    if not cfg.input and not cfg.annotations:
        raise UserError("nothing to do: give input=<video or folder> and/or annotations=<set>")
    from avssl.localization import evaluate as ev
    from avssl.localization.run import find_videos, localize_files

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, clip_spec, video_t, audio_t, info = build_inputs(cfg)
    report: dict = {"config": OmegaConf.to_container(cfg, resolve=True), "model": info, "clip_spec": clip_spec.__dict__}

    if cfg.input:
        paths = find_videos(cfg.input)
        if cfg.audio_from and not Path(cfg.audio_from).is_file():
            raise UserError(f"audio_from={cfg.audio_from}: not a file (give the video or audio file whose sound to play)")
        failed: list[dict] = []  # unreadable files are skipped, counted and listed, never fatal
        products = localize_files(
            model, paths, out / "files", clip_spec, video_t, audio_t, stride=cfg.stride, audio_path=cfg.audio_from,
            overlay_times=int(cfg.overlays), mp4=cfg.mp4, norm=cfg.norm, alpha=cfg.alpha, batch_size=cfg.batch_size,
            device=cfg.device, progress=cfg.progress, failures=failed,
        )
        report["files"] = {p.path: p.outputs for p in products}
        report["failed"] = failed
        log.info("localized %d of %d file(s) under %s; %d skipped%s", len(products), len(paths), out / "files",
                 len(failed), f" (listed in {out / 'files' / 'failed.json'})" if failed else "")
        if not products:
            (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
            if len(failed) == 1:
                f = failed[0]
                raise UserError(f"cannot localize {f['path']}: {f['error'].removeprefix(f['path'] + ': ')}")
            raise UserError(f"none of the {len(paths)} videos under input={cfg.input} could be localized "
                            f"(first: {failed[0]['error']}); all listed in {out / 'files' / 'failed.json'}")

    if cfg.annotations:
        items = load_annotations(cfg)
        # annotated / found / missing (annotations whose video is not under media_root are skipped and listed)
        coverage = items.coverage() if isinstance(items, ev.AnnotatedItems) else {"annotated": len(items),
                                                                                  "found": len(items), "missing": 0}
        if isinstance(items, ev.AnnotatedItems):
            log.info("%s", items.coverage_line())
        if cfg.limit:
            items = items[: int(cfg.limit)]
        eval_cfg = OmegaConf.to_container(cfg.eval)
        also = [float(f) for f in (eval_cfg.pop("also_fractions", None) or [])]
        res = ev.evaluate(model, items, clip_spec, video_t, audio_t, batch_size=cfg.batch_size, device=cfg.device,
                          progress=cfg.progress, **eval_cfg)
        res.settings["coverage"] = coverage
        paths = res.write(out / "eval", grid_size=cfg.grid_size)
        report["eval"] = {"coverage": coverage, "summaries": res.summaries, "files": {k: str(v) for k, v in paths.items()}}
        log.info("\n%s", ev.summary_table(res))
        if also:  # the same maps scored at other kept shares (no second inference)
            keep = {k: v for k, v in eval_cfg.items() if k not in ("fraction", "temporal")}
            by = {f: ev.score(res.items, res.display_maps, **res.placement, spatial=res.spatial,
                              **{**keep, "fraction": f}).summaries for f in also}
            report["eval"]["by_fraction"] = {str(f): v for f, v in by.items()}
            (out / "eval" / "fractions.json").write_text(json.dumps(report["eval"]["by_fraction"], indent=1, default=str))
            for f, sums in by.items():
                log.info("kept share %g:\n%s", f, ev.summary_table(ev.EvaluationResult([], sums, {})))
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return report
