"""The localize command's work, from its config (configs/localize.yaml): ``run_localization(cfg)``.

``avssl-localize`` (avssl.cli.localize) and the main job (avssl.pipeline) both call it:

    >>> from avssl.utils.configs import compose_config
    >>> report = run_localization(compose_config("localize", ["input=clip.mp4", "checkpoint=runs/x"]))
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from avssl.utils.cli import describe
from avssl.utils.errors import UserError

log = logging.getLogger("avssl.localize")


def is_package_run(cfg: DictConfig) -> bool:
    """``annotations`` names a benchmark package: ``annotation_format=package``, or the default
    format with a folder that holds ``frames/`` and is not a generated world (no ``gt.csv``)."""
    from avssl.localization.package import is_package

    if not cfg.annotations:
        return False
    if cfg.annotation_format == "package":
        return True
    root = Path(str(cfg.annotations))
    return cfg.annotation_format == "world" and is_package(root) and not (root / "gt.csv").is_file()


def build_inputs(cfg: DictConfig, package: bool = False):
    """``(model, spec, video_transform, audio_transform, info)``.

    The model comes from the checkpoint (its stored model config, weights, clip spec and
    transforms win) or, without one, from ``cfg.model`` with random weights (seeded).
    ``cfg.clip`` / ``cfg.transforms`` override what the checkpoint stored. ``package``: the frame
    geometry of a benchmark package (``cfg.package.input_size`` / ``spatial_mode``: the public
    evaluators stretch every frame to 224x224).
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
    mode = cfg.get("spatial_mode") or "letterbox"
    if package:
        pk = cfg.package
        mode = pk.spatial_mode or mode
        if pk.input_size is not None:
            tcfg = {k: dict(v or {}) for k, v in dict(tcfg or {}).items()}
            tcfg.setdefault("video", {})["crop_size"] = int(pk.input_size)
        log.info("benchmark package: frames brought to %s by %s", pk.input_size or "the model's crop size", mode)
    spec, video_t, audio_t = localization_inputs(spec, tcfg, cfg.device, mode=mode)
    return model, spec, video_t, audio_t, info


def load_annotations(cfg: DictConfig) -> list:
    """The annotated items; any failure to read them is a mistake in ``annotations`` /
    ``annotation_format`` / ``media_root`` and becomes one `UserError` naming them."""
    import xml.etree.ElementTree as ET

    from avssl.localization import evaluate as ev

    fmt = "package" if is_package_run(cfg) else cfg.annotation_format
    package = None
    if fmt == "package":
        pk = OmegaConf.to_container(cfg.package, resolve=True)
        package = {"annotations": pk["annotations"], "fmt": pk["format"], "extended": pk["extended"],
                   "test_list": pk["test_list"], "frames": pk["frames"], "audio": pk["audio"],
                   "embeddings": pk["embeddings"]}
    try:
        items = ev.load_items(cfg.annotations, fmt, media_root=cfg.media_root, split=cfg.split,
                              frames=cfg.frames if cfg.frames == "mid" else int(cfg.frames), mismatched=cfg.mismatched,
                              seed=cfg.seed, package=package)
    except (OSError, ValueError, KeyError, TypeError, IndexError, ET.ParseError) as exc:  # JSONDecodeError is a ValueError
        raise UserError(f"annotations={cfg.annotations} (annotation_format={fmt}): "
                        f"{describe(exc) if not isinstance(exc, KeyError) else f'no field {exc}'}; check the path, "
                        f"annotation_format (world | vggss | flickr | package) and media_root") from exc
    if not items:
        raise UserError(f"annotations={cfg.annotations} (annotation_format={cfg.annotation_format}"
                        f"{', split=' + str(cfg.split) if cfg.annotation_format == 'world' else ''}): no annotated item "
                        f"found; check annotation_format (world | vggss | flickr | package)")
    return items


