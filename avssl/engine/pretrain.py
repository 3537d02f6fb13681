"""The pretraining loop, method-agnostic, readable top to bottom (torchvision reference-script style).

    train(cfg)                      entry point (a Hydra/OmegaConf config or a plain dict)
      setup_distributed             torchrun env -> process group (NCCL on GPU, gloo on CPU)
      build_data                    index the videos (or generate the embedded world) -> datasets
      build_model / build_batch_transforms / build_method / build_optimizer
      resume, or method.start       (a method may start from another run's checkpoint)
      for epoch: method.on_epoch_start (e.g. positive sets recomputed)
                 train_one_epoch    data wait / transforms / forward / loss+memory / backward timed
                 checkpoint         every N steps and at epoch end (atomic, rank 0)
                 evaluate_retrieval held-out audio->video R@1/R@5

DataLoader workers only decode; augmentation and the log-spectrogram run on batches on the
training device in the main process.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader

from avssl.utils import distributed as du
from avssl.engine.batches import DEFAULT_REPLACE_ATTEMPTS, DataCounts, FailureLog, agree_on_step, training_loader
from avssl.engine.batches import write_failure_report
from avssl.utils.checkpoint import (
    CheckpointError,
    CheckpointManager,
    capture_rng_state,
    check_fingerprint,
    load_checkpoint,
    restore_rng_state,
)
from avssl.utils.runs import check_resume_config, parse_resume, plain_config
from avssl.engine.logging import StepTimer, make_tb_writer, setup_logger
from avssl.engine.samplers import EvalShardSampler, ResumableDistributedSampler
from avssl.engine.schedules import group_settings, restart_schedule, scheduler_steps
from avssl.methods import Method, ModelOutputs, build_method, checkpoint_method, method_name
from avssl.metrics.retrieval import retrieval_metrics


def _plain(cfg) -> dict:
    """OmegaConf/DictConfig (resolved) or nested dicts -> plain nested dict: checkpoints store plain data
    (`avssl.utils.runs.plain_config`), which ``torch.load(weights_only=True)`` reads back."""
    return plain_config(cfg)


# Settings a resumed run may change without changing what it trains (`avssl.utils.runs.check_resume_config`
# compares every other key of the stored config): names, display, logging, evaluation, how the same clips are
# read (workers, caches, decoder backend), the device, and where the run stops (trainer.epochs / max_steps:
# the lr schedule counts its own milestones, not the total, so extending a run trains on exactly as before).
RESUME_HARMLESS_KEYS = (
    "name", "run_dir", "resume", "method", "stage",  # the method (and stage, its old name) has its own check
    "trainer.epochs", "trainer.max_steps", "trainer.device", "trainer.channels_last", "trainer.progress",
    "trainer.tensorboard", "trainer.log_every", "trainer.checkpoint_every", "trainer.keep_last",
    "trainer.sync_timing", "trainer.timing_warmup",
    "eval",
    "data.num_workers", "data.index_workers", "data.world_workers", "data.progress", "data.index_cache",
    "data.decoded_cache", "data.cache_dir", "data.backend",
)


# ============================================================================================
# distributed setup
# ============================================================================================


@dataclass
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool  # True when train() created the process group (and must destroy it)


def setup_distributed(device_pref: str = "auto") -> DistInfo:
    """Use an existing process group, or create one from torchrun's env (RANK/WORLD_SIZE),
    or run single-process. NCCL when CUDA is used, gloo otherwise."""
    want_cuda = torch.cuda.is_available() and device_pref in ("auto", "cuda")
    owns = False
    if not du.is_dist() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "nccl" if want_cuda else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
        owns = True
    rank, world = du.rank(), du.world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if want_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    return DistInfo(rank, world, local_rank, device, owns)


# ============================================================================================
# data
# ============================================================================================


@dataclass
class DataBundle:
    train_set: Any
    eval_set: Any | None
    fingerprint: str
    num_train_videos: int
    notes: dict = field(default_factory=dict)
    eval_labels: dict | None = None  # held-out video id -> class (world ground truth or manifest labels)
    eval_sounding: dict | None = None  # held-out video id -> has a visible sounding object (world only)


def _clip_spec(spec_cfg: dict):
    from avssl.io.types import ClipSpec

    spec = dict(spec_cfg)
    if isinstance(spec.get("frame_size"), list):
        spec["frame_size"] = tuple(spec["frame_size"])
    return ClipSpec(**spec)


def _world_sources(data_cfg: dict, dist_info: DistInfo) -> tuple[list[Path], list[Path], list[dict]]:
    """Generate (rank 0, once; idempotent) the embedded world and split its clips (+ its gt.csv rows)."""
    from avssl.synth import generate as synth

    root = Path(data_cfg["world_dir"])
    if dist_info.rank == 0:
        synth.generate_world(root, preset=data_cfg["world_preset"], seed=data_cfg.get("world_seed", 0),
                             workers=data_cfg.get("world_workers", 1), progress=data_cfg.get("progress", True))
    if du.is_dist():
        dist.barrier()
    world = synth.load_world(root)
    return world.video_paths("train"), world.video_paths("test"), world.rows()


def _spatial_policy(cfg: dict, train: bool):
    """The datasets' per-item resize/crop, from the same ``transforms.video`` section as the batch
    transform (train: random resized crop; eval: ``eval_mode``, default resize + centre crop)."""
    from avssl.data.spatial import policy_from_config

    return policy_from_config(cfg["transforms"]["video"], train=train)


def build_data(cfg: dict, dist_info: DistInfo) -> DataBundle:
    """Index the training (and held-out) videos and wrap them in datasets."""
    from avssl.data.dataset import AVClipDataset
    from avssl.data.index import build_index, split_cache_path

    from avssl.engine.heldout import heldout_labels
    from avssl.methods.terms import TemporalNegatives

    data_cfg = cfg["data"]
    source_kw = {}  # dataset lists: media root, format, split (avssl.data.sources.resolve_source)
    world_rows = None
    if data_cfg["source"] == "embedded":
        train_src, eval_src, world_rows = _world_sources(data_cfg, dist_info)
    else:
        train_src, eval_src = data_cfg["train_source"], data_cfg.get("eval_source")
        source_kw = {"root": data_cfg.get("media_root"), "fmt": data_cfg.get("source_format") or "auto"}
    missing_audio = data_cfg.get("missing_audio", "zeros")
    index_kw = {"workers": data_cfg.get("index_workers", 1), "missing_audio": missing_audio,
                "progress": dist_info.rank == 0 and data_cfg.get("progress", True), **source_kw}
    if data_cfg.get("index_cache"):
        index_kw["cache"] = data_cfg["index_cache"]
    train_manifest, train_report = build_index(train_src, split=data_cfg.get("train_split"), **index_kw)
    if len(train_manifest) < 2:
        raise ValueError(f"need at least 2 indexed training videos, got {len(train_manifest)} "
                         f"({train_report.summary()})")
    spec = _clip_spec(data_cfg["spec"])
    temporal = TemporalNegatives.from_config(cfg)  # temporal negatives: each item also carries shifted audio
    train_set = AVClipDataset(
        train_manifest, spec, mode="train", clips_per_video=data_cfg.get("clips_per_video", 1),
        av_jitter=data_cfg.get("av_jitter", 0.0), missing_audio=missing_audio,
        backend=data_cfg.get("backend"), seed=cfg["seed"], spatial=_spatial_policy(cfg, train=True),
        shifted_audio=temporal.shifts if temporal is not None else None,
    )
    eval_set = None
    eval_labels = eval_sounding = None
    notes = {"index_report": train_report, "summary": train_report.summary()}
    if eval_src and cfg["eval"]["enabled"]:
        eval_kw = {k: v for k, v in index_kw.items() if k != "cache"}  # its own file: one source per cache
        eval_kw["cache"] = split_cache_path(data_cfg.get("index_cache"), "eval")
        eval_manifest, eval_report = build_index(eval_src, split=data_cfg.get("eval_split"), **eval_kw)
        notes["eval_index_report"] = eval_report
        eval_labels, eval_sounding = heldout_labels(eval_manifest, world_rows)
        eval_set = AVClipDataset(eval_manifest, spec, mode="eval", clips_per_video=1,
                                 missing_audio=missing_audio, backend=data_cfg.get("backend"), seed=cfg["seed"],
                                 spatial=_spatial_policy(cfg, train=False))
    decoded = data_cfg.get("decoded_cache")  # null | memory | disk | a folder: decode every video once into RAM
    if decoded:
        from avssl.data.decoded import DecodedClipDataset

        cache_dir = decoded_cache_dir(decoded, cfg["run_dir"], data_cfg.get("cache_dir"))
        dkw = {"workers": data_cfg.get("index_workers", 1), "progress": index_kw["progress"]}
        if cache_dir is not None and du.is_dist():  # rank 0 decodes and writes; the others load its file
            if dist_info.rank == 0:
                train_set = DecodedClipDataset(train_set, cache_dir, **dkw)
            dist.barrier()
            if dist_info.rank != 0:
                train_set = DecodedClipDataset(train_set, cache_dir, **dkw)
        else:
            train_set = DecodedClipDataset(train_set, cache_dir, **dkw)
        if eval_set is not None:
            eval_set = DecodedClipDataset(eval_set, cache_dir, **dkw)
    # memory-bank slot = manifest id; ids need not be contiguous (a cache keeps ids of removed files)
    num_slots = int(train_manifest.id.max()) + 1
    return DataBundle(train_set, eval_set, train_manifest.fingerprint(), num_slots, notes=notes,
                      eval_labels=eval_labels, eval_sounding=eval_sounding)


def decoded_cache_dir(setting, run_dir, cache_dir=None) -> str | None:
    """Where `data.decoded_cache` keeps its decoded file: None (RAM only) for 'memory';
    `<cache_dir>/decoded` (a folder the user named, shared by runs) or `<run_dir>/cache/decoded`
    for 'disk'; any other value is a folder the user named. Never beside the source data."""
    if setting in (None, False, "memory"):
        return None
    if setting in (True, "disk"):
        return str(Path(cache_dir) / "decoded") if cache_dir else str(Path(run_dir) / "cache" / "decoded")
    return str(setting)


def _collate():
    from avssl.data.collate import collate_skip_bad

    return collate_skip_bad


# ============================================================================================
# model, transforms, objective, optimisation
# ============================================================================================


def build_model(cfg: dict) -> torch.nn.Module:
    from avssl.models import build_av_model

    return build_av_model(**cfg["model"])


class BatchTransforms(torch.nn.Module):
    """uint8 video [B,T,H,W,3] -> float [B,3,T,h,w]; waveform [B,C,S] -> log-spectrogram [B,1,F,Tf]."""

    def __init__(self, video_tf: torch.nn.Module, audio_tf: torch.nn.Module):
        super().__init__()
        self.video_tf = video_tf
        self.audio_tf = audio_tf

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.video_tf(video), self.audio_tf(audio)


def build_batch_transforms(cfg: dict, train: bool) -> BatchTransforms:
    """Flip + colour jitter + normalisation (train) or normalisation (eval) of the batch; the datasets
    already cropped every item (``_spatial_policy``, from the same ``transforms.video`` keys)."""
    from avssl.transforms.config import batch_transforms

    return BatchTransforms(*batch_transforms(cfg["transforms"], cfg["data"]["spec"]["audio_rate"], train=train))


def build_optimizer(cfg: dict, params, method_params=()) -> tuple[torch.optim.Optimizer, Any]:
    """Reference: Adam, weight decay 1e-5, MultiStepLR over epochs (gamma 1 = constant lr).

    ``method_params``: the method's own learnable parameters (``Method.parameters()``, e.g. a logit
    scale), a second parameter group without weight decay; none: one group, as before methods had any.

    `optim.schedule_unit` 'epoch' (default: milestones and `optim.warmup` count epochs, the
    scheduler steps at epoch ends) or 'step' (they count optimisation steps, the scheduler steps
    after each one); the lr rule is in `avssl.engine.schedules`."""
    from avssl.engine.schedules import schedule_unit

    ocfg = cfg["optim"]
    method_params = list(method_params)
    if method_params:
        params = [{"params": list(params)}, {"params": method_params, "weight_decay": 0.0}]
    if ocfg["name"] == "adam":
        opt = torch.optim.Adam(params, lr=ocfg["lr"], weight_decay=ocfg["weight_decay"],
                               betas=tuple(ocfg["betas"]))
    elif ocfg["name"] == "sgd":
        opt = torch.optim.SGD(params, lr=ocfg["lr"], momentum=ocfg["momentum"],
                              weight_decay=ocfg["weight_decay"], nesterov=ocfg["nesterov"])
    else:
        raise ValueError(f"optim.name must be 'adam' or 'sgd', got {ocfg['name']!r}")
    schedule_unit(ocfg)  # checked here: a misspelled unit fails at start
    return opt, build_scheduler(cfg, opt)


def build_scheduler(cfg: dict, optimizer: torch.optim.Optimizer):
    """The lr rule of `cfg.optim` (milestones, gamma, warm-up; `avssl.engine.schedules`) on `optimizer`."""
    from avssl.engine.schedules import build_lr_scheduler

    ocfg = cfg["optim"]
    return build_lr_scheduler(optimizer, list(ocfg["milestones"]), ocfg["gamma"], ocfg["warmup"])


def _to_channels_last(model: torch.nn.Module) -> None:
    """channels-last weights for 3D convs (video) and 2D convs (audio); cuDNN picks faster NDHWC kernels."""
    for m in model.modules():
        if isinstance(m, torch.nn.Conv3d):
            m.to(memory_format=torch.channels_last_3d)
        elif isinstance(m, torch.nn.Conv2d):
            m.to(memory_format=torch.channels_last)


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or amp in (None, "off", False):
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    raise ValueError(f"trainer.amp must be 'off', 'bf16' or 'fp16', got {amp!r}")


# ============================================================================================
# training state
# ============================================================================================


@dataclass
class Progress:
    epoch: int = 0
    batches_consumed: int = 0  # in the current epoch, on each rank
    global_step: int = 0  # batches drawn (taken or skipped on every rank together): equal on every rank
    data: DataCounts = field(default_factory=DataCounts)  # summed over ranks: equal on every rank

    @property
    def dropped_samples(self) -> int:
        return self.data.dropped

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> "Progress":
        state = dict(state)
        state.pop("dropped_samples", None)  # older checkpoints: a per-rank count, superseded by `data`
        return cls(**{**state, "data": DataCounts(**state.get("data", {}))})


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def make_state(cfg, model, optimizer, scheduler, scaler, method: Method, progress: Progress,
               neg_generator: torch.Generator, fingerprint: str, data_failures: dict | None = None) -> dict:
    """Everything a resumed run needs. Collective under DDP (gathers every rank's RNG)."""
    rng = capture_rng_state()
    rng["negatives"] = neg_generator.get_state()
    per_rank = [None] * du.world_size()
    if du.is_dist():
        dist.all_gather_object(per_rank, rng)
    else:
        per_rank = [rng]
    return {
        "method": method.name,
        "stage": method.name,  # what readers of checkpoints written before methods had modules look for
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "criterion": method.state_dict(),
        "progress": progress.state_dict(),
        "data_failures": data_failures,  # FailureLog.state_dict() merged over ranks
        "rng": {"per_rank": per_rank},
        "config": cfg,
        "manifest_fingerprint": fingerprint,
        "world_size": du.world_size(),
    }


def restore_state(state, model, optimizer, scheduler, scaler, method: Method, neg_generator,
                  dist_info: DistInfo, logger) -> Progress:
    _unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    method.load_state_dict(state["criterion"])
    per_rank = state["rng"]["per_rank"]
    if len(per_rank) == dist_info.world_size:
        rng = per_rank[dist_info.rank]
        restore_rng_state(rng)
        neg_generator.set_state(rng["negatives"])
    else:
        logger.warning("checkpoint was written by %d ranks, this run has %d: RNG streams are reseeded, "
                       "so the continuation is valid but not bit-identical", len(per_rank), dist_info.world_size)
    return Progress.from_state(state["progress"])


# ============================================================================================
# evaluation: held-out audio -> video retrieval
# ============================================================================================


@torch.no_grad()
def embed_dataset(model, transforms, dataset, batch_size, num_workers, device, amp_dtype=None,
                  stats: dict | None = None):
    """Projected, L2-normalised video and audio embeddings of every readable item (all ranks gathered,
    no padding: each item appears exactly once). No collective runs inside the loop, so a rank whose
    share holds unreadable files cannot stall the others. `stats` (a dict) receives ``items``,
    ``embedded`` and ``failed`` summed over ranks; ``embedded + failed == items`` is checked."""
    sampler = EvalShardSampler(len(dataset), num_replicas=du.world_size(), rank=du.rank())
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        collate_fn=_collate(), generator=torch.Generator().manual_seed(0))
    model.eval()
    vs, as_, ids = [], [], []
    failed, seen = 0, 0
    for batch in loader:
        n = min(batch_size, len(sampler) - seen)  # the loader's batches are full but for the last
        seen += n
        if batch is None:
            failed += n
            continue
        failed += int(batch["dropped"])
        video, audio = transforms(batch["video"].to(device), batch["audio"].to(device))
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            v, a = model(video, audio)
        vs.append(F.normalize(v.float(), dim=1).cpu())
        as_.append(F.normalize(a.float(), dim=1).cpu())
        ids.append(batch["index"].long().cpu())
    dim = _unwrap(model).embed_dim if hasattr(_unwrap(model), "embed_dim") else (vs[0].shape[1] if vs else 0)
    v = torch.cat(vs) if vs else torch.zeros(0, dim)
    a = torch.cat(as_) if as_ else torch.zeros(0, dim)
    i = torch.cat(ids) if ids else torch.zeros(0, dtype=torch.long)
    v, a, i = du.all_gather_varlen(v), du.all_gather_varlen(a), du.all_gather_varlen(i)
    (failed,) = du.all_reduce_sum_ints([failed])
    if v.shape[0] + failed != len(dataset):
        raise RuntimeError(f"held-out embedding: {v.shape[0]} embedded + {failed} failed != {len(dataset)} items")
    if stats is not None:
        stats.update(items=len(dataset), embedded=int(v.shape[0]), failed=failed)
    return v, a, i


