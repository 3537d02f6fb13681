"""Action-recognition fine-tuning of a (pretrained) video encoder, fold by fold.

Recipe (AVID-CMA ``configs/benchmark/{ucf,hmdb}``): a linear classifier with dropout 0.5 on the
pooled encoder output; for the first ``warmup_epochs`` only the classifier trains (encoder
frozen, in eval mode so its BatchNorm statistics stay those of pretraining), then everything
trains; Adam, MultiStepLR (gamma 0.3). The model is selected on a validation split carved from
the TRAIN list, then scored once on the test list with N evenly spaced clips per video.

Resume: one checkpoint per finished epoch (`CheckpointManager` under ``<run_dir>/fold<k>``); all
randomness of an epoch is drawn from ``(seed, epoch, rank)``, so a resumed run continues exactly
as an uninterrupted one. Under torchrun the classifier is wrapped in DDP and evaluation shards
items without padding (`predict_clips`).

Unreadable training clips are replaced from the same rank's share, and a step some rank cannot
fill is skipped by every rank together (`avssl.engine.batches`): no rank ever waits in DDP's
all-reduce for a step another one skipped. Each epoch's record carries the clips requested / used /
failed / replaced / dropped (and damaged: used clips read with damaged packets skipped) over all ranks
(``data``); ``<fold dir>/data_failures.json`` lists the files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from avssl.utils import distributed as du
from avssl.engine.batches import DEFAULT_REPLACE_ATTEMPTS, DataCounts, FailureLog, agree_on_step, training_loader
from avssl.engine.batches import write_failure_report
from avssl.utils.checkpoint import CheckpointManager, atomic_torch_save, load_checkpoint
from avssl.utils.errors import UserError
from avssl.utils.runs import check_resume_config, parse_resume, plain_config
from avssl.engine.logging import make_tb_writer
from avssl.engine.samplers import ResumableDistributedSampler
from avssl.engine.schedules import build_lr_scheduler, group_settings, restart_schedule, schedule_unit, scheduler_steps

from .data import VideoSplit, carve_validation, load_split, make_dataset, subsample_labels
from .video_eval import evaluate_classifier, save_confusion_png

log = logging.getLogger(__name__)

__all__ = ["VideoClassifier", "load_pretrained_video_encoder", "load_pretrained_av_model", "load_pretrained_config",
           "finetune",
           "finetune_fold", "resolve_folds", "summarize_folds", "prepare_splits"]


class VideoClassifier(nn.Module):
    """``[B,3,T,H,W] -> logits [B, num_classes]``: encoder -> pooled features -> dropout -> Linear."""

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.5, frozen_eval: bool = True):
        super().__init__()
        self.encoder = encoder
        self.frozen_eval = frozen_eval  # frozen encoder runs in eval mode (BatchNorm running stats kept)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.out_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.encoder(x)))

    def set_encoder_frozen(self, frozen: bool) -> None:
        for p in self.encoder.parameters():
            p.requires_grad_(not frozen)
        self.encoder_frozen = frozen

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.frozen_eval and getattr(self, "encoder_frozen", False):
            self.encoder.eval()  # frozen warm-up: keep the pretrained BatchNorm statistics
        return self


# ============================================================================================
# starting points
# ============================================================================================


def _avssl_checkpoint_path(checkpoint) -> Path:
    path = Path(checkpoint)
    if path.is_dir():
        found = CheckpointManager(path).latest_path()
        if found is None:
            raise FileNotFoundError(f"no pretraining checkpoint under {path}")
        path = found
    return path


def load_pretrained_config(checkpoint: str | os.PathLike) -> dict:
    """The run config stored in an avssl pretraining checkpoint (file or run directory)."""
    state = load_checkpoint(_avssl_checkpoint_path(checkpoint))
    if "config" not in state:
        raise ValueError(f"{checkpoint} stores no config: not an avssl pretraining checkpoint")
    return state["config"]


def load_pretrained_av_model(kind: str, checkpoint: str | os.PathLike | None = None,
                             model_cfg: dict | None = None, avid_model: str = "avid"):
    """An `AVModel` for a starting point: 'avssl' (an `avssl-pretrain` checkpoint file or run
    directory; the model is rebuilt from the config it stores) or 'avid' (a released AVID /
    AVID+CMA ``.pth.tar`` loaded into the `avid_model` preset). 'scratch' builds `model_cfg`."""
    from avssl.models import build_av_model, load_avid_checkpoint

    if kind == "scratch":
        return build_av_model(**(model_cfg or {"cfg": "avid"}))
    if checkpoint is None:
        raise UserError(f"init kind {kind!r} needs a checkpoint path (init.checkpoint=...)")
    path = Path(checkpoint)
    if kind == "avssl":  # weights_only reads; a run directory gives its newest checkpoint that reads
        path, state = CheckpointManager(path).load_latest() if path.is_dir() else (path, load_checkpoint(path))
        if "model" not in state or "config" not in state:
            raise UserError(f"{path} is not an avssl pretraining checkpoint (needs 'model' and 'config'); "
                            f"a released AVID .pth.tar needs init.kind=avid")
        model = build_av_model(**state["config"]["model"])
        model.load_state_dict(state["model"])
        return model
    if kind == "avid":
        model = build_av_model(avid_model)
        load_avid_checkpoint(path, model)
        return model
    raise UserError(f"init.kind must be 'scratch', 'avssl' or 'avid', got {kind!r}")


def load_pretrained_video_encoder(init: dict, model_cfg: dict) -> nn.Module:
    """The video encoder of a starting point (see `load_pretrained_av_model`)."""
    from avssl.models import build_video_encoder

    kind = init.get("kind", "scratch")
    if kind == "scratch":
        return build_video_encoder(model_cfg["video"], **dict(model_cfg.get("video_args") or {}))
    av = load_pretrained_av_model(kind, init.get("checkpoint"), avid_model=init.get("avid_model", "avid"))
    return av.video_model


# ============================================================================================
# splits
# ============================================================================================


def _dataset_root(dcfg: dict) -> Path:
    emb = dcfg.get("embedded")
    if emb:
        from avssl.synth.generate import generate_world

        world = Path(emb["world_dir"])
        if du.rank() == 0:
            generate_world(world, preset=emb.get("preset", "default"), seed=emb.get("seed", 0),
                           workers=emb.get("workers", 1), progress=emb.get("progress", False))
        if du.is_dist():
            dist.barrier()
        return world / dcfg["format"]
    if not dcfg.get("root"):
        raise ValueError("dataset.root (or dataset.embedded) must be set")
    return Path(dcfg["root"])


def prepare_splits(dcfg: dict, fold: int, seed: int) -> dict[str, VideoSplit]:
    """{'train', 'val', 'test'}: official split of `fold`, val carved from train, label fraction applied."""
    root = _dataset_root(dcfg)
    extra = {k: dcfg[k] for k in ("train_csv", "test_csv", "train_dir", "test_dir", "split_dir", "videos_dir")
             if dcfg.get(k)}
    train, test = load_split(dcfg["format"], root, fold, **extra)
    train, val = carve_validation(train, float(dcfg.get("val_fraction", 0.1)), seed=seed)
    train = subsample_labels(train, float(dcfg.get("label_fraction", 1.0)), seed=int(dcfg.get("label_seed", seed)))
    return {"train": train, "val": val, "test": test}


def resolve_folds(folds: Any, fmt: str) -> list[int]:
    """'all' -> [1, 2, 3] (one for kinetics / vggsound: they have one split); an int or list -> as given."""
    if fmt in ("kinetics", "vggsound"):
        return [1]
    if folds in ("all", None):
        return [1, 2, 3] if folds == "all" else [1]
    if isinstance(folds, (int, np.integer)) or (isinstance(folds, str) and folds.isdigit()):
        folds = [int(folds)]
    out = [int(f) for f in folds]
    if not out or any(f not in (1, 2, 3) for f in out):
        raise ValueError(f"folds must be 'all' or among 1, 2, 3; got {folds!r}")
    return out


# ============================================================================================
# training
# ============================================================================================


def _clip_spec(spec_cfg: dict):
    from avssl.io.types import ClipSpec

    spec = dict(spec_cfg)
    if isinstance(spec.get("frame_size"), list):
        spec["frame_size"] = tuple(spec["frame_size"])
    return ClipSpec(**spec)


def _transforms(cfg: dict, device):
    """(train, eval) batch transforms: flip + jitter + normalise / normalise. The geometry (random
    resized crop / resize + centre crop) is the datasets' (`_spatial`), from the same config keys."""
    from avssl.transforms.video import VideoAugment

    vcfg = dict(cfg["transforms"]["video"])
    return (VideoAugment(**vcfg, train=True, geometry=False).to(device),
            VideoAugment(**vcfg, train=False, geometry=False).to(device))


