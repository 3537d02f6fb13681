"""The extract command's work, from its config (configs/extract.yaml): ``run_extraction(cfg)``.

``avssl-extract`` (avssl.cli.extract) and the main job (avssl.pipeline) both call it:

    >>> from avssl.utils.configs import compose_config
    >>> report = run_extraction(compose_config("extract", ["input=videos/", "checkpoint=runs/x", "out_dir=emb"]))
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from avssl.utils.errors import UserError

log = logging.getLogger("avssl.extract")


def _container(x):
    return OmegaConf.to_container(x, resolve=True, enum_to_str=True) if OmegaConf.is_config(x) else x


def collection_source(cfg: DictConfig):
    """What to index: the embedded world's videos (input=world), or anything
    `avssl.data.sources.resolve_source` takes -- a folder, one media file, a text list, a
    Kinetics / AudioSet / VGGSound CSV with its media under `media_root` (`input_split` picks
    a split). Returns a list of paths or a `ResolvedSource` (rows without a file are reported
    by the indexer)."""
    if not cfg.input:
        raise UserError("nothing to do: give input=<folder | video file | list.txt | dataset.csv | world>")
    if cfg.input == "world":
        from avssl.synth import generate as synth

        w = cfg.world
        if int(os.environ.get("RANK", 0)) == 0:
            synth.generate_world(w.dir, preset=w.preset, seed=w.seed, workers=w.workers, progress=cfg.progress)
        _barrier()
        world = synth.load_world(w.dir)
        return [str(p) for p in world.video_paths(None if w.split == "all" else w.split)]
    from avssl.data.sources import resolve_source

    return resolve_source(str(cfg.input), media_root=cfg.get("media_root"), split=cfg.get("input_split"),
                          fmt=cfg.get("input_format") or "auto", progress=bool(cfg.progress))


def _barrier():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def init_distributed(device_cfg: str) -> torch.device:
    """Join the torchrun process group when launched by torchrun; pick this rank's device."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", 1))
    cuda = torch.cuda.is_available() and device_cfg in ("auto", "cuda")
    if device_cfg == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is available (use device=auto or device=cpu)")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def run_extraction(cfg: DictConfig) -> dict:
    """What ``avssl-extract`` does with its config (configs/extract.yaml): index ``input``, embed every
    video's clips into shards under ``out_dir`` (resumable; one share per torchrun rank); returns the
    extraction report as a dict (also ``<out_dir>/extract_report.json`` once complete)."""
    from avssl.data.index import build_index
    from avssl.embed import extract as run_extract
    from avssl.embed.api import load_model, spec_from

    device = init_distributed(cfg.device)
    # the model first: a wrong checkpoint fails before a long indexing pass
    model, info = load_model(cfg.checkpoint, _container(cfg.get("model")), device=device, seed=cfg.seed)
    source = collection_source(cfg)
    index_kw = {"workers": cfg.index_workers}
    if cfg.index_cache:
        index_kw["cache"] = cfg.index_cache
    manifest, index_report = build_index(source, **index_kw)
    if len(manifest) == 0:
        raise UserError(f"no usable video in input={cfg.input}: {index_report.summary()}")
    spec = spec_from(_container(cfg.spec)) or spec_from(info.get("spec"))
    if spec is None:
        from avssl.io.types import ClipSpec

        spec = ClipSpec()
    transforms = _container(cfg.transforms) or info.get("transforms")
    layers = _container(cfg.layers)
    report = run_extract(
        manifest, model, cfg.out_dir, clips_per_video=cfg.clips_per_video, layers=layers,
        modalities=tuple(cfg.modalities), spec=spec, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
        device=device, amp=cfg.amp, shard_size=cfg.shard_size, dtype=cfg.dtype, backend=cfg.backend,
        transforms_config=transforms, model_info=info, config=_container(cfg), overwrite=cfg.overwrite,
        max_shards=cfg.max_shards, progress=cfg.progress, index_failures=index_report,
        whole_video_max=cfg.read.whole_video_max, merge_gap=cfg.read.merge_gap,
    )
    summary = {k: v for k, v in vars(report).items()}
    summary["videos_per_s"] = report.videos_per_s
    log.info("rank %d/%d: %d shards computed, %d skipped (done before), %d videos, %d failed, %.1f videos/s%s",
             report.rank, report.world_size, len(report.computed_shards), len(report.skipped_shards), report.videos,
             report.failed, report.videos_per_s, "; collection complete" if report.complete else "")
    if report.complete and report.rank == 0:
        (Path(cfg.out_dir) / "extract_report.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