def evaluate_retrieval(model, transforms, dataset, cfg, device, amp_dtype=None, labels: dict | None = None,
                       sounding: dict | None = None) -> dict[str, float]:
    """Held-out metrics: R@1/R@5 both ways with chance (`retrieval_metrics`); with ``labels`` (video id ->
    class) the class-level and within-class figures, with ``eval.sync_shifts`` the synchronization test
    (`avssl.engine.heldout`; ``sounding``: which videos have a visible sounding object)."""
    from avssl.engine.heldout import evaluate_sync, instance_metrics

    stats: dict = {}
    ecfg = cfg["eval"]
    v, a, ids = embed_dataset(model, transforms, dataset, ecfg["batch_size"],
                              cfg["data"].get("num_workers", 0), device, amp_dtype, stats=stats)
    counts = {"num_items": stats["items"], "num_failed": stats["failed"]}
    if stats["embedded"] == 0:  # every held-out file unreadable: no figure, but the trained run stands
        nan = float("nan")
        return {**{k: nan for k in ("a2v_R@1", "a2v_R@5", "v2a_R@1", "v2a_R@5", "chance_R@1", "chance_R@5")},
                "num_clips": 0, **counts}
    out = {**retrieval_metrics(v, a, ids), **counts, **instance_metrics(v, a, ids, labels)}
    out.update(evaluate_sync(model, transforms, dataset, list(ecfg["sync_shifts"]),
                             batch_size=ecfg["batch_size"], num_workers=cfg["data"].get("num_workers", 0),
                             device=device, amp_dtype=amp_dtype, sounding=sounding))
    return out