def _spatial(cfg: dict, train: bool):
    """The datasets' per-item resize/crop from `transforms.video` (see `avssl.data.spatial`)."""
    from avssl.data.spatial import policy_from_config

    return policy_from_config(cfg["transforms"]["video"], train=train)


def _device(pref: str) -> torch.device:
    if pref in ("auto", "cuda") and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", du.rank()))
        torch.cuda.set_device(local % torch.cuda.device_count())
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if hasattr(m, "module") else m


def _train_clips(dcfg: dict, num_videos: int, batch_size: int) -> int:
    """Random clips per video per epoch: `train_clips_per_video`, raised so that an epoch makes at
    least `min_steps_per_epoch` optimizer steps (few labels, e.g. 10 %, would otherwise give a
    handful of steps and an untrained classifier)."""
    clips = int(dcfg.get("train_clips_per_video", 1))
    min_steps = dcfg.get("min_steps_per_epoch")
    if min_steps:
        clips = max(clips, math.ceil(int(min_steps) * batch_size / max(num_videos, 1)))
    return clips


def _frozen_eval(setting, init: dict) -> bool:
    """'auto': a pretrained encoder keeps its BatchNorm statistics while frozen (eval mode); a random
    one has none worth keeping (running mean 0 / var 1), so its BatchNorm follows the batches."""
    if setting == "auto":
        return init.get("kind", "scratch") != "scratch"
    return bool(setting)