def coverage_line(c: dict) -> str:
    """One line: annotated / found (missing) / readable (unreadable), with the first of each kind."""
    miss = c.get("missing_items") or []
    bad = c.get("unreadable_items") or []
    first_miss = f": first {miss[0]['name']} ({miss[0].get('reason', 'no media')})" if miss else ""
    first_bad = f": first {bad[0]['item_id']} ({bad[0]['reason']}: {bad[0]['path']})" if bad else ""
    return (f"coverage: {c['annotated']} annotated, {c['found']} found ({c['missing']} missing{first_miss}), "
            f"{c.get('readable', c['found'])} readable ({c.get('unreadable', 0)} unreadable{first_bad})")


def save_maps(folder: Path, ids: list[str], maps: torch.Tensor) -> Path:
    """``<folder>/<id>.npy``: each raw low-resolution map ``[h, w]`` float32 (what the public repos
    save; ``avssl-score-heatmaps maps_dir=<folder>`` scores them again)."""
    folder.mkdir(parents=True, exist_ok=True)
    for sid, m in zip(ids, maps):
        if "/" in sid or sid in (".", ".."):
            raise UserError(f"sample id {sid!r} cannot name a map file")
        np.save(folder / f"{sid}.npy", m.detach().cpu().numpy().astype(np.float32))
    return folder


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
    model, clip_spec, video_t, audio_t, info = build_inputs(cfg, package=is_package_run(cfg))
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
        # annotated / found / missing (annotations whose media are not there are skipped and listed)
        coverage = items.coverage() if isinstance(items, ev.AnnotatedItems) else {"annotated": len(items),
                                                                                  "found": len(items), "missing": 0}
        known = items.annotations if isinstance(items, ev.AnnotatedItems) else {}
        if cfg.limit:
            items = items[: int(cfg.limit)]
        eval_cfg = OmegaConf.to_container(cfg.eval)
        also = [float(f) for f in (eval_cfg.pop("also_fractions", None) or [])]
        protocols = [str(p) for p in (eval_cfg.pop("protocols", None) or [])]
        value_range = eval_cfg.pop("value_range", None)
        try:
            res = ev.evaluate(model, items, clip_spec, video_t, audio_t, batch_size=cfg.batch_size, device=cfg.device,
                              progress=cfg.progress, **eval_cfg)
        except ev.NothingReadable as exc:  # every item's media failed: one line naming the first
            raise UserError(f"annotations={cfg.annotations}: {exc}") from exc
        coverage.update(readable=len(res.items), unreadable=len(res.settings["skipped"]),
                        unreadable_items=res.settings["skipped"])
        res.settings["coverage"] = coverage
        line = coverage_line(coverage)
        log.info("%s", line)
        for r in res.rows:
            r["silent"] = not r["has_source"]
        summaries_p = {}
        if protocols:
            from avssl.localization.external import protocol_columns, score_protocols
            from avssl.localization.protocols import annotations_from_items

            anns = [known.get(it.item_id) or annotations_from_items([it])[0] for it in res.items]
            names = [f"free:{float(eval_cfg.get('fraction', 0.5))}" if p == "free" else p for p in protocols]
            kw = {"value_range": tuple(float(v) for v in value_range)} if value_range is not None else {}
            try:
                _, scores = score_protocols(res.display_maps, anns, names, method="model",
                                            baselines=bool(eval_cfg.get("baselines", True)), **kw)
            except ValueError as exc:  # an unknown protocol name
                raise UserError(f"eval.protocols={protocols}: {exc}") from exc
            summaries_p = protocol_columns(res.rows, scores, "model")
        paths = res.write(out / "eval", grid_size=cfg.grid_size)
        if cfg.get("save_maps"):
            paths["maps"] = save_maps(out / "eval" / "maps", [it.item_id for it in res.items], res.display_maps)
        if summaries_p:
            from avssl.localization.external import protocol_table

            paths["protocols"] = out / "eval" / "protocols.json"
            paths["protocols"].write_text(json.dumps(summaries_p, indent=1, default=str))
            paths["summary"] = out / "eval" / "summary.md"
            paths["summary"].write_text(f"{line}\n\n{protocol_table(summaries_p)}\n")
        report["eval"] = {"coverage": coverage, "coverage_line": line, "summaries": res.summaries,
                          "protocols": summaries_p, "files": {k: str(v) for k, v in paths.items()}}
        log.info("\n%s", ev.summary_table(res))
        if summaries_p:
            log.info("\n%s", protocol_table(summaries_p))
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