# ============================================================================================
# the loop
# ============================================================================================


def train_one_epoch(ctx: "TrainContext", progress: Progress, max_steps: int | None) -> bool:
    """Run the rest of the current epoch. Returns False when `max_steps` stopped it early.

    Batches come full from `training_loader` (unreadable items replaced from the rank's share);
    `agree_on_step` then decides, on every rank alike, whether the step runs or is skipped by all
    (some rank could not fill its batch) and adds the step's clips to ``progress.data``."""
    cfg, logger, timer = ctx.cfg, ctx.logger, ctx.timer
    tcfg = cfg["trainer"]
    ctx.sampler.set_epoch(progress.epoch, progress.batches_consumed)
    if hasattr(ctx.train_set, "set_epoch"):
        ctx.train_set.set_epoch(progress.epoch)
    loader = training_loader(ctx.train_set, ctx.sampler, max_attempts=ctx.replace_attempts,
                             num_workers=cfg["data"].get("num_workers", 0), pin_memory=ctx.device.type == "cuda",
                             # own generator: creating an iterator must not draw from the global RNG,
                             # or a resumed run (one extra iterator) would diverge from an uninterrupted one
                             generator=torch.Generator().manual_seed(cfg["seed"] * 100_003 + progress.epoch))
    ctx.model.train()
    dense = ctx.method.needs_dense
    bar = ctx.bar  # one bar over the whole run (`run_progress_bar`)
    if bar is not None:
        bar.set_description(f"epoch {progress.epoch}")
    it = iter(loader)
    while True:
        if max_steps is not None and progress.global_step >= max_steps:
            return False
        with timer.phase("data"):
            batch = next(it, StopIteration)
            if batch is StopIteration:
                break
            verdict = agree_on_step(batch)  # collective: every rank, every step
        progress.batches_consumed += 1
        progress.global_step += 1
        progress.data.add(verdict.counts)
        ctx.failure_log.add(batch["failed"])
        ctx.failure_log.add(batch["replacement_failures"])
        if not verdict.take:
            timer.end_step()
            logger.warning("step %d skipped on every rank: a rank could not fill its batch of %d (%d of the "
                           "step's %d clips unreadable, %d replaced)", progress.global_step, ctx.batch_size,
                           verdict.counts.failed, verdict.counts.requested, verdict.counts.replaced)
            if bar is not None:
                bar.update(1)
            _maybe_checkpoint(ctx, progress)
            continue
        ctx.failure_log.add_damaged(batch.get("damaged", ()))  # used clips read with damaged packets skipped
        ctx.method.on_step_start(progress.global_step)
        shifted = ctx.method.wants_shifted_audio() and "audio_shifted" in batch  # temporal negatives this step

        with timer.phase("transform"):
            video = batch["video"].to(ctx.device, non_blocking=True)
            audio = batch["audio"].to(ctx.device, non_blocking=True)
            indices = batch["index"].to(ctx.device, non_blocking=True)
            video, audio = ctx.transforms(video, audio)
            if shifted:  # each clip's shifted audio rides in the same audio forward (one batch of 2B)
                shift = batch["shift"].to(ctx.device, non_blocking=True)
                audio = torch.cat([audio, ctx.transforms.audio_tf(batch["audio_shifted"].to(ctx.device))])
            if ctx.channels_last:
                video = video.contiguous(memory_format=torch.channels_last_3d)
                audio = audio.contiguous(memory_format=torch.channels_last)
        with timer.phase("forward"):
            with torch.autocast(ctx.device.type, dtype=ctx.amp_dtype, enabled=ctx.amp_dtype is not None):
                if dense:  # per-position video embeddings of the same encoder pass
                    v_emb, a_emb, v_dense = ctx.model(video, audio, dense=True)
                else:
                    (v_emb, a_emb), v_dense = ctx.model(video, audio), None
        with timer.phase("loss_memory"):
            # the objective (cosines / T, exp, log) runs in fp32 whatever the autocast dtype
            a_shift = None
            if shifted:
                a_emb, a_shift = a_emb[: len(indices)], a_emb[len(indices):].float()
            out = ModelOutputs(v_emb.float(), a_emb.float(), v_dense.float() if v_dense is not None else None,
                               audio_shifted=a_shift, shift=shift if shifted else None)
            loss, stats = ctx.method.loss(out, indices, generator=ctx.neg_generator)
        with timer.phase("backward"):
            ctx.optimizer.zero_grad(set_to_none=True)
            if ctx.scaler is not None:
                ctx.scaler.scale(loss).backward()
                _average_method_grads(ctx)
                ctx.scaler.step(ctx.optimizer)
                ctx.scaler.update()
            else:
                loss.backward()
                _average_method_grads(ctx)
                ctx.optimizer.step()
            if ctx.schedule_per_step:  # optim.schedule_unit=step: the scheduler counts updates
                ctx.step_lr = ctx.optimizer.param_groups[0]["lr"]  # the rate this update used (logged)
                ctx.scheduler.step()
        step_times = timer.end_step()
        loss_value = float(loss.detach())
        ctx.loss_history.append(loss_value)
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss is {loss_value} at step {progress.global_step}")

        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
        if progress.global_step % tcfg["log_every"] == 0 or progress.global_step == 1:
            _log_step(ctx, progress, loss_value, stats, step_times, len(indices))
        _maybe_checkpoint(ctx, progress)
    return True