def _warmup_steps(ocfg: dict, steps_per_epoch: int) -> int:
    """Classifier-only warm-up in optimisation steps: `optim.warmup_steps`, or when null
    `warmup_epochs` x steps per epoch (the same warm-up as in epoch units)."""
    if ocfg["warmup_steps"] is not None:
        return int(ocfg["warmup_steps"])
    return int(ocfg["warmup_epochs"]) * steps_per_epoch


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 1009 + rank) % (2 ** 63)


def _indexed(splits: dict[str, VideoSplit], key: str, index_cache: str | None, *args, **kw):
    """`make_dataset` of `splits[key]` with its probe cache, `dataset.index_cache` -> `<stem>.<key>.npz`
    beside it (`split_cache_path`; folds share the file of a key, so a video probed for fold 1 is not
    probed again for fold 2). Under torchrun with a cache, rank 0 probes first and the other ranks
    then find every file in its cache (one probe per file, not one per rank)."""
    from avssl.data.index import split_cache_path

    cache = split_cache_path(index_cache, key)
    if cache is None or not du.is_dist():
        return make_dataset(splits[key], *args, index_cache=cache, **kw)
    ds = err = None
    if du.rank() == 0:
        try:
            ds = make_dataset(splits[key], *args, index_cache=cache, **kw)
        except Exception as e:  # raised after the barrier: the other ranks must not wait for rank 0
            err = e
    dist.barrier()
    if err is not None:
        raise err
    return ds if ds is not None else make_dataset(splits[key], *args, index_cache=cache, **kw)


def _index_counts(ds) -> dict[str, int]:
    """A split's index account: listed = indexed + left out; probed now + taken from the cache."""
    r = ds.index_report
    return {"total": r.total, "indexed": r.indexed, "left_out": len(r.bad), "probed": r.probed, "cached": r.cached}


# Settings a resumed fine-tuning run may change without changing what it trains (every other key of the
# stored config must be equal; `avssl.utils.runs.check_resume_config`): names, which folds run (each has its
# own directory), display, where the run stops (optim.epochs: milestones count on their own), the device,
# evaluation-only settings (test clips per video, batch size) and how the same clips are read.
RESUME_HARMLESS_KEYS = (
    "name", "run_dir", "resume", "folds",
    "optim.epochs", "trainer.device", "trainer.progress", "trainer.tensorboard", "trainer.stop_after_epochs",
    "eval", "dataset.eval_clips_per_video",
    "dataset.num_workers", "dataset.index_workers", "dataset.index_cache", "dataset.decoded_cache",
    "dataset.cache_dir", "dataset.backend", "dataset.embedded.workers", "dataset.embedded.progress",
)


def _resume_state(cfg: dict, ckpt: CheckpointManager) -> tuple[dict | None, list]:
    """``(state, changes)``: the state of the fold's newest checkpoint to continue from (``resume``: auto |
    force), or None (none yet, or resume=never). A stored config that differs from `cfg` outside
    `RESUME_HARMLESS_KEYS` is refused (`ConfigMismatchError`, naming each key old -> new) unless
    ``resume=force``; ``changes`` lists what force let differ, ``[(key, old, new)]``."""
    mode, _, force = parse_resume(cfg.get("resume", "auto"))
    if mode == "path":
        raise UserError(f"resume={cfg.get('resume')!r}: fine-tuning resumes from its run_dir only "
                        f"(auto | force | never)")
    if mode != "auto" or ckpt.latest_path() is None:
        return None, []
    path, state = ckpt.load_latest(logger=log)
    changes = check_resume_config(state.get("config"), cfg, harmless=RESUME_HARMLESS_KEYS, force=force,
                                  source=str(path), logger=log)
    return state, changes