def run_progress_bar(progress: Progress, epochs: int, steps_per_epoch: int, max_steps: int | None, enabled: bool):
    """One tqdm bar over the whole run, so its ETA is the run's: total = epochs x steps per epoch (or
    ``trainer.max_steps`` if smaller), starting at the steps already done (a resumed run). None when off."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    total = epochs * steps_per_epoch if max_steps is None else min(int(max_steps), epochs * steps_per_epoch)
    return tqdm(total=total, initial=min(progress.global_step, total), desc=f"epoch {progress.epoch}",
                unit="step", dynamic_ncols=True)


def _average_method_grads(ctx) -> None:
    """The method's own parameters are outside DDP: average their gradients over ranks as DDP does
    the model's (every rank's loss has the same form, so the mean is the global batch's gradient)."""
    if ctx.dist.world_size > 1 and ctx.method_params:
        du.all_reduce_grads_mean_(ctx.method_params)


def _maybe_checkpoint(ctx, progress) -> None:
    every = ctx.cfg["trainer"]["checkpoint_every"]
    if every and progress.global_step % every == 0:
        save_checkpoint(ctx, progress)


def _log_step(ctx, progress, loss_value, stats, step_times, batch_len):
    step_s = sum(step_times.values())
    clips_per_s = batch_len * ctx.dist.world_size / step_s if step_s > 0 else float("nan")
    lr = ctx.step_lr if ctx.step_lr is not None else ctx.optimizer.param_groups[0]["lr"]  # this update's rate
    ctx.logger.info(
        "epoch %d step %d | loss %.4f | lr %.2e | %.1f clips/s | data %.3fs fwd %.3fs loss+mem %.3fs bwd %.3fs "
        "| pos %.3f neg %.3f | clips failed %d replaced %d dropped %d",
        progress.epoch, progress.global_step, loss_value, lr, clips_per_s, step_times.get("data", 0),
        step_times.get("forward", 0), step_times.get("loss_memory", 0), step_times.get("backward", 0),
        float(_mean_stat(stats, "_pos")), float(_mean_stat(stats, "_neg")), progress.data.failed,
        progress.data.replaced, progress.data.dropped,
    )
    for name in ctx.term_names:  # the method's added terms
        ctx.logger.info("step %d | loss/%s %.4f", progress.global_step, name, float(stats[f"loss/{name}"]))
    tb = ctx.tb
    if tb is None:
        return
    s = progress.global_step
    tb.add_scalar("train/loss", loss_value, s)
    tb.add_scalar("train/lr", lr, s)
    tb.add_scalar("perf/clips_per_s", clips_per_s, s)
    for name, dt in step_times.items():
        tb.add_scalar(f"perf/time_{name}_s", dt, s)
    for name, value in progress.data.as_dict().items():  # run totals over all ranks
        tb.add_scalar(f"data/{name}", value, s)
    for name, value in stats.items():
        tb.add_scalar(f"criterion/{name}", float(value), s)