def finetune_fold(cfg: dict, fold: int, run_dir: str | os.PathLike) -> dict:
    """Fine-tune on one fold and return the test metrics of the model selected on val."""
    run_dir = Path(run_dir)
    seed = int(cfg["seed"])
    dcfg, ocfg, tcfg = cfg["dataset"], cfg["optim"], cfg["trainer"]  # optim, trainer, eval: typed (avssl.utils.schema)
    device = _device(tcfg["device"])
    rank, world = du.rank(), du.world_size()
    progress = bool(tcfg["progress"]) and rank == 0
    ckpt = CheckpointManager(run_dir, keep_last=1)
    state, forced_changes = _resume_state(cfg, ckpt)  # refused here, before any data work, when the settings differ

    splits = prepare_splits(dcfg, fold, seed)
    spec = _clip_spec(dcfg["spec"])
    backend, workers = dcfg.get("backend"), int(dcfg.get("index_workers", 1))
    batch_size = int(dcfg["batch_size"])
    decoded = dcfg.get("decoded_cache")  # null | memory | disk | folder: decode each video once (small datasets)
    if decoded and decoded != "memory":  # disk: <dataset.cache_dir>/decoded or <run_dir>/cache/decoded
        from avssl.engine.pretrain import decoded_cache_dir

        decoded = decoded_cache_dir(decoded, cfg.get("run_dir") or run_dir, dcfg.get("cache_dir"))
    index_cache = dcfg.get("index_cache")
    train_set = _indexed(splits, "train", index_cache, spec, "train",
                         _train_clips(dcfg, len(splits["train"]), batch_size * world), seed, backend, workers,
                         decoded_cache=decoded, spatial=_spatial(cfg, train=True))
    val_set = (_indexed(splits, "val", index_cache, spec, "eval", int(dcfg.get("val_clips_per_video", 1)), seed,
                        backend, workers, decoded_cache=decoded, spatial=_spatial(cfg, train=False))
               if len(splits["val"]) else None)
    classes = splits["train"].classes
    log.info("fold %d: train %d videos (%d items), val %d, test %d; %d classes", fold, len(splits["train"]),
             len(train_set), len(splits["val"]), len(splits["test"]), len(classes))

    torch.manual_seed(seed)  # identical initial head on every rank
    encoder = load_pretrained_video_encoder(cfg.get("init", {}), cfg["model"])
    model = VideoClassifier(encoder, len(classes), float(cfg["model"].get("dropout", 0.5)),
                            frozen_eval=_frozen_eval(ocfg["warmup_encoder_eval"], cfg.get("init", {}))).to(device)
    train_tf, eval_tf = _transforms(cfg, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(ocfg["lr"]), weight_decay=float(ocfg["weight_decay"]))
    epochs, warmup = int(ocfg["epochs"]), int(ocfg["warmup_epochs"])
    # no drop_last: with few labels (10 %) a dropped tail would be a large share of the data; ranks
    # still run equal step counts (the share is padded by at most world-1 repeated items)
    sampler = ResumableDistributedSampler(len(train_set), max(1, min(batch_size, len(train_set) // world)),
                                          num_replicas=world, rank=rank, seed=seed, drop_last=False)
    # milestones count epochs (scheduler stepped at epoch ends) or, with optim.schedule_unit=step, optimisation
    # steps (stepped after each); the classifier-only warm-up likewise: warmup_epochs, or warmup_steps
    per_step = schedule_unit(ocfg) == "step"
    def make_scheduler(opt):
        return build_lr_scheduler(opt, list(ocfg["milestones"]), float(ocfg["gamma"]))

    scheduler = make_scheduler(optimizer)
    steps_per_epoch = sampler.batches_per_epoch
    warmup_steps = _warmup_steps(ocfg, steps_per_epoch) if per_step else None
    if per_step:
        warmup = math.ceil(warmup_steps / steps_per_epoch)  # epochs that start frozen (DDP unused-parameter mode)
    ddp_model = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=warmup > 0)

    replace_attempts = int(dcfg.get("replace_attempts", DEFAULT_REPLACE_ATTEMPTS))
    failure_log = FailureLog()  # this rank's failed training reads since start/resume
    best = {"epoch": -1, "score": -math.inf, "metrics": None}
    history: list[dict] = []
    start_epoch = 0
    split_key = {k: v.paths for k, v in splits.items()}
    if state is not None:
        if state.get("splits") != split_key:
            raise UserError(f"{ckpt.latest_path()} was made on other splits (fold/val/label fraction); "
                            f"use another run_dir or resume=never")
        model.load_state_dict(state["model"])
        fresh = group_settings(optimizer)  # this config's optimiser hyper-parameters
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if any(key.startswith("optim.") for key, _, _ in forced_changes):  # resume=force under a new lr rule
            scheduler = restart_schedule(optimizer, fresh, make_scheduler, scheduler_steps(state["scheduler"]))
        start_epoch, best, history = state["epoch"], state["best"], state["history"]
        if rank == 0 and state.get("data_failures"):
            failure_log.load_state_dict(state["data_failures"])  # rank 0 carries the merged past
        log.info("fold %d: resumed after epoch %d from %s", fold, start_epoch, ckpt.latest_path())

    eval_bs = int(cfg["eval"]["batch_size"])
    num_workers = int(dcfg.get("num_workers", 0))
    # one progress bar over every step of the fold (its ETA is the fold's), TensorBoard under <fold dir>/tensorboard
    bar = tqdm(total=epochs * steps_per_epoch, initial=min(start_epoch, epochs) * steps_per_epoch, unit="step",
               desc=f"fold {fold}", disable=not progress, dynamic_ncols=True)
    tb = make_tb_writer(run_dir, rank, bool(tcfg["tensorboard"]))
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        frozen = epoch < warmup if not per_step else epoch * steps_per_epoch < warmup_steps
        model.set_encoder_frozen(frozen)
        ddp_model.train()
        torch.manual_seed(_epoch_seed(seed, epoch, rank))  # dropout
        aug_gen = torch.Generator().manual_seed(_epoch_seed(seed + 1, epoch, rank))
        train_set.set_epoch(epoch)
        sampler.set_epoch(epoch)
        loader = training_loader(train_set, sampler, max_attempts=replace_attempts, num_workers=num_workers)
        losses, correct, seen, counts = [], 0, 0, DataCounts()
        bar.set_description(f"fold {fold} epoch {epoch + 1}/{epochs}" + (" (warm-up)" if frozen else ""))
        for i, batch in enumerate(loader):
            bar.update(1)
            if per_step and model.encoder_frozen and epoch * steps_per_epoch + i >= warmup_steps:
                model.set_encoder_frozen(False)  # warm-up (in steps) over mid-epoch
                ddp_model.train()
            verdict = agree_on_step(batch)  # collective: every rank, every step
            counts.add(verdict.counts)
            failure_log.add(batch["failed"])
            failure_log.add(batch["replacement_failures"])
            if not verdict.take:
                log.warning("fold %d epoch %d: a step skipped on every rank (a rank could not fill its batch; "
                            "%d of %d clips unreadable)", fold, epoch + 1, verdict.counts.failed, verdict.counts.requested)
                continue
            failure_log.add_damaged(batch.get("damaged", ()))  # used clips read with damaged packets skipped
            x = train_tf(batch["video"].to(device), generator=aug_gen)
            y = batch["label"].to(device)
            logits = ddp_model(x)
            loss = nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            lr_used = optimizer.param_groups[0]["lr"]  # the rate of this update
            if per_step:
                scheduler.step()
            losses.append(loss.item())
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if tb is not None:
                step = epoch * steps_per_epoch + i + 1
                tb.add_scalar("train/loss", losses[-1], step)
                tb.add_scalar("train/lr", lr_used, step)
        if not per_step:
            scheduler.step()
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
                  "train_clip_acc": correct / max(seen, 1), "frozen_encoder": frozen, "dropped": counts.dropped,
                  "data": counts.as_dict(),
                  "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        if val_set is not None:
            vm = evaluate_classifier(model, val_set, eval_tf, batch_size=eval_bs, device=device, num_workers=num_workers)
            record["val_video_top1"], record["val_clip_top1"] = vm["video_top1"], vm["clip_top1"]
            score = vm["video_top1"]
        else:
            score = float(epoch)  # nothing to select on: the last epoch wins
        if score >= best["score"]:  # ties: the later (longer trained) epoch
            best = {"epoch": epoch + 1, "score": score, "metrics": {k: v for k, v in record.items()}}
            if rank == 0:
                atomic_torch_save(model.state_dict(), run_dir / "best_model.pt")
        history.append(record)
        if tb is not None:  # per epoch, at the fold's step count
            step = (epoch + 1) * steps_per_epoch
            tb.add_scalar("train/epoch_loss", record["loss"], step)
            tb.add_scalar("train/clip_accuracy", record["train_clip_acc"], step)
            if val_set is not None:
                tb.add_scalar("val/video_accuracy", record["val_video_top1"], step)
                tb.add_scalar("val/clip_accuracy", record["val_clip_top1"], step)
            tb.flush()
        if counts.failed:
            log.warning("fold %d epoch %d data: %d clips requested = %d used + %d dropped (%d skipped steps); "
                        "%d unreadable, %d replaced", fold, epoch + 1, counts.requested, counts.used, counts.dropped,
                        counts.skipped_steps, counts.failed, counts.replaced)
        if counts.damaged:
            log.warning("fold %d epoch %d data: %d of the %d clips used had damaged packets (%d skipped by the decoder)",
                        fold, epoch + 1, counts.damaged, counts.used, counts.decode_errors)
        log.info("fold %d epoch %d: loss %.4f train clip acc %.3f%s (%.1fs)", fold, epoch + 1, record["loss"],
                 record["train_clip_acc"], f" val video acc {record['val_video_top1']:.3f}" if val_set else "",
                 record["seconds"])
        merged = failure_log.gathered()  # collective
        if rank == 0:
            ckpt.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "best": best, "history": history,
                       "splits": split_key, "config": plain_config(cfg), "data_failures": merged.state_dict()}, epoch + 1)
            if merged.files or merged.unlisted_failures or merged.damaged:
                write_failure_report(run_dir / "data_failures.json", merged, _data_totals(history),
                                     extra={"fold": fold, "epoch": epoch + 1})
        if du.is_dist():
            dist.barrier()
        max_epochs = tcfg["stop_after_epochs"]  # tests: simulate a killed run
        if max_epochs is not None and epoch + 1 >= int(max_epochs):
            _close(bar, tb)
            return {"stopped_after_epoch": epoch + 1, "history": history, "best": best}
    bar.close()

    # ---- test once with the selected weights
    model.load_state_dict(torch.load(run_dir / "best_model.pt", map_location=device, weights_only=True))
    test_set = _indexed(splits, "test", index_cache, spec, "eval", int(dcfg.get("eval_clips_per_video", 10)), seed,
                        backend, workers, decoded_cache=decoded, spatial=_spatial(cfg, train=False))
    metrics = evaluate_classifier(model, test_set, eval_tf, batch_size=eval_bs, device=device,
                                  num_workers=num_workers, progress=progress)
    metrics.update(fold=fold, best_epoch=best["epoch"], classes=classes, history=history, train_data=_data_totals(history),
                   num_train_videos=len(splits["train"]), num_val_videos=len(splits["val"]),
                   num_test_videos=len(splits["test"]),
                   index={k: _index_counts(ds) for k, ds in (("train", train_set), ("val", val_set), ("test", test_set))
                          if ds is not None})
    if tb is not None:
        for key in ("video_top1", "video_top5", "clip_top1", "mean_class_accuracy"):
            tb.add_scalar(f"test/{key}", metrics[key], epochs * steps_per_epoch)
    _close(None, tb)
    if rank == 0:
        (run_dir / "test_metrics.json").write_text(json.dumps(metrics, indent=1))
        save_confusion_png(metrics["confusion"], classes, run_dir / "confusion.png",
                           title=f"{dcfg['format']} fold {fold}: video top-1 {metrics['video_top1']:.3f}")
    log.info("fold %d test: video top-1 %.3f top-5 %.3f | clip top-1 %.3f (best epoch %d)", fold,
             metrics["video_top1"], metrics["video_top5"], metrics["clip_top1"], best["epoch"])
    return metrics


def _close(bar, tb) -> None:
    if bar is not None:
        bar.close()
    if tb is not None:
        tb.close()


def _data_totals(history: list[dict]) -> dict:
    """Training clips of the fold so far (all ranks): the sum of the epochs' `DataCounts`."""
    total = DataCounts()
    for record in history:
        if "data" in record:  # records of older checkpoints have none
            total.add(DataCounts(**record["data"]))
    return total.as_dict()


SUMMARY_KEYS = ("video_top1", "video_top5", "clip_top1", "clip_top5", "mean_class_accuracy")


def summarize_folds(results: list[dict]) -> dict:
    """Mean and spread (sample std; 0 for one fold) of each metric over folds."""
    out = {"folds": [r["fold"] for r in results]}
    for k in SUMMARY_KEYS:
        vals = np.array([r[k] for r in results], dtype=np.float64)
        out[k] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                  "values": vals.tolist()}
    # training clips over all folds (requested = used + dropped) and unreadable test clips
    total = DataCounts()
    for r in results:
        if "train_data" in r:
            total.add(DataCounts(**r["train_data"]))
    out["train_data"] = total.as_dict()
    out["test_dropped"] = int(sum(r.get("dropped", 0) for r in results))
    return out


def finetune(cfg: dict) -> dict:
    """Run every requested fold under ``<run_dir>/fold<k>``; returns {'per_fold': [...], 'summary': {...}}."""
    cfg = plain_config(cfg)  # a DictConfig or dicts -> plain data; the typed choices (enums) -> their str
    owns = False
    if not du.is_dist() and int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun
        backend = "nccl" if torch.cuda.is_available() and cfg["trainer"]["device"] != "cpu" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
        owns = True
    try:
        run_dir = Path(cfg["run_dir"])
        folds = resolve_folds(cfg.get("folds", 1), cfg["dataset"]["format"])
        results = []
        for fold in folds:
            out = finetune_fold(cfg, fold, run_dir / f"fold{fold}")
            if "stopped_after_epoch" in out:
                return {"stopped": out}
            results.append(out)
        summary = summarize_folds(results)
        if du.rank() == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
            log.info("%s over folds %s: %s", cfg["dataset"]["format"], folds,
                     ", ".join(f"{k} {summary[k]['mean']:.3f} ± {summary[k]['std']:.3f}" for k in SUMMARY_KEYS[:3]))
        return {"per_fold": results, "summary": summary}
    finally:
        if owns:
            dist.destroy_process_group()