def _mean_stat(stats: dict, suffix: str) -> float:
    vals = [float(v) for k, v in stats.items() if k.startswith("sim/") and k.endswith(suffix)]
    return sum(vals) / len(vals) if vals else float("nan")


def save_checkpoint(ctx: "TrainContext", progress: Progress) -> None:
    failures = report_data_failures(ctx, progress)  # collective
    state = make_state(ctx.cfg, ctx.model, ctx.optimizer, ctx.scheduler, ctx.scaler, ctx.method,
                       progress, ctx.neg_generator, ctx.fingerprint, failures.state_dict())  # collective: all ranks call
    if ctx.dist.rank == 0:
        path = ctx.ckpt.save(state, progress.global_step)
        ctx.logger.info("checkpoint %s (epoch %d, %d batches into it)", path.name, progress.epoch,
                        progress.batches_consumed)
    if du.is_dist():
        dist.barrier()


def report_data_failures(ctx: "TrainContext", progress: Progress) -> FailureLog:
    """Collective: merge every rank's `FailureLog`; rank 0 writes ``<run_dir>/data_failures.json`` (the
    run's `DataCounts` and the files behind the failed reads). Returns the merged log."""
    merged = ctx.failure_log.gathered()
    if ctx.dist.rank == 0 and (merged.files or merged.unlisted_failures or progress.data.failed or merged.damaged):
        write_failure_report(Path(ctx.cfg["run_dir"]) / "data_failures.json", merged, progress.data,
                             extra={"global_step": progress.global_step, "epoch": progress.epoch})
    return merged


@dataclass
class TrainContext:
    cfg: dict
    dist: DistInfo
    device: torch.device
    logger: Any
    tb: Any
    timer: StepTimer
    train_set: Any
    sampler: ResumableDistributedSampler
    batch_size: int
    model: torch.nn.Module
    transforms: BatchTransforms
    method: Method
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    neg_generator: torch.Generator
    fingerprint: str
    ckpt: CheckpointManager
    amp_dtype: torch.dtype | None
    channels_last: bool
    loss_history: list = field(default_factory=list)
    replace_attempts: int = DEFAULT_REPLACE_ATTEMPTS  # replacement reads per unreadable item (data.replace_attempts)
    failure_log: FailureLog = field(default_factory=FailureLog)  # this rank's failed reads since start/resume
    schedule_per_step: bool = False  # optim.schedule_unit=step: the lr scheduler steps after every optimisation step
    step_lr: float | None = None  # (schedule_per_step) the learning rate the last update used
    bar: Any = None  # the run's progress bar (rank 0, trainer.progress), `run_progress_bar`

    def __post_init__(self):
        self.method_params = self.method.parameters()
        self.term_names = [t.name for t in self.method.terms]


def find_resume_state(cfg: dict, run_dir: Path, method: str, logger) -> tuple[Path | None, dict | None, list]:
    """``(checkpoint path, state, changes)`` of the run `cfg` continues (``resume``: auto | force | never | <file or run
    dir> | force:<file or run dir>; `avssl.utils.runs.parse_resume`), or ``(None, None, [])`` for a fresh start;
    ``changes``: the settings ``resume=force`` let differ, ``[(key, old, new)]``.

    Refuses (`CheckpointError`) a checkpoint of another method, and (`ConfigMismatchError`) one whose stored
    config differs from `cfg` in a key outside `RESUME_HARMLESS_KEYS`, unless forced. The dataset fingerprint
    is checked by the caller once the data is indexed."""
    mode, path, force = parse_resume(cfg.get("resume", "auto"))
    ckpt = CheckpointManager(run_dir)
    if mode == "auto" and ckpt.candidates():  # newest checkpoint that reads (damaged ones skipped)
        resume_path, state = ckpt.load_latest(logger=logger)
    elif mode == "path":
        resume_path = Path(path)
        if resume_path.is_dir():  # a run directory
            resume_path, state = CheckpointManager(resume_path).load_latest(logger=logger)
        else:
            state = load_checkpoint(resume_path)
    else:
        return None, None, []
    if checkpoint_method(state) != method:
        raise CheckpointError(f"{resume_path} is a {checkpoint_method(state)!r} checkpoint, this run is "
                              f"method {method!r}")
    changes = check_resume_config(state.get("config"), cfg, harmless=RESUME_HARMLESS_KEYS, force=force,
                                  source=str(resume_path), logger=logger)
    return resume_path, state, changes


def train(cfg, *, return_objects: bool = False) -> dict[str, Any]:
    """Pretrain with the method ``cfg.method`` names (`avssl.methods`; ``stage``, its old name, is still
    read). Returns a summary dict (with the trained ``model``, the ``method`` and its ``criterion`` module
    under those keys when `return_objects`)."""
    cfg = _plain(cfg)
    tcfg = cfg["trainer"]
    dist_info = setup_distributed(tcfg["device"])
    device = dist_info.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    run_dir = Path(cfg["run_dir"])
    logger = setup_logger(run_dir, dist_info.rank)
    tb = make_tb_writer(run_dir, dist_info.rank, tcfg["tensorboard"])
    torch.manual_seed(cfg["seed"] + dist_info.rank)
    name = method_name(cfg)
    logger.info("run %s | method %s | %d process(es) on %s", run_dir, name, dist_info.world_size, device)

    try:
        # ---- the run to continue, if any: refused before any data work when its settings differ
        resume_path, state, forced_changes = find_resume_state(cfg, run_dir, name, logger)
        # ---- data
        data = build_data(cfg, dist_info)
        logger.info("train: %d items, %d memory slots (index fingerprint %s); index: %s; held-out clips: %s",
                    len(data.train_set), data.num_train_videos, data.fingerprint,
                    data.notes.get("summary", "n/a"), len(data.eval_set) if data.eval_set is not None else 0)
        if dist_info.rank == 0:  # every entry left out of the index, with its reason
            for key, name in (("index_report", "index_report.json"), ("eval_index_report", "index_report_eval.json")):
                if key in data.notes:
                    data.notes[key].write_json(run_dir / name)
        batch_size = cfg["data"]["batch_size"]  # per rank
        sampler = ResumableDistributedSampler(len(data.train_set), batch_size, num_replicas=dist_info.world_size,
                                              rank=dist_info.rank, seed=cfg["seed"], drop_last=True)

        # ---- model, transforms, objective, optimiser
        torch.manual_seed(cfg["seed"])  # identical initial weights on every rank
        model = build_model(cfg).to(device)
        channels_last = tcfg["channels_last"] and device.type == "cuda"
        if channels_last:
            _to_channels_last(model)
        train_tf = build_batch_transforms(cfg, train=True).to(device)
        eval_tf = build_batch_transforms(cfg, train=False).to(device)
        method = build_method(cfg, data.num_train_videos, data.fingerprint).to(device)
        optimizer, scheduler = build_optimizer(cfg, model.parameters(), method.parameters())
        amp_dtype = _amp_dtype(tcfg["amp"], device)
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        neg_generator = torch.Generator(device=device)  # the method's random draws (e.g. bank negatives)
        neg_generator.manual_seed(cfg["seed"] * 7919 + dist_info.rank)
        torch.manual_seed(cfg["seed"] + 1000 * (dist_info.rank + 1))  # per-rank augmentation streams
        if dist_info.world_size > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)

        # ---- resume or start
        ckpt = CheckpointManager(run_dir, keep_last=tcfg["keep_last"])
        progress = Progress()
        if resume_path is not None:
            check_fingerprint(state, data.fingerprint, source=str(resume_path))
            fresh = group_settings(optimizer)  # this config's optimiser hyper-parameters
            progress = restore_state(state, model, optimizer, scheduler, scaler, method, neg_generator,
                                     dist_info, logger)
            if any(key.startswith("optim.") for key, _, _ in forced_changes):  # resume=force under a new lr rule
                scheduler = restart_schedule(optimizer, fresh, lambda opt: build_scheduler(cfg, opt),
                                             scheduler_steps(state["scheduler"]))
                logger.info("resume=force: the lr schedule of this config continues at its step %d (lr %.3g)",
                            scheduler_steps(state["scheduler"]), optimizer.param_groups[0]["lr"])
            logger.info("resumed from %s at epoch %d, step %d", resume_path, progress.epoch, progress.global_step)
        else:
            method.start(_unwrap(model), fingerprint=data.fingerprint, logger=logger)

        ctx = TrainContext(cfg, dist_info, device, logger, tb, StepTimer(cuda_sync=tcfg["sync_timing"], warmup=tcfg["timing_warmup"]),
                           data.train_set, sampler, batch_size, model, train_tf, method, optimizer, scheduler,
                           scaler, neg_generator, data.fingerprint, ckpt, amp_dtype, channels_last,
                           replace_attempts=int(cfg["data"].get("replace_attempts", DEFAULT_REPLACE_ATTEMPTS)),
                           schedule_per_step=cfg["optim"]["schedule_unit"] == "step")
        if resume_path is not None and dist_info.rank == 0 and state.get("data_failures"):
            ctx.failure_log.load_state_dict(state["data_failures"])  # rank 0 carries the merged past

        # ---- epochs
        epochs = tcfg["epochs"]
        max_steps = tcfg["max_steps"]
        ctx.bar = run_progress_bar(progress, epochs, sampler.batches_per_epoch, max_steps,
                                   dist_info.rank == 0 and tcfg["progress"])
        evals: list[dict] = []
        stopped = False
        t_start = time.perf_counter()
        while progress.epoch < epochs and not stopped:
            if progress.batches_consumed == 0:
                method.on_epoch_start(progress.epoch, device=device, logger=logger)
            finished = train_one_epoch(ctx, progress, max_steps)
            if not finished:
                stopped = True
                save_checkpoint(ctx, progress)
                break
            progress.epoch += 1
            progress.batches_consumed = 0
            if not ctx.schedule_per_step:
                scheduler.step()
            save_checkpoint(ctx, progress)
            every = cfg["eval"]["every_epochs"]
            if data.eval_set is not None and every and progress.epoch % every == 0 and progress.epoch < epochs:
                evals.append(_run_eval(ctx, data, progress, eval_tf))
        if ctx.bar is not None:
            ctx.bar.close()
            ctx.bar = None
        # the held-out evaluation ends every run, also one stopped by trainer.max_steps (its final
        # checkpoint is written above); not twice for the same weights
        if data.eval_set is not None and cfg["eval"]["at_end"] and (
                not evals or evals[-1]["global_step"] != progress.global_step):
            evals.append(_run_eval(ctx, data, progress, eval_tf))
        failures = report_data_failures(ctx, progress)  # collective; writes data_failures.json
        progress.data.check()
        if tb is not None:
            for name, value in progress.data.as_dict().items():
                tb.add_scalar(f"data/{name}", value, progress.global_step)
        if progress.data.failed:
            logger.warning("data: %d clips requested = %d used + %d dropped (%d skipped steps); %d unreadable, "
                           "%d replaced, %d replacement reads failed; %d file(s) listed in %s",
                           progress.data.requested, progress.data.used, progress.data.dropped,
                           progress.data.skipped_steps, progress.data.failed, progress.data.replaced,
                           progress.data.replacement_failures, len(failures.files), run_dir / "data_failures.json")
        if progress.data.damaged:
            logger.warning("data: %d of the %d clips used had damaged packets (%d skipped by the decoder, the rest of "
                           "each clip kept); %d file(s) listed in %s", progress.data.damaged, progress.data.used,
                           progress.data.decode_errors, len(failures.damaged), run_dir / "data_failures.json")
        summary = {
            "run_dir": str(run_dir),
            "global_step": progress.global_step,
            "epoch": progress.epoch,
            "stopped_early": stopped,
            "loss_history": ctx.loss_history,
            "timing": ctx.timer.summary(),
            "dropped_samples": progress.data.dropped,
            "data": {**progress.data.as_dict(), "failed_files": len(failures.files),
                     "unlisted_failures": failures.unlisted_failures, "damaged_files": len(failures.damaged)},
            "retrieval": evals[-1] if evals else None,
            "lr": optimizer.param_groups[0]["lr"],  # the rate the next update (a resumed run) starts with
            "index": _index_counts(data.notes.get("index_report")),
            "seconds": time.perf_counter() - t_start,
            "fingerprint": data.fingerprint,
        }
        if return_objects:
            summary["model"] = _unwrap(model)
            summary["method"] = method
            summary["criterion"] = method.criterion
        t = summary["timing"]
        logger.info("done: %d steps in %.1fs | per step: data %.3fs, transform %.3fs, forward %.3fs, "
                    "loss+memory %.3fs, backward %.3fs", progress.global_step, summary["seconds"], t["data"],
                    t["transform"], t["forward"], t["loss_memory"], t["backward"])
        return summary
    finally:
        if tb is not None:
            tb.close()
        if dist_info.owns_group and du.is_dist():
            dist.destroy_process_group()


def _index_counts(report) -> dict | None:
    """Entries listed / indexed / left out (by reason) of the training index, for the summary."""
    if report is None:
        return None
    return {"total": report.total, "indexed": report.indexed, "left_out": report.counts()}


def _run_eval(ctx, data, progress, eval_tf) -> dict:
    metrics = evaluate_retrieval(ctx.model, eval_tf, data.eval_set, ctx.cfg, ctx.device, ctx.amp_dtype,
                                 labels=data.eval_labels, sounding=data.eval_sounding)
    metrics["epoch"] = progress.epoch
    metrics["global_step"] = progress.global_step
    ctx.logger.info("held-out retrieval (%d clips, %d unreadable) a2v R@1 %.3f R@5 %.3f | chance R@1 %.3f R@5 %.3f",
                    metrics["num_clips"], metrics["num_failed"], metrics["a2v_R@1"], metrics["a2v_R@5"],
                    metrics["chance_R@1"], metrics["chance_R@5"])
    if "a2v_within_R@1" in metrics:
        ctx.logger.info("held-out a2v class top-1 %.3f (chance %.3f) | within class R@1 %.3f (chance %.3f), median "
                        "rank %g (chance %g)", metrics["a2v_class_top1"], metrics["chance_class_top1"],
                        metrics["a2v_within_R@1"], metrics["within_chance_R@1"], metrics["a2v_within_median_rank"],
                        metrics["within_chance_median_rank"])
    for s in ctx.cfg["eval"]["sync_shifts"]:
        k = f"sync@{float(s):g}s"
        extra = (f", clips with a visible sounding object {metrics[k + '_acc_sounding']:.3f}"
                 if k + "_acc_sounding" in metrics else "")
        ctx.logger.info("held-out sync test, own vs %gs-shifted audio: accuracy %.3f, AUC %.3f over %d trials%s "
                        "(chance 0.5)", float(s), metrics[k + "_acc"], metrics[k + "_auc"], metrics[k + "_trials"], extra)
    if ctx.tb is not None:
        for k, value in metrics.items():
            if isinstance(value, (int, float)) and k not in ("epoch", "global_step") and math.isfinite(value):
                ctx.tb.add_scalar(f"eval/{k}", value, progress.global_step)
    ctx.model.train()
    return metrics
